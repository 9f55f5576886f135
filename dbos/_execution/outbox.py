"""Sends written in a transaction the caller owns (``DBOSClient.send_in_transaction``):
the transactional outbox. Nothing here begins, commits or retries: rolled back, nothing
was sent; committed, the messages are there as ``send`` would have left them.

No wakeup follows: the commit is the caller's, and a hint sent before it would find
nothing. A receiver finds the message when it next polls (``polling_interval_sec``).

A keyed send (``idempotency_key``) is, as outside a transaction, the finished one-step
workflow ``<temp>.DBOS.send`` under an ID made of its key and destination: written here
as that workflow's SUCCESS row with its step, so sending again with the key, in a
transaction or not, finds it done and sends nothing.
"""

from __future__ import annotations

from typing import Any, Optional

import sqlalchemy as sa

from dbos._execution import checks
from dbos._execution.ids import new_id
from dbos._execution.messaging import SEND_DESTINATION, SEND_WORKFLOW, _topic, keyed_send_id
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.serialization import serialize
from dbos._storage import messages, workflows
from dbos._storage.workflows import WorkflowRow
from dbos.error import DBOSNonExistentWorkflowError


def send(
    rt: Runtime, conn: sa.Connection, destination_id: str, message: Any, topic: Optional[str],
    idempotency_key: Optional[str], to_forks: bool,
) -> None:
    """Store a message (and, ``to_forks``, its copies for the destination's forks) on the
    caller's connection, bound to the system database (``caller_tx.bound``)."""
    checks.identifier("destination_id", destination_id)
    topic_key = _topic(topic)
    if idempotency_key is not None:
        checks.identifier("idempotency_key", idempotency_key)
    payload = serialize(message, "the message")
    checks.check_size(payload, rt.settings.max_value_bytes, "the message")
    dialect, now = rt.sys_db.dialect, now_ms()
    if not messages.workflow_exists(conn, destination_id):
        raise DBOSNonExistentWorkflowError(destination_id, SEND_DESTINATION)
    sender: Optional[tuple[str, int]] = None
    message_id = new_id()
    if idempotency_key is not None:
        wid = keyed_send_id(destination_id, idempotency_key)
        args = (destination_id, message, topic, idempotency_key) + ((True,) if to_forks else ())
        row = WorkflowRow(
            workflow_uuid=wid, status="SUCCESS", name=SEND_WORKFLOW.name,
            inputs=serialize((args, {}), "the arguments of workflow %s", SEND_WORKFLOW.name),
            output=serialize(None, "the result"), executor_id=rt.executor_id, application_version=rt.app_version,
            application_id=rt.settings.app_id, created_at=now, updated_at=now, started_at=now, recovery_attempts=1,
        )
        if not workflows.insert(conn, dialect, row):
            return  # sent with this key before
        # As <temp>.DBOS.send's own step (function ID 1) would have sent it.
        sender, message_id = (wid, 1), f"{wid}-1"
    messages.send_recorded(conn, dialect, sender, message_id, destination_id, topic_key, payload, now, forks=to_forks)
