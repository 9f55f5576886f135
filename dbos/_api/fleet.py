"""The launched DBOS instance as a fleet member: deactivate, drain, recovery, load.

What the worker process and the admin server call; the rules themselves are
in ``dbos._execution.fleet``. Not part of the reference's public API.
"""

from __future__ import annotations

import threading
import time
from typing import Iterable, Optional

from dbos._api.dbos import DBOS
from dbos._execution import fleet
from dbos._execution.queues import INTERNAL_QUEUE
from dbos._execution.registry import REGISTRY
from dbos._execution.runtime import Runtime
from dbos._storage import queues, workflows
from dbos.error import DBOSInitializationError

ExecutorIdInUse = fleet.ExecutorIdInUse
LaunchInterrupted = fleet.LaunchInterrupted


def refuse_shared_executor_id(stop: Optional[threading.Event] = None) -> None:
    """From now on a launch whose executor ID a live process holds fails with
    ``ExecutorIdInUse`` (after up to twice the dead-after for a holder on another
    host), instead of running with that ID's recovery disabled. ``dbos-worker``'s rule.
    With ``stop``: once it is set, a launch that has not taken its ID yet fails with
    ``LaunchInterrupted`` (a signal during start-up claims nothing)."""
    fleet.identity_policy = "refuse"
    fleet.identity_abort = stop


def _launched() -> DBOS:
    inst = DBOS._instance
    if inst is None or not inst._launched or inst._runtime is None:
        raise DBOSInitializationError("DBOS is not launched")
    return inst


def runtime() -> Runtime:
    rt = _launched()._runtime
    assert rt is not None
    return rt


def served_queues() -> list[str]:
    """The queues this executor claims from (with the internal one)."""
    inst = _launched()
    stored = inst._runtime.stored_queues if inst._runtime is not None else {}  # as the poller last read them
    names = [INTERNAL_QUEUE.name, *REGISTRY.queues, *(n for n in stored if n not in REGISTRY.queues)]
    if inst._listen_queues is not None:
        names = [n for n in names if n == INTERNAL_QUEUE.name or n in inst._listen_queues]
    return names


def state() -> str:
    hb = _launched()._heartbeat
    return hb.state if hb is not None else "STOPPED"


def deactivate() -> None:
    """Stop claiming queue work at once; the fleet sees this executor DRAINING."""
    inst = _launched()
    if inst._poller is not None:
        inst._poller.stop()
    if inst._heartbeat is not None and inst._heartbeat.state == "RUNNING":
        inst._heartbeat.set_state("DRAINING")


def drain(timeout_sec: float, skip: Optional[threading.Event] = None) -> list[tuple[str, str]]:
    """Deactivate; let what runs finish for up to ``timeout_sec`` (or until ``skip`` is
    set); hand the rest back to the fleet at once; STOPPED. Returns what was handed back."""
    deactivate()
    rt = runtime()
    end = time.monotonic() + timeout_sec
    while rt.running_ids() and time.monotonic() < end and not (skip is not None and skip.is_set()):
        time.sleep(0.02)
    released = fleet.hand_back(rt)
    hb = _launched()._heartbeat
    if hb is not None:
        hb.set_state("STOPPED")
    return released


def recover(executor_ids: Iterable[str]) -> list[str]:
    return fleet.recover_executors(runtime(), executor_ids)


def queue_depths() -> dict[str, int]:
    rt = runtime()
    names = served_queues()
    return rt.sys_db.query(lambda c: queues.depth(c, names, rt.app_version))


def idle() -> bool:
    """Nothing this executor may run is running here, owned by it, or waiting on its queues."""
    rt = runtime()
    if rt.running_ids():
        return False
    if rt.sys_db.query(lambda c: workflows.count_pending(c, [rt.executor_id])):
        return False
    return not any(queue_depths().values())
