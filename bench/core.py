"""Core benchmark: what one durable step and one small workflow cost, against the floor.

The floor is one single-row INSERT + COMMIT round trip on one connection: the
least a durable checkpoint can cost. Every figure is also given as a ratio to
the floor measured in the same run. The floor is measured in several rounds
between the other measurements, and the median of all its samples is used, so
that a noisy machine moves the floor and the figures together.

    .venv/bin/python bench/core.py [--pg-url URL] [--json PATH] [--no-sqlite] [--show-sql]

PostgreSQL: a fresh database ``bench_core_<random>`` is created on the server
of ``--pg-url`` and dropped at the end. SQLite: files in a temporary directory.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from sqlalchemy import event

from dbos import DBOS, DBOSConfig, SetWorkflowID
from dbos._storage import database

# -- the workload: decorated at import time, as users do -----------------------

STEP_TIMES: list[float] = []  # every step call of steps_workflow, timed inside the workflow


@DBOS.step()
def noop_step(i: int) -> int:
    return i


@DBOS.workflow()
def steps_workflow(n: int) -> int:
    clock, times = time.perf_counter, STEP_TIMES
    for i in range(n):
        t0 = clock()
        noop_step(i)
        times.append(clock() - t0)
    return n


@DBOS.workflow()
def empty_workflow() -> int:
    return 0


# -- sizes -----------------------------------------------------------------------

STEPS_PER_WORKFLOW = 1000
ROUNDS = 7  # the floor is measured before every round and once after the last
FLOOR_PER_ROUND = 300
CALLS_PER_ROUND = 80  # workflow calls (and raw replays) of each shape per round
WARMUP = 30
TARGETS = {"per_step": 1.5, "workflow_3_steps": 6.0}  # x floor, PostgreSQL only


# -- measuring -------------------------------------------------------------------


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


@dataclass
class Series:
    """Latency samples (seconds) and process CPU time per call (one value per batch)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def run(self, fn: Callable[[], Any], n: int) -> None:
        clock, wall = time.perf_counter, self.wall
        c0 = time.process_time()
        for _ in range(n):
            t0 = clock()
            fn()
            wall.append(clock() - t0)
        self.cpu.append((time.process_time() - c0) / n)


@dataclass
class Figures:
    floor: Series = field(default_factory=Series)
    floor_libpq: Series = field(default_factory=Series)  # PostgreSQL: the floor without psycopg's cursor
    per_step: Series = field(default_factory=Series)  # one sample per 1000-step workflow: total / 1000
    step_calls: list[float] = field(default_factory=list)  # every step call of those workflows
    wf0: Series = field(default_factory=Series)
    wf3: Series = field(default_factory=Series)
    raw: dict[str, Series] = field(default_factory=dict)  # the same statements, replayed raw
    floor_runs: dict[int, Series] = field(default_factory=dict)  # n floor round trips in a row
    sql: dict[str, list[str]] = field(default_factory=dict)


# -- floors: the raw commit round trip -------------------------------------------

PAYLOAD = b"\x80\x05K\x01."  # about what a pickled small int weighs


LIBPQ = "/* libpq */ "  # marks a captured statement the library sent through libpq directly
UNPREPARED = False  # --no-prepared: use_prepared_statements False (behind PgBouncer), the floor too


def _libpq(pg: Any, name: bytes, text: bytes, params: Any, *a: Any) -> int:
    if UNPREPARED:
        return database.exec_unprepared(pg, text, params, *a)
    return database.exec_prepared(pg, name, text, params, *a)


