"""The distributed mode's costs: broker and PostgreSQL store against the local thread pool.

    python bench/distributed.py [--quick] [--reps N] [--only 1,2,3] [--tablefmt github]

Starts, on loopback, its own PostgreSQL and Redis (tests/services.py), a fleet of
OpenSSH daemons (tests/fleet.py, as bench/bench.py does) and `runner worker` processes
(tests/workers.py), and stops every one of them by PID at the end. Runs `python -m
runner` of this checkout. Measures, as medians of repetitions interleaved between the
configurations:

  1. dispatch overhead per child: N hosts x 1 step `true`, `runner run` locally (SQLite
     store, thread pool), locally on the PostgreSQL store (`--dispatch local`), and sent
     to 1 and to 2 workers; overhead per child = (wall - local wall) / children;
  2. 200 hosts x 10 steps (`--quick`: 50): local against 2 workers of concurrency 100,
     with what one distributed run cost the store and the broker (rows, commits,
     connections, Redis commands) per child;
  3. the store alone, SQLite against PostgreSQL: output written through
     JobStore.append_output in batches of 1000 records (MB/s, records/s), small
     transactions from many threads at once (a worker's per-child writers), and
     JobStore.list_jobs() and `runner job list` with 10,000 jobs in the store.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tabulate import tabulate

from tests.fleet import Fleet, sshd_available
from tests.services import PostgresServer, RedisServer, postgres_missing, redis_missing
from tests.workers import Worker

RUNNER = [sys.executable, "-m", "runner"]
# Every thread that touches a PostgreSQL store holds a connection of its own: a run with
# -f N holds about N, a worker about two per child it ran. PostgreSQL's default of 100
# refuses the 50-host run on one worker ("too many clients"), so the bench raises it and
# reports the peak it saw.
MAX_CONNECTIONS = 2000
QUEUES = {1: "bench-one", 2: "bench-two"}  # workers of each configuration, side by side
READY_S = 120.0


class Sizes:
    """How big and how often: the full run, or `--quick`."""

    def __init__(self, quick: bool, reps: int | None) -> None:
        self.reps = reps or (3 if quick else 5)
        self.overhead_hosts = 50 if quick else 100
        self.fleet_hosts = 50 if quick else 200
        self.fleet_reps = reps or (2 if quick else 3)
        self.records = 50_000 if quick else 200_000
        self.jobs = 10_000
        self.list_reps = reps or (3 if quick else 5)


class Bench:
    """The servers, the fleet, the workers and the rows of the table."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.sizes = Sizes(args.quick, args.reps)
        self.tmp = tmp
        self.rows: list[list[Any]] = []
        self.hung: list[str] = []
        self.env = {**os.environ, "CI": "1", "PYTHONPATH": str(REPO)}
        self.env.pop("RUNNER_STORE", None)
        self.env.pop("RUNNER_BROKER", None)

    def row(
        self, section: str, what: str, value: str, note: str = "", met: bool | None = None
    ) -> None:
        mark = "" if met is None else ("met" if met else "MISSED")
        self.rows.append([section, what, value, note, mark])
        print(f"  {section} {what}: {value} {note} {mark}", flush=True)

    # -- commands -------------------------------------------------------------------------

    def timed(self, argv: list[str], env: dict[str, str], log: str) -> float:
        """Wall seconds of one whole command; a failure stops the benchmark, naming its log.
        A run still going after --hang-after seconds is ended and counted as hung (inf)."""
        out = self.tmp / f"{log}.log"
        started = time.perf_counter()
        try:
            with out.open("wb") as handle:
                done = subprocess.run(
                    argv, env=env, stdout=handle, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, check=False, timeout=self.args.hang_after,
                )  # fmt: skip
        except subprocess.TimeoutExpired:
            self.hung.append(
                f"{log}: {' '.join(argv[2:4])} still running after {self.args.hang_after:g} s"
            )
            print(f"    {self.hung[-1]}", flush=True)
            return float("inf")
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            kept = Path(tempfile.gettempdir()) / f"runner-dbench-{log}-{int(time.time())}.log"
            shutil.copy(out, kept)
            head = "\n".join(out.read_text(errors="replace").splitlines()[:30])
            raise RuntimeError(f"{log}: exited {done.returncode} (log: {kept}):\n{head}")
        return seconds

    def medians(self, commands: dict[str, Callable[[], float]], reps: int) -> dict[str, float]:
        """Each command `reps` times, interleaved rep by rep; their medians."""
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(reps):
            for name, command in commands.items():
                samples[name].append(command())
        for name, values in samples.items():
            print(f"    {name}: {' '.join(f'{v:.2f}' for v in values)} s", flush=True)
        return {name: statistics.median(values) for name, values in samples.items()}


