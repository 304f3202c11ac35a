"""Planning at scale: how long the pure planner takes on a 10,000-host inventory.

    python bench/plan_scale.py [--hosts N] [--runs N] [--profile]

Generates, in a temporary directory, an INI inventory (N hosts in 50 groups, with
`[group:vars]` and `[group:children]`) and a 20-step playbook over `all`, then times,
as the median of --runs runs each:

  1. validate + resolve: load_playbook + load_inventory + build_plan, in-process and as
     a fresh interpreter doing the same;
  2. the full rendered plan: render_plan over every host x step, in-process, and the
     whole command `runner plan PLAYBOOK -i INV --format json > /dev/null`;
  3. inventory parsing: `runner inventory -i INV --format json` against
     `ansible-inventory -i INV --list`, as subprocesses over the same file;
  4. `runner inventory --format json` of 100,000 hosts in one group (each with
     `ansible_host` and a variable): loading is linear in the hosts of a group.
     `--only-big-inventory` runs this measure alone.

In-process runs start from freshly loaded objects each time, so no cache carries over
from one run to the next. A run past --cap seconds is stopped, ends its series and is
reported as missed (the table says how many runs each median has). `--profile` adds a
cProfile of one render_plan run.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from runner.planning.inventory import load_inventory
from runner.planning.planner import build_plan, render_plan
from runner.planning.playbook import load_playbook

GROUPS = 50
BIG_HOSTS = 100_000
BIG_GOAL = 5.0  # seconds for `runner inventory` of BIG_HOSTS hosts
PARENTS = 5  # region_0..region_4, each with GROUPS // PARENTS child groups
STEPS = 20

RESOLVE_SNIPPET = """
import sys
from runner.planning.inventory import load_inventory
from runner.planning.planner import build_plan
from runner.planning.playbook import load_playbook
build_plan(load_playbook(sys.argv[1]), load_inventory(sys.argv[2]))
"""


# --------------------------------------------------------------------------- inputs


def write_inventory(path: Path, hosts: int) -> None:
    """N hosts spread over GROUPS groups, group vars, and PARENTS parent groups."""
    lines: list[str] = []
    per_group = -(-hosts // GROUPS)
    for g in range(GROUPS):
        lines.append(f"[app{g:02d}]")
        for i in range(g * per_group, min(hosts, (g + 1) * per_group)):
            address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
            extra = f" rack=r{i % 40}" if i % 3 == 0 else ""
            lines.append(f"node{i:05d}.example.com ansible_host={address} node_id={i}{extra}")
        lines.append("")
        lines.append(f"[app{g:02d}:vars]")
        lines.append(f"app_port={8000 + g}")
        lines.append(f"service=svc-{g:02d}")
        lines.append(f"tier={'web' if g % 2 else 'db'}")
        lines.append("")
    for p in range(PARENTS):
        lines.append(f"[region_{p}:children]")
        lines.extend(f"app{g:02d}" for g in range(p, GROUPS, PARENTS))
        lines.append("")
        lines.append(f"[region_{p}:vars]")
        lines.append(f"region=eu-{p}")
        lines.append("datacenter='dc {p}'")
        lines.append("")
    lines.append("[all:vars]")
    lines.append("ansible_user=deploy")
    lines.append("log_dir=/var/log/{{ service }}")
    path.write_text("\n".join(lines) + "\n")


def write_flat_inventory(path: Path, hosts: int) -> None:
    """N hosts in one group, each with an address and a variable."""
    lines = ["[big]"]
    for i in range(hosts):
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        lines.append(f"node{i:06d}.example.com ansible_host={address} node_id={i}")
    path.write_text("\n".join(lines) + "\n")


def write_playbook(path: Path) -> None:
    """One job over `all`, STEPS steps reading inventory and playbook variables."""
    templates = [
        ("echo {{ inventory_hostname | quote }} {{ node_id }}", None),
        ("curl -fsS http://{{ ansible_host }}:{{ app_port }}/health", None),
        ("systemctl status {{ service | quote }}", None),
        ("mkdir -p {{ base_dir }}/{{ release }}", None),
        ("tar -xzf /tmp/{{ artifact | quote }} -C {{ base_dir }}/{{ release }}", None),
        ("ln -sfn {{ base_dir }}/{{ release }} {{ base_dir }}/current", None),
        ("tail -n {{ lines }} {{ log_dir }}/app.log", None),
        ("echo region={{ region }} dc={{ datacenter | quote }}", None),
        ("echo {{ group_names | join(',') | quote }}", None),
        ("test -d {{ base_dir }}/{{ release }}", "tier == 'web'"),
        ("echo rack {{ rack | default('none') }}", "rack is defined"),
        ("nginx -t", "tier == 'web'"),
        ("pg_isready -p {{ db_port }}", "tier == 'db'"),
        ("echo {{ owner | quote }} deploys {{ release }} on {{ inventory_hostname }}", None),
        ("du -sh {{ base_dir }}", None),
        ("echo {{ (node_id | int) % 10 }}", "node_id | int > 100"),
        ("chown -R {{ ansible_user }} {{ base_dir }}/current", None),
        ("systemctl restart {{ service | quote }}", "'region_1' in group_names"),
        ("curl -fsS http://{{ ansible_host }}:{{ app_port }}/version", None),
        ("echo done {{ inventory_hostname_short }} {{ release | quote }}", None),
    ]
    assert len(templates) == STEPS
    steps = []
    for n, (command, when) in enumerate(templates, 1):
        step: dict[str, object] = {"name": f"step {n:02d}", "run": command}
        if when:
            step["when"] = when
        steps.append(step)
    playbook = {
        "name": "Planning at scale",
        "vars": {
            "base_dir": "/srv/app",
            "release": "2024.06.1",
            "artifact": "app-{{ release }}.tar.gz",
            "lines": 50,
            "db_port": 5432,
            "owner": "release team",
        },
        "jobs": [{"name": "deploy", "type": "remote", "targets": "all", "steps": steps}],
    }
    path.write_text(json.dumps(playbook, indent=2) + "\n")  # JSON is YAML


# --------------------------------------------------------------------------- timing


class OverCap(BaseException):
    """A single run went past --cap seconds and was stopped (not an Exception, so no
    `except Exception` in the code under test can swallow it)."""


@dataclass
class Timing:
    """The median of the runs made; `capped` when a run was stopped at the cap."""

    seconds: float
    runs: int
    capped: bool = False
    result: Any = None

    def text(self) -> str:
        return f"> {self.seconds:g}" if self.capped else f"{self.seconds:.3f}"


def _alarm(signum: int, frame: Any) -> None:
    raise OverCap


def repeat(runs: int, cap: float, once: Callable[[], tuple[float, Any]]) -> Timing:
    """Median of `runs` calls of `once`; a run stopped at the cap ends the series."""
    times: list[float] = []
    result = None
    for _ in range(runs):
        try:
            seconds, result = once()
        except OverCap:
            return Timing(cap, len(times) + 1, capped=True)
        times.append(seconds)
    return Timing(statistics.median(times), len(times), result=result)


def time_in_process(runs: int, cap: float, prepare: Callable[[], Any], measure: Callable) -> Timing:
    """`measure(prepare())`, timed without `prepare`; stopped by SIGALRM past the cap."""

    def once() -> tuple[float, Any]:
        arg = prepare()
        gc.collect()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, cap)
        try:
            start = time.perf_counter()
            result = measure(arg)
            return time.perf_counter() - start, result
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return repeat(runs, cap, once)


def time_command(runs: int, cap: float, argv: list[str], env: dict[str, str], cwd: Path) -> Timing:
    """Wall seconds of a command, stdout to /dev/null; a failure stops the bench."""

    def once() -> tuple[float, Any]:
        start = time.perf_counter()
        try:
            done = subprocess.run(
                argv,
                check=False,
                env=env,
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=cap,
            )
        except subprocess.TimeoutExpired:
            raise OverCap from None
        if done.returncode != 0:
            sys.exit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr.decode()}")
        return time.perf_counter() - start, None

    return repeat(runs, cap, once)


def command_env(tmp: Path) -> dict[str, str]:
    """Quiet ansible, with its home and temp files inside `tmp`; runner's state too."""
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_HOME": str(tmp / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
            "ANSIBLE_CONFIG": str(tmp / "ansible.cfg"),  # absent: defaults only
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_SYSTEM_WARNINGS": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
            "RUNNER_HOME": str(tmp / "runner-home"),
        }
    )
    return env


