"""The execution context: one immutable ``Ctx`` in a ContextVar.

Context managers and executions replace the Ctx for their extent and restore
it after, so contexts are safe across threads and asyncio tasks. The only
mutable pieces are the per-execution ``WorkflowRun`` (its step counter) and
the ``IdBox`` that lets SetWorkflowID give its ID to just one workflow.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator, Optional

from dbos._storage.operations import StepRow
from dbos.error import DBOSWorkflowCancelledError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from dbos._execution.runtime import Runtime
    from dbos._execution.status import StepStatus


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass
class IdBox:
    """A workflow ID that the next workflow started takes (once)."""

    value: str
    used: bool = False

    def take(self) -> Optional[str]:
        if self.used:
            return None
        self.used = True
        return self.value


@dataclass(frozen=True)
class EnqueueOptions:
    deduplication_id: Optional[str] = None
    priority: Optional[int] = None
    app_version: Optional[str] = None
    queue_partition_key: Optional[str] = None


@dataclass(frozen=True)
class Auth:
    user: Optional[str] = None
    roles: Optional[tuple[str, ...]] = None
    assumed_role: Optional[str] = None


@dataclass
class WorkflowRun:
    """One execution of one workflow in this process."""

    workflow_id: str
    runtime: "Runtime"
    recorded: dict[int, StepRow]
    deadline_ms: Optional[int]
    cancel_event: threading.Event
    auth: Auth = field(default_factory=Auth)
    queue_name: Optional[str] = None
    replaying: bool = False  # the row existed: steps may be recorded, here or in the app db
    next_fid: int = 0

    def next_function_id(self) -> int:
        self.next_fid += 1
        return self.next_fid

    def check_cancelled(self) -> None:
        """Preempt at the start of a step: cancelled, or past the deadline."""
        if self.cancel_event.is_set():
            raise DBOSWorkflowCancelledError(f"Workflow {self.workflow_id} was cancelled")
        if self.deadline_ms is not None and time.time() * 1000 >= self.deadline_ms:
            self.runtime.on_deadline(self.workflow_id)
            raise DBOSWorkflowCancelledError(
                f"Workflow {self.workflow_id} was cancelled: its timeout expired"
            )


@dataclass(frozen=True)
class Ctx:
    run: Optional[WorkflowRun] = None
    step_status: Optional["StepStatus"] = None
    in_step: bool = False  # inside a step or transaction: no nested durability
    sql_session: Optional["Session"] = None
    id_box: Optional[IdBox] = None
    timeout: Any = UNSET  # UNSET | None | float seconds
    enqueue: Optional[EnqueueOptions] = None
    auth: Auth = field(default_factory=Auth)
    ensured: bool = False

    def in_step_with(self, status: Optional["StepStatus"], sql_session: Optional["Session"] = None) -> "Ctx":
        """This context, inside a step (cheaper than dataclasses.replace on the hot path)."""
        return Ctx(self.run, status, True, sql_session, self.id_box, self.timeout, self.enqueue, self.auth, self.ensured)


_CTX: contextvars.ContextVar[Ctx] = contextvars.ContextVar("dbos_ctx", default=Ctx())  # noqa: B039 (Ctx is frozen)


def current() -> Ctx:
    return _CTX.get()


@contextlib.contextmanager
def using(ctx: Ctx) -> Iterator[Ctx]:
    token = _CTX.set(ctx)
    try:
        yield ctx
    finally:
        _CTX.reset(token)


@contextlib.contextmanager
def updated(**changes: Any) -> Iterator[Ctx]:
    with using(replace(_CTX.get(), **changes)) as ctx:
        yield ctx


def replace_current(**changes: Any) -> None:
    """Change the current context for the rest of this thread/task (no reset)."""
    _CTX.set(replace(_CTX.get(), **changes))
