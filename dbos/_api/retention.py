"""Retention and bulk sends on DBOS and DBOSClient: delete_workflow(s), garbage_collect,
send_bulk (DBOS 2.x). Thin shells over ``_execution/retention.py`` and ``messaging``."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, List, Mapping, Optional, Sequence, Union

from dbos._api.calls import check_not_async
from dbos._api.handles import _as_step, as_step_async
from dbos._api.instance import runtime
from dbos._api.missing import check_serialization_type
from dbos._execution import messaging, retention
from dbos._execution.runtime import Runtime
from dbos._execution.serialization import WorkflowSerializationFormat
from dbos._execution.step import Reserved, reserve
from dbos.error import DBOSException


@dataclasses.dataclass
class SendMessage:
    """One message of ``send_bulk``: ``SendMessage(destination_id, message, topic=None,
    idempotency_key=None)``, a dataclass as in DBOS 2.x. A dict with these keys is taken too."""

    destination_id: str
    message: Any
    topic: Optional[str] = None
    idempotency_key: Optional[str] = None  # one delivery per key and destination


Messages = Sequence[Union[SendMessage, Mapping[str, Any]]]
_FIELDS = [f.name for f in dataclasses.fields(SendMessage)]


def _message(m: Any) -> SendMessage:
    if isinstance(m, SendMessage):
        return m
    if not isinstance(m, Mapping) or "destination_id" not in m or "message" not in m:
        raise DBOSException(f"each message needs destination_id and message, got {m!r}")
    unknown = sorted(set(m) - set(_FIELDS))
    if unknown:
        raise DBOSException(f"SendMessage has no key {unknown[0]!r}; known keys: {', '.join(_FIELDS)}")
    return SendMessage(**m)


def check_messages(messages: Any) -> List[SendMessage]:
    """``send_bulk``'s messages, checked all before any is sent."""
    if isinstance(messages, Mapping) or not isinstance(messages, (list, tuple)):
        raise DBOSException(f"send_bulk takes a list of messages, got {messages!r}")
    checked = [_message(m) for m in messages]
    keys: list[str] = [str(m.idempotency_key) for m in checked if m.idempotency_key is not None]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise DBOSException(f"send_bulk received duplicate idempotency keys: {', '.join(repeated)}")
    return checked


def send_bulk(
    rt: Runtime, messages: Messages, reserved: Optional[Reserved] = None, *,
    serialization_type: Any = None, send_to_forks: bool = False, where: str = "send_bulk",
) -> None:
    """Every message, in order, as ``send`` would (inside a workflow each is a recorded
    step, so a replay sends none twice). All are checked before any is sent.
    ``reserved``: their step IDs, taken by ``send_bulk_async`` on the calling task."""
    check_serialization_type(serialization_type, where)
    for m in check_messages(messages):
        messaging.send(rt, m.destination_id, m.message, m.topic, m.idempotency_key, reserved,
                       to_forks=bool(send_to_forks))


_DELETE = "DBOS.deleteWorkflow"


def _delete(rt: Runtime, workflow_ids: List[str], delete_children: bool) -> None:
    retention.delete_workflows(rt, workflow_ids, delete_children=delete_children)


class _RetentionMixin:
    @classmethod
    def delete_workflow(cls, workflow_id: str, delete_children: bool = False) -> None:
        """Delete a finished workflow and all it recorded (a live or unknown one: nothing).
        In a workflow a ``DBOS.deleteWorkflow`` step (one for ``delete_workflows``), as DBOS 2.x."""
        cls.delete_workflows([workflow_id], delete_children=delete_children)

    @classmethod
    async def delete_workflow_async(cls, workflow_id: str, delete_children: bool = False) -> None:
        await cls.delete_workflows_async([workflow_id], delete_children=delete_children)

    @classmethod
    def delete_workflows(cls, workflow_ids: List[str], delete_children: bool = False) -> None:
        rt = runtime()
        _as_step(rt, _DELETE, None, lambda: _delete(rt, workflow_ids, delete_children))

    @classmethod
    async def delete_workflows_async(cls, workflow_ids: List[str], delete_children: bool = False) -> None:
        rt = runtime()
        await as_step_async(rt, _DELETE, None, lambda: _delete(rt, workflow_ids, delete_children))

    @classmethod
    def garbage_collect(
        cls, cutoff_epoch_timestamp_ms: Optional[int] = None, rows_threshold: Optional[int] = None
    ) -> None:
        """Delete finished workflows created before the cutoff, and all but the newest
        ``rows_threshold`` workflows (finished ones only), in short batches."""
        retention.garbage_collect(runtime(), cutoff_epoch_timestamp_ms=cutoff_epoch_timestamp_ms,
                                  rows_threshold=rows_threshold)

    @classmethod
    def send_bulk(
        cls, messages: Messages, *, serialization_type: Optional[WorkflowSerializationFormat] = None,
        send_to_forks: bool = False,
    ) -> None:
        """``send_to_forks``: each message also to every workflow forked from its destination."""
        check_not_async("send_bulk")
        send_bulk(runtime(), messages, serialization_type=serialization_type, send_to_forks=send_to_forks,
                  where="DBOS.send_bulk")

    @classmethod
    async def send_bulk_async(
        cls, messages: Messages, *, serialization_type: Optional[WorkflowSerializationFormat] = None,
        send_to_forks: bool = False,
    ) -> None:
        rt = runtime()
        # One step ID per message, taken before the first await (step.reserve).
        reserved = reserve(len(messages)) if isinstance(messages, (list, tuple)) else None
        await rt.to_thread(functools.partial(
            send_bulk, rt, messages, reserved, serialization_type=serialization_type, send_to_forks=send_to_forks,
            where="DBOS.send_bulk_async"))


class ClientRetentionMixin:
    _rt: Runtime

    def delete_workflow(self, workflow_id: str, delete_children: bool = False) -> None:
        retention.delete_workflows(self._rt, [workflow_id], delete_children=delete_children)

    def delete_workflows(self, workflow_ids: List[str], delete_children: bool = False) -> None:
        retention.delete_workflows(self._rt, workflow_ids, delete_children=delete_children)

    def garbage_collect(
        self, cutoff_epoch_timestamp_ms: Optional[int] = None, rows_threshold: Optional[int] = None
    ) -> retention.GcResult:
        return retention.garbage_collect(self._rt, cutoff_epoch_timestamp_ms=cutoff_epoch_timestamp_ms,
                                         rows_threshold=rows_threshold)

    def send_bulk(
        self, messages: Messages, *, serialization_type: Optional[WorkflowSerializationFormat] = None,
        send_to_forks: bool = False,
    ) -> None:
        send_bulk(self._rt, messages, serialization_type=serialization_type, send_to_forks=send_to_forks,
                  where="DBOSClient.send_bulk")

    async def delete_workflow_async(self, workflow_id: str, delete_children: bool = False) -> None:
        await self._rt.to_thread(lambda: self.delete_workflow(workflow_id, delete_children))

    async def delete_workflows_async(self, workflow_ids: List[str], delete_children: bool = False) -> None:
        await self._rt.to_thread(lambda: self.delete_workflows(workflow_ids, delete_children))

    async def send_bulk_async(
        self, messages: Messages, *, serialization_type: Optional[WorkflowSerializationFormat] = None,
        send_to_forks: bool = False,
    ) -> None:
        await self._rt.to_thread(lambda: self.send_bulk(
            messages, serialization_type=serialization_type, send_to_forks=send_to_forks))