class PgFloor:
    """Raw psycopg, autocommit: each INSERT is one round trip and one commit."""

    def __init__(self, conninfo: str) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=True)
        if UNPREPARED:
            self.conn.prepare_threshold = None
        self.conn.execute(
            "CREATE TABLE floor (k text NOT NULL, n integer NOT NULL, v bytea, PRIMARY KEY (k, n))"
        )
        self.n = 0

    def once(self) -> None:
        self.n += 1
        self.conn.execute("INSERT INTO floor (k, n, v) VALUES (%s, %s, %s)", ("bench-floor", self.n, PAYLOAD))

    def once_libpq(self) -> None:
        """The same INSERT prepared and sent through libpq, as the library's hot path sends."""
        self.n += 1
        _libpq(self.conn, b"floor", b"INSERT INTO floor (k, n, v) VALUES ($1, $2, $3)",
                               ("bench-floor", self.n, PAYLOAD))

    def replayer(self) -> "Replayer":
        names: dict[str, bytes] = {}

        def execute(sql: str, params: Any) -> None:
            if sql.startswith(LIBPQ):  # as the library sends it: prepared, through libpq
                name = names.setdefault(sql, f"replay_{len(names)}".encode())
                _libpq(self.conn, name, sql.removeprefix(LIBPQ).encode(), params, True)
            else:
                self.conn.execute(sql, params)

        return Replayer(execute)

    def close(self) -> None:
        self.conn.close()


def _sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # what dbos uses
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


class SqliteFloor:
    """The same INSERT in autocommit mode, in its own file."""

    def __init__(self, path: str) -> None:
        self.conn = _sqlite_connect(path)
        self.conn.execute(
            "CREATE TABLE floor (k text NOT NULL, n integer NOT NULL, v blob, PRIMARY KEY (k, n))"
        )
        self.n = 0

    def once(self) -> None:
        self.n += 1
        self.conn.execute("INSERT INTO floor (k, n, v) VALUES (?, ?, ?)", ("bench-floor", self.n, PAYLOAD))

    def replayer(self) -> None:
        # sqlite3's trace callback gives each statement with its values inlined, so a
        # replay would re-compile every statement: not a fair raw baseline. None.
        return None

    def close(self) -> None:
        self.conn.close()


# -- what the library sends ---------------------------------------------------------


