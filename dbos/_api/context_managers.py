"""The context managers of the reference. Each replaces the context for its block."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from types import TracebackType
from typing import Any, List, Optional, TypeVar

from dbos._execution import checks, context
from dbos._execution.context import Auth, EnqueueOptions, IdBox
from dbos.error import DBOSException

_MAX_PRIORITY = 2_147_483_647

# typing.Self needs Python 3.11 (3.10 is supported): a TypeVar bound to the base does the same.
_B = TypeVar("_B", bound="_Block")


class _Block:
    """Base: set a new Ctx on enter, restore the old one on exit."""

    def __init__(self) -> None:
        self._stack: Optional[contextlib.ExitStack] = None

    def _changes(self, ctx: context.Ctx) -> dict[str, Any]:
        raise NotImplementedError

    def __enter__(self: _B) -> _B:
        ctx = context.current()
        stack = contextlib.ExitStack()
        stack.enter_context(context.using(replace(ctx, **self._changes(ctx))))
        self._stack = stack
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


class SetWorkflowID(_Block):
    """Give ``wfid`` to the next workflow started in the block (only the first one)."""

    def __init__(self, wfid: str) -> None:
        super().__init__()
        self.wfid = checks.workflow_id("workflow ID (SetWorkflowID)", wfid)

    def _changes(self, ctx: context.Ctx) -> dict[str, Any]:
        return {"id_box": IdBox(self.wfid)}


class SetWorkflowTimeout(_Block):
    """Timeout (seconds, start to completion) for workflows started in the block; None removes it."""

    def __init__(self, workflow_timeout_sec: Optional[float]) -> None:
        super().__init__()
        if workflow_timeout_sec is not None:
            # NaN, infinity and sub-millisecond values are refused (None means no timeout).
            checks.duration("SetWorkflowTimeout workflow_timeout_sec", workflow_timeout_sec, positive=True)
            if workflow_timeout_sec < 0.001:
                raise DBOSException(
                    f"SetWorkflowTimeout workflow_timeout_sec must be at least 0.001 seconds, got {workflow_timeout_sec}"
                )
        self.workflow_timeout_sec = workflow_timeout_sec

    def _changes(self, ctx: context.Ctx) -> dict[str, Any]:
        return {"timeout": self.workflow_timeout_sec}


def _delay(seconds: Any) -> float:
    """A delay of SetEnqueueOptions: finite seconds >= 0 (at most ten years)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 315_360_000:
        raise DBOSException(f"delay_seconds must be a number of seconds in 0..315360000, got {seconds!r}")
    return float(seconds)


class SetEnqueueOptions(_Block):
    """Options for enqueues in the block (not propagated to child workflows)."""

    def __init__(
        self,
        *,
        deduplication_id: Optional[str] = None,
        priority: Optional[int] = None,
        app_version: Optional[str] = None,
        queue_partition_key: Optional[str] = None,
        delay_seconds: Optional[float] = None,
        duplication_policy: Optional[context.DuplicationPolicy] = None,
    ) -> None:
        super().__init__()
        if duplication_policy not in (None, "reject", "return-existing"):
            raise DBOSException(
                f"Invalid duplication_policy {duplication_policy!r}: must be 'reject' or 'return-existing'"
            )
        if delay_seconds is not None:
            delay_seconds = _delay(delay_seconds)
        if priority is not None:
            if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= _MAX_PRIORITY:
                raise DBOSException(f"Invalid priority {priority!r}: priority must be an integer in 1..{_MAX_PRIORITY}")
        for key, value in (("deduplication_id", deduplication_id), ("app_version", app_version),
                           ("queue_partition_key", queue_partition_key)):
            if value is not None:
                checks.identifier(key, value)
        self.options = EnqueueOptions(
            deduplication_id, priority, app_version, queue_partition_key, delay_seconds, duplication_policy
        )

    def _changes(self, ctx: context.Ctx) -> dict[str, Any]:
        return {"enqueue": self.options}


def start_fields() -> Optional[dict[str, Any]]:
    """For ``start_workflow``: as in DBOS 2.x, ``SetEnqueueOptions`` around it (which does
    not enqueue) is a mistake, not options to drop silently; except ``app_version``, which
    pins the started workflow's version (which executors may recover it). Returns the
    status-row fields to set, or None."""
    options = context.current().enqueue
    if options is None:
        return None
    set_options = [name for name, value in (
        ("deduplication_id", options.deduplication_id), ("priority", options.priority),
        ("queue_partition_key", options.queue_partition_key), ("delay_seconds", options.delay_seconds),
        ("duplication_policy", None if options.duplication_policy == "reject" else options.duplication_policy),
    ) if value is not None]
    if set_options:
        raise DBOSException(
            f"Enqueue option(s) {', '.join(set_options)} set on a workflow that is not being enqueued: "
            "these options apply only when enqueueing onto a queue (Queue.enqueue)"
            + ("; duplication_policy 'return-existing' requires a queue" if "duplication_policy" in set_options else "")
        )
    return {"application_version": options.app_version} if options.app_version is not None else None


class SetWorkflowAttributes(_Block):
    """DBOS 2.x: key-value attributes recorded with every workflow started or enqueued in
    the block (not with their children); ``DBOS.update_workflow_attributes`` replaces them."""

    def __init__(self, attributes: Optional[dict[str, Any]]) -> None:
        super().__init__()
        self.attributes = checks.workflow_attributes(attributes)

    def _changes(self, ctx: context.Ctx) -> dict[str, Any]:
        return {"attributes": self.attributes}


class PropagateOtelContext:
    """DBOS 2.x's block whose started and enqueued workflows join the caller's trace. Here
    every workflow's span continues the OpenTelemetry context current where it was started
    or enqueued (stored with a queued one), so without ``context`` this changes nothing;
    with one, that context is current in the block."""

    def __init__(self, context: Any = None) -> None:
        self.context = context
        self._token: Any = None

    def __enter__(self) -> "PropagateOtelContext":
        if self.context is not None:
            from opentelemetry import context as otel_context

            self._token = otel_context.attach(self.context)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None:
            from opentelemetry import context as otel_context

            otel_context.detach(self._token)
            self._token = None


class DBOSContextEnsure(_Block):
    """Make sure a DBOS context exists for the block (one always does here)."""

    def _changes(self, ctx: context.Ctx) -> dict[str, Any]:
        return {"ensured": True}


class DBOSContextSetAuth(_Block):
    """Run the block as ``user`` with ``roles``."""

    def __init__(self, user: Optional[str], roles: Optional[List[str]]) -> None:
        super().__init__()
        self.auth = Auth(user, tuple(roles) if roles is not None else None, None)

    def _changes(self, ctx: context.Ctx) -> dict[str, Any]:
        return {"auth": self.auth, "ensured": True}
