"""Secrets stay secret on the target, and a step cannot forge its own end.

Fleet hosts run on this machine, so what any local user of a target could see is read
from here: every process's /proc/PID/cmdline (what `ps -eo args` shows) while a step that
holds a secret runs, and the files of a detached job's directory. The step shell's end
mark is attacked the way another user could: by printing, into output a step shows, a
mark built from whatever the shell's command line and environment give away.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from pathlib import Path

import pytest

from runner.connections.ssh import SSHConnection
from runner.connections.stepshell import StepShell
from tests.e2e.e2e_helpers import wait_until
from tests.fleet import Fleet

WAIT = 60  # seconds; polled, with room for a loaded machine


def _secret() -> str:
    return f"s3cret-{secrets.token_hex(8)}"


def _argv_holding(text: str) -> list[str]:
    """The command lines (as `ps -eo args` shows them) of every process that holds `text`;
    unlike `processes_matching`, the test's own paths (pytest-of-...) are not skipped."""
    needle = text.encode()
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            data = cmdline.read_bytes()
        except OSError:
            continue  # the process has just ended
        if needle in data:
            lines.append(data.replace(b"\0", b" ").decode(errors="replace"))
    return lines


def _play(cli, host: str, step: dict, secret: str, detach: bool = False) -> str:
    job = {"name": "j", "targets": host, "steps": [step]}
    if detach:
        job["detach"] = True
    return cli.playbook(json.dumps({"secrets": ["pw"], "vars": {"pw": secret}, "jobs": [job]}))


def _waiting_step(tmp_path: Path) -> tuple[dict, Path, Path]:
    """A step holding the secret (in its command and its environment) that says it runs,
    then waits for the test to let it end."""
    started, release = tmp_path / f"started-{uuid.uuid4().hex}", tmp_path / "release"
    run = (
        f": '{{{{ pw }}}}'; touch {started}; "
        f"while [ ! -e {release} ]; do sleep 0.05; done; echo done"
    )
    return {"run": run, "env": {"PW": "{{ pw }}"}, "no_log": True}, started, release


def _scan_while_running(started: Path, secret: str) -> list[str]:
    """Wait for the step to start; then look at every process's command line (what
    `ps -eo args` shows) a few times: those holding `secret`."""
    wait_until(started.exists, timeout=WAIT, what="the step to start")
    seen: list[str] = []
    for _ in range(20):
        seen += _argv_holding(secret)
    return seen


@pytest.mark.parametrize("step_shell", ["true", "false"])
def test_no_process_on_the_target_shows_a_steps_secret(cli, faulty_fleet, tmp_path, step_shell):
    """`true`: the step runs in the connection's step shell; `false`: on an exec channel."""
    secret = _secret()
    inventory = faulty_fleet.write_inventory(
        tmp_path / "hosts.ini", names=["fault1"], extra_vars={"runner_step_shell": step_shell}
    )
    step, started, release = _waiting_step(tmp_path)
    run = cli.start("run", _play(cli, "fault1", step, secret), "-i", str(inventory))
    try:
        seen = _scan_while_running(started, secret)
    finally:
        release.touch()
        out, err = run.communicate(timeout=WAIT)
    assert run.returncode == 0, out + err
    assert seen == []


def _detached(cli, fleet: Fleet, tmp_path: Path, secret: str) -> tuple[list[str], list[str]]:
    """Run a detached `no_log` step holding `secret` to its end; return the command lines
    seen while it ran, and the files of its job directory holding the secret then and
    after it ended."""
    inventory = fleet.write_inventory(tmp_path / "hosts.ini", names=["fault2"])
    step, started, release = _waiting_step(tmp_path)
    cli("run", _play(cli, "fault2", step, secret, detach=True), "-i", str(inventory), check=True)
    child = cli.jobs()[0]["ChildJobs"][0]
    directory = Path(cli.job(child)["RemoteDir"]).expanduser()
    try:
        seen = _scan_while_running(started, secret)
        files = _files_holding(directory, secret)
    finally:
        release.touch()
    cli("job", "wait", "1", "--timeout", str(WAIT), check=True)
    assert cli.job(child)["State"] == "Completed"
    assert any(directory.iterdir())  # the job directory is still there, only without it
    return seen, files + _files_holding(directory, secret)


