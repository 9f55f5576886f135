"""The execution context: one immutable ``Ctx`` in a ContextVar.

Context managers and executions replace the Ctx for their extent and restore
it after, so contexts are safe across threads and asyncio tasks. The only
mutable pieces are the per-execution ``WorkflowRun`` (its step counter) and
the ``IdBox`` that lets SetWorkflowID give its ID to just one workflow.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator, Literal, Optional

from dbos._storage.operations import StepRow
from dbos.error import DBOSWorkflowCancelledError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from dbos._execution.runtime import CancelFlag, Runtime
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


# DBOS 2.x: what an enqueue whose deduplication ID is taken on its queue does. "reject"
# (the default) raises DBOSQueueDeduplicatedError; "return-existing" returns the holder.
DuplicationPolicy = Literal["reject", "return-existing"]


@dataclass(frozen=True)
class EnqueueOptions:
    deduplication_id: Optional[str] = None
    priority: Optional[int] = None
    app_version: Optional[str] = None
    queue_partition_key: Optional[str] = None
    delay_seconds: Optional[float] = None  # DELAYED (not claimable) for this long after the enqueue
    duplication_policy: Optional[DuplicationPolicy] = None


@dataclass(frozen=True)
class Auth:
    user: Optional[str] = None
    roles: Optional[tuple[str, ...]] = None
    assumed_role: Optional[str] = None


@dataclass
class RequestScope:
    """One HTTP request being handled (DBOS(fastapi=...), DBOS(flask=...)): the
    authentication set anywhere in its handling. Mutable, and shared by every context
    copied from the request's: a FastAPI dependency that sets it runs on a worker
    thread under a copy, and the handler must still see it (as in DBOS)."""

    started: Auth  # the context's auth when the request began
    auth: Auth


@dataclass
class WorkflowRun:
    """One execution of one workflow in this process."""

    workflow_id: str
    runtime: "Runtime"
    recorded: dict[int, StepRow]
    deadline_ms: Optional[int]
    cancel_event: "CancelFlag"
    auth: Auth = field(default_factory=Auth)
    queue_name: Optional[str] = None
    replaying: bool = False  # the row existed: steps may be recorded, here or in the app db
    next_fid: int = 0
    # A history recorded before direct child calls took a ``DBOS.getResult`` step ID:
    # replay it with its own numbering (``workflow.reserve_result_step``).
    legacy_child_results: bool = False

    def next_function_id(self) -> int:
        self.next_fid += 1
        return self.next_fid

    def check_cancelled(self) -> None:
        """Preempt at the start of a step: cancelled, handed to another executor, or
        past the deadline."""
        self.runtime.confirm_alive()
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
    request: Optional[RequestScope] = None
    attributes: Optional[str] = None  # SetWorkflowAttributes: JSON for the workflows created in the block

    def in_step_with(self, status: Optional["StepStatus"], sql_session: Optional["Session"] = None) -> "Ctx":
        """This context, inside a step. Built on every step call: a copy of the
        fields dict (the frozen __init__ and dataclasses.replace cost ~3x more)."""
        new = object.__new__(Ctx)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields["step_status"] = status
        fields["in_step"] = True
        fields["sql_session"] = sql_session
        return new


_CTX: contextvars.ContextVar[Ctx] = contextvars.ContextVar("dbos_ctx", default=Ctx())  # noqa: B039 (Ctx is frozen)


def current() -> Ctx:
    return _CTX.get()


class using:  # noqa: N801 (used as a function: ``with using(ctx):``)
    """``ctx`` is the current context for the extent of a ``with`` block.

    A class, not a generator context manager: it is entered on every step call.
    """

    __slots__ = ("_ctx", "_token")

    def __init__(self, ctx: Ctx) -> None:
        self._ctx = ctx

    def __enter__(self) -> Ctx:
        self._token = _CTX.set(self._ctx)
        return self._ctx

    def __exit__(self, *_exc: object) -> None:
        _CTX.reset(self._token)


@contextlib.contextmanager
def updated(**changes: Any) -> Iterator[Ctx]:
    with using(replace(_CTX.get(), **changes)) as ctx:
        yield ctx


def auth_of(ctx: Ctx) -> Auth:
    """The caller's authentication: the context's, or, while a request is handled and
    this context has not changed it, what was set for the request (``set_auth``)."""
    request = ctx.request
    if request is not None and ctx.auth is request.started:
        return request.auth
    return ctx.auth


def set_auth(auth: Auth) -> None:
    """``DBOS.set_authentication``: the rest of this thread/task, and of the request."""
    request = _CTX.get().request
    if request is not None:
        request.auth = auth
    replace_current(auth=auth)


@contextlib.contextmanager
def request_scope() -> Iterator[Ctx]:
    ctx = _CTX.get()
    with using(replace(ctx, request=RequestScope(ctx.auth, ctx.auth))) as scoped:
        yield scoped


def replace_current(**changes: Any) -> None:
    """Change the current context for the rest of this thread/task (no reset)."""
    _CTX.set(replace(_CTX.get(), **changes))