class Capture:
    """Record every statement the process sends to the database while ``with`` is active.

    PostgreSQL: every psycopg ``execute`` (through SQLAlchemy or the raw driver),
    with its parameters, plus the ``BEGIN`` psycopg sends before the first
    statement of a non-autocommit transaction and each ``COMMIT``/``ROLLBACK``
    of an open one: each entry is one round trip. SQLite: every statement,
    ``BEGIN``/``COMMIT`` included, through sqlite3's trace callback (parameters
    inlined). Only the capturing thread's statements count (a workflow called
    directly runs in its caller's thread), so background services are left out.
    """

    def __init__(self, workflow_id: str = "") -> None:
        self.workflow_id = workflow_id  # the workflow captured, when there is one
        self.statements: list[tuple[str, Any]] = []
        self._undo: list[Callable[[], None]] = []
        self._thread = threading.get_ident()

    def _log(self, sql: Any, params: Any = None) -> None:
        if threading.get_ident() == self._thread:
            self.statements.append((sql.decode() if isinstance(sql, bytes) else str(sql), params))

    def __enter__(self) -> "Capture":
        log = self._log
        cur_execute = psycopg.Cursor.execute
        commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback

        def execute(cur: Any, query: Any, params: Any = None, *a: Any, **k: Any) -> Any:
            conn = cur.connection
            if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
                log("BEGIN")
            log(query.as_string(conn) if hasattr(query, "as_string") else query, params)
            return cur_execute(cur, query, params, *a, **k)

        def end(name: str, real: Callable[[Any], None]) -> Callable[[Any], None]:
            def wrapped(conn: Any) -> None:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    log(name)
                real(conn)

            return wrapped

        # The per-step statements go straight through libpq (Database.execute_count):
        # logged with the libpq marker, so a replay sends them the same way.
        real_exec_prepared = database.exec_prepared

        def exec_prepared(pg: Any, name: bytes, text: bytes, params: Any, *a: Any) -> int:
            log(LIBPQ + text.decode(), params)
            return real_exec_prepared(pg, name, text, params, *a)

        real_exec_unprepared = database.exec_unprepared

        def exec_unprepared(pg: Any, text: bytes, params: Any, *a: Any) -> int:
            log(LIBPQ + text.decode(), params)
            return real_exec_unprepared(pg, text, params, *a)

        setattr(database, "exec_prepared", exec_prepared)
        setattr(database, "exec_unprepared", exec_unprepared)
        setattr(psycopg.Cursor, "execute", execute)
        setattr(psycopg.Connection, "commit", end("COMMIT", commit))
        setattr(psycopg.Connection, "rollback", end("ROLLBACK", rollback))
        traced: list[sqlite3.Connection] = []

        def on_checkout(dbapi_conn: Any, *_a: Any) -> None:
            if isinstance(dbapi_conn, sqlite3.Connection):
                dbapi_conn.set_trace_callback(log)
                traced.append(dbapi_conn)

        event.listen(sa.pool.Pool, "checkout", on_checkout)
        # The hot path's driver connections live outside the pool (Database.execute_raw):
        # trace the idle ones too.
        from dbos._api.instance import runtime

        for conn, _cur in runtime().sys_db._raw_free:
            on_checkout(conn.dbapi_connection)

        def undo() -> None:
            setattr(database, "exec_prepared", real_exec_prepared)
            setattr(database, "exec_unprepared", real_exec_unprepared)
            setattr(psycopg.Cursor, "execute", cur_execute)
            setattr(psycopg.Connection, "commit", commit)
            setattr(psycopg.Connection, "rollback", rollback)
            event.remove(sa.pool.Pool, "checkout", on_checkout)
            for c in traced:
                try:
                    c.set_trace_callback(None)
                except sqlite3.ProgrammingError:
                    pass  # closed since

        self._undo = [undo]
        return self

    def __exit__(self, *_exc: Any) -> None:
        for undo in self._undo:
            undo()

    def texts(self) -> list[str]:
        return [" ".join(sql.removeprefix(LIBPQ).split()) for sql, _ in self.statements]


def capture_workflow(fn: Callable[[], Any]) -> Capture:
    """Run one workflow under a known ID and capture what it sends."""
    workflow_id = f"bench-capture-{secrets.token_hex(8)}"
    with SetWorkflowID(workflow_id), Capture(workflow_id) as c:
        fn()
    return c


class Replayer:
    """Send captured statements again on a raw autocommit connection, as a new workflow.

    Every occurrence of the captured workflow's ID (in a parameter, or inlined
    in SQLite's text) is replaced by a fresh one, so each replay inserts new
    rows exactly as the library did. The difference between a replay and the
    library call it copies is what the library's own Python costs.
    """

    def __init__(self, execute: Callable[[str, Any], Any]) -> None:
        self.execute = execute
        self.n = 0

    def of(self, statements: list[tuple[str, Any]], workflow_id: str) -> Callable[[], None]:
        def swap(v: Any, new: str) -> Any:
            return new if v == workflow_id else v

        def replay() -> None:
            self.n += 1
            new = f"{workflow_id[:24]}-replay-{self.n:08d}"
            for sql, params in statements:
                if isinstance(params, dict):
                    params = {k: swap(v, new) for k, v in params.items()}
                elif params is not None:
                    params = tuple(swap(v, new) for v in params)
                self.execute(sql.replace(workflow_id, new) if params is None else sql, params)

        return replay


# -- one backend ----------------------------------------------------------------------


