"""Engines and connections for one database (system or application).

Three ways to get a connection, chosen by what the caller needs:

- ``write()``: one atomic write. On PostgreSQL an autocommit connection, so a
  single statement is one round trip (the per-step hot path); on SQLite a
  ``BEGIN IMMEDIATE`` transaction.
- ``transaction()``: several statements that commit together.
- ``read()``: reads without taking SQLite's write lock.

No connection is pinged on checkout: a dropped connection fails the
statement, the pool invalidates it, and ``write``/``read`` callers retry
through :func:`retry_on_disconnect`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import sqlite3
import time
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar, Union, cast

import psycopg
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy import event, exc

from dbos._storage.dialect import POSTGRES, SQLITE, UNIQUE_VIOLATION, Dialect
from dbos.error import DBOSDatabaseUnavailableError

T = TypeVar("T")

_logger = logging.getLogger("dbos")
# A transaction pooler (PgBouncer) moved the connection to another server backend:
# a prepared statement is missing there, or another client's is already there.
_POOLER_SQLSTATES = frozenset({"26000", "42P05"})


class Database:
    def __init__(
        self,
        url: str,
        schema: str,
        pool_size: int = 20,
        engine_kwargs: Optional[Mapping[str, Any]] = None,
        use_prepared_statements: bool = True,
    ) -> None:
        self.url = url
        self.dialect: Dialect = SQLITE if url.startswith("sqlite") else POSTGRES
        self._sqlite = self.dialect.is_sqlite
        self.schema: Optional[str] = None if self._sqlite else schema
        kwargs = dict(engine_kwargs or {})
        user_connect_args = dict(kwargs.pop("connect_args", None) or {})
        # Behind a transaction pooler nothing may rely on session state: no named
        # prepared statements (ours or psycopg's). ``prepare_threshold=None`` in the
        # engine's connect_args (what ``use_prepared_statements: False`` sets) means the same.
        if "prepare_threshold" in user_connect_args and user_connect_args["prepare_threshold"] is None:
            use_prepared_statements = False
        self.use_prepared_statements = use_prepared_statements
        # ``pool_size`` is this process's whole budget of connections to the database
        # (a fleet of executors must fit max_connections): the hot path's driver
        # connections get half of it, SQLAlchemy's pool the rest (at least one each).
        raw_slots = max(1, (pool_size + 1) // 2)
        if self.dialect.is_sqlite:
            self._writer = _sqlite_engine(url, immediate=True, **kwargs)
            self._reader = _sqlite_engine(url, immediate=False, **kwargs)
            self._tx = self._writer
        else:
            kwargs.setdefault("pool_size", max(1, pool_size - raw_slots))
            kwargs.setdefault("max_overflow", 0)  # connections are opened lazily, at most pool_size
            kwargs.setdefault("pool_timeout", 30)
            # Connections are autocommit by default (a single statement is one round
            # trip); multi-statement work asks for READ COMMITTED explicitly.
            base = sa.create_engine(
                url,
                isolation_level="AUTOCOMMIT",
                pool_pre_ping=False,
                pool_reset_on_return=None,
                connect_args={"connect_timeout": 10, "application_name": "dbos", **user_connect_args},
                **kwargs,
            ).execution_options(schema_translate_map={None: schema})
            event.listen(base, "checkout", self._on_checkout)
            event.listen(base, "handle_error", self._on_error)
            self._writer = base
            self._reader = base
            self._tx = base.execution_options(isolation_level="READ COMMITTED")
        self._engines = [self._writer, self._reader]
        self._sql: dict[str, str] = {}
        self._compiled: dict[str, tuple[str, dict[str, Any]]] = {}
        self._raw_free: list[tuple[Any, Any]] = []
        self._prepared: dict[str, tuple[bytes, bytes]] = {}  # execute_count's statements
        # One token a connection the hot path may hold: a C-level queue (a semaphore
        # costs ~2 us more per statement, in Python).
        self._raw_slots: "queue.SimpleQueue[None]" = queue.SimpleQueue()
        for _ in range(raw_slots):
            self._raw_slots.put(None)

    def _on_checkout(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if not self.use_prepared_statements and dbapi_conn.prepare_threshold is not None:
            dbapi_conn.prepare_threshold = None  # psycopg's own prepared statements

    def _on_error(self, ctx: Any) -> None:
        """A psycopg prepared statement refused behind a pooler (SQLAlchemy paths): switch
        to unprepared mode and report the connection lost, so it is discarded and the
        statement retried (it did not run: the error came at Parse/Bind)."""
        if getattr(ctx.original_exception, "sqlstate", None) in _POOLER_SQLSTATES:
            self._fall_back(ctx.original_exception)
            ctx.is_disconnect = True

    def _fall_back(self, error: BaseException) -> None:
        """Switch this database to unprepared statements for good (one warning)."""
        if not self.use_prepared_statements:
            return
        self.use_prepared_statements = False
        for conn, _cur in list(self._raw_free):
            with contextlib.suppress(Exception):
                conn.dbapi_connection.prepare_threshold = None
        _logger.warning(
            "The database refused a prepared statement (%s): probably a transaction pooler"
            " such as PgBouncer. Sending statements unprepared from now on; set"
            " use_prepared_statements: False in the config to start that way.",
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
        )

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        if self.dialect.is_sqlite:
            with self._writer.begin() as conn:
                yield conn
        else:
            with self._writer.connect() as conn:
                yield conn

    @contextlib.contextmanager
    def transaction(self, isolation_level: Optional[str] = None) -> Iterator[sa.Connection]:
        engine = self._tx
        if isolation_level is not None and not self.dialect.is_sqlite:
            # From the base engine: an isolation_level on an options-engine of _tx is ignored.
            engine = self._writer.execution_options(isolation_level=isolation_level)
        with engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self._reader.connect() as conn:
            yield conn

    def check_connection(self) -> None:
        """One round trip, no retry: the driver's error (wrapped by SQLAlchemy) if it fails."""
        with self._reader.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def run(self, fn: Callable[[sa.Connection], T], *, tx: bool = False) -> T:
        """Run ``fn`` on a write (or transaction) connection, retrying a dropped one."""
        opener = self.transaction if tx else self.write

        def attempt() -> T:
            with opener() as conn:
                return fn(conn)

        return retry_on_disconnect(attempt)

    def query(self, fn: Callable[[sa.Connection], T]) -> T:
        def attempt() -> T:
            with self.read() as conn:
                return fn(conn)

        return retry_on_disconnect(attempt)

    def qualify(self, table: str) -> str:
        """A table name as raw SQL spells it on this database."""
        return f'"{self.schema}".{table}' if self.schema else table

    def sql(self, key: str, build: Callable[["Database"], str]) -> str:
        """Hand-written SQL built once per database (hot-path statements)."""
        text = self._sql.get(key)
        if text is None:
            text = self._sql[key] = self.raw_sql(build(self))
        return text

    def compiled(self, key: str, stmt: Any) -> tuple[str, dict[str, Any]]:
        """A SQLAlchemy statement as final driver SQL for this database, built once:
        the text and its default parameters (for the driver-level paths)."""
        found = self._compiled.get(key)
        if found is None:
            c = stmt.compile(
                dialect=self._writer.dialect,
                schema_translate_map={None: self.schema},  # renders placeholders, replaced below
                compile_kwargs={"render_postcompile": True},
            )
            schema = f'"{self.schema}".' if self.schema else ""
            found = self._compiled[key] = (str(c).replace("__[SCHEMA__none].", schema), dict(c.params))
        return found

    def raw_sql(self, sql: str) -> str:
        """Adapt hand-written SQL (``%s`` placeholders) to this driver's paramstyle."""
        return sql.replace("%s", "?") if self.dialect.is_sqlite else sql

    def execute_raw(
        self, sql: str, params: Union[Sequence[Any], Mapping[str, Any]]
    ) -> Optional[tuple[Any, ...]]:
        """One autocommit statement with RETURNING, through the driver: the hot path.

        The statement is final SQL for this database (see ``raw_sql``) and
        returns its first row, if any; ``params`` are positional (``%s``) or, on
        PostgreSQL only, named (``%(name)s``). Connections come from a small LIFO
        free list of driver connections kept apart from SQLAlchemy's pool (a
        checkout is a list pop), each with its cursor. A dropped connection is
        discarded and the statement retried; any other error is raised as is.
        """

        def run(_conn: Any, cur: Any) -> Optional[tuple[Any, ...]]:
            cur.execute(sql, params)
            row = cur.fetchone()
            return tuple(row) if row is not None else None

        return retry_on_disconnect(lambda: self._on_raw(sql, params, run))

    def execute_count(self, sql: str, params: Sequence[Any], *, duplicate_is_zero: bool = False) -> int:
        """One autocommit statement without RETURNING; the number of rows it wrote.

        The per-step hot path. ``sql`` is as for :meth:`execute_raw` with
        positional parameters. On PostgreSQL the statement is prepared once per
        connection and sent straight through libpq (``psycopg.pq``), which
        costs about half the client CPU of a cursor's ``execute`` (~12 us less
        per statement); parameters must be ``None``, ``str``, ``int`` or
        ``bytes``. Errors are raised as psycopg raises them, except that with
        ``duplicate_is_zero`` a unique-key violation counts as no row written:
        a plain INSERT that way costs less than ``ON CONFLICT DO NOTHING``
        (no speculative insertion), where conflicts are rare.
        """
        if self._sqlite:

            def run(conn: Any, cur: Any) -> int:
                try:
                    cur.execute(sql, params)
                except sqlite3.IntegrityError as e:
                    if duplicate_is_zero and Dialect.is_unique_violation(e):
                        return 0
                    raise
                return int(cur.rowcount)

            return retry_on_disconnect(lambda: self._on_raw(sql, params, run))
        # Every workflow and step comes here: no closures, and the first attempt
        # outside retry_on_disconnect (which a dropped connection then enters).
        prepared = self._prepared.get(sql) or self._prepare(sql)
        try:
            return self._on_raw(sql, params, _run_prepared, self, prepared, params, duplicate_is_zero)
        except exc.DBAPIError as e:
            if not _retryable(e):
                raise
        return retry_on_disconnect(
            lambda: self._on_raw(sql, params, _run_prepared, self, prepared, params, duplicate_is_zero)
        )

    def _prepare(self, sql: str) -> tuple[bytes, bytes]:
        """A server-side name for a hot-path statement, and its text with ``$n`` placeholders.

        The name is a digest of the text, so threads that meet a statement for
        the first time at once agree on it without a lock.
        """
        parts = sql.split("%s")
        text = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))
        name = "dbos_" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
        found = self._prepared[sql] = (name.encode(), text.encode())
        return found

    def pipelined_transaction(self, statements: Sequence[tuple[str, Any]]) -> list[tuple[Any, ...]]:
        """PostgreSQL: run ``statements`` as one transaction sent in one network
        flight (psycopg pipeline mode); return the rows of the last one.

        Nothing waits on the client between the statements, so a lock taken by
        the first is held only for the server's time, not for round trips. An
        error in any statement rolls the whole transaction back and is raised.
        """

        def run(conn: Any, cur: Any) -> list[tuple[Any, ...]]:
            pg = conn.dbapi_connection
            cursors = [cur] + [pg.cursor() for _ in statements[1:]]
            try:
                with pg.pipeline():
                    pg.execute("BEGIN")
                    for c, (sql, params) in zip(cursors, statements):
                        c.execute(sql, params)
                    pg.execute("COMMIT")
            except Exception:
                if not pg.closed and pg.info.transaction_status != _IDLE:
                    pg.execute("ROLLBACK")
                raise
            return [tuple(r) for r in cursors[-1].fetchall()]

        return retry_on_disconnect(lambda: self._on_raw(statements[0][0], None, run))

    def _on_raw(self, sql: str, params: Any, run: Callable[..., T], *args: Any) -> T:
        """``run(connection, cursor, *args)`` on a driver connection of the free list.

        The connection goes back to the list when ``run`` returns; on an error it
        is closed, and a lost connection is reported as SQLAlchemy reports one
        (``connection_invalidated``), which ``retry_on_disconnect`` retries.
        """
        self._raw_slots.get()
        try:
            try:
                conn, cur = self._raw_free.pop()
            except IndexError:
                conn = self._raw_connect()
                cur = conn.cursor()
            try:
                result = run(conn, cur, *args)
            except Exception as e:
                if getattr(e, "sqlstate", None) in _POOLER_SQLSTATES:
                    # Behind a transaction pooler: the statement did not run. Unprepared
                    # from now on; this connection (with its psycopg cache) is dropped and
                    # the statement retried as after a lost connection.
                    self._fall_back(e)
                    _close_quietly(conn)
                    raise exc.OperationalError(sql, params, e, connection_invalidated=True) from e
                disconnected = self._writer.dialect.is_disconnect(cast(Any, e), conn.dbapi_connection, cur)
                if disconnected:
                    _close_quietly(conn)
                    raise exc.OperationalError(sql, params, e, connection_invalidated=True) from e
                if _reusable(conn):  # the server answered with an error; the session is clean
                    self._raw_free.append((conn, cur))
                else:
                    _close_quietly(conn)
                raise
            self._raw_free.append((conn, cur))
            return result
        finally:
            self._raw_slots.put(None)

    def _raw_connect(self) -> Any:
        """A new driver connection of our own (closing it closes the driver connection).

        SQLAlchemy's ``raw_connection()`` raises the driver's own error when the
        server refuses the connection; it is wrapped here as SQLAlchemy wraps it
        everywhere else, so ``retry_on_disconnect`` retries it (and reports
        ``DBOSDatabaseUnavailableError`` when it gives up) instead of letting a
        bare driver error through.
        """
        try:
            conn = self._writer.raw_connection()
        except exc.DBAPIError:
            raise
        except Exception as e:
            dbapi_error: type[Exception] = self._writer.dialect.loaded_dbapi.Error
            if not isinstance(e, dbapi_error):
                raise
            raise exc.DBAPIError.instance(None, None, e, dbapi_error, dialect=self._writer.dialect) from e
        conn.detach()
        return conn

    def dispose(self) -> None:
        while self._raw_free:
            _close_quietly(self._raw_free.pop()[0])
        for engine in self._engines:
            engine.dispose()


