"""Messages, events and durable sleep.

- ``send`` from a workflow is a step whose message ID is
  ``<workflow_id>-<function_id>``: replay never stores it twice.
- ``recv`` consumes the oldest message and records it as its step in one
  transaction: exactly-once delivery; a replayed recv returns the same message.
  On PostgreSQL a recv that waits is registered, and a send finding it records
  the message as the recv's step directly (a hand-off; see
  ``_storage/messages.py``); the message rides along with the wakeup.
- ``recv``/``get_event`` in a workflow record their deadline first (a
  ``DBOS.sleep`` step), so a recovered wait only waits what is left, and a
  timeout is recorded, so it replays as a timeout.
- Every wait subscribes to its wakeup key (and the workflow's cancel key)
  before reading the database, then polls at the configured interval.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from dbos._execution import checks, context
from dbos._execution.context import IdBox, WorkflowRun
from dbos._execution.ids import new_id
from dbos._execution.registry import INTERNAL_WORKFLOWS, TEMP_PREFIX, WorkflowInfo
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.serialization import deserialize, serialize
from dbos._execution.step import Reserved, durable_run, record, recorded_elsewhere, replay, take
from dbos._execution.waits import Wait, run_sync
from dbos._storage import messages
from dbos._storage.messages import workflow_exists
from dbos._wakeups import local as keys
from dbos._wakeups.hub import hint_data
from dbos._wakeups.local import Waiter
from dbos.error import DBOSException, DBOSNonExistentWorkflowError

_TOPIC_NONE = ""


def _topic(topic: Optional[str]) -> str:
    if topic is None:
        return _TOPIC_NONE
    if not isinstance(topic, str):
        raise DBOSException(f"topic must be a string or None, got {topic!r}")
    return checks.identifier("topic", topic, allow_empty=True)


def _timeout(timeout_seconds: float, field: str = "timeout_seconds") -> float:
    return checks.duration(field, timeout_seconds)


SEND_DESTINATION = "`send` destination"  # DBOS 2.x's words for a send's unknown destination


def _require_workflow(what: str) -> WorkflowRun:
    run = durable_run(context.current())
    if run is None:
        # DBOS 2.x's phrase first ("recv() must be called from within a workflow").
        name = what.rsplit(".", 1)[-1]
        if name == "set_event":
            raise DBOSException(f"{name}() must be called from within a workflow or step ({what} was called"
                                " outside one)")
        raise DBOSException(f"{name}() must be called from within a workflow ({what} runs only in a workflow:"
                            " not outside one, nor in a step)")
    return run


def _durable_deadline(
    rt: Runtime, run: WorkflowRun, seconds: float, reserved: Optional[Reserved] = None, *, project: bool = False
) -> float:
    """Record (or replay) the absolute wake-up time of a wait: epoch seconds. ``project``
    (``DBOS.sleep``): the step's completion is that wake-up time, so its span is the sleep,
    as in DBOS 2.x; a recv's or get_event's deadline, which may be abandoned early, records
    an instant."""
    fid, recorded = take(run, "DBOS.sleep", reserved)
    if recorded is not None:
        return float(replay(recorded))
    end = time.time() + seconds
    record(rt, run, fid, "DBOS.sleep", end, None, now_ms(), completed=int(end * 1000) if project else None)
    return end


def _wait(rt: Runtime, waiter: Waiter, run: Optional[WorkflowRun], end: float) -> Wait[bool]:
    """Wait until woken, the poll interval, or ``end``; False once ``end`` has passed."""
    now = time.time()
    remaining = end - now
    if remaining <= 0:
        return False
    wait = min(remaining, rt.settings.polling_interval_sec)
    if run is not None and run.deadline_ms is not None:
        wait = min(wait, max(0.0, run.deadline_ms / 1000 - now))
    yield waiter, wait
    waiter.clear()
    if run is not None:
        run.check_cancelled()
    return True


# -- send ---------------------------------------------------------------------


def send(
    rt: Runtime, destination_id: str, message: Any, topic: Optional[str], idempotency_key: Optional[str] = None,
    reserved: Optional[Reserved] = None, to_forks: bool = False,
) -> None:
    """``reserved``: its step ID, taken by ``send_async`` on the calling task (``step.reserve``).
    ``to_forks`` (DBOS 2.x ``send_to_forks``): also to every workflow forked from the
    destination, transitively, as found when the send runs; one step, one transaction."""
    checks.identifier("destination_id", destination_id)
    topic_key = _topic(topic)
    if idempotency_key is not None:
        checks.identifier("idempotency_key", idempotency_key)
    run = durable_run(context.current())
    # In a workflow a send is a recorded step, delivered once however often the workflow
    # replays: the key adds nothing there.
    if run is None and idempotency_key is not None:
        # Outside a workflow a keyed send is the one-step workflow <temp>.DBOS.send under an
        # ID made of its key and destination: sending again with that key finds it done.
        from dbos._execution import workflow as wf

        # Checked first: a destination not created yet must not leave the key's workflow
        # failed for good (a retry once it exists delivers).
        if not rt.sys_db.query(lambda c: workflow_exists(c, destination_id)):
            raise DBOSNonExistentWorkflowError(destination_id, SEND_DESTINATION)
        args = (destination_id, message, topic, idempotency_key) + ((True,) if to_forks else ())
        call = wf.Call(SEND_WORKFLOW, None, args, {})
        with context.updated(id_box=IdBox(keyed_send_id(destination_id, idempotency_key))):
            wf.call_direct(rt, call)
        return
    payload = serialize(message, "the message")
    checks.check_size(payload, rt.settings.max_value_bytes, "the message")
    if run is None:
        sender, message_id = None, new_id()
    else:
        fid, recorded = take(run, "DBOS.send", reserved)
        if recorded is not None:
            return
        sender, message_id = (run.workflow_id, fid), f"{run.workflow_id}-{fid}"
    if to_forks:
        dialect = rt.sys_db.dialect
        targets = rt.sys_db.run(lambda c: messages.send_recorded(
            c, dialect, sender, message_id, destination_id, topic_key, payload, now_ms(), forks=True), tx=True)
        if targets is None:
            raise DBOSNonExistentWorkflowError(destination_id, SEND_DESTINATION)
        for target in targets:
            rt.wakeups.notify(keys.message(target, topic_key))
        return
    sent = messages.send_message(rt.sys_db, sender, message_id, destination_id, topic_key, payload, now_ms())
    if not sent.exists:
        raise DBOSNonExistentWorkflowError(destination_id, SEND_DESTINATION)
    data = _handoff_hint(sent.handed_to, payload) if sent.handed_to is not None else b""
    rt.wakeups.notify(keys.message(destination_id, topic_key), data=data)


def keyed_send_id(destination_id: str, idempotency_key: str) -> str:
    return f"dbos-send::{idempotency_key}::{destination_id}"


def _keyed_send(
    destination_id: str, message: Any, topic: Optional[str], idempotency_key: str, to_forks: bool = False
) -> None:
    """The body of <temp>.DBOS.send: the send, its one step (function ID 1)."""
    run = context.current().run
    assert run is not None, "<temp>.DBOS.send runs as a workflow"
    send(run.runtime, destination_id, message, topic, idempotency_key, to_forks=to_forks)


SEND_WORKFLOW = WorkflowInfo(TEMP_PREFIX + "DBOS.send", _keyed_send, False, 100, False, temp_kind="send")
INTERNAL_WORKFLOWS[SEND_WORKFLOW.name] = SEND_WORKFLOW


# A message handed to a waiting recv travels with its wakeup, so the receiver
# returns it without reading the database: the recv step's function ID (8 bytes)
# then the serialized message (if it fits, see ``hint_data``; else the receiver
# reads its recorded step).


def _handoff_hint(function_id: int, payload: bytes) -> bytes:
    return hint_data(function_id.to_bytes(8, "big"), payload)


def _handed_off(waiter: Waiter, key: str, function_id: int) -> Optional[bytes]:
    """The message a sender recorded as recv step ``function_id``, if a wakeup carried it."""
    data = waiter.take(key)
    if data is None or len(data) < 8 or int.from_bytes(data[:8], "big") != function_id:
        return None
    return bytes(data[8:])


# -- recv ---------------------------------------------------------------------


def recv(rt: Runtime, topic: Optional[str], timeout_seconds: float) -> Any:
    return run_sync(recv_wait(rt, topic, timeout_seconds))


def recv_wait(
    rt: Runtime, topic: Optional[str], timeout_seconds: float, reserved: Optional[Reserved] = None
) -> Wait[Any]:
    """``recv`` as a wait (``dbos/_execution/waits.py``): ``DBOS.recv_async`` holds no thread.
    ``reserved``: its two step IDs (the recv's, its deadline's), taken on the calling task."""
    run = _require_workflow("DBOS.recv")
    topic_key = _topic(topic)
    seconds = _timeout(timeout_seconds)
    fid, recorded = take(run, "DBOS.recv", reserved)
    if recorded is not None:
        _skip_deadline(run, reserved)
        return replay(recorded)
    started = now_ms()  # the recv step spans its wait, as in DBOS 2.x
    if rt.sys_db.dialect.is_sqlite:
        end = _durable_deadline(rt, run, seconds, reserved)
    else:
        end = _recv_deadline(rt, run, fid, topic_key, seconds, reserved)
    wid = run.workflow_id
    key = keys.message(wid, topic_key)

    with rt.wakeups.subscribe(key, keys.cancelled(wid)) as waiter:
        while True:
            handed = _handed_off(waiter, key, fid)
            if handed is not None:
                return deserialize(handed, "the received message")
            try:
                payload = messages.consume_recorded(rt.sys_db, wid, fid, topic_key, started, now_ms())
            except messages.StepAlreadyRecorded as e:
                # Another execution recorded this recv first, or a sender handed it a
                # message: the recorded output wins.
                if e.output is not None:
                    return deserialize(e.output, "the received message")
                return replay(recorded_elsewhere(rt, wid, fid))
            if payload is not None:
                return deserialize(payload, "the received message")
            if not (yield from _wait(rt, waiter, run, end)):
                return record(rt, run, fid, "DBOS.recv", None, None, started)


def _recv_deadline(
    rt: Runtime, run: WorkflowRun, recv_fid: int, topic: str, seconds: float, reserved: Optional[Reserved]
) -> float:
    """PostgreSQL: the recv's deadline (recorded or replayed, as ``_durable_deadline``),
    and its wait registered in the same statement, so senders can hand it a message."""
    dfid, recorded = take(run, "DBOS.sleep", reserved)
    if recorded is not None:
        messages.register_recv(rt.sys_db, run.workflow_id, topic, recv_fid, None, now_ms())
        return float(replay(recorded))
    end = time.time() + seconds
    output = serialize(end, "the deadline")
    if messages.register_recv(rt.sys_db, run.workflow_id, topic, recv_fid, (dfid, output), now_ms()):
        return end
    return float(replay(recorded_elsewhere(rt, run.workflow_id, dfid)))


def _skip_deadline(run: WorkflowRun, reserved: Optional[Reserved]) -> None:
    """A replayed wait still takes the function ID of its deadline step."""
    (reserved or run).next_function_id()


# -- events -------------------------------------------------------------------


def set_event(rt: Runtime, key: str, value: Any, reserved: Optional[Reserved] = None) -> None:
    """``reserved``: its step ID, taken by ``set_event_async`` on the calling task."""
    ctx = context.current()
    if ctx.run is not None and ctx.in_step:
        # Inside a step (DBOS 2.x): the event is the enclosing workflow's, set at once and
        # not checkpointed on its own: the step's checkpoint covers it (a re-run step sets
        # it again, to the value it sets then).
        checks.identifier("event key", key, allow_empty=True)
        payload = serialize(value, "the value of event %r", key)
        checks.check_size(payload, rt.settings.max_value_bytes, f"the value of event {checks.short(key)}")
        workflow_id = ctx.run.workflow_id
        rt.sys_db.run(lambda c: messages.set_event(c, rt.sys_db.dialect, workflow_id, key, payload, now_ms()))
        rt.wakeups.notify(keys.event(workflow_id, key), data=hint_data(payload))
        return
    run = _require_workflow("DBOS.set_event")
    checks.identifier("event key", key, allow_empty=True)
    payload = serialize(value, "the value of event %r", key)
    checks.check_size(payload, rt.settings.max_value_bytes, f"the value of event {checks.short(key)}")
    fid, recorded = take(run, "DBOS.setEvent", reserved)
    if recorded is not None:
        return
    messages.set_event_recorded(rt.sys_db, run.workflow_id, fid, key, payload, now_ms())
    # The value rides along: a waiting get_event returns it without reading it back.
    rt.wakeups.notify(keys.event(run.workflow_id, key), data=hint_data(payload))


def get_event(rt: Runtime, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    return run_sync(get_event_wait(rt, workflow_id, key, timeout_seconds))


def get_event_wait(
    rt: Runtime, workflow_id: str, key: str, timeout_seconds: float, reserved: Optional[Reserved] = None
) -> Wait[Any]:
    """``get_event`` as a wait: ``get_event_async`` holds no thread. ``reserved``: in a
    workflow, its two step IDs (the get_event's, its deadline's), taken on the calling task."""
    checks.identifier("workflow_id", workflow_id)
    checks.identifier("event key", key, allow_empty=True)
    seconds = _timeout(timeout_seconds)
    run = durable_run(context.current())
    fid: Optional[int] = None
    started = now_ms()  # the getEvent step spans its wait, as in DBOS 2.x
    if run is not None:
        fid, recorded = take(run, "DBOS.getEvent", reserved)
        if recorded is not None:
            _skip_deadline(run, reserved)
            return replay(recorded)
        end = _durable_deadline(rt, run, seconds, reserved)
    else:
        end = time.time() + seconds
    event_key = keys.event(workflow_id, key)
    watch = [event_key] + ([keys.cancelled(run.workflow_id)] if run is not None else [])
    with rt.wakeups.subscribe(*watch) as waiter:
        payload = rt.sys_db.query(lambda c: messages.get_event(c, workflow_id, key))
        while payload is None and (yield from _wait(rt, waiter, run, end)):
            # A set_event committed after we subscribed carries its value (if small).
            payload = waiter.take(event_key) or rt.sys_db.query(lambda c: messages.get_event(c, workflow_id, key))
    value = deserialize(payload, f"the value of event {key!r}") if payload is not None else None
    if run is not None and fid is not None:
        return record(rt, run, fid, "DBOS.getEvent", value, None, started)
    return value


def get_all_events(rt: Runtime, workflow_id: str) -> dict[str, Any]:
    """Every event the workflow has set so far, deserialized (``DBOS.get_all_events``)."""
    raw = rt.sys_db.query(lambda c: messages.get_all_events(c, workflow_id))
    return {key: deserialize(value, f"the value of event {key!r}") for key, value in raw.items()}


# -- sleep --------------------------------------------------------------------


def sleep(rt: Optional[Runtime], seconds: float) -> None:
    run_sync(sleep_wait(rt, seconds))


def sleep_wait(rt: Optional[Runtime], seconds: float, reserved: Optional[Reserved] = None) -> Wait[None]:
    """``sleep`` as a wait: ``sleep_async`` holds no thread (``reserved``: its step ID)."""
    seconds = _timeout(seconds, "seconds")
    # Outside a workflow there is nothing to make durable, and a step cannot record a
    # wake-up time of its own: both are mistakes DBOS Transact 2.x reports too.
    run = _require_workflow("DBOS.sleep")
    if rt is None:
        rt = run.runtime
    end = _durable_deadline(rt, run, seconds, reserved, project=True)
    with rt.wakeups.subscribe(keys.cancelled(run.workflow_id)) as waiter:
        run.check_cancelled()
        while (yield from _wait(rt, waiter, run, end)):
            pass
