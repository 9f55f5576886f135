"""Management benchmark (issue 5): list_workflows on 1,000,000 workflows, and
cancel-to-stopped latency across processes.

1. The floor: one single-row INSERT in autocommit on one raw psycopg connection
   (measured before and after the rest, in the same run); every figure is also
   shown as a ratio to it.
2. ``DBOS.list_workflows(limit=100, <filter>)`` for each filter of the reference
   (and ``list_queued_workflows``) on a ``workflow_status`` table of 1,000,000
   rows, inserted with one ``INSERT ... SELECT generate_series`` after
   ``DBOS.launch()`` migrated the schema, then ``ANALYZE``. p50 / p90 per filter.
   The plan's access path and the server's execution time are shown for each; the
   full ``EXPLAIN (ANALYZE, BUFFERS)`` for a filter whose SQL takes longer than
   ``--slow-ms`` (or all, with ``--explain``).
3. Cancel-to-stopped: a real executor process (tests/apps/mgmt_app.py, its own
   DBOS__VMID, Redis configured) runs a workflow sleeping in ``DBOS.sleep(60)``;
   this process calls ``DBOSClient.cancel_workflow`` and measures (a) until
   ``handle.get_result()`` raises here (status final) and (b) until the
   executor's workflow thread has actually left the sleep (a mark it writes in
   its ``finally``; same host, same clock). p50 over ``--cancels`` runs; also once
   without Redis for comparison (the executor then notices at its polling interval).

Usage::

    .venv/bin/python bench/management.py                  # ~2-4 minutes on a small VM
    .venv/bin/python bench/management.py --rows 200000 --cancels 10
    .venv/bin/python bench/management.py --explain        # every plan in full
    .venv/bin/python bench/management.py --pg-url postgresql://user@host:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/0

The script creates a database ``bench_mgmt_<random>`` on the server and drops it
at the end; it touches nothing else. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dbos import DBOS, DBOSAwaitedWorkflowCancelledError, DBOSClient  # noqa: E402

APP = ROOT / "tests" / "apps" / "mgmt_app.py"
BASE_MS = 1_700_000_000_000  # created_at of row 0
STEP_MS = 100  # one workflow every 100 ms: 1M rows span ~28 hours


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    k = max(0, min(len(s) - 1, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def with_db(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


# -- the floor ---------------------------------------------------------------------------


class Floor:
    """One single-row INSERT in autocommit on one raw psycopg connection."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq(url), autocommit=True)
        self.conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (k text, n integer, v bytea, PRIMARY KEY (k, n))")
        self.n = 0
        self.samples: list[float] = []

    def measure(self, count: int = 500) -> None:
        for _ in range(count):
            self.n += 1
            t = time.perf_counter()
            self.conn.execute("INSERT INTO bench_floor (k, n, v) VALUES (%s, %s, %s)", ("floor", self.n, b"x" * 64))
            self.samples.append(time.perf_counter() - t)

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    def close(self) -> None:
        self.conn.close()


# -- 1,000,000 workflows --------------------------------------------------------------------

_STATUS = (
    "CASE WHEN i % 100 < 90 THEN 'SUCCESS' WHEN i % 100 < 95 THEN 'ERROR' WHEN i % 100 < 98 THEN 'CANCELLED'"
    " WHEN i % 100 = 98 THEN 'PENDING' ELSE 'ENQUEUED' END"
)


