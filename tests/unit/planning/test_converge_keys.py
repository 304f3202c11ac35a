"""The `package` and `service` keys: each bad value is one located line, exit 4."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import EXIT_INVALID, PlaybookError
from runner.planning.playbook import load_playbook

CASES = {
    "{package: {name: 'curl && reboot'}}": "package.name: 'curl && reboot' is not a package name",
    "{package: {name: [curl, -y]}}": "package.name[1]: '-y' is not a package name",
    "{package: {name: []}}": "package.name: must not be empty",
    "{package: {name: curl, state: installed}}": "package.state: ",
    "{package: {name: curl, update_cache: yes please}}": "package.update_cache: ",
    "{service: {name: nginx}}": "service: a service step needs 'state' or 'enabled' (or both)",
    "{service: {name: 'nginx; id', state: started}}": "service.name: 'nginx; id' is not a unit",
    "{service: {name: nginx, state: running}}": "service.state: ",
    "{service: {name: nginx, enabled: maybe}}": "service.enabled: ",
}


@pytest.mark.parametrize("step", sorted(CASES))
def test_a_bad_package_or_service_key_is_one_located_line(tmp_path: Path, step: str) -> None:
    path = tmp_path / "site.yml"
    path.write_text(f"jobs:\n  - name: a\n    targets: all\n    steps:\n      - {step}\n")
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path)
    line = str(caught.value)
    assert line.startswith(f"{path}:5:"), line
    assert f"jobs[0].steps[0].{CASES[step]}" in line or CASES[step] in line, line
    assert "\n" not in line and caught.value.exit_code == EXIT_INVALID


def test_good_package_and_service_steps_load_with_derived_names(tmp_path: Path) -> None:
    path = tmp_path / "site.yml"
    path.write_text(
        "jobs:\n  - name: a\n    targets: all\n    steps:\n"
        "      - package: {name: [nginx, libc6=2.36-9], state: latest, update_cache: true}\n"
        "      - package: {name: '{{ pkgs }}'}\n"
        "      - service: {name: nginx@main.service, state: reloaded, enabled: false}\n"
    )
    steps = load_playbook(path).jobs[0].steps
    assert [s.name for s in steps] == [
        "package: nginx libc6=2.36-9 state=latest",
        "package: {{ pkgs }}",
        "service: nginx@main.service state=reloaded enabled=false",
    ]
