"""DBOS's messages, events and durable sleep: ``send``, ``recv``, ``set_event``,
``get_event``, ``sleep`` and their ``_async`` forms (``DBOS`` inherits them). Each is a
few lines over ``_execution/messaging.py``; the async waits hold no thread
(``_execution/waits.py``). Each ``_async`` form takes its step IDs on the calling task,
before its first await (``step.reserve``): concurrent calls number in call order."""

from __future__ import annotations

import functools
from typing import Any, Optional

from dbos._api.calls import check_not_async
from dbos._api.instance import maybe_runtime, runtime
from dbos._api.missing import check_serialization_type
from dbos._execution import messaging
from dbos._execution.serialization import WorkflowSerializationFormat
from dbos._execution.step import reserve
from dbos._execution.waits import run_async


class _MessagesMixin:
    @classmethod
    def send(cls, destination_id: str, message: Any, topic: Optional[str] = None, *,
             idempotency_key: Optional[str] = None,
             serialization_type: Optional[WorkflowSerializationFormat] = WorkflowSerializationFormat.DEFAULT,
             send_to_forks: bool = False) -> None:
        """Send ``message`` to a workflow. ``idempotency_key``: one delivery per key and
        destination, however often the send is repeated (docs/decisions.md).
        ``send_to_forks``: also to every workflow forked (transitively) from the destination."""
        check_not_async("send")
        check_serialization_type(serialization_type, "DBOS.send")
        messaging.send(runtime(), destination_id, message, topic, idempotency_key, to_forks=bool(send_to_forks))

    @classmethod
    async def send_async(cls, destination_id: str, message: Any, topic: Optional[str] = None, *,
                         idempotency_key: Optional[str] = None,
                         serialization_type: Optional[WorkflowSerializationFormat] = WorkflowSerializationFormat.DEFAULT,
                         send_to_forks: bool = False) -> None:
        check_serialization_type(serialization_type, "DBOS.send_async")
        rt = runtime()
        await rt.to_thread(functools.partial(messaging.send, rt, destination_id, message, topic, idempotency_key,
                                             reserve(), to_forks=bool(send_to_forks)))

    @classmethod
    def recv(cls, topic: Optional[str] = None, timeout_seconds: float = 60) -> Any:
        check_not_async("recv")
        return messaging.recv(runtime(), topic, timeout_seconds)

    @classmethod
    async def recv_async(cls, topic: Optional[str] = None, timeout_seconds: float = 60) -> Any:
        rt = runtime()
        return await run_async(rt, messaging.recv_wait(rt, topic, timeout_seconds, reserve(2)))

    @classmethod
    def set_event(cls, key: str, value: Any, *,
                  serialization_type: Optional[WorkflowSerializationFormat] = WorkflowSerializationFormat.DEFAULT,
                  ) -> None:
        check_not_async("set_event")
        check_serialization_type(serialization_type, "DBOS.set_event")
        messaging.set_event(runtime(), key, value)

    @classmethod
    async def set_event_async(
        cls, key: str, value: Any, *,
        serialization_type: Optional[WorkflowSerializationFormat] = WorkflowSerializationFormat.DEFAULT,
    ) -> None:
        check_serialization_type(serialization_type, "DBOS.set_event_async")
        rt = runtime()
        await rt.to_thread(messaging.set_event, rt, key, value, reserve())

    @classmethod
    def get_event(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        check_not_async("get_event")
        return messaging.get_event(runtime(), workflow_id, key, timeout_seconds)

    @classmethod
    async def get_event_async(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        rt = runtime()
        return await run_async(rt, messaging.get_event_wait(rt, workflow_id, key, timeout_seconds, reserve(2)))

    @classmethod
    def sleep(cls, seconds: float) -> None:
        check_not_async("sleep")
        messaging.sleep(maybe_runtime(), seconds)

    @classmethod
    async def sleep_async(cls, seconds: float) -> None:
        rt = maybe_runtime()
        if rt is None:
            messaging.sleep(None, seconds)  # raises: only a workflow sleeps durably
            return
        await run_async(rt, messaging.sleep_wait(rt, seconds, reserve()))