class BenchPostgres(PostgresServer):
    """The test PostgreSQL, with room for MAX_CONNECTIONS clients."""

    def _as_postgres(self, *command: Any) -> subprocess.CompletedProcess[str]:
        words = list(command)
        if "-o" in words:  # pg_ctl start: the server's options follow
            at = words.index("-o") + 1
            words[at] = f"{words[at]} -c max_connections={MAX_CONNECTIONS}"
        return super()._as_postgres(*words)


class Peak:
    """The most connections the bench's database had, sampled while a run goes on."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.most = cluster, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.5):
            self.most = max(self.most, self.cluster.connections())


class Cluster:
    """PostgreSQL, Redis, the fleet, and `runner worker` processes on queues of their own."""

    def __init__(self, bench: Bench, pg: PostgresServer, redis: RedisServer, fleet: Fleet):
        self.bench, self.pg, self.redis, self.fleet = bench, pg, redis, fleet
        self.store = pg.fresh_database()
        self.broker = redis.url(0)
        self.workers: list[Worker] = []
        self.counts: set[int] = set()  # the configurations whose workers run

    def env(self, home: str, distributed: bool = True, store: bool = True) -> dict[str, str]:
        env = {**self.bench.env, "RUNNER_HOME": str(self.bench.tmp / home)}
        if store:
            env["RUNNER_STORE"] = self.store
        if distributed:
            env["RUNNER_BROKER"] = self.broker
        return env

    def start_workers(self, count: int, concurrency: int) -> None:
        """`count` workers taking queue QUEUES[count], ready once their heartbeats show."""
        before = self.beating()
        self.counts.add(count)
        for n in range(1, count + 1):
            name = f"q{count}w{n}"
            env = self.env(f"home-{name}")
            log = self.bench.tmp / f"worker-{name}.log"
            args = ("--concurrency", str(concurrency), "--queue", QUEUES[count])
            self.workers.append(Worker(name, env, log, *args))
        deadline = time.monotonic() + READY_S
        while self.beating() < before + count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers not beating within {READY_S:.0f} s")
            time.sleep(0.2)

    def beating(self) -> int:
        return int(self.sql("SELECT count(*) FROM owners WHERE kind = 'worker'") or 0)

    def sql(self, query: str) -> str:
        """One value from the bench's database, through psql."""
        try:
            return self.pg.psql(query, self.store.rsplit("/", 1)[1]).strip()
        except subprocess.CalledProcessError:
            return ""

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.workers.clear()
        self.counts.clear()

    def workload(self, hosts: int, steps: int, queue: str | None) -> list[str]:
        """`runner run` of one job of `steps` x `true` on `hosts` hosts, forks = hosts."""
        root = self.bench.tmp / f"w{hosts}x{steps}-{queue or 'local'}"
        root.mkdir(parents=True, exist_ok=True)
        names = [name for name, _, _ in self.fleet.hosts[:hosts]]
        inventory = self.fleet.write_inventory(root / "inventory.ini", names=names)
        lines = ["name: bench", "jobs:", "  - name: bench", "    targets: all"]
        lines += [f"    queue: {queue}"] if queue else []
        lines += ["    steps:"]
        lines += [f"      - name: step {i + 1}\n        run: 'true'" for i in range(steps)]
        playbook = root / "playbook.yml"
        playbook.write_text("\n".join(lines) + "\n")
        return [*RUNNER, "run", str(playbook), "-i", str(inventory), "-f", str(hosts), "-q"]

    def configurations(self, hosts: int, steps: int, pg_local: bool) -> dict[str, Callable]:
        """The commands to compare: local (SQLite), local on PostgreSQL, 1 and 2 workers."""
        b = self.bench
        local = self.workload(hosts, steps, None)
        found: dict[str, Callable[[], float]] = {
            "local": lambda: b.timed(local, self.env("home-local", False, False), "local"),
        }
        if pg_local:
            pg_env = self.env("home-pglocal", distributed=False)
            found["local, PostgreSQL store"] = lambda: b.timed(local, pg_env, "pglocal")
        for count in sorted(self.counts):
            argv = self.workload(hosts, steps, QUEUES[count])
            found[f"{count} worker{'s' if count > 1 else ''}"] = functools.partial(
                b.timed, argv, self.env("home-controller"), f"workers{count}"
            )
        return found

    def connections(self) -> int:
        db = self.store.rsplit("/", 1)[1]
        return int(self.sql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'") or 0)

    def redis_commands(self) -> int:
        for line in self.redis.cli("info", "stats").splitlines():
            if line.startswith("total_commands_processed:"):
                return int(line.split(":")[1])
        return 0

    def counters(self) -> dict[str, int]:
        """Rows in the store's tables, commits of its database, its connections, and the
        commands Redis processed: taken before and after one run."""
        db = self.store.rsplit("/", 1)[1]
        found = {
            table: int(self.sql(f"SELECT count(*) FROM {table}") or 0)
            for table in ("jobs", "steps", "output", "events")
        }
        found["commits"] = int(
            self.sql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'") or 0
        )
        found["connections"] = self.connections()
        found["redis commands"] = self.redis_commands()
        return found


# -- 1. dispatch overhead ---------------------------------------------------------------------


def overhead(cluster: Cluster) -> None:
    b, hosts = cluster.bench, cluster.bench.sizes.overhead_hosts
    cluster.start_workers(1, hosts)
    cluster.start_workers(2, hosts)
    commands = cluster.configurations(hosts, 1, pg_local=True)
    for command in commands.values():
        command()  # warm: known_hosts of every home, page cache, workers' imports
    result = b.medians(commands, b.sizes.reps)
    cluster.stop_workers()
    local = result.pop("local")
    b.row("1", f"{hosts} hosts x 1 step: local run (SQLite)", _s(local))
    for name, seconds in result.items():
        per_child = (seconds - local) / hosts * 1000
        goal = None if "PostgreSQL" in name else per_child <= 5
        b.row("1", f"  {name}", _s(seconds), f"{per_child:+.1f} ms per child (goal <= 5)", goal)


# -- 2. the fleet on two workers ----------------------------------------------------------------


def fleet_run(cluster: Cluster) -> None:
    b, hosts = cluster.bench, cluster.bench.sizes.fleet_hosts
    cluster.start_workers(2, 100)
    commands = cluster.configurations(hosts, 10, pg_local=False)
    for command in commands.values():
        command()
    before = cluster.counters()
    with Peak(cluster) as peak:
        commands["2 workers"]()
    time.sleep(1.5)  # PostgreSQL's statistics reach pg_stat_database within a second
    after = cluster.counters()
    result = b.medians(commands, b.sizes.fleet_reps)
    cluster.stop_workers()
    ratio = result["2 workers"] / result["local"]
    b.row("2", f"{hosts} hosts x 10 steps: local run (SQLite)", _s(result["local"]))
    b.row("2", "  2 workers, concurrency 100", _s(result["2 workers"]),
          f"{ratio:.2f}x local (goal <= 1.3x)", ratio <= 1.3)  # fmt: skip
    for key in ("steps", "output", "events", "commits", "redis commands"):
        per_child = (after[key] - before[key]) / hosts
        b.row("2", f"  one run: {key} per child", f"{per_child:.1f}")
    b.row("2", "  store connections: peak during one run", str(peak.most),
          f"before it {before['connections']}, after it {after['connections']}")  # fmt: skip


# -- 3. the store alone ----------------------------------------------------------------------


def store_alone(b: Bench, pg: PostgresServer) -> None:
    from runner.jobs.store import JobStore

    stores = {
        "SQLite": JobStore(b.tmp / "alone.db"),
        "PostgreSQL": JobStore(pg.fresh_database()),
    }
    try:
        for name, store in stores.items():
            output_rate(b, name, store, 100)
            output_rate(b, name, store, 16_384)
            small_transactions(b, name, store)
            listing(b, name, store)
            following(b, name, store)
    finally:
        for store in stores.values():
            store.close()


def output_rate(b: Bench, name: str, store: Any, size: int) -> None:
    """Records of `size` bytes through append_output, 1000 a batch, as the writer sends them."""
    child = store.create_job("bench", "thread", "run", "host0")
    line = "x" * (size - 1) + "\n"
    count = max(1000, b.sizes.records * 100 // size) if size > 100 else b.sizes.records
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count // 1000):
            now = time.time()
            store.append_output([(child, "host0", 0, "stdout", line, now)] * 1000)
        samples.append(time.perf_counter() - started)
    seconds = statistics.median(samples)
    mb = count * size / 1e6
    b.row("3", f"{name}: append_output, {count} records of {size} B",
          f"{mb / seconds:.1f} MB/s", f"{count / seconds:,.0f} records/s")  # fmt: skip


def small_transactions(b: Bench, name: str, store: Any) -> None:
    """Transactions of 10 output records from 1 and from 16 threads at once: the shape of a
    worker's per-child writers, each committing its own batches."""
    child = store.create_job("bench", "thread", "run", "host0")
    rows = [(child, "host0", 0, "stdout", "a line of output\n", 0.0)] * 10
    per_thread = 200

    def work() -> None:
        for _ in range(per_thread):
            store.append_output(rows)

    for threads in (1, 16):
        pool = [threading.Thread(target=work) for _ in range(threads)]
        started = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        seconds = time.perf_counter() - started
        rate = threads * per_thread / seconds
        b.row("3", f"{name}: 10-record transactions from {threads} thread(s)",
              f"{rate:,.0f} commits/s")  # fmt: skip


def listing(b: Bench, name: str, store: Any) -> None:
    """list_jobs() and `runner job list` with b.sizes.jobs jobs: parents of 99 children."""
    have = len(store.list_jobs(include_children=True))
    started, made = time.perf_counter(), 0
    while have + made < b.sizes.jobs:
        parent = store.create_job("bench", "thread", "run", "fleet")
        places = [(f"host{i}", None, None) for i in range(min(99, b.sizes.jobs - have - made - 1))]
        store.create_children(parent, "bench", "thread", "run", places)
        made += 1 + len(places)
    seconds = time.perf_counter() - started
    b.row("3", f"{name}: create_children, {made} jobs in batches of 99",
          f"{made / seconds:,.0f} jobs/s")  # fmt: skip
    total = len(store.list_jobs(include_children=True))
    samples = []
    for _ in range(b.sizes.list_reps):
        started = time.perf_counter()
        store.list_jobs()
        samples.append(time.perf_counter() - started)
    b.row("3", f"{name}: JobStore.list_jobs(), {total} jobs", _ms(statistics.median(samples)))
    env = {**b.env, "RUNNER_STORE": store.url, "RUNNER_HOME": str(b.tmp / "home-list")}
    argv = [*RUNNER, "job", "list"]
    seconds = statistics.median(b.timed(argv, env, "list") for _ in range(b.sizes.list_reps))
    b.row("3", f"{name}: `runner job list`, {total} jobs", _ms(seconds))


def following(b: Bench, name: str, store: Any) -> None:
    """What a controller asks the store about the children it follows: each waiting
    child's check once a second (its record, its worker, that worker's heartbeat), and
    the event reader's query over every child, ten times a second."""
    children = [r.id for r in store.list_jobs(include_children=True) if r.parent_id][:10_000]
    store.append_batch([], [], events=[(child, "{}") for child in children[:2000]] * 10)

    def check(child: int) -> None:
        store.get(child)
        store.worker_of(child)
        store.owner_beat("nobody")

    started = time.perf_counter()
    for child in children[:500]:
        check(child)
    per_check = (time.perf_counter() - started) / 500
    b.row(
        "3",
        f"{name}: one waiting child's check (get, worker_of, owner_beat)",
        f"{per_check * 1000:.2f} ms",
        f"{1 / per_check:,.0f} children/s from one thread",
    )
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        store.db.connect().close()
        samples.append(time.perf_counter() - started)
    b.row("3", f"{name}: a new connection (each new thread that touches the store opens one)",
          _ms(statistics.median(samples)))  # fmt: skip
    last = max(event for event, _, _ in store.events_after(children, 0))
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        store.events_after(children, last)  # the poll that finds nothing new
        samples.append(time.perf_counter() - started)
    b.row("3", f"{name}: one events poll over {len(children)} children (20000 events)",
          _ms(statistics.median(samples)), "the reader polls every 0.1 s")  # fmt: skip


# -- the run -------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--reps", type=int, help="repetitions of every measure")
    parser.add_argument(
        "--only",
        type=lambda text: {int(part) for part in text.split(",") if part.strip()},
        default={1, 2, 3},
        metavar="1,2,3",
        help="run only these sections",
    )
    parser.add_argument(
        "--hang-after",
        type=float,
        default=300.0,
        metavar="S",
        help="end a run still going after S seconds and count it as hung (default 300)",
    )
    parser.add_argument("--tablefmt", default="simple", help="tabulate format (github...)")
    return parser.parse_args(argv)


def missing() -> str | None:
    """Why this machine cannot run the benchmark, or None."""
    if not sshd_available():
        return "needs OpenSSH's server (apt-get install openssh-server)"
    return postgres_missing() or redis_missing()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    why = missing()
    if why is not None:
        print(f"bench: {why}", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="runner-dbench-"))
    bench = Bench(args, tmp)
    load = os.getloadavg()
    try:
        with BenchPostgres() as pg, RedisServer() as redis:
            if args.only & {1, 2}:
                hosts = max(bench.sizes.overhead_hosts, bench.sizes.fleet_hosts)
                with Fleet(hosts) as fleet:
                    cluster = Cluster(bench, pg, redis, fleet)
                    try:
                        for number, section in ((1, overhead), (2, fleet_run)):
                            if number in args.only:
                                print(f"{number}.", flush=True)
                                section(cluster)
                    finally:
                        cluster.stop_workers()
            if 3 in args.only:
                print("3.", flush=True)
                store_alone(bench, pg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"date: {datetime.datetime.now():%Y-%m-%d %H:%M}, nproc {os.cpu_count()}")
    print(f"load average at start: {load[0]:.2f}, at end: {os.getloadavg()[0]:.2f}")
    print(f"command: python bench/distributed.py {' '.join(argv or sys.argv[1:])}".rstrip())
    for hung in bench.hung:
        print(f"hung: {hung}")
    print(tabulate(bench.rows, headers=["#", "what", "median", "", "goal"], tablefmt=args.tablefmt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
