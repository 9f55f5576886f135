"""DBOSConfig (what users write) -> Settings (one frozen object everything reads).

This module is the only reader of environment variables. Validation happens
here, at ``DBOS(config=...)``, and every error names the offending key.
"""

from __future__ import annotations

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


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
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
    unknown = sorted(set(config) - set(DBOSConfig.__annotations__))
    if unknown:
        raise DBOSConfigError(f"unknown config key '{unknown[0]}'")

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
    sys_url = sys_url or env.get("DBOS_SYSTEM_DATABASE_URL")
    if not sys_url:
        sys_url = f"sqlite:///{os.path.join(os.getcwd(), name + '.sqlite')}"
    sys_url = normalize_database_url(sys_url, "system_database_url")
    app_url = _opt(config, "application_database_url", str)
    app_url = normalize_database_url(app_url, "application_database_url") if app_url else sys_url

    pool = _opt(config, "sys_db_pool_size", int)
    if pool is not None and not 1 <= pool <= 1000:
        raise DBOSConfigError(f"config key 'sys_db_pool_size' must be 1..1000, got {pool}")

    schema = _opt(config, "dbos_system_schema", str) or "dbos"
    if not _IDENT.match(schema):
        raise DBOSConfigError(
            f"config key 'dbos_system_schema' must be a SQL identifier, got {schema!r}"
        )

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
    )
