"""Values to bytes and back. Any picklable value is a valid input, output or error."""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

from dbos.error import DBOSException, DBOSSerializationError

_PROTOCOL = pickle.HIGHEST_PROTOCOL


class UnserializableValueError(DBOSSerializationError, TypeError):
    """A value that cannot be pickled. Also a ``TypeError``, what pickle itself raises
    for most such values (and what code written for DBOS Transact catches)."""


class WorkflowSerializationFormat(str, Enum):
    """DBOS 2.x's ``serialization_type`` values. Every value is pickled here (DBOS's native
    format): NATIVE and DEFAULT mean that; PORTABLE (JSON) is refused
    (``dbos._api.missing.check_serialization_type``; docs/decisions.md)."""

    PORTABLE = "portable"
    NATIVE = "native"
    DEFAULT = None


def serialize(value: Any, what: str, *what_args: Any) -> bytes:
    """Pickle ``value``; ``what % what_args`` names it in the error (formatted only then:
    this runs for every step)."""
    try:
        return pickle.dumps(value, protocol=_PROTOCOL)
    except Exception as e:
        name = what % what_args if what_args else what
        raise UnserializableValueError(f"{name} is not serializable: {type(e).__name__}: {e}") from e


def deserialize(data: Optional[bytes], what: str = "value") -> Any:
    if data is None:
        return None
    try:
        return pickle.loads(data)
    except Exception as e:
        raise DBOSSerializationError(f"{what} could not be deserialized: {type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class _ErrorRecord:
    """What is kept of an exception that cannot be pickled (or is over the size limit):
    its type's import path and its text. Replay raises that type again if it can be
    imported and built, with the text as its only argument (its other attributes are
    lost); otherwise a DBOSException carrying the type name and the text."""

    module: str
    qualname: str
    text: str


def serialize_error(error: BaseException, limit: Optional[int] = None) -> bytes:
    """Record an exception (see ``_ErrorRecord`` for one that cannot be pickled as it is)."""
    try:
        data = pickle.dumps(error, protocol=_PROTOCOL)
        pickle.loads(data)
        if limit is None or len(data) <= limit:
            return data
        text = str(error)[:10_000]
    except Exception:
        text = _text(error)
    cls = type(error)
    return pickle.dumps(_ErrorRecord(cls.__module__, cls.__qualname__, text), protocol=_PROTOCOL)


def as_recorded(error: BaseException, data: bytes) -> BaseException:
    """The error as a replay will raise it: ``error`` itself if it was pickled whole,
    else the rebuilt type or wrapper (see ``_ErrorRecord``), caused by ``error``. A step
    raises this form the first time too, so workflow code sees the same type then as
    on every replay."""
    try:
        value = pickle.loads(data)
    except Exception:
        return error
    if not isinstance(value, _ErrorRecord):
        return error
    replayed = _rebuilt(value)
    replayed.__cause__ = error
    return replayed


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return repr(error.args)


def _rebuilt(record: _ErrorRecord) -> BaseException:
    """The recorded type again, if it can be imported and built from its text."""
    try:
        cls: Any = importlib.import_module(record.module)
        for part in record.qualname.split("."):
            cls = getattr(cls, part)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            error: BaseException = cls.__new__(cls)
            error.args = (record.text,)
            str(error)  # a __str__ that needs attributes the record lost: fall back
            return error
    except Exception:
        pass
    return DBOSException(f"{record.qualname}: {record.text}")


def deserialize_error(data: Optional[bytes]) -> Optional[BaseException]:
    value = deserialize(data, "recorded error")
    if value is None:
        return None
    if isinstance(value, BaseException):
        return value
    if isinstance(value, _ErrorRecord):
        return _rebuilt(value)
    return DBOSException(str(value))
