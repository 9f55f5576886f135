"""The example app of the deployment artifacts (Dockerfile, docker-compose.yml, k8s/).

One queue and a multi-step workflow, run by ``dbos-worker`` (docs/deploy.md)::

    dbos-worker examples/fleet_app.py --admin-port 3001     # one executor of the fleet

The worker builds the config from the environment (``DBOS_SYSTEM_DATABASE_URL``,
``DBOS_REDIS_URL``, ``DBOS_APP_NAME``, ``DBOS__VMID``, ``DBOS__APPVERSION``); this
file declares no ``DBOS(...)`` of its own. Run as a script it is a client that
enqueues orders and waits for them::

    python examples/fleet_app.py enqueue 5 [--app-version v1] [--step-seconds 1]

Each step returns which executor ran it, so a result shows a hand-over: the first
steps by the executor that was killed (recorded, not run again), the rest by the
executor the coordinator handed the workflow to.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from typing import Optional, Sequence

from dbos import DBOS, DBOSClient, EnqueueOptions, Queue

QUEUE_NAME = "orders"
WORKFLOW_NAME = "process_order"
STEPS = ("reserve stock", "charge card", "print label", "ship parcel")

# At most 4 orders at a time per executor; Redis hints wake claimers at once, the
# short poll bounds the latency when a hint is lost.
orders = Queue(QUEUE_NAME, worker_concurrency=4, polling_interval_sec=0.5)


def executor_id() -> str:
    return os.environ.get("DBOS__VMID", "local")


@DBOS.step()
def do_step(order_id: str, what: str, seconds: float) -> str:
    time.sleep(seconds)  # the "work"; a crash here leaves the step unrecorded
    return f"{what}: {executor_id()}"


@DBOS.workflow()
def process_order(order_id: str, step_seconds: float = 0.5) -> list[str]:
    """Run every step in order; each output names the executor that ran the step."""
    DBOS.logger.info("order %s: started on %s", order_id, executor_id())
    return [do_step(order_id, what, step_seconds) for what in STEPS]


# -- the client side: enqueue orders from anywhere that reaches the database ----------


def enqueue(client: DBOSClient, count: int, app_version: Optional[str], step_seconds: float) -> list[str]:
    """Enqueue ``count`` orders on the ``orders`` queue; return their workflow IDs."""
    options: EnqueueOptions = {"queue_name": QUEUE_NAME, "workflow_name": WORKFLOW_NAME}
    if app_version:
        options["app_version"] = app_version
    ids = []
    for _ in range(count):
        order_id = f"order-{uuid.uuid4().hex[:8]}"
        ids.append(client.enqueue({**options, "workflow_id": order_id}, order_id, step_seconds).workflow_id)
    return ids


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Enqueue example orders and print their results.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("enqueue", help="enqueue N orders and wait for their results")
    e.add_argument("count", type=int)
    e.add_argument("--app-version", default=os.environ.get("DBOS__APPVERSION"),
                   help="pin the orders to this app version (default: $DBOS__APPVERSION)")
    e.add_argument("--step-seconds", type=float, default=0.5)
    e.add_argument("--no-wait", action="store_true", help="print the IDs and return")
    args = p.parse_args(argv)
    url = os.environ.get("DBOS_SYSTEM_DATABASE_URL")
    if not url:
        print("fleet_app: set DBOS_SYSTEM_DATABASE_URL", file=sys.stderr)
        return 2
    with DBOSClient(url, redis_url=os.environ.get("DBOS_REDIS_URL") or None) as client:
        ids = enqueue(client, args.count, args.app_version, args.step_seconds)
        for workflow_id in ids:
            print(workflow_id, flush=True)
            if not args.no_wait:
                print("  ", client.retrieve_workflow(workflow_id).get_result(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