def retry_on_disconnect(fn: Callable[[], T], attempts: int = 6) -> T:
    """Retry ``fn`` while the database connection drops or is refused.

    Backs off from 50 ms to ~1.6 s; gives up with a clear error after that.
    Statements are retried only when the failure happened on the connection,
    never after a result came back.
    """
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn()
        except exc.DBAPIError as e:
            if not _retryable(e):
                raise
            if attempt == attempts - 1:
                raise DBOSDatabaseUnavailableError(
                    f"database unreachable after {attempts} attempts: {e.orig}"
                ) from e
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _retryable(e: exc.DBAPIError) -> bool:
    """A lost or refused connection: worth retrying. An error the server
    answered with (a SQLSTATE: timeout, lock, serialization...) is not, and
    SQLite's errors never are (its file does not disconnect)."""
    if e.connection_invalidated:
        return True
    orig = e.orig
    if not isinstance(e, exc.OperationalError) or type(orig).__module__.startswith("sqlite3"):
        return False
    if orig is not None and _permanent(orig):
        return False
    return getattr(orig, "sqlstate", None) is None


# SQLSTATEs of a server that is going away or full, not of the statement: admin or
# crash shutdown, cannot connect now, too many connections; class 08 is the connection's.
_OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_outage(e: BaseException) -> bool:
    """Whether ``e`` is the database being unreachable (a lost, refused or shut-down
    connection; a full server), as opposed to an answer about the statement: such an
    error is no outcome of the work that met it."""
    if not isinstance(e, exc.DBAPIError):
        return False
    if _retryable(e):
        return True
    sqlstate = getattr(e.orig, "sqlstate", None)
    if sqlstate is None and isinstance(e, exc.OperationalError) and not type(e.orig).__module__.startswith("sqlite3"):
        return "too many clients" in str(e.orig) or "not currently accepting connections" in str(e.orig)
    return sqlstate is not None and (sqlstate in _OUTAGE_SQLSTATES or str(sqlstate).startswith("08"))


