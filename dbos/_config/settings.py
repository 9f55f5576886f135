"""DBOSConfig (what users write) -> Settings (one frozen object everything reads).

This module is the only reader of environment variables. Validation happens
here, at ``DBOS(config=...)``, and every error names the offending key.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, TypedDict

from dbos.error import DBOSConfigError


class DBOSConfig(TypedDict, total=False):
    """User-facing configuration (every key optional except ``name``)."""

    name: str
    system_database_url: Optional[str]
    application_database_url: Optional[str]
    sys_db_pool_size: Optional[int]
    db_engine_kwargs: Optional[dict[str, Any]]
    executor_id: Optional[str]
    application_version: Optional[str]
    dbos_system_schema: Optional[str]
    log_level: Optional[str]
    redis_url: Optional[str]
    polling_interval_sec: Optional[float]
    max_executor_threads: Optional[int]
    run_admin_server: Optional[bool]
    admin_port: Optional[int]
    enable_otlp: Optional[bool]
    otlp_traces_endpoints: Optional[list[str]]
    otlp_logs_endpoints: Optional[list[str]]
    otlp_attributes: Optional[dict[str, str]]
    heartbeat_interval_sec: Optional[float]
    default_worker_concurrency: Optional[int]
    use_prepared_statements: Optional[bool]
    max_value_bytes: Optional[int]
    # DBOS Transact 2.x keys (docs/decisions.md, "Names, keywords and config keys"):
    database_url: Optional[str]  # DBOS's old name of application_database_url
    run_migrations: Optional[bool]
    notification_listener_polling_interval_sec: Optional[float]
    use_listen_notify: Optional[bool]
    system_database_engine: Optional[Any]
    sys_db_polling_concurrency: Optional[int]
    otlp_log_level: Optional[str]
    console_log_level: Optional[str]
    conductor_key: Optional[str]
    conductor_url: Optional[str]
    conductor_executor_metadata: Optional[dict[str, Any]]
    serializer: Optional[Any]
    enable_patching: Optional[bool]
    notification_coalesce_sec: Optional[float]
    scheduler_polling_interval_sec: Optional[float]
    kafka_queue_polling_interval_sec: Optional[float]
    otel_attribute_format: Optional[str]


# DBOS 2.x keys that change nothing here, and why (logged once per process when set).
_NO_EFFECT: dict[str, str] = {
    "use_listen_notify": "wakeups travel over Redis (redis_url) or in process; without Redis waits poll",
    "sys_db_polling_concurrency": "waits poll at most once per polling interval each, sharing the pool",
    "otlp_log_level": "OTLP logs use log_level",
    "console_log_level": "the console uses log_level",
    "conductor_key": "DBOS Conductor is not used: the fleet's coordinator and console take its place",
    "conductor_url": "DBOS Conductor is not used",
    "conductor_executor_metadata": "DBOS Conductor is not used",
    "serializer": "every value is pickled (a custom serializer is not used)",
    "enable_patching": "workflow patching is not implemented (DBOS.patch raises DBOSNotImplementedError)",
    "notification_coalesce_sec": "notifications are not coalesced here",
    "scheduler_polling_interval_sec": "a schedule change in this process wakes the scheduler at once; an idle "
                                      "one rereads the schedules every 5 s",
    "kafka_queue_polling_interval_sec": "Kafka consumers are not implemented",
    "otel_attribute_format": "spans carry this library's attribute names",
}
_warned_no_effect: set[str] = set()


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


@dataclass(frozen=True)
class Settings:
    """Everything the library reads, resolved once. Never mutated."""

    name: str
    system_database_url: str
    application_database_url: str
    sys_db_pool_size: int
    db_engine_kwargs: Mapping[str, Any]
    executor_id: str
    app_version: Optional[str]  # None: computed from the workflow sources at launch
    app_id: str
    schema: str
    log_level: str
    redis_url: Optional[str]
    polling_interval_sec: float
    max_executor_threads: int
    heartbeat_interval_sec: float
    default_worker_concurrency: int
    enable_otlp: bool
    otlp_traces_endpoints: tuple[str, ...] = ()
    otlp_logs_endpoints: tuple[str, ...] = ()
    otlp_attributes: Mapping[str, str] = field(default_factory=dict)
    # False behind a transaction pooler (PgBouncer): no named prepared statements, ours
    # or psycopg's (every Database built from these settings is given it).
    use_prepared_statements: bool = True
    # The most bytes one serialized input, output, message or event may take.
    max_value_bytes: int = 64 * 1024 * 1024
    # The admin server for a plain ``DBOS.launch()`` (``dbos-worker`` has its own flags).
    run_admin_server: bool = False
    admin_port: int = 3001
    # False: launch verifies the system tables instead of creating or upgrading them
    # (a role without DDL rights, or migrations run out of band with ``dbos migrate``).
    run_migrations: bool = True

    @property
    def is_sqlite(self) -> bool:
        return self.system_database_url.startswith("sqlite")


def _opt(config: Mapping[str, Any], key: str, types: type | tuple[type, ...]) -> Any:
    value = config.get(key)
    if value is None:
        return None
    # bool is an int subclass: never accept it where a number is wanted.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise DBOSConfigError(f"config key '{key}' must be {_type_name(types)}, got {value!r}")
    if not isinstance(value, types):
        raise DBOSConfigError(f"config key '{key}' must be {_type_name(types)}, got {value!r}")
    return value


def _log_no_effect(config: Mapping[str, Any]) -> None:
    for key, why in _NO_EFFECT.items():
        if config.get(key) is not None and key not in _warned_no_effect:
            _warned_no_effect.add(key)
            logging.getLogger("dbos").warning("config key '%s' has no effect in dbos-fleet: %s", key, why)


def _engine_url(engine: Any) -> str:
    """DBOS 2.x's system_database_engine: this library builds its own engine (its pool, its
    session settings) on the engine's URL."""
    url = getattr(engine, "url", None)
    if url is None or not hasattr(url, "render_as_string"):
        raise DBOSConfigError(f"config key 'system_database_engine' must be a SQLAlchemy Engine, got {engine!r}")
    rendered: str = url.render_as_string(hide_password=False)
    return rendered


