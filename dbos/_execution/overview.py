"""What the console shows beyond the fleet views (``fleet.executor_view``,
``fleet.versions_view``): queues with their limits and recent starts, the
leading coordinator, recent launches, and a workflow's children, events and
undelivered messages. JSON-ready dicts and Python values; no SQL, no threads.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import sqlalchemy as sa

from dbos._execution import stored_queues as stored_rules
from dbos._execution.fleet import derived_state
from dbos._execution.runtime import now_ms
from dbos._execution.serialization import deserialize, deserialize_error
from dbos._storage import executors, leases, messages, operations, stats, stored_queues, versions
from dbos._storage.database import Database

LEASE_NAME = "coordinator"  # dbos._services.coordinator.LEASE_NAME (a service; not imported from here)
BUCKET_MS = 60_000


def queues_view(db: Database, dead_after_sec: float, minutes: int = 15) -> list[dict[str, Any]]:
    """Per queue: ENQUEUED and PENDING counts, the oldest waiting, its limits as the
    newest live executor serving it published them, how full it is, and the
    starts per minute over the last ``minutes``."""
    now = now_ms()
    since = (now // BUCKET_MS - minutes + 1) * BUCKET_MS

    def read(c: sa.Connection) -> tuple[Any, ...]:
        return stats.queue_counts(c), executors.list_all(c, now - 24 * 3600 * 1000), stored_queues.list_all(c)

    counts, rows, stored_rows = db.query(read)
    specs: dict[str, dict[str, Any]] = {}
    serving: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: r.heartbeat_at):  # the newest executor's specs win
        live = derived_state(row, now, dead_after_sec) == "RUNNING"
        for spec in json.loads(row.queue_specs) if row.queue_specs else []:
            specs[spec["name"]] = spec
            if live:
                serving[spec["name"]] = serving.get(spec["name"], 0) + 1
    # Queues stored in the database: their limits are the table's (a declaration in code
    # wins, as in the claim); served by every live executor that listens to all queues or to it.
    for stored in stored_rows:
        if stored.name in specs:
            continue
        specs[stored.name] = stored_rules.published(stored)
        serving[stored.name] = sum(
            1 for row in rows if derived_state(row, now, dead_after_sec) == "RUNNING"
            and (row.queues is None or stored.name in json.loads(row.queues))
        )
    out: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        spec = specs.get(name, {})
        return out.setdefault(name, {
            "queue_name": name, "enqueued": 0, "pending": 0, "oldest_enqueued_age_s": None,
            "concurrency": spec.get("concurrency"), "worker_concurrency": spec.get("worker_concurrency"),
            "rate_limit": spec.get("limit"), "rate_period_s": spec.get("period_sec"),
            "partitioned": spec.get("partitioned"), "live_executors": serving.get(name, 0),
            "fullness": None, "starts_per_minute": [],
        })

    for name in specs:
        entry(name)
    for qc in counts:
        e = entry(qc.queue_name)
        if qc.status == "ENQUEUED":
            e["enqueued"] = qc.count
            e["oldest_enqueued_age_s"] = round(max(0, now - qc.oldest_ms) / 1000, 3)
        else:
            e["pending"] = qc.count
    for name, e in out.items():
        capacity = e["concurrency"]
        if capacity is None and e["worker_concurrency"] and e["live_executors"]:
            capacity = e["worker_concurrency"] * e["live_executors"]
        if capacity:
            e["fullness"] = round(e["pending"] / capacity, 3)
        starts = _starts(db, name, since)
        e["starts_per_minute"] = [
            {"minute": t, "started": starts.get(t, 0)} for t in range(since, now + 1, BUCKET_MS)
        ]
    return sorted(out.values(), key=lambda e: e["queue_name"])


def _starts(db: Database, queue_name: str, since: int) -> dict[int, int]:
    return db.query(lambda c: stats.queue_starts(c, queue_name, since, BUCKET_MS))


def leader_view(db: Database) -> Optional[dict[str, Any]]:
    """The coordinators' lease: who holds it, and whether it is still valid."""
    lease = db.query(lambda c: leases.current(c, LEASE_NAME))
    if lease is None:
        return None
    now = now_ms()
    return {"holder": lease.holder, "term": lease.term, "live": lease.expires_at > now,
            "expires_in_s": round((lease.expires_at - now) / 1000, 3)}


def launches_view(db: Database, since_ms: int) -> list[dict[str, Any]]:
    """Launches started since ``since_ms``, newest first (in flight, failed, succeeded)."""
    rows = db.query(lambda c: versions.recent(c, since_ms))
    return [{"launch_id": r.launch_id, "app_version": r.app_version, "launcher": r.launcher, "state": r.state,
             "attempt": r.attempt, "started_at": r.started_at, "finished_at": r.finished_at,
             "executor_id": r.executor_id, "error": r.error} for r in rows]


def _value(data: Optional[bytes], what: str) -> Any:
    try:
        return deserialize(data, what)
    except Exception as e:  # a class this process cannot import: say so, show the rest
        return _Undecodable(str(e))


class _Undecodable:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<{self.text}>"


def workflow_extras(db: Database, workflow_id: str, limit: int = 100) -> dict[str, Any]:
    """When it started, its child workflows, its events (key -> value) and the messages
    waiting for it (topic, value, sent at)."""

    def read(c: sa.Connection) -> tuple[Any, ...]:
        return (stats.started_at(c, workflow_id), stats.children(c, workflow_id, limit),
                messages.get_all_events(c, workflow_id), stats.pending_messages(c, workflow_id, limit))

    started, kids, events, pending = db.query(read)
    return {
        "started_at": started,
        "children": [{"workflow_id": k.workflow_id, "status": k.status, "name": k.name} for k in kids],
        "events": {k: _value(v, f"event {k!r}") for k, v in events.items()},
        "messages": [{"topic": m.topic or None, "value": _value(m.message, "message"), "sent_at": m.created_at}
                     for m in pending],
    }


def step_timeline(db: Database, workflow_id: str) -> list[dict[str, Any]]:
    """A workflow's recorded steps in order, with when each started and ended (epoch
    ms; None for steps recorded before timings were kept), output or error values."""
    rows = db.query(lambda c: operations.list_for(c, workflow_id))
    out = []
    for s in rows:
        try:
            error: Any = deserialize_error(s.error)
        except Exception as e:
            error = _Undecodable(str(e))
        out.append({
            "function_id": s.function_id, "function_name": s.function_name,
            "started_at": s.started_at, "completed_at": s.completed_at,
            "duration_ms": None if s.started_at is None or s.completed_at is None else s.completed_at - s.started_at,
            "output": _value(s.output, f"the output of step {s.function_id}"), "error": error,
            "child_workflow_id": s.child_workflow_id, "attempts": s.attempts or 1,
        })
    return out