# What the server answers a connection attempt with that no retry will change (libpq
# reports them as a connection failure without a SQLSTATE, like a refused connection).
_PERMANENT = (
    "does not exist",  # the database or the role
    "password authentication failed",
    "no pg_hba.conf entry",
    "authentication failed",
    "no password supplied",
)


def _permanent(orig: BaseException) -> bool:
    text = str(orig)
    return "FATAL" in text and any(marker in text for marker in _PERMANENT)


_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE
_COMMAND_OK, _TUPLES_OK = pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK
_SQLSTATE, _UNIQUE_VIOLATION = pq.DiagnosticField.SQLSTATE, UNIQUE_VIOLATION.encode()


def _run_prepared(
    conn: Any, _cur: Any, db: Database, prepared: tuple[bytes, bytes], params: Sequence[Any], duplicate_is_zero: bool
) -> int:
    if db.use_prepared_statements:
        return exec_prepared(conn.dbapi_connection, prepared[0], prepared[1], params, duplicate_is_zero)
    return exec_unprepared(conn.dbapi_connection, prepared[1], params, duplicate_is_zero)


def exec_prepared(
    pg: Any, name: bytes, text: bytes, params: Sequence[Any], duplicate_is_zero: bool = False
) -> int:
    """Run a statement prepared as ``name`` on a psycopg connection, through libpq.

    The connection must be idle in autocommit mode, and not used by psycopg
    meanwhile. The statement is prepared on its first use on this connection
    (psycopg's own prepared statements have other names). ``str`` and ``int``
    parameters go as text, ``bytes`` as binary. libpq releases the GIL while it
    waits for the server. Returns the number of rows the statement wrote (0 for
    a unique-key violation, with ``duplicate_is_zero``).
    """
    pgconn = pg.pgconn
    prepared: set[bytes] = pg.__dict__.setdefault("_dbos_prepared", set())
    if name not in prepared:
        _check(pg, pgconn.prepare(name, text))
        prepared.add(name)
    values, formats = _libpq_params(params)
    return _outcome(pg, pgconn.exec_prepared(name, values, formats), duplicate_is_zero)


