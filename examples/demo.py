"""Durable execution you can watch: a workflow survives its process being killed.

    python examples/demo.py

Nothing to set up: with no database configured, DBOS keeps its state in
``demo.sqlite`` in the current directory. The demo plays both sides:

1. It starts a worker process that runs a five-step workflow.
2. When the worker begins step 3, the demo kills it with SIGKILL: no cleanup,
   no chance to save anything (steps 1 and 2 are already recorded).
3. It starts a new worker with the same executor ID (``DBOS__VMID``), as a
   restarted container would be. ``DBOS.launch()`` finds the unfinished
   workflow and resumes it: steps 1 and 2 are not run again (their recorded
   outputs are used), step 3 runs again (it never finished), then 4 and 5.

Run it as often as you like: each run uses a new workflow ID and executor ID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from dbos import DBOS, SetWorkflowID

STEPS = ["reserve stock", "charge card", "print label", "ship parcel", "email customer"]
STEP_SECONDS = 0.5  # each step "works" for a moment, so there is time to crash mid-workflow


# -- the application: an ordinary DBOS workflow ------------------------------------


@DBOS.step()
def do_step(number: int, what: str) -> str:
    print(f"step {number}/{len(STEPS)} {what}: running in process {os.getpid()}", flush=True)
    time.sleep(STEP_SECONDS)
    print(f"step {number}/{len(STEPS)} {what}: done", flush=True)
    return f"{what}: ok"


@DBOS.workflow()
def process_order(order_id: str) -> list[str]:
    # Each do_step call is checkpointed in demo.sqlite when it returns. On recovery
    # the workflow function runs again from the top, and every step that was
    # already recorded returns its recorded output instead of running.
    return [do_step(number, what) for number, what in enumerate(STEPS, start=1)]


# -- the worker: one process of the application --------------------------------------


def worker(mode: str, workflow_id: str) -> None:
    DBOS(config={"name": "demo", "log_level": "WARNING"})  # no URL: SQLite, ./demo.sqlite
    DBOS.launch()  # a restarted worker resumes its unfinished workflows here
    if mode == "start":
        with SetWorkflowID(workflow_id):
            process_order("order-42")  # runs in this process (and gets killed)
    else:
        # Recovery is already under way in the background; wait for it to finish.
        handle = DBOS.retrieve_workflow(workflow_id)
        result = handle.get_result()
        status = handle.get_status()
        print(f"result: {result}", flush=True)
        print(f"status: {status.status}, recovery_attempts: {status.recovery_attempts}", flush=True)
    DBOS.destroy()


# -- the demo: start a worker, kill it, start it again ---------------------------------


def run_worker(label: str, mode: str, workflow_id: str, env: dict[str, str], kill_on: str = "") -> list[str]:
    """Run a worker, echo its output; SIGKILL it as soon as it prints ``kill_on``."""
    proc = subprocess.Popen(
        [sys.executable, "-u", os.path.abspath(__file__), mode, workflow_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    print(f"\n--- {label} (process {proc.pid}) ---")
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        print(f"  [{proc.pid}] {line}")
        if kill_on and kill_on in line:
            proc.kill()  # SIGKILL: the process dies on the spot
            proc.wait()
            print(f"  *** killed process {proc.pid} with SIGKILL in the middle of step 3 ***")
            return lines
    if proc.wait() != 0:
        sys.exit(f"worker {proc.pid} failed with exit code {proc.returncode}")
    return lines


def steps_run(lines: list[str]) -> list[int]:
    return [
        int(line.split()[1].split("/")[0]) for line in lines if line.startswith("step ") and "running" in line
    ]


def main() -> None:
    run = uuid.uuid4().hex[:8]
    workflow_id = f"order-42-{run}"
    env = dict(os.environ, DBOS__VMID=f"demo-worker-{run}")  # both workers: the same executor
    print(f"Durable execution demo: workflow {workflow_id}, state in {os.path.abspath('demo.sqlite')}")
    started = time.monotonic()

    kill_on = f"step 3/{len(STEPS)}"  # step 3 has started, so steps 1 and 2 are recorded
    first = run_worker("1. a worker starts the workflow", "start", workflow_id, env, kill_on=kill_on)
    if not any(kill_on in line for line in first):
        sys.exit("unexpected: the first worker finished before it could be killed")
    second = run_worker(
        "2. a new worker with the same DBOS__VMID: DBOS.launch() recovers the workflow",
        "recover",
        workflow_id,
        env,
    )

    print("\n--- what happened ---")
    print(f"  first process:  ran steps {steps_run(first)}, killed during step 3")
    print(f"  second process: ran steps {steps_run(second)}")
    if {1, 2} & set(steps_run(second)):
        sys.exit("  unexpected: a recorded step ran again")
    print(
        f"  steps 1 and 2 were recorded before the crash, so they were not run again ({time.monotonic() - started:.1f} s)"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3:
        worker(sys.argv[1], sys.argv[2])
    else:
        main()