def run_backend(label: str, system_url: str, floor: Any, engine_kwargs: Optional[dict[str, Any]]) -> Figures:
    f = Figures()
    config: DBOSConfig = {"name": "bench_core", "system_database_url": system_url, "log_level": "WARNING"}
    if engine_kwargs:
        config["db_engine_kwargs"] = engine_kwargs
    if UNPREPARED:
        config["use_prepared_statements"] = False
    DBOS(config=config)
    DBOS.launch()
    try:
        # Warm up every path (connections, prepared statements) before timing anything.
        for fn in (floor.once, empty_workflow, lambda: steps_workflow(3)):
            Series().run(fn, WARMUP)
        steps_workflow(50)

        # What each shape sends, captured once (untimed) to count it and replay it raw.
        shapes: dict[str, Capture] = {}
        for name, fn in (
            ("workflow_0_steps", empty_workflow),
            ("workflow_3_steps", lambda: steps_workflow(3)),
            ("workflow_1000_steps", lambda: steps_workflow(STEPS_PER_WORKFLOW)),
        ):
            shapes[name] = capture_workflow(fn)
        f.sql = {name: c.texts() for name, c in shapes.items()}
        zero, three = shapes["workflow_0_steps"], shapes["workflow_3_steps"]
        extra = Counter(three.texts()) - Counter(zero.texts())  # the statements of 3 steps
        step_stmt = next(s for s, t in zip(three.statements, three.texts()) if t in extra)
        replayer = floor.replayer()
        replays = (
            {}
            if replayer is None
            else {
                "step": replayer.of([step_stmt], three.workflow_id),
                "workflow_0_steps": replayer.of(zero.statements, zero.workflow_id),
                "workflow_3_steps": replayer.of(three.statements, three.workflow_id),
            }
        )
        f.raw = {name: Series() for name in replays}
        f.floor_runs = {n: Series() for n in (len(zero.statements), len(three.statements))}

        def floor_run(n: int) -> Callable[[], None]:
            def run() -> None:
                for _ in range(n):
                    floor.once()

            return run

        for r in range(ROUNDS):
            print(f"  {label}: round {r + 1}/{ROUNDS}", file=sys.stderr, flush=True)
            f.floor.run(floor.once, FLOOR_PER_ROUND)
            if hasattr(floor, "once_libpq"):
                f.floor_libpq.run(floor.once_libpq, FLOOR_PER_ROUND)
            STEP_TIMES.clear()
            f.per_step.run(lambda: steps_workflow(STEPS_PER_WORKFLOW), 1)
            f.per_step.wall[-1] /= STEPS_PER_WORKFLOW
            f.per_step.cpu[-1] /= STEPS_PER_WORKFLOW
            f.step_calls.extend(STEP_TIMES)
            f.wf0.run(empty_workflow, CALLS_PER_ROUND)
            f.wf3.run(lambda: steps_workflow(3), CALLS_PER_ROUND)
            for name, replay in replays.items():
                f.raw[name].run(replay, CALLS_PER_ROUND)
            for n, series in f.floor_runs.items():
                series.run(floor_run(n), CALLS_PER_ROUND)
        f.floor.run(floor.once, FLOOR_PER_ROUND)
    finally:
        DBOS.destroy()
    return f


# -- reporting ------------------------------------------------------------------------


def ms(x: float) -> float:
    return round(x * 1000, 4)


