"""`block:` / `rescue:` / `always:` over real sshd, checked by what a user gets back: the
exit code, the recap's counts, `runner job show`, the JUnit report and files on the hosts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET


def _recap(stdout: str, host: str) -> dict[str, int]:
    """The host's row of the recap, by column name."""
    lines = stdout.splitlines()
    header = lines[lines.index("RECAP") + 1].split()
    (row,) = [line.split() for line in lines if line.startswith(f"{host} ")]
    return dict(zip(header[1:], (int(n) for n in row[1:]), strict=True))


def _shown_steps(cli, child_id: int) -> list[str]:
    """The step names of `runner job show` for a child, in order."""
    lines = cli("job", "show", str(child_id), check=True).stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Steps on"))
    return [line for line in lines[start + 3 :] if line.strip()]


def _child(cli, host: str) -> dict:
    (child,) = [c for c in cli.jobs("--children") if c["Location"] == host and c["Id"] != 1]
    return child


def test_a_failing_step_is_rescued_and_always_runs(cli, inventory, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    play = cli.playbook(
        f"""
        jobs:
          - name: deploy
            targets: host1
            steps:
              - name: install
                block:
                  - run: echo installing
                  - run: echo broken >&2; exit 3
                  - run: touch {marks}/never
                rescue:
                  - run: touch {marks}/rescued-{{{{ inventory_hostname }}}}
                always:
                  - run: touch {marks}/always-{{{{ inventory_hostname }}}}
              - run: touch {marks}/after
        """
    )
    junit = tmp_path / "junit.xml"
    proc = cli("run", play, "-i", inventory, "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in marks.iterdir()) == ["after", "always-host1", "rescued-host1"]
    assert _recap(proc.stdout, "host1") == {
        "ok": 0,
        "changed": 4,
        "failed": 0,
        "skipped": 0,
        "unreachable": 0,
        "stopped": 0,
        "rescued": 1,
    }
    child = _child(cli, "host1")
    assert child["State"] == "Completed"
    shown = _shown_steps(cli, child["Id"])
    assert [line.split()[0] for line in shown] == ["0", "1", "3", "4", "5"]  # 2 never ran
    assert "failed" in shown[1] and "never" not in " ".join(shown)
    # A rescued step is no failure for CI: JUnit keeps it, passed, with a note.
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    rescued = cases["host1: run: echo broken >&2; exit 3"]
    assert rescued.find("failure") is None and "rescued" in rescued.find("system-out").text


def test_a_failure_in_rescue_fails_the_host_and_always_still_runs(cli, inventory, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    play = cli.playbook(
        f"""
        jobs:
          - name: deploy
            targets: host1:host2
            steps:
              - block:
                  - run: exit 3
                    when: inventory_hostname == 'host1'
                  - run: touch {marks}/body-{{{{ inventory_hostname }}}}
                rescue:
                  - run: exit 4
                always:
                  - run: touch {marks}/always-{{{{ inventory_hostname }}}}
              - run: touch {marks}/after-{{{{ inventory_hostname }}}}
        """
    )
    proc = cli("run", play, "-i", inventory, "--format", "json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert sorted(p.name for p in marks.iterdir()) == [
        "after-host2",
        "always-host1",
        "always-host2",
        "body-host2",
    ]
    stats = json.loads(proc.stdout)["stats"]
    assert (stats["host1"]["failed"], stats["host1"]["rescued"]) == (1, 1)
    assert (stats["host2"]["failed"], stats["host2"]["rescued"]) == (0, 0)
    assert _child(cli, "host1")["State"] == "Failed"
    assert _child(cli, "host2")["State"] == "Completed"


def test_block_keys_apply_inside_and_nested_failures_reach_the_outer_rescue(
    cli, inventory, tmp_path
):
    marks = tmp_path / "marks"
    marks.mkdir()
    play = cli.playbook(
        f"""
        jobs:
          - name: nested
            targets: host1:host2
            steps:
              - name: outer
                when: inventory_hostname == 'host1'
                env: {{WHO: outer}}
                cwd: "{marks}"
                vars: {{suffix: from-block}}
                block:
                  - run: echo "$WHO" > who-{{{{ suffix }}}}
                  - block:
                      - run: exit 5
                    always:
                      - run: touch inner-always
                  - run: touch never
                rescue:
                  - run: touch outer-rescue
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in marks.iterdir()) == [
        "inner-always",
        "outer-rescue",
        "who-from-block",
    ]
    assert (marks / "who-from-block").read_text() == "outer\n"
    assert _recap(proc.stdout, "host2")["skipped"] == 4  # the block's `when` is false there
    assert _recap(proc.stdout, "host1")["rescued"] == 1