def test_a_detached_no_log_steps_secret_is_in_no_process_argv(cli, faulty_fleet, tmp_path):
    secret = _secret()
    seen, _ = _detached(cli, faulty_fleet, tmp_path, secret)
    assert seen == []


def test_a_detached_no_log_steps_secret_is_in_no_file_of_its_job_directory(
    cli, faulty_fleet, tmp_path
):
    """Not while the job runs (its script is never written there), nor after."""
    secret = _secret()
    _, files = _detached(cli, faulty_fleet, tmp_path, secret)
    assert files == []


def _files_holding(directory: Path, secret: str) -> list[str]:
    return [
        str(p) for p in directory.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()
    ]


# -- the step shell's end mark -------------------------------------------------------------

FORGE = r"""
for f in /proc/$PPID/cmdline /proc/$PPID/environ; do
  for t in $(tr '\0' '\n' < $f | grep -o 'runner-[0-9a-f]\{32\}' | sort -u); do
    printf '\n%s e 0\n' "$t"; printf '\n%s\n' "$t" >&2
  done
done
echo after; echo after-err >&2; exit 3
"""


def test_a_step_printing_an_end_mark_from_its_shells_argv_and_environment_still_fails(
    cli, faulty_fleet, tmp_path
):
    """The health check fails (`exit 3`) after printing a mark built from every token its
    step shell's command line and environment show: the step is failed, its output whole."""
    inventory = faulty_fleet.write_inventory(tmp_path / "hosts.ini", names=["fault3"])
    play = cli.playbook(
        json.dumps(
            {
                "jobs": [
                    {"name": "j", "targets": "fault3", "steps": [{"run": "true"}, {"run": FORGE}]}
                ]
            }
        )
    )
    proc = cli("run", play, "-i", str(inventory))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [child] = cli.jobs()[0]["ChildJobs"]
    assert cli.job(child)["State"] == "Failed"
    records = cli.receive(1)
    stdout = "".join(r["data"] for r in records if r["stream"] == "stdout")
    stderr = "".join(r["data"] for r in records if r["stream"] == "stderr")
    assert stdout.rstrip("\n").endswith("after") and stderr.rstrip("\n").endswith("after-err")
    assert "status 3" in cli("job", "show", "1", check=True).stdout


class _Output:
    def __init__(self) -> None:
        self.streams = {"stdout": b"", "stderr": b""}

    def __call__(self, stream: str, data: bytes) -> None:
        self.streams[stream] += data


