"""Fleet benchmark (issues 12 and 13): how fast work moves between real
``dbos-worker`` processes, and what an idle fleet and its coordinator cost.

Every section runs on a fresh PostgreSQL database ``bench_fleet_<section>_<random>``
(created here, dropped at the end) with real processes: ``.venv/bin/dbos-worker
bench/fleet_app.py`` and ``.venv/bin/dbos-coordinator``, Redis wakeups on. Each
figure comes with the floor it is compared with, measured in the same run.

    (a) drain     SIGTERM a worker (--drain-timeout 0) that runs 2 direct and 2 queued
                  workflows -> each of them runs a step on another worker.
                  Floor: 2 commits + 1 Redis hop (release, wake, claim).
    (b) idle      20 idle workers: CPU of the PostgreSQL backends serving the
                  database (from /proc), transactions/s (pg_stat_database) and round
                  statements/s (counted in every worker, by thread), worker CPU; then the
                  same with one coordinator added. Floor: the server's own processes
                  (postmaster, checkpointer, walwriter, ...) idle before the fleet.
    (c) heartbeat one executor's heartbeat (the library's ``Heartbeat.run_once``) timed
                  in this process: latency, statements, client and backend CPU.
                  Floor: a raw single-row UPDATE in autocommit.
    (d) kill      SIGKILL a worker holding 2 direct and 2 queued workflows, a
                  coordinator at its defaults -> the first step resumed elsewhere.
                  Floor per kill: the earliest a correct coordinator may act, the
                  victim's last heartbeat + --dead-after.
    (e) leader    SIGKILL the leading coordinator -> the standby holds the lease
                  (its first term). Floor per kill: when the killed leader's lease
                  expires.
    (f) coord     one idle coordinator, then a standby beside it, on an empty
                  fleet: backend CPU, statements/s, its own CPU.
    (g) chaos     4 workers, 300 five-step workflows (one step a transaction), a
                  random worker SIGKILLed every 2 s and replaced under a new ID:
                  workflows/s, lost, duplicated effects, kill -> resumed p50/p99.

    .venv/bin/python bench/fleet.py                      # every section (~12 min)
    .venv/bin/python bench/fleet.py --only a,d --rounds 5
    .venv/bin/python bench/fleet.py --json figures.json

PostgreSQL CPU comes from /proc/<pid>/stat of the backends (utime + stime, 10 ms
ticks), so the server must run on this machine; pg_stat_statements is not
assumed (it needs a restart to load). See bench/README.md for the figures.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar

import psycopg
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
APP = HERE / "fleet_app.py"
BIN = Path(sys.executable).parent
VERSION = "bench-fleet-v1"
QUEUE = "bench_fleet"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAYLOAD = b"\x80\x05K\x01."

TARGETS = {
    "a_drain_p50_s": 1.0,
    "b_pg_cpu_pct": 5.0,
    "d_kill_p50_s": 4.0,
    "d_kill_p99_s": 6.0,
    "e_takeover_s": 5.0,
    "h_decided_s": 1.0,
    "h_after_startup_s": 1.0,
}

T = TypeVar("T")


# -- small tools ----------------------------------------------------------------------


def pct(samples: Sequence[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def wait_for(fn: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.01) -> T:
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def cpu_ticks(pid: int) -> Optional[int]:
    """utime + stime of a process (all threads), in clock ticks; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


def parent_pid(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, IndexError):
        return None


def verdict(value: float, target: float, *, below: bool = True) -> str:
    ok = value <= target if below else value >= target
    return "met" if ok else "MISSED"


# -- a database and the processes on it -------------------------------------------------


class Cluster:
    """One fresh database, the processes this bench starts on it, and a connection."""

    def __init__(self, pg_url: str, redis_url: str, section: str, logdir: Path) -> None:
        self.admin_url = pg_url
        self.redis_url = redis_url
        self.dbname = f"bench_fleet_{section}_{secrets.token_hex(3)}"
        self.logdir = logdir
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.url = sa.make_url(pg_url).set(database=self.dbname).render_as_string(hide_password=False)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []
        self._client: Any = None
        from dbos._storage.database import Database
        from dbos._storage.migrations import migrate_system

        db = Database(self.url.replace("postgresql://", "postgresql+psycopg://", 1), "dbos", 1)
        try:
            migrate_system(db)
        finally:
            db.dispose()
        self.conn = psycopg.connect(self.url, autocommit=True)
        self.conn.execute(
            "CREATE TABLE bench_fleet_steps (workflow_id text, seq integer, executor_id text, at double precision)"
        )
        self.conn.execute("CREATE INDEX ON bench_fleet_steps (workflow_id)")
        self.admin = psycopg.connect(pg_url, autocommit=True)  # for pg_stat_*: not counted in this database

    # processes
    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        assert name not in self.procs or self.procs[name].poll() is not None, name
        out = open(self.logdir / f"{self.dbname}-{name}.log", "ab")
        self._logs.append(out)
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=HERE.parent)
        self.procs[name] = proc
        return proc

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS", "FLEET_BENCH"))}
        env.update(DBOS_SYSTEM_DATABASE_URL=self.url, DBOS_REDIS_URL=self.redis_url, DBOS_LOG_LEVEL="INFO")
        return env

    def counts_path(self, name: str) -> Path:
        return self.logdir / f"{self.dbname}-counts-{name}.json"

    def _counting(self, env: dict[str, str], name: str) -> None:
        """Count this process's statements (bench/fleet_counter.py, through sitecustomize)."""
        env["FLEET_BENCH_COUNTS"] = str(self.counts_path(name))
        env["PYTHONPATH"] = os.pathsep.join([str(HERE / "fleet_site"), str(HERE)])

    def start_worker(self, vmid: str, *args: str, env: Optional[dict[str, str]] = None,
                     count: bool = False) -> subprocess.Popen[bytes]:
        e = self._env()
        e.update(DBOS__VMID=vmid, DBOS__APPVERSION=VERSION, FLEET_BENCH_SIDE=self.url, **(env or {}))
        if count:
            self._counting(e, vmid)
        return self._spawn(vmid, [str(BIN / "dbos-worker"), str(APP), *args], e)

    def start_coordinator(self, name: str, *args: str, count: bool = False) -> subprocess.Popen[bytes]:
        argv = [str(BIN / "dbos-coordinator"), "--db-url", self.url, "--redis-url", self.redis_url, *args]
        e = self._env()
        if count:
            self._counting(e, name)
        return self._spawn(name, argv, e)

    def log_of(self, name: str) -> str:
        path = self.logdir / f"{self.dbname}-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def check_alive(self, *names: str) -> None:
        for name in names:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_of(name)[-3000:]}")

    def wait_running(self, vmids: Iterable[str], timeout: float = 60) -> None:
        wanted = list(vmids)

        def ready() -> bool:
            self.check_alive(*wanted)
            rows = self.rows("SELECT count(*) FROM dbos.executors WHERE executor_id = ANY(%s) AND state = 'RUNNING'",
                             (wanted,))
            return int(rows[0][0]) == len(wanted)

        wait_for(ready, timeout, f"{len(wanted)} worker(s) RUNNING", interval=0.05)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for out in self._logs:
            out.close()
        if self._client is not None:
            self._client.destroy()
        self.conn.close()
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        self.admin.close()

    # queries
    def rows(self, sql: str, params: Any = None) -> list[Any]:
        return self.conn.execute(sql, params).fetchall()

    @property
    def client(self) -> Any:
        if self._client is None:
            from dbos import DBOSClient

            self._client = DBOSClient(self.url, redis_url=self.redis_url)
        return self._client

    def enqueue(self, workflow_id: str, n_ticks: int) -> None:
        self.client.enqueue(
            {"queue_name": QUEUE, "workflow_name": "ticks", "workflow_id": workflow_id, "app_version": VERSION},
            n_ticks,
        )

    def steps_by(self, ids: list[str], executor: str) -> set[str]:
        rows = self.rows("SELECT DISTINCT workflow_id FROM bench_fleet_steps WHERE workflow_id = ANY(%s) "
                         "AND executor_id = %s", (ids, executor))
        return {r[0] for r in rows}

    def resumed_at(self, ids: list[str], not_by: str, since: float) -> dict[str, tuple[float, str]]:
        """Per workflow, the first step another executor started after ``since`` (epoch s)."""
        rows = self.rows(
            "SELECT DISTINCT ON (workflow_id) workflow_id, at, executor_id FROM bench_fleet_steps "
            "WHERE workflow_id = ANY(%s) AND executor_id <> %s AND at >= %s ORDER BY workflow_id, at",
            (ids, not_by, since),
        )
        return {r[0]: (float(r[1]), r[2]) for r in rows}

    def cancel(self, ids: Iterable[str]) -> None:
        for workflow_id in ids:
            try:
                self.client.cancel_workflow(workflow_id)
            except Exception as e:  # finished meanwhile, or the like: not this bench's point
                log(f"cancel {workflow_id}: {e}")

    def backend_pids(self) -> list[int]:
        rows = self.admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.dbname,)).fetchall()
        return [int(r[0]) for r in rows]

    def xacts(self) -> int:
        row = self.admin.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (self.dbname,)
        ).fetchone()
        assert row is not None
        return int(row[0])


