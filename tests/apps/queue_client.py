"""A process with no workflow code that drives workflows through DBOSClient
(tests/test_client.py). It imports only ``dbos``.

Usage: queue_client.py '<json spec>' with keys ``db`` (system database URL),
``redis`` (URL or null), ``queue`` and ``prefix`` (workflow IDs start with it).
It enqueues ``q4c_add(20, 22)`` and ``q4c_echo_event()`` by name, sends the
second one a message, reads its event, and prints one JSON line with what it saw.
"""

from __future__ import annotations

import json
import sys

from dbos import DBOSClient, DBOSQueueDeduplicatedError


def main() -> None:
    spec = json.loads(sys.argv[1])
    queue, prefix = spec["queue"], spec["prefix"]
    out: dict[str, object] = {}
    with DBOSClient(spec["db"], redis_url=spec.get("redis")) as client:
        add = client.enqueue(
            {"workflow_name": "q4c_add", "queue_name": queue, "workflow_id": f"{prefix}-add"}, 20, b=22
        )
        out["add_id"] = add.workflow_id
        out["add_result"] = add.get_result()
        out["add_executor"] = add.get_status().executor_id
        echo = client.enqueue(
            {"workflow_name": "q4c_echo_event", "queue_name": queue, "workflow_id": f"{prefix}-echo",
             "deduplication_id": f"{prefix}-dedup"}
        )
        try:
            client.enqueue(
                {"workflow_name": "q4c_echo_event", "queue_name": queue, "deduplication_id": f"{prefix}-dedup"}
            )
            out["dedup"] = "not raised"
        except DBOSQueueDeduplicatedError:
            out["dedup"] = "raised"
        client.send(echo.workflow_id, "ping", "inbox")
        out["event"] = client.get_event(echo.workflow_id, "echo", timeout_seconds=20)
        out["echo_result"] = client.retrieve_workflow(echo.workflow_id).get_result()
        # Proof that no workflow code came along.
        out["modules"] = sorted(m for m in sys.modules if m.startswith(("test", "conftest", "apps")))
        from dbos._execution.registry import REGISTRY

        out["registered"] = sorted(REGISTRY.workflows)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