def populate(url: str, rows: int) -> None:
    """One INSERT ... SELECT generate_series: varied names, users, versions, statuses, times."""
    inputs = pickle.dumps(((1, "x"), {"k": 2}))
    output = pickle.dumps({"result": 42})
    sql = f"""
    INSERT INTO dbos.workflow_status (
        workflow_uuid, status, name, authenticated_user, authenticated_roles, inputs, output,
        executor_id, application_version, application_id, created_at, updated_at, started_at,
        recovery_attempts, queue_name, priority)
    SELECT
        'wf-' || lpad(i::text, 7, '0'),
        {_STATUS},
        'bench.workflow_' || (i % 50),
        CASE WHEN i % 2 = 0 THEN 'user_' || (i % 1000) END,
        CASE WHEN i % 2 = 0 THEN '["reader"]' END,
        %(inputs)s,
        CASE WHEN i % 100 < 90 THEN %(output)s::bytea END,
        CASE WHEN i % 100 = 99 THEN NULL ELSE 'exec-' || (i % 8) END,
        'v' || (i % 10),
        '',
        {BASE_MS} + i::bigint * {STEP_MS},
        {BASE_MS} + i::bigint * {STEP_MS} + 50,
        CASE WHEN i % 100 = 99 THEN NULL ELSE {BASE_MS} + i::bigint * {STEP_MS} END,
        1,
        CASE WHEN i % 5 = 0 OR i % 100 >= 98 THEN 'bench_q' || ((i / 100) % 4) END,
        0
    FROM generate_series(0, %(last)s) AS i
    """
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        t = time.perf_counter()
        conn.execute(sql.replace("%", "%%").replace("%%(", "%("), {"inputs": inputs, "output": output, "last": rows - 1})
        log(f"  inserted {rows:,} workflows in {time.perf_counter() - t:.1f} s")
        # Skew, as after a deploy: the newest 0.1% run a new version of a new workflow.
        conn.execute(
            "UPDATE dbos.workflow_status SET application_version = 'v-new', name = 'bench.workflow_new'"
            " WHERE created_at >= %s", (BASE_MS + (rows - rows // 1000) * STEP_MS,)
        )
        t = time.perf_counter()
        conn.execute("ANALYZE dbos.workflow_status")
        log(f"  ANALYZE in {time.perf_counter() - t:.1f} s")


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def filters(rows: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, method, kwargs): every filter of the reference, one at a time, then combined."""
    rng = random.Random(7)
    ids = [f"wf-{i:07d}" for i in rng.sample(range(rows), 100)]
    end_ms = BASE_MS + (rows - 1) * STEP_MS
    mid_ms = BASE_MS + rows // 2 * STEP_MS
    narrow = f"wf-{(rows // 2) // 100:05d}"  # 100 IDs
    broad = f"wf-{(rows - 1) // 100_000:02d}"[:5]  # ~10% of the IDs, the newest
    return [
        ("no filter", "list_workflows", {}),
        ("sort_desc", "list_workflows", {"sort_desc": True}),
        ("workflow_ids (100 IDs)", "list_workflows", {"workflow_ids": ids}),
        ("status=ERROR (5%)", "list_workflows", {"status": "ERROR"}),
        ("status=ENQUEUED (1%)", "list_workflows", {"status": "ENQUEUED"}),
        ("status=[ERROR,CANCELLED] desc", "list_workflows", {"status": ["ERROR", "CANCELLED"], "sort_desc": True}),
        ("start_time (newest hour)", "list_workflows", {"start_time": iso(end_ms - 3_600_000)}),
        ("start_time (middle)", "list_workflows", {"start_time": iso(mid_ms)}),
        ("end_time (middle) desc", "list_workflows", {"end_time": iso(mid_ms), "sort_desc": True}),
        ("start+end (1-minute window)", "list_workflows",
         {"start_time": iso(mid_ms), "end_time": iso(mid_ms + 60_000)}),
        ("name (2%)", "list_workflows", {"name": "bench.workflow_7"}),
        ("app_version (10%)", "list_workflows", {"app_version": "v3"}),
        ("app_version (newest 0.1%)", "list_workflows", {"app_version": "v-new"}),
        ("name (newest 0.1%)", "list_workflows", {"name": "bench.workflow_new"}),
        ("user (0.1%)", "list_workflows", {"user": "user_42"}),
        ("workflow_id_prefix (100 IDs)", "list_workflows", {"workflow_id_prefix": narrow}),
        ("workflow_id_prefix (10%, newest)", "list_workflows", {"workflow_id_prefix": broad}),
        ("offset=10000", "list_workflows", {"offset": 10_000}),
        ("name+status+desc", "list_workflows", {"name": "bench.workflow_41", "status": "ERROR", "sort_desc": True}),
        ("user+start_time", "list_workflows", {"user": "user_42", "start_time": iso(mid_ms)}),
        ("app_version+name", "list_workflows", {"app_version": "v3", "name": "bench.workflow_13"}),
        ("queued: all", "list_queued_workflows", {}),
        ("queued: queue_name", "list_queued_workflows", {"queue_name": "bench_q1"}),
        ("queued: status=ENQUEUED", "list_queued_workflows", {"status": "ENQUEUED"}),
    ]


class StatementCapture:
    """The last SELECT on workflow_status this process sent (to EXPLAIN it)."""

    def __init__(self) -> None:
        self.last: Optional[tuple[str, Any]] = None
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._on)

    def _on(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "workflow_status" in statement:
            self.last = (statement, parameters)

    def close(self) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._on)


def explain(engine: sa.Engine, statement: str, parameters: Any) -> list[str]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).all()
    return [r[0] for r in rows]


def execution_ms(plan: list[str]) -> float:
    """The server's execution time of an EXPLAIN ANALYZE."""
    for line in plan:
        if line.strip().startswith("Execution Time:"):
            return float(line.split(":")[1].split()[0])
    return float("nan")


def access_path(plan: list[str]) -> str:
    """The scans of a plan, in one short line."""
    nodes = []
    for line in plan:
        text = line.strip().lstrip("->").strip()
        if "Scan" in text:
            nodes.append(text.split("  (")[0])
    return "; ".join(nodes) or plan[0].split("  (")[0]


def bench_listing(url: str, rows: int, runs: int, floor: Floor, slow_ms: float, show_all: bool) -> list[dict[str, Any]]:
    from dbos._api.instance import runtime

    engine = runtime().sys_db._reader
    capture = StatementCapture()
    results = []
    try:
        for label, method, kwargs in filters(rows):
            fn: Callable[..., Any] = getattr(DBOS, method)
            for _ in range(3):
                got = fn(limit=100, **kwargs)
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                got = fn(limit=100, **kwargs)
                samples.append(time.perf_counter() - t)
            assert capture.last is not None
            plan = explain(engine, *capture.last)
            p50 = statistics.median(samples)
            sql_ms = min(execution_ms(explain(engine, *capture.last)) for _ in range(3))
            results.append({
                "filter": label, "method": method, "rows": len(got), "p50_ms": p50 * 1000,
                "p90_ms": pct(samples, 90) * 1000, "x_floor": p50 / floor.p50, "path": access_path(plan),
                "sql_ms": sql_ms, "plan": plan, "slow": sql_ms > slow_ms, "show": show_all or sql_ms > slow_ms,
            })
            log(f"  {label:<36} {p50 * 1000:8.2f} ms  ({len(got)} rows)")
    finally:
        capture.close()
    return results


# -- cancel-to-stopped across processes ---------------------------------------------------------


def read_marks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.001) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def bench_cancel(url: str, redis_url: Optional[str], count: int, workdir: Path, vmid: str) -> dict[str, Any]:
    marks = workdir / f"marks-{vmid}.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    env.update(DBOS__VMID=vmid, DBOS__APPVERSION="bench")
    spec = {"db": url, "redis": redis_url, "marks": str(marks), "dir": str(workdir), "polling_interval_sec": 1.0}
    logf = open(workdir / f"{vmid}.log", "w")
    proc = subprocess.Popen([sys.executable, str(APP), json.dumps(spec)], env=env, stdout=logf, stderr=subprocess.STDOUT)
    client = DBOSClient(url, redis_url=redis_url, polling_interval_sec=1.0)
    status_lat: list[float] = []
    stopped_lat: list[float] = []
    try:
        if redis_url is not None:
            bridge = client.runtime.wakeups.bridge
            assert bridge is not None and bridge.connected.wait(10)
        wait_for(lambda: any(m["event"] == "ready" for m in read_marks(marks)) or proc.poll() is not None,
                 60, "the executor to start", 0.05)
        if proc.poll() is not None:
            raise RuntimeError(f"executor exited: {(workdir / f'{vmid}.log').read_text()}")
        for i in range(count):
            workflow_id = f"sleeper-{vmid}-{i}"
            client.enqueue({"workflow_name": "sleeper", "queue_name": "mgmt_fleet_q", "workflow_id": workflow_id}, 60.0)
            handle = client.retrieve_workflow(workflow_id)
            wait_for(lambda w=workflow_id: client.list_workflow_steps(w), 30, "the sleep to start", 0.01)
            time.sleep(0.05)
            t0 = time.time()
            client.cancel_workflow(workflow_id)
            try:
                handle.get_result()
                raise AssertionError("the cancelled workflow returned")
            except DBOSAwaitedWorkflowCancelledError:
                status_lat.append(time.time() - t0)
            stopped = wait_for(
                lambda w=workflow_id: [m for m in read_marks(marks) if m["event"] == "stopped" and m["wf"] == w],
                30, "the execution to stop",
            )
            stopped_lat.append(stopped[0]["t"] - t0)
            assert not [m for m in read_marks(marks) if m["event"] == "woke"], "a sleep ran to its end"
    finally:
        client.destroy()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()
    return {
        "samples": count,
        "status_p50_ms": statistics.median(status_lat) * 1000,
        "status_p90_ms": pct(status_lat, 90) * 1000,
        "stopped_p50_ms": statistics.median(stopped_lat) * 1000,
        "stopped_p90_ms": pct(stopped_lat, 90) * 1000,
        "stopped_max_ms": max(stopped_lat) * 1000,
    }


# -- main ----------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=25, help="timed calls per filter (after 3 warm-up calls)")
    p.add_argument("--cancels", type=int, default=20, help="cancellations measured with Redis")
    p.add_argument("--cancels-no-redis", type=int, default=8, help="cancellations measured without Redis (0: skip)")
    p.add_argument("--slow-ms", type=float, default=10.0,
                   help="flag, and print the full plan of, filters whose SQL executes slower than this")
    p.add_argument("--explain", action="store_true", help="print every plan in full")
    p.add_argument("--json", help="also write every figure to this file")
    args = p.parse_args()

    name = f"bench_mgmt_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(libpq(args.pg_url), autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = with_db(libpq(args.pg_url), name)
    log(f"database {name}")
    figures: dict[str, Any] = {"rows": args.rows}
    floor: Optional[Floor] = None
    try:
        floor = Floor(url)
        floor.measure()
        DBOS(config={"name": "bench-mgmt", "system_database_url": url, "application_version": "bench",
                     "executor_id": "bench-lister", "log_level": "WARNING"})
        DBOS.launch()  # migrates the schema
        log(f"inserting {args.rows:,} workflows ...")
        populate(url, args.rows)
        log("list_workflows(limit=100, ...):")
        listing = bench_listing(url, args.rows, args.runs, floor, args.slow_ms, args.explain)
        DBOS.destroy()
        with tempfile.TemporaryDirectory() as tmp:
            log(f"cancel-to-stopped, Redis, {args.cancels} runs ...")
            cancel_redis = bench_cancel(url, args.redis_url, args.cancels, Path(tmp), "bench-exec-redis")
            cancel_poll = None
            if args.cancels_no_redis:
                log(f"cancel-to-stopped, no Redis (executor polling 1 s), {args.cancels_no_redis} runs ...")
                cancel_poll = bench_cancel(url, None, args.cancels_no_redis, Path(tmp), "bench-exec-poll")
        floor.measure()
    finally:
        DBOS.destroy()
        if floor is not None:
            floor.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        log(f"dropped {name}")

    fl = floor.p50 * 1000
    version = psycopg.connect(libpq(args.pg_url)).info.server_version
    print(f"\nPostgreSQL {version // 10000}.{version % 10000}, {args.rows:,} workflows in dbos.workflow_status")
    print(f"floor (one single-row INSERT, autocommit, raw psycopg): p50 {fl:.3f} ms "
          f"(n={len(floor.samples)}, p90 {pct(floor.samples, 90) * 1000:.3f} ms)\n")
    print(f"{'list_workflows(limit=100, ...)':<38}{'rows':>5}{'p50 ms':>9}{'p90 ms':>9}{'x floor':>9}"
          f"{'SQL ms':>9}  access path (SQL ms: server execution time, best of 3 EXPLAIN ANALYZE)")
    for r in listing:
        flag = f"  SLOW (SQL > {args.slow_ms:g} ms)" if r["slow"] else ""
        print(f"{r['filter']:<38}{r['rows']:>5}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['x_floor']:>9.1f}"
              f"{r['sql_ms']:>9.2f}  {r['path']}{flag}")
    for r in listing:
        if r["show"]:
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) -- {r['filter']}")
            print("\n".join("    " + line for line in r["plan"]))
    print("\ncancel-to-stopped across processes (workflow sleeping in DBOS.sleep(60) in another executor)")
    print(f"{'':<44}{'runs':>5}{'p50 ms':>9}{'p90 ms':>9}{'max ms':>9}{'x floor':>9}")
    for label, c in (("Redis", cancel_redis), ("no Redis (polling 1 s)", cancel_poll)):
        if c is None:
            continue
        print(f"{label + ': status final here':<44}{c['samples']:>5}{c['status_p50_ms']:>9.1f}"
              f"{c['status_p90_ms']:>9.1f}{'':>9}{c['status_p50_ms'] / fl:>9.1f}")
        print(f"{label + ': execution stopped':<44}{c['samples']:>5}{c['stopped_p50_ms']:>9.1f}"
              f"{c['stopped_p90_ms']:>9.1f}{c['stopped_max_ms']:>9.1f}{c['stopped_p50_ms'] / fl:>9.1f}")
    figures.update(floor_p50_ms=fl, listing=[{k: v for k, v in r.items() if k not in ("plan", "show")} for r in listing],
                   cancel_redis=cancel_redis, cancel_no_redis=cancel_poll)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