def test_output_equal_to_an_end_mark_cannot_end_the_step_even_knowing_the_token(
    faulty_fleet: Fleet, runner_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that prints its shell's token (which no other user can read) as an end mark,
    and the previous step's real end mark, is still the step that runs until it fails."""
    marks: list[bytes] = []
    send = StepShell.send

    def recording_send(shell: StepShell, script: str) -> bytes:
        mark = send(shell, script)
        marks.append(mark or shell.token.encode())
        return mark

    monkeypatch.setattr(StepShell, "send", recording_send)
    name, address, port = faulty_fleet.hosts[0]
    with SSHConnection(
        name,
        address,
        port,
        user="root",
        key_file=faulty_fleet.client_key,
        known_hosts=runner_home / "known_hosts",
    ) as conn:
        first = _Output()
        assert conn.run("echo $PPID", on_output=first).rc == 0
        shell_pid = int(first.streams["stdout"])
        token = conn._shell.token
        for where in ("cmdline", "environ"):
            assert token.encode() not in Path(f"/proc/{shell_pid}/{where}").read_bytes(), where
        forged = []
        for word in (token, marks[-1].decode()):
            forged += [f"\n{word} e 0\n", f"\n{word} x 0\n"]
        out = _Output()
        script = (
            "".join(
                f"printf '%s' '{f}'; printf '%s' '\n{f.split()[0]}\n' >&2; sleep 0.2; "
                for f in forged
            )
            + "echo after; echo after-err >&2; exit 3"
        )
        result = conn.run(script, on_output=out)
        assert result.rc == 3
        assert out.streams["stdout"].decode() == "".join(forged) + "after\n"
        expected_err = "".join(f"\n{f.split()[0]}\n" for f in forged) + "after-err\n"
        assert out.streams["stderr"].decode() == expected_err
        after = _Output()
        assert conn.run("echo next", on_output=after).rc == 0  # the shell is still in step
        assert after.streams["stdout"] == b"next\n"
        assert re.fullmatch(rb"runner-[0-9a-f]{32}", marks[-1])


@pytest.mark.parametrize("job_type", ["remote", "thread"])
def test_no_process_on_the_controller_shows_a_local_steps_secret(cli, tmp_path, job_type):
    """A host with `ansible_connection=local` (a `remote` job), and a thread job's `local:`
    step: the controller is the target, and its `ps` shows every user the same."""
    secret = _secret()
    inventory = tmp_path / "local.ini"
    inventory.write_text("here ansible_connection=local\n")
    step, started, release = _waiting_step(tmp_path)
    if job_type == "thread":
        step["local"] = step.pop("run")
    job = {"name": "j", "type": job_type, "targets": "here", "steps": [step]}
    play = cli.playbook(json.dumps({"secrets": ["pw"], "vars": {"pw": secret}, "jobs": [job]}))
    run = cli.start("run", play, "-i", str(inventory))
    try:
        seen = _scan_while_running(started, secret)
    finally:
        release.touch()
        out, err = run.communicate(timeout=WAIT)
    assert run.returncode == 0, out + err
    assert seen == []


LOCAL_INI = Path(__file__).resolve().parents[2] / "inventory" / "local.ini"
# A secret reaching a kept job's command by another name than its own: through an alias
# in `vars:`, through `hostvars`; and only at run time, behind a `when` reading a result.
KEPT_SECRET_PLAYS = {
    "alias": {
        "jobs": [
            {
                "name": "kept",
                "targets": "web1",
                "results": {"to": "remote"},
                "steps": [{"run": 'echo "kept says {{ alias }}"'}],
            }
        ]
    },
    "hostvars": {
        "jobs": [
            {
                "name": "kept",
                "targets": "web1",
                "detach": True,
                "steps": [{"run": "echo \"kept says {{ hostvars[inventory_hostname]['pw'] }}\""}],
            }
        ]
    },
    "at run time": {
        "jobs": [
            {"name": "first", "targets": "web1", "steps": [{"run": "true", "register": "out"}]},
            {
                "name": "kept",
                "targets": "web1",
                "needs": "first",
                "results": {"to": "remote"},
                "steps": [{"run": 'echo "kept says {{ alias }}"', "when": "out.rc == 0"}],
            },
        ]
    },
}


@pytest.mark.parametrize("how", sorted(KEPT_SECRET_PLAYS))
def test_a_kept_job_never_carries_a_secret_under_another_name(cli, tmp_path, how):
    """The plain secret shows nowhere: not in any command's output, not in what `job
    receive` gives back, not in the job store's bytes; one line names job, step, secret."""
    secret = _secret()
    inventory = tmp_path / "local.ini"
    inventory.write_text(
        LOCAL_INI.read_text() + f"\n[all:vars]\nrunner_job_dir={tmp_path / 'jobs'}\n"
    )
    play = {"secrets": ["pw"], "vars": {"pw": secret, "alias": "{{ pw }}"}}
    play.update(KEPT_SECRET_PLAYS[how])
    path = cli.playbook(json.dumps(play))
    seen = [cli(command, path, "-i", str(inventory)) for command in ("validate", "plan", "run")]
    lines = [line for line in seen[-1].output.splitlines() if "kept says" in line]
    assert len(lines) == 1 and "'kept'" in lines[0] and "secret 'pw'" in lines[0], seen[-1].output
    codes = [0, 0, 2] if how == "at run time" else [4, 4, 4]  # plan cannot know it yet
    assert [result.returncode for result in seen] == codes, [r.output for r in seen]
    for job in cli.jobs("--children"):
        seen.append(cli("job", "receive", str(job["Id"]), "--keep"))
        assert job["Name"] != "kept" or job["State"] in ("Failed", "NotStarted"), job
    assert not any(secret in result.output for result in seen)
    assert not any(secret.encode() in p.read_bytes() for p in cli.home.glob("jobs.db*"))
