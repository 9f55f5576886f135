"""Shared test infrastructure: one isolated database per test, on both backends.

- ``backend``: parametrized over ``postgres`` and ``sqlite``. On PostgreSQL every
  test gets a fresh database (``CREATE DATABASE t_<random>``, dropped WITH (FORCE)
  after); on SQLite a file in ``tmp_path``. Names are random, so tests are safe
  under pytest-xdist. If PostgreSQL is unreachable the postgres parametrization
  FAILS (never skips) with a message naming what is missing.
- ``harness``: builds ``DBOS(config=...)`` on the backend's database, launches it,
  and always calls ``DBOS.destroy()`` afterwards; ``harness.restart()`` simulates
  a process restart on the same database.
- ``eventually(fn)``: poll until a condition holds (never bare sleeps).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Callable, Iterator, Optional, TypeVar, cast

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from dbos import DBOS, DBOSConfig

T = TypeVar("T")

PG_BASE_URL = os.environ.get("DBOS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["postgres", "sqlite"]
APP_VERSION = "test-version"



def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fresh_database: on PostgreSQL, start from an empty database (not the migrated template)"
    )


_pg_error: Optional[str] = None
_pg_checked = False


def _psycopg_url(url: str) -> str:
    """psycopg wants a plain libpq URL (no SQLAlchemy driver suffix)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def _sqlalchemy_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _with_database(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + database
    return base + ("?" + query if query else "")


def _require_postgres() -> None:
    global _pg_checked, _pg_error
    if not _pg_checked:
        _pg_checked = True
        try:
            psycopg.connect(_psycopg_url(PG_BASE_URL), connect_timeout=3).close()
        except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
            _pg_error = str(e).strip()
    if _pg_error is not None:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_BASE_URL} ({_pg_error}). The postgres tests need a "
            "running PostgreSQL server: start one (scripts/test starts a throwaway server) or point "
            "DBOS_TEST_PG_URL at one.",
            pytrace=False,
        )


class Backend:
    """One test's isolated database, plus helpers to read the tables directly."""

    def __init__(self, kind: str, url: str, tmp_path: Any) -> None:
        self.kind = kind
        self.url = url  # what goes into system_database_url
        self._tmp_path = tmp_path
        self._engine: Optional[sa.Engine] = None
        self._extra_databases: list[str] = []
        self._extra_backends: list["Backend"] = []

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "sqlite"

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(_sqlalchemy_url(self.url), poolclass=NullPool)
        return self._engine

    def table(self, name: str, schema: str = "dbos") -> str:
        """A system/app table as raw SQL names it on this backend."""
        return name if self.is_sqlite else f'"{schema}".{name}'

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def execute(self, sql: str, **params: Any) -> int:
        with self.engine.begin() as conn:
            return conn.execute(sa.text(sql), params).rowcount

    # -- common reads --------------------------------------------------------
    def steps(self, workflow_id: str) -> list[tuple[int, str]]:
        """(function_id, function_name) of a workflow's recorded steps, in order."""
        return [
            (int(r[0]), str(r[1]))
            for r in self.rows(
                f"SELECT function_id, function_name FROM {self.table('operation_outputs')} "
                "WHERE workflow_uuid = :w ORDER BY function_id",
                w=workflow_id,
            )
        ]

    def status(self, workflow_id: str) -> Optional[str]:
        return self.scalar(  # type: ignore[no-any-return]
            f"SELECT status FROM {self.table('workflow_status')} WHERE workflow_uuid = :w", w=workflow_id
        )

    def workflow_count(self) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {self.table('workflow_status')}"))

    def force_pending(self, workflow_id: str) -> None:
        """Make a finished workflow look like one that crashed mid-way (status PENDING, no outcome)."""
        n = self.execute(
            f"UPDATE {self.table('workflow_status')} SET status = 'PENDING', output = NULL, error = NULL "
            "WHERE workflow_uuid = :w",
            w=workflow_id,
        )
        assert n == 1, f"no workflow_status row for {workflow_id}"

    def delete_steps_from(self, workflow_id: str, function_id: int) -> None:
        self.execute(
            f"DELETE FROM {self.table('operation_outputs')} WHERE workflow_uuid = :w AND function_id >= :f",
            w=workflow_id,
            f=function_id,
        )

    def other_database(self) -> "Backend":
        """A second, empty database on the same backend (e.g. an application database)."""
        if self.is_sqlite:
            url = f"sqlite:///{self._tmp_path / f'other-{uuid.uuid4().hex[:8]}.sqlite'}"
        else:
            name, url = _create_pg_database()
            self._extra_databases.append(name)
        other = Backend(self.kind, url, self._tmp_path)
        self._extra_backends.append(other)
        return other

    def dispose(self) -> None:
        for other in self._extra_backends:
            other.dispose()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        for name in self._extra_databases:
            _drop_pg_database(name)