def same_hosts(inventory: Path, env: dict[str, str], cwd: Path) -> tuple[int, int]:
    """Host counts both tools report for the inventory (they must agree for a fair race)."""
    ours = subprocess.run(
        ["runner", "inventory", "-i", str(inventory), "--format", "json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        check=True,
    )
    theirs = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--list"],
        env=env,
        cwd=cwd,
        capture_output=True,
        check=True,
    )
    return len(json.loads(ours.stdout)["hosts"]), len(
        json.loads(theirs.stdout)["_meta"]["hostvars"]
    )


# --------------------------------------------------------------------------- the bench


def fresh_plan(playbook: Path, inventory: Path):  # -> Plan
    return build_plan(load_playbook(str(playbook)), load_inventory(inventory))


def run_bench(tmp: Path, hosts: int, runs: int, cap: float) -> list[list[str]]:
    inventory, playbook = tmp / "hosts.ini", tmp / "site.yml"
    write_inventory(inventory, hosts)
    write_playbook(playbook)
    env = command_env(tmp)
    ours, theirs = same_hosts(inventory, env, tmp)
    if ours != theirs or ours != hosts:
        sys.exit(f"host counts differ: runner {ours}, ansible {theirs}, generated {hosts}")
    print(f"{hosts} hosts in {GROUPS} groups, {STEPS} steps over all", flush=True)

    def measure(label: str, timing: Callable[[], Timing]) -> Timing:
        print(f"  timing {label} ...", end=" ", flush=True)
        result = timing()
        print(f"{result.text()} s ({result.runs} runs)", flush=True)
        return result

    def cmd(*argv: str) -> Callable[[], Timing]:
        return lambda: time_command(runs, cap, list(argv), env, tmp)

    resolve = measure(
        "resolve",
        lambda: time_in_process(runs, cap, lambda: None, lambda _: fresh_plan(playbook, inventory)),
    )
    resolve_cmd = measure(
        "resolve (python -c)",
        cmd(sys.executable, "-c", RESOLVE_SNIPPET, str(playbook), str(inventory)),
    )
    render = measure(
        "render_plan",
        lambda: time_in_process(runs, cap, lambda: fresh_plan(playbook, inventory), render_plan),
    )
    plan_cmd = measure(
        "runner plan",
        cmd("runner", "plan", str(playbook), "-i", str(inventory), "--format", "json"),
    )
    inv_ours = measure(
        "runner inventory", cmd("runner", "inventory", "-i", str(inventory), "--format", "json")
    )
    inv_theirs = measure(
        "ansible-inventory", cmd("ansible-inventory", "-i", str(inventory), "--list")
    )
    if render.result is not None and len(render.result) != hosts * STEPS:
        sys.exit(f"render_plan gave {len(render.result)} rows, expected {hosts * STEPS}")

    def versus(goal: float, t: Timing) -> str:
        return verdict(goal, t, cap)

    faster = inv_theirs.seconds / inv_ours.seconds
    if inv_ours.capped:
        speed = "missed, stopped at the cap"
    elif inv_theirs.capped:
        speed = f"{'met' if faster >= 5 else 'unknown'}, > {faster:.1f}x faster"
    else:
        speed = f"{'met' if faster >= 5 else 'missed'}, {faster:.1f}x faster"
    return [
        ["1. validate + resolve (in-process)", resolve, "< 1 s", versus(1.0, resolve)],
        ["1. same in a fresh interpreter (python -c)", resolve_cmd, "", ""],
        [
            f"2. render_plan, {hosts * STEPS} rows (in-process)",
            render,
            "< 5 s",
            versus(5.0, render),
        ],
        ["2. runner plan --format json > /dev/null", plan_cmd, "< 5 s", versus(5.0, plan_cmd)],
        [
            "3. runner inventory --format json",
            inv_ours,
            ">= 5x faster",
            speed,
        ],
        ["3. ansible-inventory --list", inv_theirs, "", "reference"],
    ]


