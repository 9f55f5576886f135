"""Retention under load (issue 16): garbage-collect a big history while executors drain a queue.

What it does, on a fresh database ``bench_retention_<random>`` (dropped at the end):

1. history: ``--rows`` finished (SUCCESS) workflows, 30 days old, each with two
   recorded steps, inserted with ``INSERT ... SELECT generate_series``; plus 1,000
   *live* old rows (500 ENQUEUED on a queue nobody serves, 500 PENDING owned by an
   executor that no longer runs): garbage collection must leave every one of them.
   Then VACUUM ANALYZE and CHECKPOINT, as a long-lived table would be.
2. ``--executors`` (4) executor processes of this file drain the queue ``ret_drain``
   (workflows of two steps); a feeder keeps ~4,000 rows ENQUEUED, so the
   executors never run dry. Each executor counts the workflows it finished.
3. phase A, ``--phase-sec`` seconds: throughput without garbage collection.
4. phase B: ``garbage_collect(rows_threshold=--keep)`` as the coordinator's
   leader runs it (``retention.collect``, batches of ``--batch``, ``--pause`` between
   them); throughput meanwhile. A sampler polls ``pg_stat_activity`` every 5 ms for
   any backend waiting on a lock and records how long it waited and who blocked it.
5. checks: every live old row is still there, every drained workflow is still there
   (they are newer than the cutoff), the rows left are about ``--keep`` + the drain.

Usage::

    .venv/bin/python bench/retention.py                        # 1,000,000 rows, keep 100,000
    .venv/bin/python bench/retention.py --rows 300000 --keep 30000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import psycopg

from dbos import DBOS, Queue

VERSION = "bench-retention"
QUEUE = "ret_drain"
PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
COUNT_EVERY = 0.25  # how often an executor writes its finished count


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the executors ------------------------------------------------------------------------

_done = [0]
_done_lock = threading.Lock()


@DBOS.step()
def ret_work(i: int) -> int:
    return i + 1


@DBOS.workflow(name="drain_job")
def drain_job() -> int:
    n = ret_work(1) + ret_work(2)
    with _done_lock:
        _done[0] += 1
    return n


def worker_main(spec: dict[str, Any]) -> int:
    Queue(QUEUE, polling_interval_sec=0.1)  # declared here: the driver process must claim nothing
    DBOS(config={"name": "bench-retention", "system_database_url": spec["db"], "log_level": "WARNING",
                 "sys_db_pool_size": spec["pool"], "application_version": VERSION})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    DBOS.launch()
    out = Path(spec["dir"]) / f"done-{os.environ['DBOS__VMID']}"
    while not stop.is_set():
        with _done_lock:
            n = _done[0]
        out.write_text(f"{time.time()} {n}")
        stop.wait(COUNT_EVERY)
    DBOS.destroy()
    return 0


class Executors:
    def __init__(self, db_url: str, count: int, pool: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-retention-"))
        self.vmids = [f"ret-{i}" for i in range(count)]
        spec = json.dumps({"db": db_url, "dir": str(self.dir), "pool": pool})
        self.procs = []
        for vmid in self.vmids:
            env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
            env.update(DBOS__VMID=vmid, DBOS__APPVERSION=VERSION)
            out = open(self.dir / f"{vmid}.log", "ab")
            self.procs.append(subprocess.Popen([sys.executable, __file__, "--worker", spec], env=env,
                                               stdout=out, stderr=subprocess.STDOUT))

    def done(self) -> int:
        total = 0
        for vmid in self.vmids:
            path = self.dir / f"done-{vmid}"
            if path.exists():
                text = path.read_text().split()
                total += int(text[1]) if len(text) == 2 else 0
        return total

    def check(self) -> None:
        for vmid, p in zip(self.vmids, self.procs):
            if p.poll() is not None:
                raise RuntimeError(f"executor {vmid} exited: {(self.dir / f'{vmid}.log').read_text()[-3000:]}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


# -- the driver -----------------------------------------------------------------------------


class Feeder(threading.Thread):
    """Keeps the queue backlogged with raw inserts (what an enqueue writes)."""

    def __init__(self, conninfo: str, inputs: bytes) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.conn.execute("SET search_path TO dbos")
        self.inputs = inputs
        self.fed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            row = self.conn.execute(
                "SELECT count(*) FROM workflow_status WHERE queue_name = %s AND status = 'ENQUEUED'", (QUEUE,)
            ).fetchone()
            if row is not None and row[0] < 4000:
                now = int(time.time() * 1000)
                self.conn.execute(
                    """INSERT INTO workflow_status (workflow_uuid, status, name, application_version, created_at,
                           updated_at, recovery_attempts, queue_name, priority, inputs)
                       SELECT 'drain-' || g, 'ENQUEUED', 'drain_job', %(v)s, %(now)s, %(now)s, 0, %(q)s, 0, %(inp)s
                       FROM generate_series(%(a)s::bigint, %(b)s::bigint) AS g""",
                    {"v": VERSION, "now": now, "q": QUEUE, "inp": self.inputs, "a": self.fed, "b": self.fed + 3999},
                )
                self.fed += 4000
            self.stop.wait(0.2)
        self.conn.close()


class LockSampler(threading.Thread):
    """Every 5 ms: the backends of this database waiting on a lock, how long, and who blocks them."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.stop = threading.Event()
        self.waits: dict[tuple[int, Any], dict[str, Any]] = {}  # (pid, wait start) -> worst seen
        self.samples = 0

    def run(self) -> None:
        while not self.stop.is_set():
            rows = self.conn.execute(
                """SELECT a.pid, a.state_change, a.application_name, a.wait_event,
                          extract(epoch FROM clock_timestamp() - a.state_change) * 1000,
                          (SELECT string_agg(b.application_name, ',') FROM pg_stat_activity b
                           WHERE b.pid = ANY (pg_blocking_pids(a.pid))), left(a.query, 80)
                   FROM pg_stat_activity a
                   WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'"""
            ).fetchall()
            self.samples += 1
            for pid, since, app, event, ms, blockers, query in rows:
                key = (pid, since)
                seen = self.waits.get(key)
                if seen is None or ms > seen["ms"]:
                    self.waits[key] = {"ms": float(ms), "app": app, "event": event, "blocked_by": blockers or "",
                                       "query": query}
            time.sleep(0.005)
        self.conn.close()

    def summary(self) -> dict[str, Any]:
        waits = list(self.waits.values())
        by_gc = [w for w in waits if "dbos-gc" in w["blocked_by"]]
        executors = [w for w in waits if w["app"] == "dbos"]  # the executors' claims and checkpoints
        return {
            "samples": self.samples,
            "lock_waits_seen": len(waits),
            "max_lock_wait_ms": round(max((w["ms"] for w in waits), default=0.0), 2),
            "lock_waits_blocked_by_gc": len(by_gc),
            "max_wait_on_gc_ms": round(max((w["ms"] for w in by_gc), default=0.0), 2),
            "executor_lock_waits": len(executors),
            "executor_max_wait_ms": round(max((w["ms"] for w in executors), default=0.0), 2),
            "executor_waits_by_event": {e: sum(1 for w in executors if w["event"] == e)
                                        for e in sorted({w["event"] for w in executors})},
            "worst": sorted(waits, key=lambda w: -w["ms"])[:3],
        }


