"""A DBOS app that tests/test_messages.py and tests/test_wakeups_redis.py run as a real
process (and SIGKILL).

Usage: messaging_app.py '<json spec>' with keys
  config       the DBOSConfig (the executor ID comes from DBOS__VMID)
  scenario     consumer | sleeper | echo
  workflow_id  the workflow's ID
  marks        a file that every ``note`` step appends one JSON line to
  dir          where ``release-<label>`` files are looked for
  mode         start (start the workflow) | recover (only launch: recovery resumes it)
  args         the workflow's keyword arguments (mode start)

Once launched (and, with Redis, once its subscription is live) the app appends
{"kind": "ready"}; when the workflow ends, {"kind": "ended", "error": ..., "t": ...};
on success it prints ``RESULT <json>`` with the workflow's result.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Optional

from dbos import DBOS, SetWorkflowID

SPEC: dict[str, Any] = json.loads(sys.argv[1])


def mark(kind: str, **fields: Any) -> None:
    with open(SPEC["marks"], "a") as f:
        f.write(json.dumps({"kind": kind, **fields}) + "\n")
        f.flush()
        os.fsync(f.fileno())


@DBOS.step()
def note(kind: str, fields: dict[str, Any], hold: Optional[str] = None) -> None:
    """Record that the workflow got here; with ``hold``, then wait for release-<hold>."""
    mark(kind, **fields)
    if hold is not None:
        release = os.path.join(SPEC["dir"], f"release-{hold}")
        while not os.path.exists(release):  # the test kills the process while it waits here
            time.sleep(0.01)


@DBOS.workflow()
def consumer(n: int, holds: list[str]) -> dict[str, Any]:
    messages = []
    for i in range(n):
        message = DBOS.recv("t", timeout_seconds=60)
        note("got", {"i": i, "message": message}, str(i) if str(i) in holds else None)
        messages.append(message)
    late = DBOS.recv("t", timeout_seconds=0.5)  # nothing is sent yet: times out
    note("timeout", {"message": late}, "timeout" if "timeout" in holds else None)
    return {"messages": messages, "timeout": late}


@DBOS.workflow()
def sleeper(seconds: float) -> dict[str, float]:
    note("before", {"t": time.time()})
    DBOS.sleep(seconds)
    return {"woke": time.time()}


@DBOS.workflow()
def echo() -> Optional[float]:
    """Loop on recv("ping"): note each message's one-way latency (it carries its send time);
    optionally sleep, set an event to the time it is set, reply, or return (with the time)."""
    while True:
        message = DBOS.recv("ping", timeout_seconds=300)
        received = time.time()
        if message is None:
            return None
        note("got", {"seq": message["seq"], "latency": received - message["sent"]})
        if message.get("delay"):
            DBOS.sleep(message["delay"])
        if message.get("event"):
            DBOS.set_event(message["event"], time.time())
        if message.get("reply_to"):
            DBOS.send(message["reply_to"], {"seq": message["seq"], "sent": time.time()}, "pong")
        if message.get("stop"):
            return time.time()
        if message.get("fail"):
            raise ValueError(message["fail"])


WORKFLOWS = {"consumer": consumer, "sleeper": sleeper, "echo": echo}


def main() -> int:
    DBOS(config=SPEC["config"])
    DBOS.launch()
    try:
        if SPEC["config"].get("redis_url"):
            from dbos._api.instance import runtime

            bridge = runtime().wakeups.bridge
            assert bridge is not None and bridge.connected.wait(30), "redis bridge did not connect"
        if SPEC["mode"] == "start":
            with SetWorkflowID(SPEC["workflow_id"]):
                handle = DBOS.start_workflow(WORKFLOWS[SPEC["scenario"]], **SPEC["args"])
        else:
            handle = DBOS.retrieve_workflow(SPEC["workflow_id"])
        mark("ready", t=time.time())
        try:
            result = handle.get_result()
        except Exception as e:
            mark("ended", error=type(e).__name__, t=time.time())
            raise
        mark("ended", error=None, t=time.time())
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    sys.exit(main())