def summarize(f: Figures) -> dict[str, Any]:
    floor = statistics.median(f.floor.wall)

    def x(v: float) -> float:
        return round(v / floor, 2)

    def latency(s: Series) -> dict[str, Any]:
        p50 = pct(s.wall, 50)
        return {
            "p50": ms(p50),
            "p99": ms(pct(s.wall, 99)),
            "calls": len(s.wall),
            "cpu": ms(statistics.median(s.cpu)),
            "x_floor": x(p50),
        }

    per_step = statistics.median(f.per_step.wall)
    return {
        "floor_ms": {
            "median": ms(floor),
            "mean": ms(statistics.mean(f.floor.wall)),
            "p99": ms(pct(f.floor.wall, 99)),
            "cpu": ms(statistics.median(f.floor.cpu)),
            "samples": len(f.floor.wall),
        },
        **({"floor_libpq_ms": latency(f.floor_libpq)} if f.floor_libpq.wall else {}),
        "per_step_ms": {
            "median": ms(per_step),
            "min": ms(min(f.per_step.wall)),
            "max": ms(max(f.per_step.wall)),
            "cpu": ms(statistics.median(f.per_step.cpu)),
            "workflows": len(f.per_step.wall),
            "steps_per_workflow": STEPS_PER_WORKFLOW,
            "x_floor": x(per_step),
            "x_floor_mean": round(per_step / statistics.mean(f.floor.wall), 2),
            "step_call_p50": ms(pct(f.step_calls, 50)),
            "step_call_p99": ms(pct(f.step_calls, 99)),
            "step_call_x_floor": x(pct(f.step_calls, 50)),
        },
        "workflow_0_steps_ms": latency(f.wf0),
        "workflow_3_steps_ms": latency(f.wf3),
        "raw_replay_ms": {name: latency(s) for name, s in f.raw.items()},
        "floor_in_a_row_ms": {str(n): latency(s) for n, s in f.floor_runs.items()},
        "statements": {
            "per_step": round(
                (len(f.sql["workflow_1000_steps"]) - len(f.sql["workflow_0_steps"])) / STEPS_PER_WORKFLOW, 3
            ),
            "workflow_0_steps": len(f.sql["workflow_0_steps"]),
            "workflow_3_steps": len(f.sql["workflow_3_steps"]),
            "sql_workflow_3_steps": f.sql["workflow_3_steps"],
        },
    }


def print_table(title: str, s: dict[str, Any], floor_name: str, targets: bool, show_sql: bool) -> None:
    def verdict(key: str, ratio: float) -> str:
        if not targets or key not in TARGETS:
            return ""
        return f"<= {TARGETS[key]}x {'OK' if ratio <= TARGETS[key] else 'MISSED'}"

    def row(
        name: str,
        a: Optional[float],
        b: Optional[float] = None,
        ratio: Optional[float] = None,
        note: str = "",
    ) -> None:
        cells = [f"{name:<38}"]
        cells.append(f"{a:>9.3f}ms" if a is not None else " " * 11)
        cells.append(f"{b:>9.3f}ms" if b is not None else " " * 11)
        cells.append(f"{ratio:>8.2f}" if ratio is not None else " " * 8)
        print("".join(cells) + (f"  {note}" if note else ""))

    print(f"\n{title}")
    print(f"{'figure':<38}{'p50':>11}{'p99':>11}{'x floor':>8}  target")
    fl, ps, raw = s["floor_ms"], s["per_step_ms"], s["raw_replay_ms"]
    row(floor_name, fl["median"], fl["p99"], 1.0, f"n={fl['samples']}, mean {fl['mean']:.3f}ms")
    row("  process CPU", fl["cpu"])
    if "floor_libpq_ms" in s:
        fq = s["floor_libpq_ms"]
        row("  the same, prepared, through libpq", fq["p50"], fq["p99"], fq["x_floor"], "(how the hot path sends)")
    row(
        f"per step (1 workflow of {STEPS_PER_WORKFLOW} steps)",
        ps["median"],
        None,
        ps["x_floor"],
        verdict("per_step", ps["x_floor"])
        + f"  (median of {ps['workflows']} workflows: total/{STEPS_PER_WORKFLOW})",
    )
    row("  process CPU", ps["cpu"])
    row("  vs the floor's mean (mean vs mean)", None, None, ps["x_floor_mean"])
    row("  one step call, timed alone", ps["step_call_p50"], ps["step_call_p99"], ps["step_call_x_floor"])
    if "step" in raw:
        row("  its statement, replayed raw", raw["step"]["p50"], raw["step"]["p99"], raw["step"]["x_floor"])
    for key, name in (("workflow_0_steps", "workflow, 0 steps"), ("workflow_3_steps", "workflow, 3 steps")):
        w = s[f"{key}_ms"]
        row(name, w["p50"], w["p99"], w["x_floor"], verdict(key, w["x_floor"]) + f"  (n={w['calls']})")
        row("  process CPU", w["cpu"])
        n = s["statements"][key]
        if key in raw:
            r = raw[key]
            row(f"  its {n} statements, replayed raw", r["p50"], r["p99"], r["x_floor"])
        r = s["floor_in_a_row_ms"].get(str(n))
        if r is not None:
            row(f"  {n} floor round trips in a row", r["p50"], r["p99"], r["x_floor"])
    st = s["statements"]
    print(
        f"statements (round trips) sent: {st['per_step']} per step, "
        f"{st['workflow_0_steps']} per 0-step workflow, {st['workflow_3_steps']} per 3-step workflow"
    )
    if show_sql:
        for q in st["sql_workflow_3_steps"]:
            print(f"    {q[:150]}")