def server_pids(admin: psycopg.Connection[Any]) -> list[int]:
    """The server's own processes: the postmaster and every non-client backend."""
    rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'").fetchall()
    pids = [int(r[0]) for r in rows]
    post = parent_pid(pids[0]) if pids else None
    return pids + ([post] if post else [])


class CpuMeter:
    """CPU of a changing set of processes over a window: sampled every ``every`` s;
    a process born in the window counts from zero, one that exits keeps what it had
    at its last sample (so up to ``every`` s of its CPU is lost)."""

    def __init__(self, pids: Callable[[], Iterable[int]], every: float = 0.5) -> None:
        self.pids = pids
        self.every = every
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.seen_max = 0

    def sample(self, initial: bool = False) -> None:
        current = list(self.pids())
        self.seen_max = max(self.seen_max, len(current))
        for pid in current:
            ticks = cpu_ticks(pid)
            if ticks is None:
                continue
            if pid not in self.first:
                self.first[pid] = ticks if initial else 0
            self.last[pid] = ticks

    def seconds(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last) / CLK_TCK

    def per_pid(self) -> dict[int, float]:
        return {p: (self.last[p] - self.first[p]) / CLK_TCK for p in self.last}


def measure_window(seconds: float, meters: dict[str, CpuMeter], extra: Callable[[], None] = lambda: None) -> float:
    """Sample every meter through a window; return its length (wall seconds)."""
    for m in meters.values():
        m.sample(initial=True)
    t0 = time.monotonic()
    every = min(m.every for m in meters.values())
    while time.monotonic() - t0 < seconds:
        time.sleep(every)
        for m in meters.values():
            m.sample()
        extra()
    return time.monotonic() - t0


# -- floors ---------------------------------------------------------------------------


