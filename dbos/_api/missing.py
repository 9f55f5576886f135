"""Names of DBOS Transact 2.31.1 this library does not implement, and why.

Code written for DBOS that reaches one of them gets a ``DBOSNotImplementedError``
(a ``NotImplementedError`` and a ``DBOSException``) naming the feature, never an
``AttributeError``: ``DBOS.<name>``, ``DBOSClient(...).<name>``, ``Queue(...).<name>``,
``dbos.<name>`` and ``dbos.error.<name>`` all look here, and only after the normal
lookup failed, so an implemented name never reaches this table.
docs/decisions.md ("Left out of the DBOS 2.x API") lists the same names.
"""

from __future__ import annotations

from typing import Any, NoReturn

from dbos.error import DBOSException

_STREAMS = "workflow streams"
_SERIALIZERS = "pluggable and portable (JSON) serialization: every value is pickled"
_DATASOURCES = "transactions on extra data sources (@DBOS.transaction runs on application_database_url)"
_PATCH = "workflow patching (run old workflows on their own app version, or fork_workflow them onto a new one)"

DBOS_METHODS: dict[str, str] = {
    **{n: _STREAMS for n in (
        "write_stream", "close_stream", "read_stream", "read_stream_offset", "write_stream_async",
        "close_stream_async", "read_stream_async", "read_stream_offset_async",
    )},
    **{n: _PATCH for n in ("patch", "patch_async", "deprecate_patch", "deprecate_patch_async")},
    "kafka_consumer": "Kafka consumers",
    "tracer": "DBOS.tracer (DBOS.span is the current OpenTelemetry span; use opentelemetry's API for more)",
    "alert_handler": "DBOS Conductor alerts",
}

CLIENT_METHODS: dict[str, str] = {
    **{n: r for n, r in DBOS_METHODS.items() if r in (_STREAMS,)},
    "rename_application": "renaming an application",
    "rename_application_async": "renaming an application",
}

# Every DBOS 2.31 Queue method is implemented; the hook stays for the next release's names.
QUEUE_METHODS: dict[str, str] = {}

MODULE_NAMES: dict[str, str] = {
    **{n: _SERIALIZERS for n in ("Serializer", "DBOSPortableJSONSerializer", "PortableWorkflowError")},
    **{n: _DATASOURCES for n in ("SQLAlchemyDatasource", "AsyncSQLAlchemyDatasource")},
    "KafkaMessage": "Kafka consumers",
    "Debouncer": "debouncing workflows",
    "DebouncerClient": "debouncing workflows",
    "pydantic_args_validator": "validating workflow arguments with pydantic",
    "make_pydantic_args_validator": "validating workflow arguments with pydantic",
}

ERROR_NAMES: dict[str, str] = {
    "DBOSStreamTimeoutError": _STREAMS,
    "DBOSStreamNondeterminismError": _STREAMS,
}


class DBOSNotImplementedError(DBOSException, NotImplementedError):
    """A DBOS Transact 2.x name this library leaves out (docs/decisions.md)."""


def raise_missing(owner: str, name: str, table: dict[str, str]) -> NoReturn:
    """For ``__getattr__``: a left-out name raises DBOSNotImplementedError, anything else
    the usual AttributeError."""
    reason = table.get(name)
    if reason is None:
        raise AttributeError(f"{owner} has no attribute {name!r}")
    raise DBOSNotImplementedError(
        f"{owner}.{name} is part of DBOS Transact 2.x but not of dbos-fleet: {reason} is not implemented "
        "(docs/decisions.md, 'Left out of the DBOS 2.x API')"
    )


_NATIVE_NAMES = frozenset({"native", "none", "default", "pickle", "py_pickle"})


def check_serialization_type(serialization_type: Any, where: str) -> None:
    """DBOS 2.x's ``serialization_type=``: None, NATIVE and DEFAULT mean pickling, what
    every value gets here; PORTABLE (JSON) is refused as not implemented, anything else
    as not a format. ``where`` names the call in the error."""
    from dbos._execution.serialization import WorkflowSerializationFormat

    if serialization_type is None or serialization_type is WorkflowSerializationFormat.DEFAULT:
        return
    name = str(getattr(serialization_type, "value", serialization_type)).lower()
    if name in _NATIVE_NAMES:
        return
    if name == "portable":
        raise DBOSNotImplementedError(
            f"{where}(serialization_type=WorkflowSerializationFormat.PORTABLE): portable (JSON) serialization is "
            "part of DBOS Transact 2.x but not of dbos-fleet, where every value is pickled; use "
            "WorkflowSerializationFormat.NATIVE or None (docs/decisions.md, 'Left out of the DBOS 2.x API')"
        )
    raise DBOSException(
        f"{where}: serialization_type must be a WorkflowSerializationFormat (NATIVE or None), "
        f"got {serialization_type!r}"
    )
