"""Handlers over real sshd: a job's `handlers:` run once per host after its steps, only
where a step that reported `changed` notified them; a failure skips them unless
`--force-handlers`; the recap, `runner job show` and the reports show them; a `notify`
naming no handler, a handler in a job kept on its target are refused at their line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def _document(proc: Any) -> dict[str, Any]:
    return json.loads(proc.stdout)


def _steps(document: dict[str, Any], host: str) -> dict[str, str]:
    """Step name -> status of the child on `host` of the run's only job."""
    (job,) = document["jobs"]
    (child,) = [c for c in job["children"] if c["host"] == host]
    return {step["name"]: step["status"] for step in child["steps"]}


def _recap(stdout: str, host: str) -> dict[str, int]:
    """A host's row of the printed recap, by column."""
    lines = stdout.split("RECAP", 1)[1].strip().splitlines()
    header = lines[0].split()
    row = next(line.split() for line in lines if line.split()[:1] == [host])
    return dict(zip(header[1:], (int(n) for n in row[1:]), strict=True))


def _handler_play(cli: Any, tmp_path: Path, after: str = "") -> str:
    """Two puts that notify `restart app`; a handler never notified; `after` a last step."""
    (tmp_path / "a.conf").write_text("a\n")
    (tmp_path / "b.conf").write_text("b\n")
    remote = tmp_path / "remote"
    remote.mkdir(exist_ok=True)
    dest = f"{remote}/{{{{ inventory_hostname }}}}"
    return cli.playbook(f"""
        jobs:
          - name: deploy
            targets: host1:host2
            steps:
              - put: {{src: "{tmp_path}/a.conf", dest: "{dest}-a.conf"}}
                notify: restart app
              - put: {{src: "{tmp_path}/b.conf", dest: "{dest}-b.conf"}}
                notify: [restart app]
              {after}
            handlers:
              - name: never notified
                run: echo never >> {remote}/{{{{ inventory_hostname }}}}.never
              - name: restart app
                run: echo restarted >> {remote}/{{{{ inventory_hostname }}}}.restarts
        """)


def test_handler_runs_once_after_two_changes_and_not_when_nothing_changed(cli, inventory, tmp_path):
    play = _handler_play(cli, tmp_path)
    remote = tmp_path / "remote"
    first = cli("run", play, "-i", inventory)
    assert first.returncode == 0, first.output
    for host in ("host1", "host2"):
        assert (remote / f"{host}.restarts").read_text() == "restarted\n"
        assert not (remote / f"{host}.never").exists()
        assert _recap(first.stdout, host)["changed"] == 3  # two puts and the handler
    shown = cli("job", "show", "deploy", check=True).stdout
    assert "handler: restart app" in shown and "never notified" not in shown

    second = cli("run", play, "-i", inventory, "--format", "json")
    assert second.returncode == 0, second.output
    document = _document(second)
    for host in ("host1", "host2"):
        assert (remote / f"{host}.restarts").read_text() == "restarted\n"  # not again
        assert document["stats"][host]["changed"] == 0
        assert document["stats"][host]["ok"] == 2
        assert "handler: restart app" not in _steps(document, host)


def test_failure_skips_handlers_and_force_handlers_runs_them(cli, inventory, tmp_path):
    play = _handler_play(cli, tmp_path, after="- run: exit 3")
    remote = tmp_path / "remote"
    failed = cli("run", play, "-i", inventory, "--format", "json")
    assert failed.returncode == 2, failed.output
    assert not list(remote.glob("*.restarts"))
    assert "handler: restart app" not in _steps(_document(failed), "host1")

    for put in remote.glob("*.conf"):  # the puts change again, notifying again
        put.unlink()
    junit = tmp_path / "report.xml"
    forced = cli(
        "run", play, "-i", inventory, "--force-handlers", "--format", "json", "--junit", str(junit)
    )
    assert forced.returncode == 2, forced.output
    document = _document(forced)
    for host in ("host1", "host2"):
        assert (remote / f"{host}.restarts").read_text() == "restarted\n"
        assert _steps(document, host)["handler: restart app"] == "changed"
        assert document["stats"][host]["changed"] == 3
        assert document["stats"][host]["failed"] == 1
    assert "host1: handler: restart app" in junit.read_text()