def floor_insert(url: str, n: int = 500) -> list[float]:
    """One single-row INSERT + COMMIT round trip (bench/core.py's floor)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (k text, n integer, v bytea, PRIMARY KEY (k, n))")
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO bench_floor (k, n, v) VALUES (%s, %s, %s)", ("floor", i, PAYLOAD))
            out.append(time.perf_counter() - t0)
        conn.execute("DROP TABLE bench_floor")
    return out


def redis_hop(redis_url: str, n: int = 300) -> list[float]:
    """Raw redis-py PUBLISH -> a pattern subscriber on another connection (a thread)."""
    import redis

    r = redis.Redis.from_url(redis_url)
    ps = r.pubsub()  # type: ignore[no-untyped-call]
    ps.psubscribe("bench-fleet-hop:*")
    got = threading.Event()
    out: list[float] = []
    stamp = [0.0]

    def listen() -> None:
        for msg in ps.listen():
            if msg["type"] == "pmessage":
                if msg["data"] == b"stop":
                    return
                out.append(time.perf_counter() - stamp[0])
                got.set()

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    time.sleep(0.2)
    for _ in range(n):
        got.clear()
        stamp[0] = time.perf_counter()
        r.publish("bench-fleet-hop:x", b"x")
        got.wait(2)
        time.sleep(0.002)
    r.publish("bench-fleet-hop:x", b"stop")
    th.join(2)
    ps.close()
    r.close()
    return out


# -- (a) and (d): work moving after a SIGTERM or a SIGKILL ----------------------------------


@dataclass
class Move:
    """One victim: signal time, and per workflow the first step resumed elsewhere."""

    signalled: float
    resumed: dict[str, float]  # workflow ID -> seconds after the signal
    exit_s: Optional[float] = None  # SIGTERM: when the victim exited
    exit_code: Optional[int] = None
    lower_bound_s: Optional[float] = None  # SIGKILL: last heartbeat + dead-after - kill
    by: set[str] = field(default_factory=set)


def _victim_round(cl: Cluster, r: int, tag: str, standing: list[str], k: int, n_ticks: int, sig: int,
                  drain_args: Sequence[str], dead_after: float, max_pause: float) -> Optional[Move]:
    """One victim: start it, give it work, signal it, time the work resumed elsewhere.
    None if it did not claim its queued work while the others were paused (a loaded
    machine): the caller runs the round again."""
    vmid = f"victim-{tag}-{r}"
    direct = [f"{tag}{r}-direct-{i}" for i in range(k)]
    queued = [f"{tag}{r}-queued-{i}" for i in range(k)]
    # Start at a random point of the coordinator's 1 s scan cycle: the victim's
    # heartbeats keep that phase, and the previous round ended just after a scan.
    time.sleep(secrets.randbelow(1000) / 1000)
    proc = cl.start_worker(vmid, *drain_args, env={"FLEET_BENCH_DIRECT": f"{tag}{r}-direct:{k}:{n_ticks}"})
    cl.wait_running([vmid])
    wait_for(lambda: len(cl.steps_by(direct, vmid)) == k, 20, f"{vmid}'s direct workflows")
    # Queued work: only the victim may claim it, so the standing workers are paused
    # (SIGSTOP, well under the dead-after) while it is enqueued and claimed.
    for name in standing:
        os.kill(cl.procs[name].pid, signal.SIGSTOP)
    try:
        for workflow_id in queued:
            cl.enqueue(workflow_id, n_ticks)
        wait_for(lambda: len(cl.steps_by(queued, vmid)) == k, max_pause, f"{vmid} claiming the queued workflows")
    except TimeoutError as e:
        log(f"{e}; this round is run again")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        cl.cancel(direct + queued)
        return None
    finally:
        for name in standing:
            os.kill(cl.procs[name].pid, signal.SIGCONT)
    # The standing workers catch up (heartbeat, their poll); then a signal at a random
    # point of the victim's heartbeat cycle.
    time.sleep(0.3 + secrets.randbelow(1000) / 1000)
    ids = direct + queued
    t0 = time.time()
    os.kill(proc.pid, sig)
    move = Move(signalled=t0, resumed={})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if move.exit_s is None and proc.poll() is not None:
            move.exit_s, move.exit_code = time.time() - t0, proc.returncode
        found = cl.resumed_at(ids, vmid, t0)
        if len(found) == len(ids):
            move.resumed = {w: at - t0 for w, (at, _) in found.items()}
            move.by = {by for _, by in found.values()}
            break
        time.sleep(0.005)
    else:
        raise TimeoutError(f"{vmid}: only {len(cl.resumed_at(ids, vmid, t0))} of {len(ids)} workflows resumed")
    if sig == signal.SIGKILL:
        proc.wait(10)
        hb = cl.rows("SELECT heartbeat_at FROM dbos.executors WHERE executor_id = %s", (vmid,))[0][0]
        move.lower_bound_s = int(hb) / 1000 + dead_after - t0
    else:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        if move.exit_s is None and proc.poll() is not None:
            move.exit_s, move.exit_code = time.time() - t0, proc.returncode
    cl.cancel(ids)
    return move


def bench_moves(cl: Cluster, *, tag: str, rounds: int, sig: int, coordinator: bool, k: int = 2) -> dict[str, Any]:
    standing = [f"standing-{tag}-{i}" for i in range(2)]
    for name in standing:
        cl.start_worker(name)
    dead_after = 3.0
    if coordinator:
        cl.start_coordinator("coordinator")  # its defaults: --dead-after 3 --interval 1
    cl.wait_running(standing)
    time.sleep(1.0)
    moves: list[Move] = []
    n_ticks = 40 if sig == signal.SIGTERM else 100
    drain_args = ("--drain-timeout", "0") if sig == signal.SIGTERM else ()
    # The standing workers' pause must stay well under the coordinator's dead-after.
    max_pause = 1.5 if coordinator else 2.5
    retries = 0
    r = 0
    while len(moves) < rounds:
        r += 1
        got = _victim_round(cl, r, tag, standing, k, n_ticks, sig, drain_args, dead_after, max_pause)
        if got is None:
            retries += 1
            if retries > rounds:
                raise RuntimeError(f"{retries} rounds had to be run again: the machine is too busy")
            continue
        m = got
        first, last = min(m.resumed.values()), max(m.resumed.values())
        extra = f", exit {m.exit_s:.2f} s (code {m.exit_code})" if m.exit_s is not None else ""
        extra += f", lower bound {m.lower_bound_s:.2f} s" if m.lower_bound_s is not None else ""
        log(f"{tag} {len(moves) + 1}/{rounds}: first {first * 1000:.0f} ms, every {last * 1000:.0f} ms{extra}")
        moves.append(m)
        cl.check_alive(*standing)
    return {"moves": moves, "standing": standing, "retried_rounds": retries}


def summarize_moves(moves: list[Move]) -> dict[str, Any]:
    first = [min(m.resumed.values()) for m in moves]
    every = [max(m.resumed.values()) for m in moves]
    per_wf = [v for m in moves for v in m.resumed.values()]
    out: dict[str, Any] = {
        "rounds": len(moves),
        "workflows_per_round": len(moves[0].resumed),
        "first_s": {"p50": pct(first, 50), "p99": pct(first, 99), "max": max(first)},
        "every_s": {"p50": pct(every, 50), "p99": pct(every, 99), "max": max(every)},
        "per_workflow_s": {"p50": pct(per_wf, 50), "p99": pct(per_wf, 99)},
    }
    exits = [m.exit_s for m in moves if m.exit_s is not None]
    if exits:
        out["exit_s"] = {"p50": pct(exits, 50), "max": max(exits)}
        out["exit_codes"] = sorted({m.exit_code for m in moves if m.exit_code is not None})
    bounds = [m.lower_bound_s for m in moves if m.lower_bound_s is not None]
    if bounds:
        over = [min(m.resumed.values()) - (m.lower_bound_s or 0) for m in moves]
        out["lower_bound_s"] = {"p50": pct(bounds, 50), "min": min(bounds), "max": max(bounds)}
        out["first_over_bound_s"] = {"p50": pct(over, 50), "p99": pct(over, 99), "max": max(over)}
        out["first_x_bound"] = {"p50": pct([f / b for f, b in zip(first, bounds)], 50)}
    return out


def section_a(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    cl = Cluster(args.pg_url, args.redis_url, "a", logdir)
    try:
        floor = statistics.median(floor_insert(cl.url))
        hop = statistics.median(redis_hop(args.redis_url))
        res = bench_moves(cl, tag="a", rounds=args.rounds or 12, sig=signal.SIGTERM, coordinator=False)
        s = summarize_moves(res["moves"])
        s["retried_rounds"] = res["retried_rounds"]
        s["floor_s"] = {"insert": floor, "redis_hop": hop, "handback": 2 * floor + hop}
        return s
    finally:
        cl.close()


def section_d(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    cl = Cluster(args.pg_url, args.redis_url, "d", logdir)
    try:
        res = bench_moves(cl, tag="d", rounds=args.rounds or 20, sig=signal.SIGKILL, coordinator=True)
        s = summarize_moves(res["moves"])
        s["retried_rounds"] = res["retried_rounds"]
        lines = [ln for ln in cl.log_of("coordinator").splitlines() if "handed over" in ln]
        s["coordinator_handover_lines"] = len(lines)
        return s
    finally:
        cl.close()


# -- (b) and (f): what an idle fleet and an idle coordinator cost -------------------------------


def _counts(paths: Iterable[Path]) -> dict[str, int]:
    total: dict[str, int] = {}
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        for name, n in data["counts"].items():
            total[name] = total.get(name, 0) + int(n)
    return total


def _idle_window(cl: Cluster, seconds: float, procs: dict[str, int], counts: list[Path]) -> dict[str, Any]:
    backends = CpuMeter(cl.backend_pids)
    server = CpuMeter(lambda: server_pids(cl.admin))
    clients = CpuMeter(lambda: procs.values())
    x0, c0 = cl.xacts(), _counts(counts)
    each0 = {p.name: sum(_counts([p]).values()) for p in counts}
    wall = measure_window(seconds, {"backends": backends, "server": server, "clients": clients})
    x1, c1 = cl.xacts(), _counts(counts)
    each1 = {p.name: sum(_counts([p]).values()) for p in counts}
    per_client = clients.per_pid()
    trips = {k: (c1.get(k, 0) - c0.get(k, 0)) / wall for k in c1}
    by_process = [(each1[k] - each0.get(k, 0)) / wall for k in each1]
    return {
        "wall_s": wall,
        "backends": backends.seen_max,
        "pg_cpu_pct": 100 * backends.seconds() / wall,
        "server_cpu_pct": 100 * server.seconds() / wall,
        "xacts_per_s": (x1 - x0) / wall,
        "round_trips_per_s": sum(trips.values()),
        "round_trips_per_process": {"min": min(by_process, default=0.0), "max": max(by_process, default=0.0)},
        "round_trips_by_thread": {k: round(v, 2) for k, v in sorted(trips.items(), key=lambda kv: -kv[1]) if v},
        "client_cpu_pct": {
            "mean": 100 * statistics.mean(per_client.values()) / wall if per_client else 0.0,
            "max": 100 * max(per_client.values()) / wall if per_client else 0.0,
            "processes": len(per_client),
        },
    }


# Connections an idle worker holds: its heartbeat's, and one per service that polls
# (3.5 on 2026-12-03 morning, 5 once a scheduler service polled too). Re-measured
# after the first batch.
CONNECTIONS_PER_IDLE_WORKER = 5.0


def wait_for_connections(admin: psycopg.Connection[Any], needed: int, timeout: float = 180) -> None:
    """Wait until the server has ``needed`` connection slots free: other people's tests
    share it, and a fleet that takes the last slots would fail theirs (or ours)."""

    def free() -> int:
        row = admin.execute(
            "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        ).fetchone()
        assert row is not None
        return int(row[0])

    if free() < needed:
        log(f"waiting for {needed} free connection slots on the server ({free()} free now)")
    try:
        wait_for(lambda: free() >= needed, timeout, f"{needed} free connection slots", interval=2)
    except TimeoutError as e:
        raise RuntimeError(f"{e}: the server's max_connections is shared with other clients; try fewer "
                           "--workers, or a server of your own") from None


def section_b(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    cl = Cluster(args.pg_url, args.redis_url, "b", logdir)
    try:
        log(f"floor: the idle server for {args.window / 2:g} s")
        server = CpuMeter(lambda: server_pids(cl.admin))
        wall = measure_window(args.window / 2, {"server": server})
        floor = {"server_cpu_pct": 100 * server.seconds() / wall, "wall_s": wall}
        vmids = [f"idle-{i:02d}" for i in range(args.workers)]
        per_worker = CONNECTIONS_PER_IDLE_WORKER
        wait_for_connections(cl.admin, int(per_worker * len(vmids)) + 10, timeout=600)
        counts = [cl.counts_path(v) for v in vmids]
        log(f"starting {len(vmids)} workers")
        for i in range(0, len(vmids), 4):  # a few at a time: 2 cores
            if i:
                time.sleep(1)
                per_worker = max(1.0, len(cl.backend_pids()) / i)
            wait_for_connections(cl.admin, int(per_worker * len(vmids[i:])) + 10)
            for vmid in vmids[i:i + 4]:
                cl.start_worker(vmid, "--queues", QUEUE, count=True)  # polls 2 queues: it and the internal one
            cl.wait_running(vmids[i:i + 4], timeout=120)
        time.sleep(5)  # let start-up settle
        procs = {v: cl.procs[v].pid for v in vmids}
        log(f"idle fleet: {args.window:g} s window (load {load()})")
        fleet = _idle_window(cl, args.window, procs, counts)
        cl.check_alive(*vmids)
        log("starting one coordinator beside the idle fleet")
        coord = cl.start_coordinator("coordinator", count=True)
        wait_for(lambda: cl.rows("SELECT holder FROM dbos.leader_lease"), 30, "the coordinator leading")
        time.sleep(4)
        cl.check_alive("coordinator")
        procs_c = dict(procs, coordinator=coord.pid)
        log(f"idle fleet + coordinator: {args.window:g} s window (load {load()})")
        with_coord = _idle_window(cl, args.window, procs_c, counts + [cl.counts_path("coordinator")])
        return {"workers": len(vmids), "floor": floor, "fleet": fleet, "with_coordinator": with_coord}
    finally:
        cl.close()


def section_f(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    cl = Cluster(args.pg_url, args.redis_url, "f", logdir)
    try:
        server = CpuMeter(lambda: server_pids(cl.admin))
        wall = measure_window(args.window / 2, {"server": server})
        floor = {"server_cpu_pct": 100 * server.seconds() / wall, "wall_s": wall}
        leader = cl.start_coordinator("leader", count=True)
        wait_for(lambda: cl.rows("SELECT holder FROM dbos.leader_lease"), 20, "a leader")
        time.sleep(5)
        log(f"one idle coordinator: {args.window:g} s window (load {load()})")
        paths = [cl.counts_path("leader")]
        alone = _idle_window(cl, args.window, {"leader": leader.pid}, paths)
        standby = cl.start_coordinator("standby", count=True)
        wait_for(lambda: "started" in cl.log_of("standby"), 20, "the standby")
        time.sleep(3)
        log(f"leader + standby: {args.window:g} s window (load {load()})")
        paths.append(cl.counts_path("standby"))
        pair = _idle_window(cl, args.window, {"leader": leader.pid, "standby": standby.pid}, paths)
        return {"floor": floor, "leader": alone, "leader_and_standby": pair}
    finally:
        cl.close()


# -- (c): one heartbeat ---------------------------------------------------------------------


def section_c(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    import logging

    from fleet_counter import StatementCounter

    from dbos._services.heartbeat import Heartbeat
    from dbos._storage.database import Database

    cl = Cluster(args.pg_url, args.redis_url, "c", logdir)
    db = Database(cl.url.replace("postgresql://", "postgresql+psycopg://", 1), "dbos", 1)
    try:
        hb = Heartbeat(db, "bench-heartbeat", VERSION, 1.0, logging.getLogger("bench"), queues=[QUEUE])
        hb.register()
        backend = int(db.query(lambda c: c.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()))
        raw = psycopg.connect(cl.url, autocommit=True)
        raw.execute("CREATE TABLE beat (id text PRIMARY KEY, at bigint, n integer)")
        raw.execute("INSERT INTO beat VALUES ('x', 0, 0)")
        raw_pid = int(raw.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]

        def raw_beat() -> None:
            raw.execute("UPDATE beat SET at = %s, n = %s WHERE id = 'x'", (int(time.time() * 1000), 0))

        def timed(fn: Callable[[], None], pid: int, n: int, gap: float = 0.0) -> dict[str, float]:
            for _ in range(50):
                fn()
            wall: list[float] = []
            s0, c0 = cpu_ticks(pid) or 0, time.process_time()
            for _ in range(n):
                if gap:
                    time.sleep(gap)
                t0 = time.perf_counter()
                fn()
                wall.append(time.perf_counter() - t0)
            s1, c1 = cpu_ticks(pid) or 0, time.process_time()
            return {
                "p50_us": 1e6 * pct(wall, 50), "p99_us": 1e6 * pct(wall, 99), "n": n,
                "client_cpu_us": 1e6 * (c1 - c0) / n, "backend_cpu_us": 1e6 * (s1 - s0) / CLK_TCK / n,
            }

        n = args.beats
        counter = StatementCounter().install()
        before = counter.snapshot().get(threading.current_thread().name, 0)
        hb.run_once()
        trips = counter.snapshot().get(threading.current_thread().name, 0) - before
        out = {
            "round_trips_per_beat": trips,
            "heartbeat": timed(hb.run_once, backend, n),
            "floor_update": timed(raw_beat, raw_pid, n),
            "heartbeat_after_idle": timed(hb.run_once, backend, 40, gap=0.25),
            "floor_update_after_idle": timed(raw_beat, raw_pid, 40, gap=0.25),
        }
        raw.close()
        return out
    finally:
        db.dispose()
        cl.close()


# -- (e): the leader coordinator killed --------------------------------------------------------


def section_e(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    cl = Cluster(args.pg_url, args.redis_url, "e", logdir)
    try:
        def lease() -> Optional[tuple[str, int, int]]:
            rows = cl.rows("SELECT holder, expires_at, term FROM dbos.leader_lease WHERE name = 'coordinator'")
            return (rows[0][0], int(rows[0][1]), int(rows[0][2])) if rows else None

        def lease_not_held_by(holder: str) -> Optional[tuple[str, int, int]]:
            now = lease()
            return now if now is not None and now[0] != holder else None

        def pid_of(holder: str) -> int:
            return int(holder.rsplit("-", 2)[1])

        def started(name: str) -> bool:
            return "started" in cl.log_of(name)

        names = ["coord-0", "coord-1"]
        cl.start_coordinator(names[0])
        wait_for(lease, 20, "a leader")
        cl.start_coordinator(names[1])
        wait_for(lambda: "started" in cl.log_of(names[1]), 20, "the standby")
        time.sleep(1.5)
        takeovers: list[float] = []
        bounds: list[float] = []
        for r in range(args.rounds or 8):
            holder, _, term = lease() or ("", 0, 0)
            by_pid = {cl.procs[n].pid: n for n in names}
            leader = by_pid[pid_of(holder)]
            # Kill at a random point of the leader's renewal cycle.
            time.sleep(secrets.randbelow(1000) / 1000)
            holder, expires, term = lease() or ("", 0, 0)
            t0 = time.time()
            os.kill(cl.procs[leader].pid, signal.SIGKILL)
            new = wait_for(functools.partial(lease_not_held_by, holder), 15, "the standby taking the lease",
                           interval=0.002)
            took = time.time() - t0
            assert new[2] == term + 1, (new, term)
            takeovers.append(took)
            bounds.append(expires / 1000 - t0)
            log(f"e {r + 1}: standby leader after {took:.2f} s (lease expired {bounds[-1]:.2f} s after the kill)")
            cl.procs[leader].wait(10)
            replacement = f"coord-{r + 2}"
            names = [n for n in names if n != leader] + [replacement]
            # At a random point of the new leader's renewal cycle (it began at the takeover).
            time.sleep(secrets.randbelow(1000) / 1000)
            cl.start_coordinator(replacement)
            wait_for(functools.partial(started, replacement), 20, "the new standby")
            time.sleep(1.5)
        over = [t - b for t, b in zip(takeovers, bounds)]
        return {
            "rounds": len(takeovers),
            "takeover_s": {"p50": pct(takeovers, 50), "p99": pct(takeovers, 99), "max": max(takeovers)},
            "lease_expiry_s": {"p50": pct(bounds, 50), "max": max(bounds)},
            "after_expiry_s": {"p50": pct(over, 50), "max": max(over)},
        }
    finally:
        cl.close()


# -- (g): a small chaos run --------------------------------------------------------------------


def _error_text(data: Any) -> str:
    from dbos._execution.serialization import deserialize_error

    try:
        error = deserialize_error(bytes(data) if data is not None else None)
    except Exception as e:  # the recorded error is what matters, not this decoding
        return f"(undecodable: {e})"
    return f"{type(error).__name__}: {error}" if error is not None else ""


def section_g(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    """Four workers, ``--chaos-n`` five-step workflows (one step a transaction) on a
    queue of 5 per worker, a random busy worker SIGKILLed every 2 s (for at most
    ``--chaos-kill-s``) and replaced under a new ID, a coordinator at its defaults;
    then up to 90 s for the rest. Lost: not SUCCESS at the end."""
    import random

    cl = Cluster(args.pg_url, args.redis_url, "g", logdir)
    try:
        cl.conn.execute("CREATE TABLE bench_fleet_tx (workflow_id text, executor_id text)")
        app_db = {"DBOS_APPLICATION_DATABASE_URL": cl.url}
        serial = iter(range(10_000))
        live = [f"chaos-{next(serial)}" for _ in range(4)]
        for vmid in live:
            cl.start_worker(vmid, "--queues", "bench_chaos", env=app_db)
        cl.start_coordinator("coordinator")
        cl.wait_running(live, timeout=120)
        n = args.chaos_n
        ids = [f"chaos-wf-{i:05d}" for i in range(n)]
        client = cl.client
        for workflow_id in ids:
            client.enqueue({"queue_name": "bench_chaos", "workflow_name": "chaos_flow", "workflow_id": workflow_id,
                            "app_version": VERSION})
        t_start = time.time()
        kills: list[tuple[str, float, list[str]]] = []  # victim, kill time, the work it owned
        next_kill = time.monotonic() + 2.0
        stop_killing = time.monotonic() + args.chaos_kill_s
        deadline = stop_killing + 90  # then the survivors finish what is left

        def done() -> int:
            return int(cl.rows("SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE 'chaos-wf-%%' "
                               "AND status = 'SUCCESS'")[0][0])

        finished = 0
        done_while_killing: Optional[int] = None
        while time.monotonic() < deadline:
            finished = done()
            if finished == n:
                break
            # A worker that runs something: one still starting (or not yet claiming) would
            # be killed before it ever helped, and on a loaded machine the fleet starves.
            busy = {r[0] for r in cl.rows(
                "SELECT e.executor_id FROM dbos.executors e WHERE e.state = 'RUNNING' AND EXISTS (SELECT 1 FROM "
                "dbos.workflow_status w WHERE w.executor_id = e.executor_id AND w.status = 'PENDING')")}
            candidates = [v for v in live if v in busy]
            if time.monotonic() >= stop_killing and done_while_killing is None:
                done_while_killing = finished
            if time.monotonic() >= next_kill and candidates and time.monotonic() < stop_killing:
                victim = random.choice(candidates)
                owned = [r[0] for r in cl.rows("SELECT workflow_uuid FROM dbos.workflow_status WHERE executor_id = %s"
                                               " AND status = 'PENDING'", (victim,))]
                t_kill = time.time()
                os.kill(cl.procs[victim].pid, signal.SIGKILL)
                cl.procs[victim].wait(10)
                kills.append((victim, t_kill, owned))
                replacement = f"chaos-{next(serial)}"
                live = [v for v in live if v != victim] + [replacement]
                cl.start_worker(replacement, "--queues", "bench_chaos", env=app_db)
                log(f"g: killed {victim} ({len(owned)} workflows), {finished}/{n} done")
                next_kill = time.monotonic() + 2.0
            time.sleep(0.05)
        t_end = time.time()
        last_done = cl.rows("SELECT max(updated_at) FROM dbos.workflow_status WHERE workflow_uuid LIKE 'chaos-wf-%%'")
        elapsed = (int(last_done[0][0]) / 1000 if finished == n else t_end) - t_start
        tx = dict(cl.rows("SELECT workflow_id, count(*) FROM bench_fleet_tx GROUP BY workflow_id"))
        statuses = dict(cl.rows("SELECT status, count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE "
                                "'chaos-wf-%%' GROUP BY status"))
        succeeded = {r[0] for r in cl.rows("SELECT workflow_uuid FROM dbos.workflow_status WHERE workflow_uuid "
                                           "LIKE 'chaos-wf-%%' AND status = 'SUCCESS'")}
        step_runs = cl.rows("SELECT workflow_id, seq, count(*) FROM bench_fleet_steps WHERE workflow_id LIKE "
                            "'chaos-wf-%%' GROUP BY workflow_id, seq HAVING count(*) > 1")
        handovers: list[float] = []
        unresumed = 0
        for victim, t_kill, owned in kills:
            if not owned:
                continue
            resumed = cl.resumed_at(owned, victim, t_kill)
            for workflow_id in owned:
                if workflow_id in resumed:
                    handovers.append(resumed[workflow_id][0] - t_kill)
                elif workflow_id not in tx or workflow_id not in succeeded:
                    unresumed += 1
        failed = []
        for workflow_id, status, error, attempts, executor in cl.rows(
            "SELECT workflow_uuid, status, error, recovery_attempts, executor_id FROM dbos.workflow_status "
            "WHERE workflow_uuid LIKE 'chaos-wf-%%' AND status NOT IN ('SUCCESS', 'ENQUEUED', 'PENDING') LIMIT 5"
        ):
            failed.append({"workflow_id": workflow_id, "status": status, "recovery_attempts": attempts,
                           "executor_id": executor, "error": _error_text(error)})
        # What the coordinator measured: a dead executor's last heartbeat -> its work released.
        released = [float(ln.split(" s after its last heartbeat")[0].rsplit(" ", 1)[1])
                    for ln in cl.log_of("coordinator").splitlines() if "s after its last heartbeat" in ln]
        return {
            "released_after_heartbeat_s": {"p50": pct(released, 50), "p99": pct(released, 99), "n": len(released)}
            if released else None,
            "failed": failed,
            "workflows": n,
            "done_while_killing": finished if done_while_killing is None else done_while_killing,
            "kills": len(kills),
            "elapsed_s": elapsed,
            "workflows_per_s": finished / elapsed if elapsed > 0 else 0.0,
            "statuses": statuses,
            "lost": n - finished,
            "tx_missing": sum(1 for w in succeeded if tx.get(w, 0) == 0),
            "tx_duplicated": sum(1 for c in tx.values() if c > 1),
            "step_reruns": len(step_runs),
            "handed_over": len(handovers),
            "handover_s": {"p50": pct(handovers, 50), "p99": pct(handovers, 99), "max": max(handovers)}
            if handovers else None,
            "owned_not_resumed": unresumed,
        }
    finally:
        cl.close()


# -- report ----------------------------------------------------------------------------------


def section_h(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    """(h) work pinned to a version no executor runs -> the coordinator's local launcher
    starts one -> its first step. Each round a fresh version, so a fresh launch."""
    rounds = args.rounds or 6
    cl = Cluster(args.pg_url, args.redis_url, "h", logdir)
    decided: list[float] = []
    startup: list[float] = []
    after_startup: list[float] = []
    total: list[float] = []
    try:
        cmd = f"{BIN / 'dbos-worker'} {APP} --exit-when-idle 1 --drain-timeout 1"
        env = cl._env()
        env["FLEET_BENCH_SIDE"] = cl.url  # the launched workers inherit it: their steps are recorded
        cl._spawn("coordinator", [str(BIN / "dbos-coordinator"), "--db-url", cl.url, "--redis-url", cl.redis_url,
                                  "--launcher", "local", "--worker-cmd", cmd, "--launch-log-dir", str(logdir)], env)
        wait_for(lambda: "started:" in cl.log_of("coordinator") or None, 30, "the coordinator")
        for r in range(rounds):
            version = f"bench-launch-{r}-{secrets.token_hex(2)}"
            wid = f"h-{r}-{secrets.token_hex(3)}"
            time.sleep((r % 4) * 0.25)  # spread the enqueues over the coordinator's 1 s tick
            appeared = time.time()
            cl.client.enqueue({"queue_name": QUEUE, "workflow_name": "ticks", "workflow_id": wid,
                               "app_version": version}, 1)

            def first_step(wid: str = wid) -> Optional[float]:
                cl.check_alive("coordinator")
                rows = cl.rows("SELECT min(at) FROM bench_fleet_steps WHERE workflow_id = %s", (wid,))
                return float(rows[0][0]) if rows and rows[0][0] is not None else None

            step_at = wait_for(first_step, 60, f"the first step of {wid} on a launched worker", interval=0.02)
            launch = cl.rows("SELECT started_at, executor_id FROM dbos.launches WHERE app_version = %s", (version,))
            registered = cl.rows("SELECT started_at FROM dbos.executors WHERE executor_id = %s", (launch[0][1],))
            launched_at, registered_at = launch[0][0] / 1000, registered[0][0] / 1000
            decided.append(launched_at - appeared)
            startup.append(registered_at - launched_at)
            after_startup.append(step_at - registered_at)
            total.append(step_at - appeared)
            log(f"  round {r}: decided {decided[-1]:.2f} s, worker start-up {startup[-1]:.2f} s, "
                f"first step {after_startup[-1]:.2f} s after it registered ({total[-1]:.2f} s in all)")
    finally:
        cl.close()

    def stats(xs: list[float]) -> dict[str, float]:
        return {"p50": pct(xs, 50), "max": max(xs)}

    return {"rounds": rounds, "decided_s": stats(decided), "startup_s": stats(startup),
            "after_startup_s": stats(after_startup), "total_s": stats(total)}


def report(name: str, s: dict[str, Any]) -> None:
    def ms(x: float) -> str:
        return f"{x * 1000:.0f} ms"

    print(f"\n{name}")
    if name.startswith("(a)"):
        f = s["floor_s"]
        p50 = s["every_s"]["p50"]
        print(f"  rounds: {s['rounds']} drains x {s['workflows_per_round']} workflows (2 direct, 2 queued); "
              f"{s['retried_rounds']} run again (the victim had not claimed its queued work in time)")
        print(f"  SIGTERM -> every handed-back workflow resumed elsewhere: p50 {ms(p50)}, p99 {ms(s['every_s']['p99'])}"
              f", max {ms(s['every_s']['max'])}   target p50 <= 1 s: {verdict(p50, TARGETS['a_drain_p50_s'])}")
        print(f"  SIGTERM -> the first resumed: p50 {ms(s['first_s']['p50'])}, p99 {ms(s['first_s']['p99'])}")
        print(f"  per workflow: p50 {ms(s['per_workflow_s']['p50'])}, p99 {ms(s['per_workflow_s']['p99'])}")
        print(f"  floor (release commit + Redis hop + claim commit): {f['handback'] * 1000:.2f} ms "
              f"(insert {f['insert'] * 1000:.3f} ms, hop {f['redis_hop'] * 1000:.3f} ms) "
              f"-> every-resumed p50 = {p50 / f['handback']:.1f}x floor")
        print(f"  victim exit after SIGTERM: p50 {ms(s['exit_s']['p50'])}, max {ms(s['exit_s']['max'])}, "
              f"exit codes {s['exit_codes']}")
    elif name.startswith("(d)"):
        first, b = s["first_s"], s["lower_bound_s"]
        print(f"  rounds: {s['rounds']} kills x {s['workflows_per_round']} workflows (2 direct, 2 queued); "
              f"{s['retried_rounds']} run again (the victim had not claimed its queued work in time)")
        print(f"  SIGKILL -> first resumed step elsewhere: p50 {first['p50']:.2f} s, p99 {first['p99']:.2f} s, "
              f"max {first['max']:.2f} s   target p50 <= 4 s: {verdict(first['p50'], TARGETS['d_kill_p50_s'])}, "
              f"p99 <= 6 s: {verdict(first['p99'], TARGETS['d_kill_p99_s'])}")
        print(f"  SIGKILL -> every workflow resumed: p50 {s['every_s']['p50']:.2f} s, p99 {s['every_s']['p99']:.2f} s")
        print(f"  floor (last heartbeat + dead-after - kill): p50 {b['p50']:.2f} s (min {b['min']:.2f}, "
              f"max {b['max']:.2f}) -> first resumed p50 = {s['first_x_bound']['p50']:.2f}x floor")
        o = s["first_over_bound_s"]
        print(f"  first resumed - floor (scan phase + hand-over + claim): p50 {ms(o['p50'])}, p99 {ms(o['p99'])}")
    elif name.startswith("(b)"):
        fl = s["floor"]["server_cpu_pct"]
        for key, title in (("fleet", f"{s['workers']} idle workers"),
                           ("with_coordinator", f"{s['workers']} idle workers + 1 coordinator")):
            w = s[key]
            print(f"  {title} ({w['wall_s']:.0f} s window, {w['backends']} backends):")
            print(f"    PostgreSQL CPU, the database's backends: {w['pg_cpu_pct']:.2f}% of one core   "
                  f"target < 5%: {verdict(w['pg_cpu_pct'], TARGETS['b_pg_cpu_pct'])}")
            print(f"    server's own processes: {w['server_cpu_pct']:.2f}% (idle floor {fl:.2f}%)")
            print(f"    the database's backends = {w['pg_cpu_pct'] / fl if fl else float('inf'):.2f}x the floor "
                  "(the idle server's own processes, before the fleet)")
            rp = w["round_trips_per_process"]
            print(f"    statements/s (counted in each process): {w['round_trips_per_s']:.1f}, per process "
                  f"{rp['min']:.2f}..{rp['max']:.2f}; transactions/s (pg_stat_database): {w['xacts_per_s']:.1f}")
            print(f"    by thread: {w['round_trips_by_thread']}")
            c = w["client_cpu_pct"]
            print(f"    process CPU: mean {c['mean']:.2f}%, max {c['max']:.2f}% of one core ({c['processes']} processes)")
    elif name.startswith("(c)"):
        h, f = s["heartbeat"], s["floor_update"]
        hi, fi = s["heartbeat_after_idle"], s["floor_update_after_idle"]
        print(f"  statements per heartbeat: {s['round_trips_per_beat']}")
        print(f"  heartbeat, back to back (n={h['n']}): p50 {h['p50_us']:.0f} us, p99 {h['p99_us']:.0f} us "
              f"= {h['p50_us'] / f['p50_us']:.2f}x floor; client CPU {h['client_cpu_us']:.0f} us, "
              f"backend CPU {h['backend_cpu_us']:.0f} us")
        print(f"  floor: raw 1-row UPDATE, autocommit: p50 {f['p50_us']:.0f} us, p99 {f['p99_us']:.0f} us; "
              f"client CPU {f['client_cpu_us']:.0f} us, backend CPU {f['backend_cpu_us']:.0f} us")
        print(f"  after 0.25 s idle (n={hi['n']}): heartbeat p50 {hi['p50_us']:.0f} us, floor {fi['p50_us']:.0f} us "
              f"= {hi['p50_us'] / fi['p50_us']:.2f}x")
        print(f"  at 1 beat/s: {s['round_trips_per_beat']} statement(s)/s per worker; "
              f"{(h['client_cpu_us'] + h['backend_cpu_us']) / 1e4:.3f}% of one core (client + backend)")
    elif name.startswith("(e)"):
        t = s["takeover_s"]
        print(f"  rounds: {s['rounds']}")
        print(f"  leader SIGKILL -> standby holds the lease (new term): p50 {t['p50']:.2f} s, p99 {t['p99']:.2f} s, "
              f"max {t['max']:.2f} s   target <= 5 s: {verdict(t['max'], TARGETS['e_takeover_s'])} (max)")
        print(f"  floor (the killed leader's lease expiry - kill): p50 {s['lease_expiry_s']['p50']:.2f} s, "
              f"max {s['lease_expiry_s']['max']:.2f} s -> takeover p50 = "
              f"{t['p50'] / s['lease_expiry_s']['p50']:.2f}x; after expiry p50 {ms(s['after_expiry_s']['p50'])}")
    elif name.startswith("(g)"):
        h = s["handover_s"] or {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
        print(f"  {s['workflows']} workflows of 5 steps (one a transaction), 4 workers, {s['kills']} SIGKILLs "
              f"(one every 2 s, each replaced under a new ID; {s['done_while_killing']} finished while killing)")
        print(f"  throughput {s['workflows_per_s']:.1f} workflows/s ({s['elapsed_s']:.1f} s); statuses {s['statuses']}")
        print(f"  lost {s['lost']}; transaction effects duplicated {s['tx_duplicated']}, missing {s['tx_missing']}; "
              f"steps run more than once {s['step_reruns']} (in-flight at a kill: allowed)")
        print(f"  kill -> resumed elsewhere, over {s['handed_over']} handed-over workflows: p50 {h['p50']:.2f} s, "
              f"p99 {h['p99']:.2f} s, max {h['max']:.2f} s (includes waiting for a free slot of the queue)")
        for f in s["failed"]:
            print(f"  NOT SUCCESS: {f['workflow_id']} {f['status']} (recovery_attempts {f['recovery_attempts']}, "
                  f"executor {f['executor_id']}): {f['error'][:300]}")
        r = s["released_after_heartbeat_s"]
        if r:
            print(f"  coordinator's own figure, last heartbeat -> released, over {r['n']} hand-overs: "
                  f"p50 {r['p50']:.1f} s, p99 {r['p99']:.1f} s")
    elif name.startswith("(h)"):
        d, st, a, t = s["decided_s"], s["startup_s"], s["after_startup_s"], s["total_s"]
        print(f"  rounds: {s['rounds']} (a fresh version each)")
        print(f"  work appears -> launch decided: p50 {d['p50']:.2f} s, max {d['max']:.2f} s   target <= 1 s: "
              f"{verdict(d['p50'], TARGETS['h_decided_s'])} (p50)")
        print(f"  launched worker's start-up (launch -> registered), the floor: p50 {st['p50']:.2f} s, "
              f"max {st['max']:.2f} s")
        print(f"  registered -> first step: p50 {a['p50']:.2f} s, max {a['max']:.2f} s   target <= 1 s after "
              f"start-up: {verdict(a['p50'], TARGETS['h_after_startup_s'])} (p50)")
        print(f"  in all, work appears -> first step: p50 {t['p50']:.2f} s, max {t['max']:.2f} s "
              f"= start-up floor + {t['p50'] - st['p50']:.2f} s")
    elif name.startswith("(f)"):
        fl = s["floor"]["server_cpu_pct"]
        for key, title in (("leader", "one idle coordinator (leader)"), ("leader_and_standby", "leader + standby")):
            w = s[key]
            rp = w["round_trips_per_process"]
            print(f"  {title} ({w['wall_s']:.0f} s, {w['backends']} backends):")
            print(f"    PostgreSQL CPU, the database's backends: {w['pg_cpu_pct']:.2f}% of one core; server's own "
                  f"processes {w['server_cpu_pct']:.2f}% (idle floor {fl:.2f}%)")
            print(f"    statements/s {w['round_trips_per_s']:.1f} "
                  f"(per process {rp['min']:.1f}..{rp['max']:.1f}), by thread {w['round_trips_by_thread']}; "
                  f"transactions/s (pg_stat_database) {w['xacts_per_s']:.1f}")
            print(f"    coordinator process CPU: mean {w['client_cpu_pct']['mean']:.2f}%, "
                  f"max {w['client_cpu_pct']['max']:.2f}% of one core")


SECTIONS: dict[str, tuple[str, Callable[[argparse.Namespace, Path], dict[str, Any]]]] = {
    "a": ("(a) drain: SIGTERM -> handed-back work resumed elsewhere", section_a),
    "b": ("(b) an idle fleet", section_b),
    "c": ("(c) one heartbeat", section_c),
    "d": ("(d) SIGKILL a worker -> first resumed step elsewhere (coordinator at defaults)", section_d),
    "e": ("(e) leader coordinator SIGKILL -> standby leading", section_e),
    "f": ("(f) an idle coordinator's cost", section_f),
    "g": ("(g) a small chaos run", section_g),
    "h": ("(h) waiting work of a version with no executor -> launched worker's first step", section_h),
}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default=os.environ.get("DBOS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="a server on which this script may create and drop databases")
    p.add_argument("--redis-url", default=os.environ.get("DBOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--only", default="a,b,c,d,e,f,g,h", help="comma-separated sections (default: all)")
    p.add_argument("--rounds", type=int, default=None, help="drains, kills or leader kills per section "
                   "(default a 12, d 20, e 8)")
    p.add_argument("--window", type=float, default=30.0, help="seconds of each idle measurement (b, f)")
    p.add_argument("--workers", type=int, default=20, help="idle workers in (b)")
    p.add_argument("--beats", type=int, default=2000, help="heartbeats timed in (c)")
    p.add_argument("--chaos-n", type=int, default=300, help="workflows of the chaos run (g)")
    p.add_argument("--chaos-kill-s", type=float, default=60.0,
                   help="(g) kills for at most this long, then lets the fleet finish (default 60)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--logs", metavar="DIR", help="keep the processes' logs here (default: a temporary directory)")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "unknown"
    result: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "commit": head,
        "targets": TARGETS,
    }
    print(f"dbos fleet benchmark  {result['date']}  {result['cpus']} CPUs  commit {head}  load {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_fleet_") as tmp:
        logdir = Path(args.logs) if args.logs else Path(tmp)
        logdir.mkdir(parents=True, exist_ok=True)
        for key in only:
            title, fn = SECTIONS[key]
            before = load()
            log(f"{title} (load {before})")
            t0 = time.monotonic()
            s = fn(args, logdir)
            s["load_before"], s["load_after"], s["runtime_s"] = before, load(), round(time.monotonic() - t0, 1)
            result[key] = s
            report(title, s)
            print(f"  load {before} -> {s['load_after']} (1/5/15 min), {s['runtime_s']} s", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2, default=lambda o: sorted(o) if isinstance(o, set) else str(o))
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