def rate(executors: Executors, seconds: float) -> float:
    n0, t0 = executors.done(), time.time()
    time.sleep(seconds)
    executors.check()
    return (executors.done() - n0) / (time.time() - t0)


def insert_history(sql: psycopg.Connection[Any], rows: int) -> float:
    t0 = time.perf_counter()
    since = int(time.time() * 1000) - 30 * 86_400_000
    sql.execute(
        """INSERT INTO workflow_status (workflow_uuid, status, name, executor_id, application_version,
               created_at, updated_at, started_at, recovery_attempts, queue_name, priority, inputs, output)
           SELECT 'hist-' || g, 'SUCCESS', 'drain_job', 'old-executor', %(v)s, %(since)s + g, %(since)s + g + 5,
               %(since)s + g + 1, 1, %(q)s, 0, '\\x80054b012e'::bytea, '\\x80054b032e'::bytea
           FROM generate_series(1, %(rows)s) AS g""",
        {"rows": rows, "since": since, "v": VERSION, "q": QUEUE},
    )
    sql.execute(
        """INSERT INTO operation_outputs (workflow_uuid, function_id, function_name, output, started_at, completed_at)
           SELECT 'hist-' || g, f, 'ret_work', '\\x80054b022e'::bytea, %(since)s + g, %(since)s + g + 1
           FROM generate_series(1, %(rows)s) AS g, generate_series(1, 2) AS f""",
        {"rows": rows, "since": since},
    )
    # Live rows older than anything else: the collection must never take them.
    sql.execute(
        """INSERT INTO workflow_status (workflow_uuid, status, name, executor_id, application_version,
               created_at, updated_at, recovery_attempts, queue_name, priority, inputs)
           SELECT 'live-' || g, CASE WHEN g %% 2 = 0 THEN 'ENQUEUED' ELSE 'PENDING' END, 'drain_job',
               CASE WHEN g %% 2 = 0 THEN NULL ELSE 'gone-executor' END, %(v)s, %(since)s - 1000 + g,
               %(since)s, 0, CASE WHEN g %% 2 = 0 THEN 'ret_parked' ELSE NULL END, 0, '\\x80054b012e'::bytea
           FROM generate_series(1, 1000) AS g""",
        {"since": since, "v": VERSION},
    )
    sql.execute("VACUUM (ANALYZE) workflow_status")
    sql.execute("VACUUM (ANALYZE) operation_outputs")
    sql.execute("CHECKPOINT")
    return time.perf_counter() - t0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--pg-url", default=PG_URL)
    p.add_argument("--rows", type=int, default=1_000_000, help="finished workflows of history")
    p.add_argument("--keep", type=int, default=100_000, help="rows_threshold of the collection")
    p.add_argument("--executors", type=int, default=4)
    p.add_argument("--pool", type=int, default=4, help="sys_db_pool_size of each executor")
    p.add_argument("--phase-sec", type=float, default=15.0, help="length of the no-GC phase")
    p.add_argument("--batch", type=int, default=500, help="workflows per GC transaction")
    p.add_argument("--pause", type=float, default=0.01, help="seconds between GC batches (the coordinator's)")
    p.add_argument("--duty", type=float, default=0.25, help="share of the time in GC batches (the coordinator's)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))

    from dbos._execution import retention
    from dbos._execution.serialization import serialize
    from dbos._storage import retention as store
    from dbos._storage.database import Database
    from dbos._storage.migrations import migrate_application, migrate_system

    name = f"bench_retention_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(args.pg_url, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    conninfo = args.pg_url.rsplit("/", 1)[0] + f"/{name}"
    db_url = "postgresql+psycopg://" + conninfo.split("://", 1)[1]
    r: dict[str, Any] = {"rows": args.rows, "keep": args.keep, "executors": args.executors, "batch": args.batch,
                         "pause_sec": args.pause, "duty": args.duty}
    executors: Optional[Executors] = None
    try:
        setup = Database(db_url, "dbos", 1)
        migrate_system(setup)
        migrate_application(setup)
        setup.dispose()
        sql = psycopg.connect(conninfo, autocommit=True)
        sql.execute("SET search_path TO dbos")
        log(f"inserting {args.rows:,} finished workflows (+{2 * args.rows:,} steps, 1,000 live old rows)")
        r["insert_s"] = round(insert_history(sql, args.rows), 1)
        log(f"  done in {r['insert_s']} s")

        feeder = Feeder(conninfo, serialize(((), {}), "inputs"))
        feeder.start()
        executors = Executors(db_url, args.executors, args.pool)
        log(f"{args.executors} executors draining {QUEUE}; warming up")
        deadline = time.time() + 60
        while executors.done() < 500:
            executors.check()
            if time.time() > deadline:
                raise RuntimeError("the executors did not start draining")
            time.sleep(0.2)
        time.sleep(2)
        r["throughput_without_gc"] = round(rate(executors, args.phase_sec), 1)
        log(f"phase A (no GC): {r['throughput_without_gc']} workflows/s")

        gc_db = Database(db_url, "dbos", 1, {"connect_args": {"application_name": "dbos-gc"}})
        sampler = LockSampler(conninfo)
        sampler.start()
        batches: list[float] = []
        result: list[Any] = []

        def collect() -> None:
            result.append(retention.collect(gc_db, gc_db, rows_threshold=args.keep, batch_size=args.batch,
                                            pause_sec=args.pause, duty=args.duty, on_batch=lambda n, s: batches.append(s)))

        gc = threading.Thread(target=collect)
        n0, t0 = executors.done(), time.time()
        gc.start()
        gc.join()
        gc_s = time.time() - t0
        r["throughput_during_gc"] = round((executors.done() - n0) / gc_s, 1)
        executors.check()
        sampler.stop.set()
        sampler.join()
        res = result[0]
        r["gc"] = {"deleted": res.deleted, "batches": res.batches, "seconds": round(res.seconds, 1),
                   "rows_per_s": round(res.deleted / max(res.seconds, 1e-9)),
                   "batch_p50_ms": round(sorted(batches)[len(batches) // 2] * 1000, 2) if batches else 0,
                   "batch_p99_ms": round(sorted(batches)[int(len(batches) * 0.99)] * 1000, 2) if batches else 0,
                   "batch_max_ms": round(max(batches) * 1000, 2) if batches else 0}
        r["locks"] = sampler.summary()
        r["throughput_ratio"] = round(r["throughput_during_gc"] / r["throughput_without_gc"], 3)
        log(f"phase B (GC): {r['throughput_during_gc']} workflows/s ({r['throughput_ratio']}x); gc {r['gc']}")
        log(f"  locks: {r['locks']}")
        r["throughput_after_gc"] = round(rate(executors, min(args.phase_sec, 10)), 1)
        log(f"after GC: {r['throughput_after_gc']} workflows/s")

        feeder.stop.set()
        feeder.join()
        executors.stop()
        executors = None
        def one(q: str) -> int:
            row = sql.execute(q.encode()).fetchone()
            return int(row[0]) if row is not None else 0

        r["checks"] = {
            "live_old_rows_left": one("SELECT count(*) FROM workflow_status WHERE workflow_uuid LIKE 'live-%'"),
            "drained_fed": feeder.fed,
            "drain_rows_left": one("SELECT count(*) FROM workflow_status WHERE workflow_uuid LIKE 'drain-%'"),
            "history_left": one("SELECT count(*) FROM workflow_status WHERE workflow_uuid LIKE 'hist-%'"),
            "orphan_steps": one("SELECT count(*) FROM operation_outputs o WHERE NOT EXISTS "
                                "(SELECT 1 FROM workflow_status w WHERE w.workflow_uuid = o.workflow_uuid)"),
            "cutoff_rows_now": one(f"SELECT count(*) FROM workflow_status WHERE created_at >= {res.cutoff_ms}"),
        }
        log(f"checks: {r['checks']}")
        ok = r["checks"]["live_old_rows_left"] == 1000 and r["checks"]["drain_rows_left"] == feeder.fed
        r["nothing_live_deleted"] = ok
        sql.close()
        gc_db.dispose()
        _ = store  # the storage module the collection uses (imported for the reader)
    finally:
        if executors is not None:
            executors.stop()
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    print(json.dumps(r, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
