"""Checks of values users hand the library, at the call that receives them.

Each raises ``DBOSException`` naming the field and (a short form of) the value,
before anything is written. The limits (docs/decisions.md, "Bad input"):

- **identifiers** (workflow IDs, queue names, topics, event keys, deduplication
  IDs, partition keys, app versions): a string without NUL characters
  (PostgreSQL text cannot hold one, and psycopg would cut or refuse it) of at
  most ``MAX_IDENTIFIER_BYTES`` in UTF-8, so that two of them in one composite
  index key stay under PostgreSQL's B-tree limit (2,704 bytes);
- **durations** (sleeps, recv/get_event timeouts, workflow timeouts): a finite
  number of seconds, not NaN, at least 0 (or above 0 where zero means nothing),
  at most ``MAX_DURATION_SEC``; infinity is refused (no wait in the API means
  "forever": ``SetWorkflowTimeout(None)`` removes a timeout);
- **serialized values** (inputs, outputs, messages, events): at most the
  configured ``max_value_bytes`` (``check_size``).
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

from dbos.error import DBOSException, DBOSSerializationError

MAX_IDENTIFIER_BYTES = 1024
MAX_DURATION_SEC = 10 * 365 * 86400.0  # ten years; below threading.TIMEOUT_MAX and any int64 deadline


def short(value: Any) -> str:
    """``repr(value)``, cut to a readable length (a 1 MB ID must not flood the message)."""
    text = repr(value)
    if len(text) > 80:
        size = f"{len(value)} characters" if isinstance(value, (str, bytes)) else "long"
        return f"{text[:60]}... ({size})"
    return text


def identifier(field: str, value: Any, *, allow_empty: bool = False) -> str:
    """``value`` if it is a usable identifier; else a DBOSException naming ``field``."""
    if not isinstance(value, str):
        raise DBOSException(f"{field} must be a string, got {short(value)}")
    if not value and not allow_empty:
        raise DBOSException(f"{field} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise DBOSException(f"{field} must not contain a NUL character (\\x00), got {short(value)}")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_IDENTIFIER_BYTES:
        raise DBOSException(
            f"{field} is {size} bytes long; the limit is {MAX_IDENTIFIER_BYTES} bytes (UTF-8): {short(value)}"
        )
    return value


def workflow_id(field: str, value: Any) -> str:
    """A workflow ID to create a workflow under: an identifier that is not blank (an ID of
    spaces is a bug upstream, as in DBOS 2.x, not a name to keep)."""
    identifier(field, value)
    if not value.strip():
        raise DBOSException(f"{field} must not be blank, got {value!r}")
    return str(value)


def workflow_attributes(value: Any) -> Optional[str]:
    """DBOS 2.x's workflow attributes: a dict of string keys that JSON can hold, or None;
    returned as the JSON text stored with the workflow."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise DBOSException(f"Invalid workflow attributes {short(value)}: attributes must be a dict with string keys")
    try:
        text = json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise DBOSException(f"Invalid workflow attributes {short(value)}: attributes must be JSON-serializable ({e})") from None
    if len(text) > 64 * 1024:
        raise DBOSException(f"workflow attributes are {len(text)} bytes of JSON; the limit is 65536")
    return text


def optional_identifier(field: str, value: Any) -> Optional[str]:
    return None if value is None else identifier(field, value)


def duration(field: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as float seconds if it is a valid duration; else a DBOSException naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DBOSException(f"{field} must be a number of seconds, got {short(value)}")
    if math.isnan(value):
        raise DBOSException(f"{field} must be a number of seconds, got NaN")
    if math.isinf(value):
        raise DBOSException(
            f"{field} must be a finite number of seconds (at most {MAX_DURATION_SEC:.0f}), got {value}"
        )
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise DBOSException(f"{field} must be {bound} seconds, got {value}")
    if value > MAX_DURATION_SEC:
        raise DBOSException(f"{field} must be at most {MAX_DURATION_SEC:.0f} seconds (ten years), got {value}")
    return float(value)


def check_size(data: Optional[bytes], limit: int, what: str) -> None:
    """Refuse a serialized value over the configured ``max_value_bytes``."""
    if data is not None and len(data) > limit:
        raise DBOSSerializationError(
            f"{what} is {len(data):,} bytes serialized; the limit is {limit:,} bytes "
            "(config key 'max_value_bytes')"
        )
