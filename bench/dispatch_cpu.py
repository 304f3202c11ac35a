"""Where a dispatched child's cost goes, in CPU seconds rather than wall time.

    python bench/dispatch_cpu.py [--hosts 50] [--steps 1,10] [--workers 2] [--code DIR]

Wall time on a shared 2-core machine follows the load other people put on it; CPU
seconds do not. This starts, as bench/distributed.py does, its own PostgreSQL (with
pg_stat_statements), Redis, sshd fleet and `runner worker` processes, then runs one
`runner run` of N hosts x S steps `true` in each configuration: local (SQLite store),
local on the PostgreSQL store, and on the workers. For each run it reads the CPU
(utime + stime + cutime + cstime of every process of the tree, from /proc) of the
controller, of each worker, of redis-server, of the PostgreSQL server processes and of
the sshd fleet before and after, and the store's round trips per child: transactions
committed (pg_stat_database.xact_commit: each autocommit query is one) and statements
run (pg_stat_statements; a BEGIN or COMMIT that psycopg prepared is not among them).
`--code DIR` runs the `runner` of another checkout (the same machinery, older code: a
before/after on one fleet).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from distributed import QUEUES, Bench, BenchPostgres, Cluster, parse_args  # noqa: E402
from tabulate import tabulate  # noqa: E402

from tests.fleet import Fleet, descendants  # noqa: E402
from tests.services import RedisServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
# An idle connection's transaction counts reach pg_stat_database within 10 s (PostgreSQL
# 15 and later): the pooled connections of the workers stay open and idle.
STATS_LAG_S = 11.0


class StatsPostgres(BenchPostgres):
    """The bench's PostgreSQL with pg_stat_statements loaded."""

    def _as_postgres(self, *command: Any) -> Any:
        words = list(command)
        if "-o" in words:
            at = words.index("-o") + 1
            words[at] = f"{words[at]} -c shared_preload_libraries=pg_stat_statements"
        return super()._as_postgres(*words)


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and every live process under it, reaped children included:
    a process that ended between two readings moved into its parent's cutime/cstime."""
    total = 0
    for each in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / TICK


class Meter:
    """The processes to read, by component."""

    def __init__(self, cluster: Cluster, pg: Any, redis: RedisServer, fleet: Fleet, hosts: int):
        self.cluster, self.pg, self.redis, self.fleet, self.hosts = cluster, pg, redis, fleet, hosts

    def read(self) -> dict[str, float]:
        found = {f"worker {w.name}": tree_cpu(w.pid) for w in self.cluster.workers}
        found["redis"] = tree_cpu(self.redis.pid)
        found["postgres"] = tree_cpu(self.pg.pid)
        found["sshd fleet"] = sum(
            tree_cpu(self.fleet.host(i).process.pid) for i in range(self.hosts)
        )
        return found


def run_measured(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """(wall, CPU of the command and its children, exit code). Run from the checkout that
    PYTHONPATH names: `python -m` puts the working directory first on the path."""
    import subprocess

    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=env["PYTHONPATH"])  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def statements(cluster: Cluster, top: int = 12) -> tuple[int, list[tuple[int, str]]]:
    """Statements the store ran since the last reset: how many in all, and the most run."""
    total = int(cluster.sql("SELECT sum(calls) FROM pg_stat_statements") or 0)
    rows = cluster.sql(
        "SELECT string_agg(calls || E'\\t' || left(regexp_replace(query, '\\s+', ' ', 'g'), 90),"
        f" E'\\n' ORDER BY calls DESC) FROM (SELECT * FROM pg_stat_statements"
        f" ORDER BY calls DESC LIMIT {top}) s"
    )
    found = []
    for line in rows.splitlines():
        calls, _, query = line.partition("\t")
        if calls.isdigit():
            found.append((int(calls), query))
    return total, found