def verdict(goal: float, t: Timing, cap: float) -> str:
    """Whether a timing met a goal of `goal` seconds, and by how much."""
    if t.capped:
        return f"missed, stopped at {cap:g} s"
    if t.seconds <= goal:
        return f"met, {goal / t.seconds:.1f}x under"
    return f"missed, {t.seconds / goal:.1f}x over"


def big_inventory_row(tmp: Path, runs: int, cap: float) -> list[Any]:
    """Measure 4: `runner inventory` of BIG_HOSTS hosts in one group."""
    inventory = tmp / "big.ini"
    write_flat_inventory(inventory, BIG_HOSTS)
    argv = ["runner", "inventory", "-i", str(inventory), "--format", "json"]
    print(f"  timing runner inventory, {BIG_HOSTS} hosts ...", end=" ", flush=True)
    timing = time_command(runs, cap, argv, command_env(tmp), tmp)
    print(f"{timing.text()} s ({timing.runs} runs)", flush=True)
    label = f"4. runner inventory, {BIG_HOSTS} hosts in one group"
    return [label, timing, f"< {BIG_GOAL:g} s", verdict(BIG_GOAL, timing, cap)]


def profile_render(tmp: Path, hosts: int) -> None:
    """cProfile one render_plan run: where the time goes, by own time and by total."""
    inventory, playbook = tmp / "hosts.ini", tmp / "site.yml"
    plan = fresh_plan(playbook, inventory)
    profiler = cProfile.Profile()
    profiler.runcall(render_plan, plan)
    for order in ("tottime", "cumulative"):
        print(f"\nrender_plan over {hosts} hosts, top 20 by {order}:")
        pstats.Stats(profiler).strip_dirs().sort_stats(order).print_stats(20)


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
        f"load average {os.getloadavg()[0]:.1f} (other work on the machine skews the figures)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000, help="hosts in the inventory")
    parser.add_argument("--runs", type=int, default=5, help="runs per measure (median)")
    parser.add_argument(
        "--cap",
        type=float,
        default=120.0,
        help="stop a run past this many seconds and make no more runs of that measure",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile render_plan")
    parser.add_argument("--only-big-inventory", action="store_true", help="run measure 4 alone")
    args = parser.parse_args()
    tools = ["runner"] if args.only_big_inventory else ["runner", "ansible-inventory"]
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH")
    with tempfile.TemporaryDirectory(prefix="plan-scale-") as name:
        tmp = Path(name)
        table = [] if args.only_big_inventory else run_bench(tmp, args.hosts, args.runs, args.cap)
        table.append(big_inventory_row(tmp, args.runs, args.cap))
        rows = [[name, t.text(), t.runs, goal, verdict] for name, t, goal, verdict in table]
        print()
        print(f"machine: {machine()}")
        print(f"command: python bench/plan_scale.py {' '.join(sys.argv[1:])}".rstrip())
        print(tabulate(rows, headers=["measure", "median s", "runs", "goal", "result"]))
        if args.profile:
            profile_render(tmp, args.hosts)


if __name__ == "__main__":
    main()
