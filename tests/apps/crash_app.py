"""A small DBOS app that tests/test_crash_recovery.py runs as a real process and SIGKILLs.

Usage: crash_app.py <system_database_url> <workflow_id> <marks_file> <release_file> <mode>

mode ``start``: start the workflow with that ID and wait for its result.
mode ``recover``: only launch (recovery resumes the workflow) and wait for its result.
mode ``noop``: launch and exit at once.

Every step execution appends one line to ``marks_file``; the transaction inserts a
row into ``crash_payments`` (no key: a second execution would add a second row).
The executor ID comes from DBOS__VMID in the environment.
"""

from __future__ import annotations

import os
import sys
import time

import sqlalchemy as sa

from dbos import DBOS, SetWorkflowID

URL, WORKFLOW_ID, MARKS, RELEASE, MODE = sys.argv[1:6]


def mark(name: str) -> None:
    with open(MARKS, "a") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())


@DBOS.step()
def reserve_stock(order: str) -> int:
    mark("reserve_stock")
    return 1


@DBOS.transaction()
def record_payment(order: str) -> str:
    DBOS.sql_session.execute(sa.text("INSERT INTO crash_payments (order_id) VALUES (:o)"), {"o": order})
    return f"paid-{order}"


@DBOS.step()
def send_receipt(order: str) -> None:
    mark("send_receipt")


@DBOS.step()
def wait_for_release() -> str:
    mark("wait_for_release")
    while not os.path.exists(RELEASE):  # the test kills the process while it waits here
        time.sleep(0.02)
    return "released"


@DBOS.step()
def ship(order: str) -> None:
    mark("ship")


@DBOS.workflow()
def checkout(order: str) -> str:
    stock = reserve_stock(order)  # function_id 1
    paid = record_payment(order)  # 2
    send_receipt(order)  # 3
    released = wait_for_release()  # 4
    ship(order)  # 5
    return f"{order}:{stock}:{paid}:{released}"


def main() -> int:
    DBOS(config={
        "name": "crash-app",
        "system_database_url": URL,
        "application_version": "crash-v1",
        "log_level": "WARNING",
        "polling_interval_sec": 0.1,
    })
    DBOS.launch()
    try:
        if MODE == "noop":
            return 0
        if MODE == "start":
            with SetWorkflowID(WORKFLOW_ID):
                handle = DBOS.start_workflow(checkout, "order-1")
        else:
            handle = DBOS.retrieve_workflow(WORKFLOW_ID)
        print(f"RESULT {handle.get_result()}", flush=True)
        return 0
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    sys.exit(main())
