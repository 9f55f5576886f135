"""Values to bytes and back. Any picklable value is a valid input, output or error."""

from __future__ import annotations

import pickle
from typing import Any, Optional

from dbos.error import DBOSException, DBOSSerializationError

_PROTOCOL = pickle.HIGHEST_PROTOCOL


def serialize(value: Any, what: str, *what_args: Any) -> bytes:
    """Pickle ``value``; ``what % what_args`` names it in the error (formatted only then:
    this runs for every step)."""
    try:
        return pickle.dumps(value, protocol=_PROTOCOL)
    except Exception as e:
        name = what % what_args if what_args else what
        raise DBOSSerializationError(f"{name} is not serializable: {type(e).__name__}: {e}") from e


def deserialize(data: Optional[bytes], what: str = "value") -> Any:
    if data is None:
        return None
    try:
        return pickle.loads(data)
    except Exception as e:
        raise DBOSSerializationError(f"{what} could not be deserialized: {type(e).__name__}: {e}") from e


def serialize_error(error: BaseException) -> bytes:
    """Record an exception; one that cannot be pickled is kept as a DBOSException with its text."""
    try:
        data = pickle.dumps(error, protocol=_PROTOCOL)
        pickle.loads(data)
        return data
    except Exception:
        return pickle.dumps(
            DBOSException(f"{type(error).__name__}: {error}"), protocol=_PROTOCOL
        )


def deserialize_error(data: Optional[bytes]) -> Optional[BaseException]:
    value = deserialize(data, "recorded error")
    if value is None:
        return None
    if isinstance(value, BaseException):
        return value
    return DBOSException(str(value))