def measure(
    cluster: Cluster,
    meter: Meter,
    name: str,
    argv: list[str],
    env: dict[str, str],
    hosts: int,
    counted: bool = True,
) -> dict[str, Any]:
    """One run's CPU by component; `counted`: its store round trips too (which costs a
    wait for the statistics before and after it)."""
    db = cluster.store.rsplit("/", 1)[1]
    commits = f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"
    time.sleep(STATS_LAG_S if counted else 1.0)
    cluster.sql("SELECT pg_stat_statements_reset()")
    before, c0 = meter.read(), int(cluster.sql(commits) or 0)
    wall, controller, code = run_measured(argv, env, cluster.bench.tmp / f"{name}.log")
    time.sleep(STATS_LAG_S if counted else 1.0)
    after, c1 = meter.read(), int(cluster.sql(commits) or 0)
    found: dict[str, Any] = {"run": name, "exit": code, "wall": wall, "controller": controller}
    for key in after:
        found[key] = after[key] - before.get(key, 0.0)
    found["commits"] = (c1 - c0) / hosts
    found["round trips"], found["statements"] = statements(cluster)
    found["round trips"] /= hosts
    return found


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each CPU figure's median over the runs of one configuration; the round trips of the
    first, the one counted."""
    found = dict(runs[0])  # the counted run's round trips
    for key, value in runs[0].items():
        if isinstance(value, float) and key not in ("commits", "round trips"):
            found[key] = statistics.median(run[key] for run in runs)
    found["exit"] = max(run["exit"] for run in runs)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--steps", default="1,10")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=0, help="default: --hosts")
    parser.add_argument("--code", type=Path, default=REPO, help="the runner checkout to run")
    parser.add_argument(
        "--compare", type=Path, help="another checkout, run interleaved with --code"
    )
    parser.add_argument("--reps", type=int, default=1, help="runs of each, interleaved; medians")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle workers read")
    args = parser.parse_args()
    codes = [args.code, *([args.compare] if args.compare else [])]
    results: list[dict[str, Any]] = []
    load = os.getloadavg()
    with StatsPostgres() as pg, RedisServer() as redis, Fleet(args.hosts) as fleet:
        sides = [side(args, code, n, pg, redis, fleet) for n, code in enumerate(codes)]
        try:
            for cluster, _meter, _ in sides:
                cluster.start_workers(args.workers, args.concurrency or args.hosts)
            time.sleep(2.0)
            before = sides[0][1].read()
            time.sleep(args.idle)
            after = sides[0][1].read()
            idle = {k: (after[k] - before[k]) / args.idle for k in after}
            print("idle CPU, s per s:", {k: round(v, 3) for k, v in idle.items()}, flush=True)
            for steps in [int(s) for s in args.steps.split(",")]:
                results += compare(args, sides, steps)
        finally:
            for cluster, _, _ in sides:
                cluster.stop_workers()
    report(results, args, load)
    return 0


def side(args: argparse.Namespace, code: Path, n: int, pg: Any, redis: Any, fleet: Fleet) -> Any:
    """One checkout's cluster (its own database, Redis database and workers) and meter."""
    bench = Bench(parse_args([]), Path(tempfile.mkdtemp(prefix="runner-dcpu-")))
    bench.env["PYTHONPATH"] = str(code)
    cluster = Cluster(bench, pg, redis, fleet)
    cluster.broker = redis.url(n)  # the same queue names, apart
    cluster.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    label = code.name if args.compare else ""
    return cluster, Meter(cluster, pg, redis, fleet, args.hosts), label


def compare(args: argparse.Namespace, sides: list[Any], steps: int) -> list[dict[str, Any]]:
    """Every configuration of every side, `args.reps` times interleaved: their medians."""
    argvs = {}
    for cluster, meter, label in sides:
        for command in cluster.configurations(args.hosts, steps, pg_local=True).values():
            command()  # warm: known_hosts, page cache, the workers' imports and plans
        local = cluster.workload(args.hosts, steps, None)
        queued = cluster.workload(args.hosts, steps, QUEUES[args.workers])
        prefix = f"{label} {args.hosts}x{steps}".strip()
        argvs[f"{prefix} local"] = (cluster, meter, local, cluster.env("home-local", False, False))
        argvs[f"{prefix} local, PostgreSQL"] = (
            cluster,
            meter,
            local,
            cluster.env("home-pglocal", distributed=False),
        )
        argvs[f"{prefix} {args.workers} workers"] = (
            cluster, meter, queued, cluster.env("home-controller"))  # fmt: skip
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in argvs}
    for rep in range(args.reps):
        for name, (cluster, meter, argv, env) in argvs.items():
            found = measure(cluster, meter, name, argv, env, args.hosts, counted=rep == 0)
            samples[name].append(found)
            print(found["run"], {k: round(v, 3) if isinstance(v, float) else v
                                 for k, v in found.items() if k != "statements"},
                  flush=True)  # fmt: skip
    return [median_of(runs) for runs in samples.values()]


def report(results: list[dict[str, Any]], args: argparse.Namespace, load: tuple) -> None:
    workers = sorted({k for r in results for k in r if k.startswith("worker ")})
    parts = ["controller", *workers, "redis", "postgres", "sshd fleet"]
    rows = []
    locals_: dict[str, float] = {}
    for r in results:
        total = sum(r.get(p, 0.0) for p in parts)
        size = r["run"].rsplit(" ", 2 if r["run"].endswith(" workers") else 1)[0]
        size = size.removesuffix(" local,")
        if r["run"].endswith(" local"):
            locals_[size] = total
        extra = (total - locals_.get(size, total)) / args.hosts * 1000
        rows.append([r["run"], f"{r['wall']:.2f}", *(f"{r.get(p, 0.0):.2f}" for p in parts),
                     f"{total:.2f}", f"{extra:+.1f} / {extra / CORES:+.1f}",
                     f"{r['commits']:.1f}", f"{r['round trips']:.1f}", r["exit"]])  # fmt: skip
    headers = ["run", "wall s", *parts, "CPU s", "ms a child vs local (CPU / per core)",
               "transactions per child", "statements per child", "exit"]  # fmt: skip
    print(f"\n{datetime.datetime.now():%Y-%m-%d %H:%M}, medians of {args.reps} run(s);"
          f" load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f};"
          f" code: {args.code}{f', against {args.compare}' if args.compare else ''}")  # fmt: skip
    print(tabulate(rows, headers=headers, tablefmt="github"))
    for r in results:
        if r["run"].endswith("workers") or r["run"].endswith("PostgreSQL"):
            print(f"\n{r['run']}: statements (calls per child, top)")
            for calls, query in r["statements"]:
                print(f"  {calls / args.hosts:7.2f}  {query}")


if __name__ == "__main__":
    sys.exit(main())
