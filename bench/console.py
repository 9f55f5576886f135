"""Console page timings (issue 15): the JSON calls behind the workflows list and a
workflow's detail, on a ``workflow_status`` table of 1,000,000 finished workflows.

The rows come from bench/management.py's ``populate`` (one ``INSERT ... SELECT
generate_series``: 50 names, 10 versions, 8 executors, mostly SUCCESS, then
``ANALYZE``); one of them gets 30 recorded steps and 5 events. The console runs in
this process on a loopback port (``build_console`` on uvicorn, as ``dbos
console`` serves it) and each call is timed by its ``Server-Timing`` header: the
server's own time, from the request's arrival to its response, database included.

Target: the workflows list and a workflow's detail each under 200 ms (p90).

Usage::

    .venv/bin/python bench/console.py                 # ~1 minute: 1M rows, 30 requests per call
    .venv/bin/python bench/console.py --rows 200000 --requests 10
    .venv/bin/python bench/console.py --json figures.json --pg-url postgresql://u@h:5432/postgres

Creates a database ``bench_console_<random>`` and drops it at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from management import BASE_MS, STEP_MS, libpq, log, pct, populate, with_db  # noqa: E402

from dbos._api.console import Source, build_console  # noqa: E402
from dbos._api.http_thread import HTTPServerThread  # noqa: E402
from dbos._storage.database import Database  # noqa: E402
from dbos._storage.migrations import migrate_system  # noqa: E402

TARGET_MS = 200.0


def add_steps(url: str, workflow_id: str, steps: int) -> None:
    """Recorded steps and events for the detail page (its timeline and events table)."""
    out = pickle.dumps({"rows": list(range(20))})
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, started_at, "
            "completed_at) SELECT %s, i, 'bench.step_' || i, %s, %s + i * 40, %s + i * 40 + 35 "
            "FROM generate_series(1, %s) AS i", (workflow_id, out, BASE_MS, BASE_MS, steps))
        for k in range(5):
            conn.execute("INSERT INTO dbos.workflow_events (workflow_uuid, key, value, updated_at) "
                         "VALUES (%s, %s, %s, %s)", (workflow_id, f"event-{k}", pickle.dumps(k), BASE_MS))


def timed(http: httpx.Client, path: str, n: int) -> dict[str, Any]:
    http.get(path)  # warm: the first call pays for connections and plans
    samples, total = [], []
    for _ in range(n):
        t = time.perf_counter()
        r = http.get(path)
        total.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        samples.append(float(r.headers["server-timing"].split("dur=", 1)[1]))
    return {"path": path, "p50_ms": round(pct(samples, 50), 1), "p90_ms": round(pct(samples, 90), 1),
            "max_ms": round(max(samples), 1), "client_p50_ms": round(pct(total, 50), 1), "bytes": len(r.content)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    name = f"bench_console_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(args.pg_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_db(args.pg_url.replace("postgresql://", "postgresql+psycopg://", 1), name)
    server = None
    source = None
    try:
        db = Database(url, "dbos", 2)
        migrate_system(db)
        db.dispose()
        log(f"populating {args.rows:,} workflows")
        populate(url, args.rows)
        detail_id = "wf-" + str(args.rows // 2).rjust(7, "0")
        add_steps(url, detail_id, 30)
        source = Source(url)
        server = HTTPServerThread(build_console(source, host="127.0.0.1", token=None), "127.0.0.1", 0,
                                  "console (bench)", logging.getLogger("bench"))
        server.start()
        mid = BASE_MS + (args.rows // 2) * STEP_MS
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mid / 1000))
        calls = [
            ("list", "/api/workflows?limit=50"),
            ("list", "/api/workflows?limit=50&offset=50"),
            ("list", "/api/workflows?limit=50&status=SUCCESS"),
            ("list", "/api/workflows?limit=50&status=ERROR"),
            ("list", "/api/workflows?limit=50&name=bench.workflow_7"),
            ("list", "/api/workflows?limit=50&app_version=v3"),
            ("list", "/api/workflows?limit=50&prefix=wf-05"),
            ("list", f"/api/workflows?limit=50&end_time={iso}"),
            ("list", "/api/workflows?limit=50&sort=asc"),
            ("detail", f"/api/workflows/{detail_id}"),
            ("detail", f"/api/workflows/{detail_id}/steps"),
            ("detail", f"/api/workflows/{detail_id}/events"),
            ("other", "/api/queues"),
            ("other", "/api/versions"),
            ("other", "/api/executors"),
            ("other", "/workflows"),
        ]
        results = []
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as http:
            for kind, path in calls:
                r = timed(http, path, args.requests)
                r["kind"] = kind
                r["ok"] = kind == "other" or r["p90_ms"] < TARGET_MS
                results.append(r)
                log(f"  {path:58s} p50 {r['p50_ms']:7.1f} ms  p90 {r['p90_ms']:7.1f} ms  {'ok' if r['ok'] else 'SLOW'}")
        print(f"console timings, server time, {args.rows:,} workflows, {args.requests} requests each "
              f"(target: list and detail p90 < {TARGET_MS:.0f} ms)")
        print(f"{'call':60s} {'p50 ms':>8s} {'p90 ms':>8s} {'max ms':>8s}")
        for r in results:
            print(f"{r['path']:60s} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f} {r['max_ms']:8.1f}{'' if r['ok'] else '  SLOW'}")
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": args.rows, "results": results}, indent=2))
        return 0 if all(r["ok"] for r in results) else 1
    finally:
        if server is not None:
            server.stop()
        if source is not None:
            source.close()
        with psycopg.connect(libpq(args.pg_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