def system_url_beside(app_url: str) -> str:
    """The system database DBOS 2.x uses for an application database: the same SQLite
    file, or ``<database>_dbos_sys`` on the same PostgreSQL server."""
    if app_url.startswith("sqlite"):
        return app_url
    parts = urllib.parse.urlsplit(app_url)
    database = parts.path.lstrip("/") or "postgres"
    return urllib.parse.urlunsplit(parts._replace(path="/" + database + "_dbos_sys"))


def check_schema_name(what: str, schema: Any) -> None:
    """A system schema may be any name PostgreSQL takes quoted (mixed case, '-', spaces,
    a leading digit): 1..63 bytes, without the characters our quoted SQL cannot carry."""
    problem = None
    if not isinstance(schema, str) or not schema:
        problem = "must be a non-empty string"
    elif len(schema.encode("utf-8", "surrogatepass")) > 63:
        problem = "must be at most 63 bytes (PostgreSQL's limit for a name)"
    elif any(c in schema for c in '"%\x00') or not schema.isprintable():
        problem = "must not contain '\"', '%', a NUL or other unprintable characters"
    if problem is not None:
        raise DBOSConfigError(f"{what} {problem}, got {schema!r}")


def _type_name(types: type | tuple[type, ...]) -> str:
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return types.__name__


def _check_endpoint(key: str, endpoint: Any) -> None:
    """An OTLP endpoint must be an http(s) URL with a host (and a numeric port, if any)."""
    problem = None
    if not isinstance(endpoint, str):
        problem = "is not a string"
    elif any(c.isspace() for c in endpoint):
        problem = "contains whitespace"
    else:
        try:
            parts = urllib.parse.urlsplit(endpoint)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
        except ValueError as e:
            problem = f"is not a valid URL ({e})"
        else:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problem = "is not an http(s):// URL with a host"
    if problem is not None:
        raise DBOSConfigError(f"config key '{key}' must be a list of http(s):// URLs: {endpoint!r} {problem}")


# PostgreSQL returns at most 1 GB in one field; a listing of a few such values fails.
_MAX_VALUE_LIMIT = 512 * 1024 * 1024
_MAX_IDENTIFIER_BYTES = 1024  # as dbos._execution.checks (the layer above this one)


def _check_identifier(key: str, value: str) -> None:
    """An executor ID or app version: non-empty, no NUL, at most 1,024 bytes."""
    problem = None
    if not value:
        problem = "must not be empty"
    elif "\x00" in value:
        problem = "must not contain a NUL character (\\x00)"
    elif len(value.encode("utf-8", "surrogatepass")) > _MAX_IDENTIFIER_BYTES:
        problem = f"must be at most {_MAX_IDENTIFIER_BYTES} bytes"
    if problem is not None:
        shown = value if len(value) <= 60 else value[:60] + "..."
        raise DBOSConfigError(f"config key '{key}' {problem}, got {shown!r}")


