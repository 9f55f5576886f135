"""Retention rules: delete finished workflows, by ID or by age and row count.

Only finished workflows (SUCCESS, ERROR, CANCELLED, RETRIES_EXCEEDED) are ever
deleted; with them go their steps, events, messages, recv waits and, in the
application database, their transaction records. Garbage collection works in
batches of ``batch_size``, each its own short transaction, so it never holds
locks for long and is safe to run while the fleet works (docs/decisions.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from dbos._execution import checks
from dbos._execution.runtime import Runtime
from dbos._storage import retention as store
from dbos._storage import workflows
from dbos._storage.database import Database
from dbos.error import DBOSException

DEFAULT_BATCH = 500


@dataclass(frozen=True)
class GcResult:
    deleted: int
    batches: int
    cutoff_ms: Optional[int]
    seconds: float


def _check_ids(workflow_ids: Sequence[str]) -> list[str]:
    if isinstance(workflow_ids, str):
        raise DBOSException(f"workflow_ids must be a list of strings, got {workflow_ids!r}")
    return [checks.identifier("workflow_id", w) for w in workflow_ids]


def _delete_batch(rt: Runtime, ids: Sequence[str]) -> list[str]:
    db = rt.sys_db
    deleted = db.run(lambda c: store.delete_finished(c, db.dialect, ids), tx=True)
    _delete_app_records(rt.app_db, deleted)
    return deleted


def _delete_app_records(app_db: Optional[Database], deleted: Sequence[str]) -> None:
    # After the system rows: a crash in between leaves transaction records nothing
    # refers to (harmless), never a finished workflow missing its records.
    if deleted and app_db is not None:
        app_db.run(lambda c: store.delete_transaction_outputs(c, app_db.dialect, deleted), tx=True)


def delete_workflows(rt: Runtime, workflow_ids: Sequence[str], *, delete_children: bool = False,
                     batch_size: int = DEFAULT_BATCH) -> list[str]:
    """Delete those of ``workflow_ids`` that are finished (others, and unknown IDs, are
    left alone); ``delete_children``: their child workflows too, at any depth (finished
    ones). Return the IDs deleted."""
    ids = _check_ids(workflow_ids)
    if delete_children:
        ids = _with_descendants(rt, ids)
    deleted: list[str] = []
    for i in range(0, len(ids), batch_size):
        deleted += _delete_batch(rt, ids[i:i + batch_size])
    return deleted


def _with_descendants(rt: Runtime, ids: list[str]) -> list[str]:
    db = rt.sys_db
    return list(dict.fromkeys(ids)) + db.query(lambda c: workflows.descendants(c, db.dialect, ids))


def garbage_collect(
    rt: Runtime,
    *,
    cutoff_epoch_timestamp_ms: Optional[int] = None,
    rows_threshold: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH,
    pause_sec: float = 0.0,
) -> GcResult:
    return collect(rt.sys_db, rt.app_db, cutoff_epoch_timestamp_ms=cutoff_epoch_timestamp_ms,
                   rows_threshold=rows_threshold, batch_size=batch_size, pause_sec=pause_sec)


def collect(
    db: Database,
    app_db: Optional[Database],
    *,
    cutoff_epoch_timestamp_ms: Optional[int] = None,
    rows_threshold: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH,
    pause_sec: float = 0.0,
    duty: float = 1.0,
    on_batch: Optional[Callable[[int, float], None]] = None,
) -> GcResult:
    """Delete finished workflows created before ``cutoff_epoch_timestamp_ms``, and those
    older than the newest ``rows_threshold`` workflows (whichever cutoff is later), in
    batches; ``pause_sec`` between batches, and ``duty`` (0..1: the share of the time
    spent in batches, the rest sleeping after each in proportion to its length) leave
    the database and the machine to the fleet. ``app_db``:
    where transaction records live (the coordinator knows only the system database and
    passes it: records kept there go, those of a separate application database stay)."""
    for name, value in (("cutoff_epoch_timestamp_ms", cutoff_epoch_timestamp_ms),
                        ("rows_threshold", rows_threshold), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise DBOSException(f"{name} must be a non-negative integer, got {value!r}")
    if batch_size < 1:
        raise DBOSException("batch_size must be at least 1")
    if not 0 < duty <= 1:
        raise DBOSException(f"duty must be in (0, 1], got {duty!r}")
    started = time.monotonic()
    cutoffs = [cutoff_epoch_timestamp_ms] if cutoff_epoch_timestamp_ms is not None else []
    if rows_threshold is not None:
        by_rows = db.query(lambda c: store.cutoff_for_rows(c, rows_threshold))
        if by_rows is not None:
            cutoffs.append(by_rows)
    if not cutoffs:
        return GcResult(0, 0, None, time.monotonic() - started)
    cutoff = max(cutoffs)
    deleted = batches = 0
    while True:
        t0 = time.perf_counter()
        ids = db.run(lambda c: store.collect_batch(c, db.dialect, cutoff, batch_size), tx=True)
        took = time.perf_counter() - t0  # the batch's transaction: how long it held its rows
        if on_batch is not None:
            on_batch(len(ids), took)
        if not ids:
            break
        _delete_app_records(app_db, ids)
        deleted += len(ids)
        batches += 1
        if len(ids) < batch_size:
            break
        rest = max(pause_sec, took * (1 - duty) / duty if 0 < duty < 1 else 0.0)
        if rest > 0:
            time.sleep(rest)
    return GcResult(deleted, batches, cutoff, time.monotonic() - started)
