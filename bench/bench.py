"""Run-time performance: runner against raw paramiko, ansible-core and pyinfra, in one run.

    python bench/bench.py [--quick] [--reps N] [--skip-ansible] [--skip-pyinfra]
                          [--ansible-200] [--runner-on-path] [--tablefmt github]

Starts its own fleet of OpenSSH daemons on 127.0.0.2.. (tests/fleet.py: `SetEnv
SHLVL=1`, `MaxStartups 200:30:400`), uses a RUNNER_HOME in a temporary directory, and
measures, as medians of several repetitions interleaved between the tools:

  1. per-step overhead on an open session: SSHConnection.run('true') against raw paramiko
     exec_command('true') on a TCP_NODELAY transport to the same host;
  2. 10 steps x 1 host, whole command: runner run / ansible-playbook / pyinfra;
  3. 10 steps x 50 hosts, forks 50: the same three and the raw paramiko floor
     (bench/paramiko_floor.py: connect all at once, then each step on all hosts);
  4. 3 steps on 50 and on 200 hosts with runner: no failure, and growth of the wall time;
  5. start-up of `runner --version` and `runner validate playbooks/hello.yml`;
  6. one step printing 100 MB of zeros as base64 through `runner run`: throughput, peak
     RSS of the runner process, and the byte count `runner job receive` gives back;
  7. (only with `--only 7`) 3 steps on 500 hosts, runner and pyinfra interleaved: wall
     time, CPU (user + sys of the process and its children, os.wait4) and peak RSS, and
     the CPU the fleet's sshd processes spent meanwhile (the targets share the cores).

ansible-playbook runs with pipelining, ControlPersist and forks = hosts (the first,
untimed run opens the ControlPersist masters, as a user's previous run would have);
runner is this checkout installed with `pip install .` into a venv in the temp dir, as a
user installs it (`--runner-on-path` times the `runner` on PATH instead, e.g. an editable
install); pyinfra is installed into its own venv under ~/.cache/runner-bench (skipped, with a
note, if that fails). `--quick` runs smaller sizes and fewer repetitions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import peers
from paramiko_floor import connect, exec_status
from tabulate import tabulate

from tests.fleet import Fleet, sshd_available

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "runner-bench"
STEP = "true"


class Sizes:
    """How big and how often: the full run, or `--quick`."""

    def __init__(self, quick: bool, reps: int | None) -> None:
        self.reps = reps or (3 if quick else 5)
        self.step_calls = 30 if quick else 100  # calls per repetition of the per-step test
        self.fleet_hosts = 20 if quick else 50
        self.big_hosts = 60 if quick else 200
        self.fleet_reps = reps or (2 if quick else 3)
        self.startup_reps = reps or (5 if quick else 10)
        self.output_mb = 20 if quick else 100
        self.large_hosts = 100 if quick else 500


@dataclass(frozen=True)
class Usage:
    """What one whole command cost: wall seconds, CPU seconds (user + sys), peak RSS in MB."""

    wall: float
    cpu: float
    rss_mb: float
    targets_cpu: float = 0.0  # CPU the fleet's sshd processes spent meanwhile (section 7)


class Bench:
    """Holds the fleet, the temp dir and the rows of the table."""

    def __init__(self, args: argparse.Namespace, fleet: Fleet, tmp: Path) -> None:
        self.args = args
        self.sizes = Sizes(args.quick, args.reps)
        self.fleet = fleet
        self.tmp = tmp
        self.home = tmp / "runner-home"
        self.home.mkdir()
        self.env = {**os.environ, "RUNNER_HOME": str(self.home), "CI": "1"}
        self.rows: list[list[Any]] = []
        self.notes: list[str] = []
        self.pyinfra: Path | None = None

    def row(
        self,
        section: str,
        what: str,
        value: str,
        compare: str = "",
        ratio: str = "",
        goal: str = "",
        met: bool | None = None,
    ) -> None:
        mark = "" if met is None else ("met" if met else "MISSED")
        self.rows.append([section, what, value, compare, ratio, goal, mark])
        print(f"  {section} {what}: {value} {compare} {ratio} {goal} {mark}", flush=True)

    # -- processes ---------------------------------------------------------------------

    def timed(
        self, argv: list[str], extra_env: dict[str, str] | None = None, log: str = "run"
    ) -> float:
        """Wall seconds of one whole command; its output goes to a log; failure is fatal."""
        return self.measured(argv, extra_env, log).wall

    def measured(
        self, argv: list[str], extra_env: dict[str, str] | None = None, log: str = "run"
    ) -> Usage:
        """Wall time, CPU and peak RSS of one whole command (os.wait4: the process and the
        children it waited for); its output goes to a log; failure is fatal."""
        out = self.tmp / f"{log}.log"
        targets_before = self.targets_cpu()
        started = time.perf_counter()
        with out.open("wb") as handle:
            process = subprocess.Popen(
                argv,
                env={**self.env, **(extra_env or {})},
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = returncode = os.waitstatus_to_exitcode(status)
        time.sleep(0.5)  # sshd reaps its sessions' processes, and counts their CPU
        found = Usage(
            seconds,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            self.targets_cpu() - targets_before,
        )
        if returncode != 0:
            text = out.read_text(errors="replace")
            if argv[0] == "runner":  # which jobs failed, and why
                jobs = subprocess.run(
                    [
                        "runner",
                        "job",
                        "list",
                        "--children",
                        "--state",
                        "Failed",
                        "--format",
                        "json",
                    ],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                text += f"\n$ runner job list --children --state Failed\n{jobs.stdout}{jobs.stderr}"
            CACHE.mkdir(parents=True, exist_ok=True)
            kept = CACHE / f"failed-{log}-{int(time.time())}.log"
            kept.write_text(text)
            head = "\n".join(text.splitlines()[:40])
            raise RuntimeError(f"{argv[0]} exited {returncode} (whole log: {kept}):\n{head}")
        return found

    def targets_cpu(self) -> float:
        """CPU seconds the fleet's sshd daemons and their reaped sessions (the login
        shells, the steps) have spent so far: the targets' share of this machine."""
        ticks = 0
        for i in range(self.fleet.count):
            try:
                pid = self.fleet.host(i).pid_file.read_text().strip()
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, ValueError):
                continue
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    def medians(self, commands: dict[str, Callable[[], float]], reps: int) -> dict[str, float]:
        """Each command `reps` times, the tools interleaved rep by rep; their medians."""
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(reps):
            for name, command in commands.items():
                samples[name].append(command())
        return {name: statistics.median(values) for name, values in samples.items()}

    # -- 1. per step ---------------------------------------------------------------------

    def per_step(self) -> None:
        from runner.connections.ssh import SSHConnection

        name, address, port = self.fleet.hosts[0]
        conn = SSHConnection(
            name,
            address,
            port,
            self.fleet.user,
            self.fleet.client_key,
            known_hosts=self.home / "known_hosts",
        )
        conn.open()
        client = connect(address, port, self.fleet.user, str(self.fleet.client_key))
        transport = client.get_transport()

        def calls(call: Callable[[], object]) -> Callable[[], float]:
            def run() -> float:
                started = time.perf_counter()
                for _ in range(self.sizes.step_calls):
                    call()
                return (time.perf_counter() - started) / self.sizes.step_calls

            return run

        def runner_run() -> None:
            if conn.run(STEP, on_output=lambda stream, data: None).rc != 0:
                raise RuntimeError("runner's 'true' failed")

        try:
            for call in (runner_run, lambda: exec_status(transport, STEP)):
                calls(call)()  # warm up
            result = self.medians(
                {
                    "runner": calls(runner_run),
                    "paramiko": calls(lambda: exec_status(transport, STEP)),
                },
                self.sizes.reps,
            )
        finally:
            conn.close()
            client.close()
        ratio = result["runner"] / result["paramiko"]
        self.row(
            "1",
            "per step: SSHConnection.run('true')",
            _ms(result["runner"]),
            f"paramiko exec {_ms(result['paramiko'])}",
            f"{ratio:.2f}x",
            "<= 1.5x",
            ratio <= 1.5,
        )

    # -- 2 and 3. whole commands ------------------------------------------------------------

    def whole(
        self, section: str, hosts: int, steps: int, reps: int, floor: bool = False
    ) -> dict[str, float]:
        root = self.tmp / f"w{hosts}x{steps}"
        tools: dict[str, Callable[[], float]] = {}
        argv, env = peers.runner_workload(self.fleet, root / "runner", hosts, steps, STEP)
        tools["runner"] = lambda: self.timed(argv, env, "runner")
        if not self.args.skip_ansible:
            a_argv, a_env = peers.ansible_workload(self.fleet, root / "ansible", hosts, steps, STEP)
            tools["ansible"] = lambda: self.timed(a_argv, a_env, "ansible")
        if self.pyinfra is not None:
            p_argv, p_env = peers.pyinfra_workload(
                self.fleet, root / "pyinfra", hosts, steps, STEP, self.pyinfra
            )
            tools["pyinfra"] = lambda: self.timed(p_argv, p_env, "pyinfra")
        if floor:
            spec = root / "hosts.json"
            spec.write_text(
                json.dumps(
                    [
                        [a, p, self.fleet.user, str(self.fleet.client_key)]
                        for _, a, p in self.fleet.hosts[:hosts]
                    ]
                )
            )
            f_argv = [
                sys.executable,
                str(REPO / "bench" / "paramiko_floor.py"),
                str(spec),
                str(steps),
                STEP,
            ]
            tools["paramiko floor"] = lambda: self.timed(f_argv, {}, "floor")
        for command in tools.values():
            command()  # warm: known_hosts, ControlPersist masters, page cache
        result = self.medians(tools, reps)
        label = f"{steps} steps x {hosts} host{'s' if hosts > 1 else ''}"
        self.row(section, f"{label}: runner run", _s(result["runner"]))
        return result

    def compare(self, section: str, result: dict[str, float], goals: dict[str, float]) -> None:
        """Rows of runner's speed-up over each other tool, against the issue's goals."""
        runner = result["runner"]
        for tool, seconds in result.items():
            if tool == "runner":
                continue
            goal = goals.get(tool)
            if tool == "paramiko floor":
                ratio = runner / seconds
                self.row(
                    section,
                    f"  vs {tool}",
                    _s(seconds),
                    "runner / floor",
                    f"{ratio:.2f}x",
                    f"<= {goal:g}x" if goal else "",
                    ratio <= goal if goal else None,
                )
                continue
            speedup = seconds / runner
            self.row(
                section,
                f"  vs {tool}",
                _s(seconds),
                f"{tool} / runner",
                f"{speedup:.1f}x faster",
                f">= {goal:g}x" if goal else "",
                speedup >= goal if goal else None,
            )

    # -- 4. scale --------------------------------------------------------------------------

    def scale(self) -> None:
        small, big = self.sizes.fleet_hosts, self.sizes.big_hosts
        found: dict[int, float] = {}
        for hosts in (small, big):
            argv, env = peers.runner_workload(self.fleet, self.tmp / f"s{hosts}", hosts, 3, STEP)
            self.timed(argv, env, "scale")  # warm: known_hosts
            found[hosts] = statistics.median(
                self.timed(argv, env, "scale") for _ in range(self.sizes.fleet_reps)
            )
        growth = found[big] / found[small]
        linear = big / small
        self.row("4", f"3 steps x {small} hosts: runner run", _s(found[small]))
        self.row(
            "4",
            f"3 steps x {big} hosts: runner run, no failure",
            _s(found[big]),
            f"/ {small} hosts",
            f"{growth:.2f}x",
            f"<= {linear:g}x (linear)",
            growth <= linear,
        )
        if self.args.ansible_200 and not self.args.skip_ansible:
            argv, env = peers.ansible_workload(self.fleet, self.tmp / f"a{big}", big, 3, STEP)
            self.timed(argv, env, "ansible-scale")
            seconds = self.timed(argv, env, "ansible-scale")
            self.row(
                "4",
                f"  vs ansible, 3 steps x {big} hosts (1 run)",
                _s(seconds),
                "ansible / runner",
                f"{seconds / found[big]:.1f}x faster",
            )

    # -- 5. start-up -------------------------------------------------------------------------

    def startup(self) -> None:
        hello = str(REPO / "playbooks" / "hello.yml")
        result = self.medians(
            {
                "python": lambda: self.timed([sys.executable, "-c", "pass"], {}, "startup"),
                "version": lambda: self.timed(["runner", "--version"], {}, "startup"),
                "validate": lambda: self.timed(["runner", "validate", hello], {}, "startup"),
            },
            self.sizes.startup_reps,
        )
        self.row(
            "5",
            "runner --version",
            _ms(result["version"]),
            "",
            "",
            "< 150 ms",
            result["version"] < 0.150,
        )
        self.row(
            "5",
            "runner validate playbooks/hello.yml",
            _ms(result["validate"]),
            "",
            "",
            "< 300 ms",
            result["validate"] < 0.300,
        )
        self.row("5", "  (python -c pass, for reference)", _ms(result["python"]))

    # -- 6. big output -----------------------------------------------------------------------

    def big_output(self) -> None:
        mb = self.sizes.output_mb
        command = f"head -c {mb}M /dev/zero | base64"
        home = self.tmp / "big-home"
        home.mkdir()
        env = {**self.env, "RUNNER_HOME": str(home)}
        argv, _ = peers.runner_workload(self.fleet, self.tmp / "big", 1, 1, command)
        argv = [*argv[:-1], "--format", "json"]  # -q dropped: the JSON report names the job
        expected = int(
            subprocess.run(
                f"{command} | wc -c", shell=True, capture_output=True, text=True, check=True
            ).stdout
        )
        started = time.perf_counter()
        with (self.tmp / "big.json").open("wb") as out:
            process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
            )
            _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"runner run of {mb} MB exited {process.returncode}")
        job = json.loads((self.tmp / "big.json").read_text())["jobs"][0]["Id"]
        received = subprocess.run(
            f"runner job receive {job} | wc -c",
            shell=True,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        got = int(received.stdout)
        rss_mb = usage.ru_maxrss / 1024
        rate = expected / 1e6 / seconds
        self.row(
            "6",
            f"{mb} MB of zeros as base64 ({expected / 1e6:.1f} MB): runner run",
            _s(seconds),
            "",
            f"{rate:.0f} MB/s",
            ">= 50 MB/s",
            rate >= 50,
        )
        self.row(
            "6",
            "  peak RSS of the runner process",
            f"{rss_mb:.0f} MB",
            "",
            "",
            "< 200 MB",
            rss_mb < 200,
        )
        self.row(
            "6",
            "  bytes from runner job receive",
            str(got),
            f"expected {expected}",
            "",
            "equal",
            got == expected,
        )

    # -- 7. a large fleet: wall, CPU and memory against pyinfra ------------------------------

    def large(self) -> None:
        hosts, reps = self.sizes.large_hosts, self.sizes.fleet_reps
        root = self.tmp / f"l{hosts}"
        tools: dict[str, Callable[[], Usage]] = {}
        argv, env = peers.runner_workload(self.fleet, root / "runner", hosts, 3, STEP)
        tools["runner"] = lambda: self.measured(argv, env, "runner-large")
        if self.pyinfra is not None:
            p_argv, p_env = peers.pyinfra_workload(
                self.fleet, root / "pyinfra", hosts, 3, STEP, self.pyinfra
            )
            tools["pyinfra"] = lambda: self.measured(p_argv, p_env, "pyinfra-large")
        for name, command in tools.items():
            try:  # warm: known_hosts, page cache; 500 first handshakes may time out here
                command()
            except RuntimeError as error:
                self.notes.append(f"7 warm-up of {name} failed: {str(error).splitlines()[0]}")
        samples: dict[str, list[Usage]] = {name: [] for name in tools}
        for _ in range(reps):
            for name, command in tools.items():
                samples[name].append(command())
        for name, runs in samples.items():
            self.notes.append(
                f"7 {name} runs (wall s / CPU s / RSS MB / targets' CPU s): " + _usages(runs)
            )
        runner = _median_usage(samples["runner"])
        self.row("7", f"3 steps x {hosts} hosts: runner run, no failure", _usage(runner))
        if "pyinfra" not in samples:
            return
        pyinfra = _median_usage(samples["pyinfra"])
        cores = os.cpu_count() or 1
        self.row(
            "7",
            "  the targets' sshd CPU during a run: runner / pyinfra",
            f"{runner.targets_cpu:.2f} s / {pyinfra.targets_cpu:.2f} s",
            "",
            f"any tool's floor here: {runner.targets_cpu / cores:.2f} s of wall on {cores} cores",
        )
        speedup = pyinfra.wall / runner.wall
        self.row(
            "7",
            "  vs pyinfra",
            _usage(pyinfra),
            "pyinfra / runner",
            f"{speedup:.1f}x faster",
            ">= 2x",
            speedup >= 2,
        )
        self.row(
            "7",
            "  runner's CPU and peak RSS against pyinfra's",
            f"{runner.cpu / pyinfra.cpu:.2f}x / {runner.rss_mb / pyinfra.rss_mb:.2f}x",
            "",
            "",
            "<= 1x / <= 1x",
            runner.cpu <= pyinfra.cpu and runner.rss_mb <= pyinfra.rss_mb,
        )

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        sizes, only = self.sizes, self.args.only
        if not self.args.skip_pyinfra and only & {2, 3, 7}:
            self.pyinfra, note = peers.pyinfra_venv(CACHE)
            self.notes.append(note if self.pyinfra is None else f"pyinfra {note}")
        sections: list[tuple[int, str, Callable[[], None]]] = [
            (1, "per step", self.per_step),
            (
                2,
                "10 steps x 1 host",
                lambda: self.compare("2", self.whole("2", 1, 10, sizes.reps), {"ansible": 8}),
            ),
            (
                3,
                f"10 steps x {sizes.fleet_hosts} hosts",
                lambda: self.compare(
                    "3",
                    self.whole("3", sizes.fleet_hosts, 10, sizes.fleet_reps, floor=True),
                    {"ansible": 10, "pyinfra": 1.5, "paramiko floor": 1.5},
                ),
            ),
            (4, f"3 steps x {sizes.big_hosts} hosts", self.scale),
            (5, "start-up", self.startup),
            (6, "big output", self.big_output),
            (7, f"3 steps x {sizes.large_hosts} hosts against pyinfra", self.large),
        ]
        for number, title, section in sections:
            if number in only:
                print(f"{number}. {title}", flush=True)
                section()


def machine() -> str:
    memory = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    tools = [
        f"python {platform.python_version()}",
        peers.tool_version(["runner", "--version"]),
        peers.tool_version(["ansible-playbook", "--version"]),
    ]
    return (
        f"{datetime.date.today()}, {platform.system()} {platform.release()}, "
        f"nproc {os.cpu_count()}, memory {memory}, " + ", ".join(tools)
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _usage(usage: Usage) -> str:
    return f"{usage.wall:.2f} s, CPU {usage.cpu:.2f} s, RSS {usage.rss_mb:.0f} MB"


def _usages(runs: list[Usage]) -> str:
    return ", ".join(f"{u.wall:.2f}/{u.cpu:.2f}/{u.rss_mb:.0f}/{u.targets_cpu:.2f}" for u in runs)


def _median_usage(runs: list[Usage]) -> Usage:
    """Each measure's own median over the runs."""
    return Usage(
        statistics.median(u.wall for u in runs),
        statistics.median(u.cpu for u in runs),
        statistics.median(u.rss_mb for u in runs),
        statistics.median(u.targets_cpu for u in runs),
    )


def _numbers(text: str) -> set[int]:
    return {int(part) for part in text.split(",") if part.strip()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--reps", type=int, help="repetitions of every measure")
    parser.add_argument("--skip-ansible", action="store_true")
    parser.add_argument("--skip-pyinfra", action="store_true")
    parser.add_argument(
        "--ansible-200",
        action="store_true",
        help="also time ansible-playbook on the 200-host run (minutes)",
    )
    parser.add_argument(
        "--runner-on-path",
        action="store_true",
        help="time the `runner` first on PATH (an editable install, say) "
        "instead of installing this checkout into a venv of its own",
    )
    parser.add_argument(
        "--only",
        type=_numbers,
        default=set(range(1, 7)),  # 7 (500 hosts against pyinfra) only when asked
        metavar="1,2,..",
        help="run only these sections",
    )
    parser.add_argument("--tablefmt", default="simple", help="tabulate format (github...)")
    return parser.parse_args(argv)


def precompile() -> None:
    """Byte-compile the runner package, as `pip install .` does for any package.

    An editable checkout run with PYTHONDONTWRITEBYTECODE set (as on CI machines) would
    otherwise compile every runner module from source on every start, while the peers'
    packages load their installed .pyc files: not the same race.
    """
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "runner"), quiet=1)


def fleet_size(sizes: Sizes, only: set[int]) -> int:
    """As many sshd as the chosen sections need (section 7 alone: its own count)."""
    wanted = [sizes.large_hosts] if 7 in only else []
    if only - {7}:
        wanted += [sizes.big_hosts, sizes.fleet_hosts]
    return max(wanted)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not sshd_available():
        print("bench: needs OpenSSH's server (apt-get install openssh-server)", file=sys.stderr)
        return 1
    sizes = Sizes(args.quick, args.reps)
    tmp = Path(tempfile.mkdtemp(prefix="runner-bench-"))
    try:
        if args.runner_on_path:
            precompile()
        else:  # every `runner` below, by PATH, is the one a user's `pip install .` gives
            print("installing this checkout into a venv of its own...", flush=True)
            os.environ["PATH"] = f"{peers.runner_venv(tmp, REPO)}{os.pathsep}{os.environ['PATH']}"
        with Fleet(fleet_size(sizes, args.only)) as fleet:
            bench = Bench(args, fleet, tmp)
            try:
                bench.run()
            finally:
                peers.close_control_masters()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"machine: {machine()}")
    print(f"command: python bench/bench.py {' '.join(argv or sys.argv[1:])}".rstrip())
    for note in bench.notes:
        print(f"note: {note}")
    headers = ["#", "what", "median", "against", "ratio", "goal", ""]
    print(tabulate(bench.rows, headers=headers, tablefmt=args.tablefmt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
