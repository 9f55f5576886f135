"""Counts the statements a process sends to PostgreSQL, by thread name (bench/fleet.py).

Installed before anything else runs by ``bench/fleet_site/sitecustomize.py`` in
every worker and coordinator the bench starts with ``FLEET_BENCH_COUNTS=<path>``
(and ``PYTHONPATH=bench/fleet_site:bench``); the counts are rewritten to that
file as JSON every 0.5 s. The bench process uses it directly for one heartbeat.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from typing import Any, Callable


class StatementCounter:
    """Counts the statements of this process by thread name, as bench/core.py's
    ``Capture`` defines them: every psycopg ``execute`` (SQLAlchemy's included),
    the implicit ``BEGIN`` of a non-autocommit transaction, each ``COMMIT`` /
    ``ROLLBACK`` of an open one, and the libpq hot path's statements. Outside
    psycopg's pipeline mode each is one round trip; a pipelined transaction (the
    poller's claim: BEGIN, SET, UPDATE, COMMIT) sends its four in one flight."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _add(self, n: int = 1) -> None:
        name = threading.current_thread().name
        # Pool threads are numbered; count them as one.
        key = name.rstrip("0123456789_-") or name
        with self._lock:
            self.counts[key] += n

    def install(self) -> "StatementCounter":
        import psycopg
        from psycopg.pq import TransactionStatus

        from dbos._storage import database

        add = self._add
        cur_execute = psycopg.Cursor.execute
        commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback

        def execute(cur: Any, query: Any, params: Any = None, *a: Any, **k: Any) -> Any:
            conn = cur.connection
            add(2 if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE else 1)
            return cur_execute(cur, query, params, *a, **k)

        def end(real: Callable[[Any], None]) -> Callable[[Any], None]:
            def wrapped(conn: Any) -> None:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    add()
                real(conn)

            return wrapped

        def counted(real: Callable[..., int]) -> Callable[..., int]:
            def wrapped(*a: Any, **k: Any) -> int:
                add()
                return real(*a, **k)

            return wrapped

        setattr(database, "exec_prepared", counted(database.exec_prepared))
        setattr(database, "exec_unprepared", counted(database.exec_unprepared))
        setattr(psycopg.Cursor, "execute", execute)
        setattr(psycopg.Connection, "commit", end(commit))
        setattr(psycopg.Connection, "rollback", end(rollback))
        return self

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def dump_every(self, path: str, interval: float = 0.5) -> None:
        def loop() -> None:
            while True:
                tmp = f"{path}.tmp"
                with open(tmp, "w") as fh:
                    json.dump({"at": time.time(), "counts": self.snapshot()}, fh)
                os.replace(tmp, path)
                time.sleep(interval)

        threading.Thread(target=loop, name="bench-counts", daemon=True).start()


def install_from_env() -> None:
    path = os.environ.get("FLEET_BENCH_COUNTS")
    if path:
        StatementCounter().install().dump_every(path)