# -- main -------------------------------------------------------------------------------


def _conninfo(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def bench_postgres(pg_url: str, engine_kwargs: Optional[dict[str, Any]]) -> dict[str, Any]:
    admin = _conninfo(sa.make_url(pg_url))
    dbname = f"bench_core_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        url = _conninfo(sa.make_url(pg_url).set(database=dbname))
        floor = PgFloor(url)
        try:
            figures = run_backend("postgresql", url, floor, engine_kwargs)
            server = {
                name: floor.conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in ("server_version", "synchronous_commit", "fsync")
            }
        finally:
            floor.close()
        return {"server": server, **summarize(figures)}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def bench_sqlite(engine_kwargs: Optional[dict[str, Any]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_core_") as tmp:
        system_db = os.path.join(tmp, "bench.sqlite")
        floor = SqliteFloor(os.path.join(tmp, "floor.sqlite"))
        try:
            figures = run_backend("sqlite", f"sqlite:///{system_db}", floor, engine_kwargs)
        finally:
            floor.close()
    server = {"version": sqlite3.sqlite_version, "journal_mode": "wal", "synchronous": "normal"}
    return {"server": server, **summarize(figures)}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server on which this script may create and drop a database",
    )
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    p.add_argument("--show-sql", action="store_true", help="list the statements a 3-step workflow sends")
    p.add_argument(
        "--db-engine-kwargs",
        metavar="JSON",
        type=json.loads,
        help="passed to DBOSConfig.db_engine_kwargs, e.g. '{\"pool_use_lifo\": true}'",
    )
    p.add_argument(
        "--no-prepared",
        action="store_true",
        help="use_prepared_statements: False (e.g. --pg-url through PgBouncer in transaction mode)",
    )
    args = p.parse_args(argv)
    global UNPREPARED
    UNPREPARED = args.no_prepared
    engine_kwargs: Optional[dict[str, Any]] = args.db_engine_kwargs

    started = time.monotonic()
    result: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "targets_x_floor": TARGETS,
        "db_engine_kwargs": engine_kwargs,
        "postgresql": bench_postgres(args.pg_url, engine_kwargs),
    }
    if not args.no_sqlite:
        result["sqlite"] = bench_sqlite(engine_kwargs)
    result["runtime_s"] = round(time.monotonic() - started, 1)

    m = result["machine"]
    print(f"\ndbos core benchmark  {result['date']}  {m['cpus']} CPUs  Python {m['python']}")
    pg = result["postgresql"]
    srv = pg["server"]
    print_table(
        f"PostgreSQL {srv['server_version'].split()[0]} (synchronous_commit={srv['synchronous_commit']}, fsync={srv['fsync']})",
        pg,
        "floor: 1-row INSERT+COMMIT round trip",
        targets=True,
        show_sql=args.show_sql,
    )
    if "sqlite" in result:
        print_table(
            f"SQLite {result['sqlite']['server']['version']} (WAL, synchronous=NORMAL; "
            "ratios against the SQLite floor; no targets)",
            result["sqlite"],
            "floor: 1-row INSERT, autocommit",
            targets=False,
            show_sql=args.show_sql,
        )
    print(f"\n(ran in {result['runtime_s']} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