def _create_pg_database(template: Optional[str] = None) -> tuple[str, str]:
    """A new, uniquely named database (a copy of ``template`` if given); returns (name, url)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(_psycopg_url(PG_BASE_URL), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    return name, _with_database(_psycopg_url(PG_BASE_URL), name)


_template: Optional[str] = None


def _pg_template() -> str:
    """A database migrated once per test process; each test gets a copy (launch then finds
    every migration applied). Tests of migrations themselves use a fresh, empty database."""
    global _template
    if _template is None:
        from dbos._storage.database import Database
        from dbos._storage.migrations import migrate_application, migrate_system

        name, url = _create_pg_database()
        db = Database(_sqlalchemy_url(url), "dbos", pool_size=2)
        try:
            migrate_system(db)
            migrate_application(db)
        finally:
            db.dispose()
        _template = name
    return _template


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_template() -> Iterator[None]:
    yield
    if _template is not None:
        _drop_pg_database(_template)


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(_psycopg_url(PG_BASE_URL), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    kind = request.param
    if kind == "postgres":
        _require_postgres()
        fresh = request.node.get_closest_marker("fresh_database") is not None
        name, url = _create_pg_database(None if fresh else _pg_template())
        b = Backend(kind, url, tmp_path)
        try:
            yield b
        finally:
            b.dispose()
            _drop_pg_database(name)
    else:
        b = Backend(kind, f"sqlite:///{tmp_path / 'sys.sqlite'}", tmp_path)
        try:
            yield b
        finally:
            b.dispose()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No DBOS env var from the outer environment leaks into a test; no DBOS outlives it."""
    for var in ("DBOS__VMID", "DBOS__APPVERSION", "DBOS__APPID", "DBOS_SYSTEM_DATABASE_URL", "DBOS_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    yield
    DBOS.destroy()


class Harness:
    """Build, launch, restart and destroy DBOS on one test database."""

    def __init__(self, backend: Backend, name: str) -> None:
        self.backend = backend
        self.name = name
        self.dbos: Optional[DBOS] = None

    def config(self, **overrides: Any) -> DBOSConfig:
        config: dict[str, Any] = {
            "name": self.name,
            "system_database_url": self.backend.url,
            "application_version": APP_VERSION,
            "executor_id": "local",
            "polling_interval_sec": 0.1,
            "log_level": "WARNING",
        }
        config.update(overrides)
        return cast(DBOSConfig, {k: v for k, v in config.items() if v is not None})

    def launch(self, **overrides: Any) -> DBOS:
        """Destroy any running DBOS, then construct and launch a new one."""
        DBOS.destroy()
        self.dbos = DBOS(config=self.config(**overrides))
        DBOS.launch()
        return self.dbos

    def restart(self, **overrides: Any) -> DBOS:
        """Simulate a process restart on the same database (destroy + new DBOS + launch)."""
        return self.launch(**overrides)

    def destroy(self) -> None:
        DBOS.destroy()
        self.dbos = None


@pytest.fixture
def harness(backend: Backend) -> Iterator[Harness]:
    """A Harness on the test database; not launched yet (define workflows first if needed)."""
    h = Harness(backend, "test-app")
    try:
        yield h
    finally:
        DBOS.destroy()


@pytest.fixture
def dbos(harness: Harness) -> Harness:
    """A launched DBOS on the test database (destroyed after the test)."""
    harness.launch()
    return harness


def eventually(fn: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = "") -> T:
    """Poll ``fn`` until it returns a truthy value (or stops raising AssertionError)."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = None
        except AssertionError as e:
            last = e
        if time.monotonic() > deadline:
            detail = f": {last}" if last is not None else ""
            raise AssertionError(f"condition not met within {timeout}s {what}{detail}")
        time.sleep(interval)


# -- fleet fixtures: real worker and coordinator processes (tests/handover_helpers.py) ------


@pytest.fixture
def cluster(backend: Backend, tmp_path: Any) -> Iterator[Any]:
    """Workers and coordinators of one test on its database, all ended after it."""
    from handover_helpers import Cluster

    c = Cluster(backend, tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def redis_server(tmp_path: Any) -> Iterator[Any]:
    """A throwaway redis-server on a free loopback port, for tests that kill it."""
    from handover_helpers import RedisServer

    rs = RedisServer(tmp_path)
    rs.start()
    try:
        yield rs
    finally:
        rs.close()