# db_engine_kwargs the library passes on to SQLAlchemy's create_engine, with their types.
# The rest are set by the library itself (isolation, pre-ping, reset on return) or unknown.
_ENGINE_KWARGS: dict[str, tuple[type, ...]] = {
    "pool_size": (int,),
    "max_overflow": (int,),
    "pool_timeout": (int, float),
    "pool_recycle": (int, float),
    "pool_use_lifo": (bool,),
    "echo": (bool,),
    "echo_pool": (bool,),
    "connect_args": (dict,),
}


def _check_engine_kwargs(kwargs: Mapping[str, Any]) -> None:
    for key, value in kwargs.items():
        types = _ENGINE_KWARGS.get(key)
        if types is None:
            raise DBOSConfigError(
                f"config key 'db_engine_kwargs' has an unsupported key {key!r}; supported: "
                + ", ".join(sorted(_ENGINE_KWARGS))
            )
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise DBOSConfigError(
                f"config key 'db_engine_kwargs' key {key!r} must be {_type_name(types)}, got {value!r}"
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise DBOSConfigError(f"config key 'db_engine_kwargs' key {key!r} must be >= 0, got {value!r}")


def normalize_database_url(url: str, key: str) -> str:
    """Accept the URL spellings users write; return the SQLAlchemy one we use."""
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
        except ValueError as e:
            raise DBOSConfigError(f"config key '{key}' is not a valid URL ({e}): {url!r}") from None
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+psycopg://"):
        return url
    if url.startswith("sqlite:///") or url.startswith("sqlite+pysqlite:///"):
        path = url.split(":///", 1)[1]
        if not path or path.split("?", 1)[0] == ":memory:" or "mode=memory" in path:
            raise DBOSConfigError(
                f"config key '{key}' is an in-memory or empty SQLite database ({url!r}): every connection "
                "would see a different database; give a file, e.g. sqlite:///app.sqlite"
            )
        return "sqlite:///" + path
    raise DBOSConfigError(
        f"config key '{key}' must be a postgresql:// or sqlite:/// URL, got {url!r}"
    )


def load_settings(config: Mapping[str, Any], env: Optional[Mapping[str, str]] = None) -> Settings:
    """Validate a DBOSConfig and resolve it with the environment into Settings."""
    if not isinstance(config, Mapping):
        raise DBOSConfigError(f"config must be a dict (DBOSConfig), got {type(config).__name__}")
    env = os.environ if env is None else env
    known = list(DBOSConfig.__annotations__)
    unknown = sorted(set(config) - set(known))
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DBOSConfigError(f"unknown config key '{unknown[0]}'{hint}")
    _log_no_effect(config)

    name = config.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise DBOSConfigError(
            "config key 'name' is required: letters, digits, '_', '-' or '.', at most 100"
            f" characters; got {name!r}"
        )

    sys_url = _opt(config, "system_database_url", str)
    if sys_url == "":
        raise DBOSConfigError(
            "config key 'system_database_url' is an empty string: give a postgresql:// or sqlite:/// URL,"
            " or leave the key out for the default SQLite file"
        )
    engine = config.get("system_database_engine")
    if engine is not None and not sys_url:
        sys_url = _engine_url(engine)
    app_key = "application_database_url" if config.get("application_database_url") else "database_url"
    app_url = _opt(config, app_key, str)
    app_url = normalize_database_url(app_url, app_key) if app_url else None
    sys_url = sys_url or env.get("DBOS_SYSTEM_DATABASE_URL")
    if not sys_url and app_url:
        sys_url = system_url_beside(app_url)  # as DBOS 2.x: <database>_dbos_sys on the same server
    if not sys_url:
        sys_url = f"sqlite:///{os.path.join(os.getcwd(), name + '.sqlite')}"
    sys_url = normalize_database_url(sys_url, "system_database_url")
    app_url = app_url or sys_url
    run_migrations = _opt(config, "run_migrations", bool)

    pool = _opt(config, "sys_db_pool_size", int)
    if pool is not None and not 1 <= pool <= 1000:
        raise DBOSConfigError(f"config key 'sys_db_pool_size' must be 1..1000, got {pool}")

    schema = _opt(config, "dbos_system_schema", str) or "dbos"
    check_schema_name("config key 'dbos_system_schema'", schema)

    log_level = (_opt(config, "log_level", str) or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise DBOSConfigError(f"config key 'log_level' must be one of {_LOG_LEVELS}, got {log_level!r}")

    redis_url = _opt(config, "redis_url", str) or env.get("DBOS_REDIS_URL") or None
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise DBOSConfigError(
            f"config key 'redis_url' must be a redis://, rediss:// or unix:// URL, got {redis_url!r}"
        )

    # Explicit config wins over the environment (as in DBOS); "" is refused, not "unset".
    executor_id = _opt(config, "executor_id", str)
    if executor_id is None:
        executor_id = env.get("DBOS__VMID") or "local"
    _check_identifier("executor_id", executor_id)
    app_version = _opt(config, "application_version", str)
    if app_version is None:
        app_version = env.get("DBOS__APPVERSION") or None
    if app_version is not None:
        _check_identifier("application_version", app_version)
    max_value = _opt(config, "max_value_bytes", int)
    if max_value is not None and not 1024 <= max_value <= _MAX_VALUE_LIMIT:
        raise DBOSConfigError(f"config key 'max_value_bytes' must be 1024..{_MAX_VALUE_LIMIT}, got {max_value}")

    polling = _opt(config, "polling_interval_sec", (int, float))
    if polling is None:  # DBOS 2.x's name for how often waits poll without a notification
        polling = _opt(config, "notification_listener_polling_interval_sec", (int, float))
    if polling is not None and not 0.001 <= polling <= 3600:
        raise DBOSConfigError(f"config key 'polling_interval_sec' must be 0.001..3600, got {polling}")
    heartbeat = _opt(config, "heartbeat_interval_sec", (int, float))
    if heartbeat is not None and not 0.05 <= heartbeat <= 3600:
        raise DBOSConfigError(f"config key 'heartbeat_interval_sec' must be 0.05..3600, got {heartbeat}")
    threads = _opt(config, "max_executor_threads", int)
    if threads is not None and not 1 <= threads <= 100_000:
        raise DBOSConfigError(f"config key 'max_executor_threads' must be 1..100000, got {threads}")
    worker_default = _opt(config, "default_worker_concurrency", int)
    if worker_default is not None and not 1 <= worker_default <= 10_000:
        raise DBOSConfigError(f"config key 'default_worker_concurrency' must be 1..10000, got {worker_default}")
    engine_kwargs = _opt(config, "db_engine_kwargs", dict) or {}
    _check_engine_kwargs(engine_kwargs)
    use_prepared = _opt(config, "use_prepared_statements", bool)
    traces = _opt(config, "otlp_traces_endpoints", list) or []
    logs = _opt(config, "otlp_logs_endpoints", list) or []
    for key, endpoints in (("otlp_traces_endpoints", traces), ("otlp_logs_endpoints", logs)):
        for endpoint in endpoints:
            _check_endpoint(key, endpoint)
    attributes = _opt(config, "otlp_attributes", dict) or {}
    enable_otlp = _opt(config, "enable_otlp", bool)
    run_admin = _opt(config, "run_admin_server", bool)
    admin_port = _opt(config, "admin_port", int)
    if admin_port is not None and not 1 <= admin_port <= 65535:
        raise DBOSConfigError(f"config key 'admin_port' must be a TCP port 1..65535, got {admin_port}")

    return Settings(
        name=name,
        system_database_url=sys_url,
        application_database_url=app_url,
        sys_db_pool_size=pool or 20,
        db_engine_kwargs=dict(engine_kwargs),
        executor_id=executor_id,
        app_version=app_version,
        app_id=env.get("DBOS__APPID", ""),
        schema=schema,
        log_level=log_level,
        redis_url=redis_url,
        polling_interval_sec=float(polling) if polling is not None else 1.0,
        max_executor_threads=threads or 512,
        heartbeat_interval_sec=float(heartbeat) if heartbeat is not None else 1.0,
        default_worker_concurrency=worker_default or 16,
        enable_otlp=bool(enable_otlp) if enable_otlp is not None else bool(traces or logs),
        otlp_traces_endpoints=tuple(traces),
        otlp_logs_endpoints=tuple(logs),
        otlp_attributes=dict(attributes),
        use_prepared_statements=use_prepared is not False,
        max_value_bytes=max_value if max_value is not None else 64 * 1024 * 1024,
        run_admin_server=bool(run_admin),
        admin_port=admin_port if admin_port is not None else 3001,
        run_migrations=run_migrations is not False,
    )