def exec_unprepared(pg: Any, text: bytes, params: Sequence[Any], duplicate_is_zero: bool = False) -> int:
    """As :func:`exec_prepared`, but the statement is sent unnamed (libpq
    ``PQexecParams``): nothing outlives it on the server session, as a
    transaction pooler requires."""
    values, formats = _libpq_params(params)
    return _outcome(pg, pg.pgconn.exec_params(text, values, param_formats=formats), duplicate_is_zero)


def _libpq_params(params: Sequence[Any]) -> tuple[list[Optional[bytes]], list[int]]:
    values: list[Optional[bytes]] = []
    formats: list[int] = []
    for v in params:
        t = type(v)
        if t is str:
            values.append(v.encode())
            formats.append(0)
        elif t is bytes:
            values.append(v)
            formats.append(1)
        elif t is int:
            values.append(b"%d" % v)
            formats.append(0)
        elif v is None:
            values.append(None)
            formats.append(0)
        else:
            raise TypeError(f"hot-path parameter of type {t.__name__}: expected str, int, bytes or None")
    return values, formats


def _outcome(pg: Any, result: Any, duplicate_is_zero: bool) -> int:
    if result.status != _COMMAND_OK:
        if duplicate_is_zero and result.error_field(_SQLSTATE) == _UNIQUE_VIOLATION:
            return 0
        _check(pg, result)
    return int(result.command_tuples or 0)