def test_a_failing_handler_fails_its_host(cli, inventory, tmp_path):
    (tmp_path / "a.conf").write_text("a\n")
    play = cli.playbook(f"""
        jobs:
          - name: deploy
            targets: host1
            steps:
              - put: {{src: "{tmp_path}/a.conf", dest: "{tmp_path}/out.conf"}}
                notify: broken
            handlers:
              - name: broken
                run: echo handler-ran; exit 5
        """)
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 2, proc.output
    assert "handler: broken" in cli("job", "show", "deploy", check=True).stdout
    assert _recap(proc.stdout, "host1")["failed"] == 1


def test_bad_notify_and_handlers_where_they_cannot_run_are_refused_at_their_line(cli, inventory):
    play = cli.playbook("""
        jobs:
          - name: deploy
            targets: host1
            steps:
              - run: echo a
                notify: restrat app
            handlers:
              - name: restart app
                run: echo r
          - name: kept
            targets: host1
            detach: true
            steps:
              - run: echo a
            handlers:
              - name: h
                run: echo h
        """)
    proc = cli("validate", play)
    assert proc.returncode == 4, proc.output
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"{play}:7:")
    assert "jobs[0].steps[0].notify" in lines[0] and "restrat app" in lines[0]
    assert lines[1].startswith(f"{play}:16:") and "jobs[1].handlers" in lines[1]
    assert "Traceback" not in proc.output
    run = cli("run", play, "-i", inventory)
    assert run.returncode == 4 and "restrat app" in run.stderr


def test_handlers_of_a_background_job_run_in_its_processes_and_are_shown(cli, inventory, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    play = cli.playbook(f"""
        jobs:
          - name: bg
            type: background
            targets: host1:host2
            steps:
              - run: echo step
                notify: note
              - run: exit 1
            handlers:
              - name: note
                run: echo handled > {out}/{{{{ inventory_hostname }}}}
        """)
    proc = cli("run", play, "-i", inventory, "--force-handlers")
    assert proc.returncode == 2, proc.output
    for host in ("host1", "host2"):
        assert (out / host).read_text() == "handled\n"
        assert any(
            line.split()[:2] == ["changed", host] and "bg | handler: note" in line
            for line in proc.stdout.splitlines()
        ), proc.stdout


@pytest.mark.parametrize("cli", ["workers"], indirect=True)
def test_handlers_and_run_once_on_workers(cli, inventory, tmp_path):
    """Children on workers plan again from the run's request: handlers and
    --force-handlers come along; a job with run_once keeps its children in the runner."""
    out = tmp_path / "out"
    out.mkdir()
    play = cli.playbook(f"""
        jobs:
          - name: spread
            targets: host1:host2
            steps:
              - run: echo step
                notify: note
              - run: exit 1
            handlers:
              - name: note
                run: echo handled > {out}/{{{{ inventory_hostname }}}}.note
          - name: once
            targets: host1:host2
            steps:
              - run: echo "{{{{ inventory_hostname }}}}"
                run_once: true
                register: first
              - run: echo "{{{{ first.stdout }}}}" > {out}/{{{{ inventory_hostname }}}}.once
        """)
    proc = cli("run", play, "-i", inventory, "--force-handlers")
    assert proc.returncode == 2, proc.output
    for host in ("host1", "host2"):
        assert (out / f"{host}.note").read_text() == "handled\n"
        assert (out / f"{host}.once").read_text() == "host1\n"
    assert "handler: note" in cli("job", "show", "spread", check=True).stdout


def test_a_step_in_a_block_or_rescue_notifies_and_a_wrong_name_there_is_located(
    cli, inventory, tmp_path
):
    """Handlers and blocks together: a changed step of a rescue notifies as a plain step
    does, and a `notify` naming no handler inside a block is refused at its step's line."""
    out = tmp_path / "out"
    out.mkdir()
    play = cli.playbook(f"""
        jobs:
          - name: deploy
            targets: host1
            steps:
              - block:
                  - run: "false"
                rescue:
                  - run: echo mended >> {out}/log
                    notify: restart app
            handlers:
              - name: restart app
                run: echo restarted >> {out}/log
        """)
    done = cli("run", play, "-i", inventory)
    assert done.returncode == 0, done.output
    assert (out / "log").read_text() == "mended\nrestarted\n"
    assert _recap(done.stdout, "host1")["rescued"] == 1

    bad = cli.playbook("""
        jobs:
          - name: deploy
            targets: host1
            steps:
              - block:
                  - run: echo hi
                    notify: restart ap
            handlers:
              - name: restart app
                run: echo restarted
        """)
    refused = cli("validate", bad)
    assert refused.returncode == 4, refused.output
    (line,) = [x for x in refused.output.splitlines() if "restart ap'" in x]
    assert line.startswith(f"{bad}:7:") and "did you mean 'restart app'" in line
