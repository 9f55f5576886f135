"""A DBOS app that the issue-6 tests run as a real process (and SIGKILL).

Usage: auth_app.py <system_database_url> <marks_file> <release_file> <mode> <workflow_id> [<otlp_traces_url>]

Modes:
- ``auth_start``: as user ``alice`` (roles reader, admin) start ``Vault.guarded`` (on
  the instance configured as ``vault-main``)
  with that workflow ID; it needs role ``admin`` (so ``admin`` is its assumed
  role) and waits in a step until the release file exists.
- ``instance_start``: start ``Ledger.tally`` on the instance configured as ``west``
  (another instance, ``east``, exists too); it also waits for the release file.
- ``recover``: only launch (recovery resumes the workflow), then wait for it.
- ``trace_executor``: launch with OTLP trace export to <otlp_traces_url> and wait
  for the workflow with that ID (enqueued by the test on ``auth_trace_queue`` for
  this app version) to finish, then shut down (which flushes the spans).

Each event appends one JSON line to the marks file: what ran, in which process,
as which user / roles / assumed role. The result is printed as ``RESULT <json>``.
The executor ID comes from DBOS__VMID, the app version from DBOS__APPVERSION
(default ``auth-v1``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from dbos import DBOS, DBOSConfiguredInstance, DBOSContextSetAuth, Queue, SetWorkflowID

URL, MARKS, RELEASE, MODE, WORKFLOW_ID = sys.argv[1:6]
OTLP_TRACES = sys.argv[6] if len(sys.argv) > 6 else None

trace_queue = Queue("auth_trace_queue")


def mark(event: str, **extra: Any) -> dict[str, Any]:
    entry = {
        "event": event,
        "pid": os.getpid(),
        "workflow_id": DBOS.workflow_id,
        "user": DBOS.authenticated_user,
        "roles": DBOS.authenticated_roles,
        "role": DBOS.assumed_role,
        **extra,
    }
    with open(MARKS, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


@DBOS.step()
def observe(label: str) -> dict[str, Any]:
    return mark(label)


@DBOS.step()
def wait_for_release(label: str) -> str:
    mark(label)
    while not os.path.exists(RELEASE):  # the test kills the process while it waits here
        time.sleep(0.02)
    return "released"


@DBOS.workflow(name="auth_app.audit_child")
def audit_child(label: str) -> dict[str, Any]:
    return observe(label)


@DBOS.dbos_class()
@DBOS.default_required_roles(["reader"])
class Vault(DBOSConfiguredInstance):
    @DBOS.required_roles(["admin"])
    @DBOS.workflow()
    def guarded(self, doc: str) -> dict[str, Any]:
        before = observe("before")  # step 1
        child_before = audit_child("child-before")  # step 2 (child workflow <id>-2), 3 its getResult
        released = wait_for_release("waiting")  # step 4: killed here
        after = observe("after")  # step 5
        child_after = audit_child("child-after")  # step 6 (child workflow <id>-6), 7 its getResult
        return {"doc": doc, "before": before, "child_before": child_before, "released": released,
                "after": after, "child_after": child_after, "final_pid": os.getpid()}


@DBOS.dbos_class()
class Ledger(DBOSConfiguredInstance):
    def __init__(self, config_name: str, region: str) -> None:
        super().__init__(config_name)
        self.region = region

    @DBOS.workflow()
    def tally(self, amount: int) -> dict[str, Any]:
        observe(f"tally-start:{self.config_name}")
        wait_for_release("waiting")
        observe(f"tally-end:{self.config_name}")
        return {"config_name": self.config_name, "region": self.region, "amount": amount, "pid": os.getpid()}


VAULT = Vault("vault-main")
EAST = Ledger("east", "us-east-1")
WEST = Ledger("west", "us-west-2")


@DBOS.step(name="auth_app.remote_step")
def remote_step(x: int) -> int:
    DBOS.span.set_attribute("app.remote_step", x)
    return x * 2


@DBOS.workflow(name="auth_app.remote_target")
def remote_target(x: int) -> int:
    return remote_step(x) + 1


def main() -> int:
    config: dict[str, Any] = {
        "name": "auth-app",
        "system_database_url": URL,
        # DBOS__APPVERSION, when set, names the version: explicit config would win over it.
        "application_version": os.environ.get("DBOS__APPVERSION") or "auth-v1",
        "log_level": "WARNING",
        "polling_interval_sec": 0.1,
    }
    if OTLP_TRACES is not None:
        config.update(enable_otlp=True, otlp_traces_endpoints=[OTLP_TRACES], otlp_attributes={"app.role": "executor"})
    DBOS(config=config)  # type: ignore[arg-type]
    DBOS.launch()
    try:
        if MODE == "auth_start":
            with DBOSContextSetAuth("alice", ["reader", "admin"]), SetWorkflowID(WORKFLOW_ID):
                handle = DBOS.start_workflow(VAULT.guarded, "doc-1")
        elif MODE == "instance_start":
            with SetWorkflowID(WORKFLOW_ID):
                handle = DBOS.start_workflow(WEST.tally, 5)
        elif MODE == "trace_executor":
            handle = DBOS.retrieve_workflow(WORKFLOW_ID, existing_workflow=False)
        else:
            handle = DBOS.retrieve_workflow(WORKFLOW_ID)
        result = handle.get_result()
        print(f"RESULT {json.dumps(result)}", flush=True)
        return 0
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    sys.exit(main())