def _check(pg: Any, result: Any) -> None:
    """Raise a failed libpq result as psycopg raises it (a lost connection: OperationalError)."""
    if result.status in (_COMMAND_OK, _TUPLES_OK):
        return
    if pg.closed:
        raise psycopg.OperationalError(pg.pgconn.error_message.decode(errors="replace") or "connection lost")
    raise psycopg.errors.error_from_result(result, encoding=pg.info.encoding)


def _reusable(conn: Any) -> bool:
    """A driver connection that is open and outside any transaction (SQLite: always closed)."""
    pg = conn.dbapi_connection
    info = getattr(pg, "info", None)
    return info is not None and not pg.closed and info.transaction_status == _IDLE


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass


def _sqlite_engine(url: str, *, immediate: bool, **kwargs: Any) -> sa.Engine:
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 60},
        pool_size=kwargs.pop("pool_size", 20),
        max_overflow=kwargs.pop("max_overflow", 20),
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database ``url`` names if the server lacks it (as DBOS's
    launch does); return whether it was created. Connects to the server's
    ``postgres`` maintenance database with the same credentials. SQLite files are
    created by their first connection; other errors are left to the caller's
    connection attempt to report."""
    import psycopg
    from psycopg import sql

    parsed = sa.make_url(url)
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        return False
    plain = parsed.set(drivername="postgresql")
    conninfo = plain.render_as_string(hide_password=False)
    try:
        psycopg.connect(conninfo, connect_timeout=5).close()
        return False
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e) or f'"{parsed.database}"' not in str(e):
            return False
    maintenance = plain.set(database="postgres").render_as_string(hide_password=False)
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parsed.database)))
    except psycopg.errors.DuplicateDatabase:
        return False  # another process created it meanwhile
    return True
