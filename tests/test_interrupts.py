"""Issue 17 item 1: an interrupt (KeyboardInterrupt, SystemExit: a BaseException that is
not an Exception) is not a workflow's outcome. The workflow stays PENDING and is
recovered like after a crash; the interrupt goes on to end the process. Ctrl-C while
background workflows run says what it waits for; a second Ctrl-C exits at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Backend, Harness, eventually

from dbos import DBOS, SetWorkflowID


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_a_step_leaves_the_workflow_pending_and_recoverable(
    harness: Harness, backend: Backend, interrupt: type[BaseException]
) -> None:
    calls: list[str] = []

    @DBOS.step()
    def first() -> str:
        calls.append("first")
        return "a"

    @DBOS.step()
    def second() -> str:
        calls.append("second")
        if calls.count("second") == 1:
            raise interrupt()
        return "b"

    @DBOS.workflow()
    def wf() -> str:
        return first() + second()

    harness.launch()
    with pytest.raises(interrupt):
        with SetWorkflowID("interrupted-1"):
            wf()
    assert backend.status("interrupted-1") == "PENDING"
    assert len(backend.steps("interrupted-1")) == 1  # only the step that returned

    harness.restart()  # recovery at launch resumes it, as after a crash
    handle = DBOS.retrieve_workflow("interrupted-1")
    assert handle.get_result() == "ab"
    assert backend.status("interrupted-1") == "SUCCESS"
    assert calls == ["first", "second", "second"]  # the recorded step did not run again


def test_interrupt_in_the_workflow_body_is_not_recorded(harness: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def exits() -> None:
        sys.exit(3)

    harness.launch()
    with pytest.raises(SystemExit):
        with SetWorkflowID("exits-1"):
            exits()
    assert backend.status("exits-1") == "PENDING"
    row = backend.rows(f"SELECT error, output FROM {backend.table('workflow_status')} WHERE workflow_uuid = 'exits-1'")
    assert row == [(None, None)]


_APP = textwrap.dedent(
    """
    import os, sys, time
    from dbos import DBOS

    URL, RELEASE = sys.argv[1:3]
    DBOS(config={"name": "ctrlc", "system_database_url": URL, "executor_id": "ctrlc-vm",
                 "application_version": "v1", "log_level": "ERROR"})

    @DBOS.step()
    def wait_for_release() -> str:
        while not os.path.exists(RELEASE):
            time.sleep(0.02)
        return "released"

    @DBOS.workflow()
    def background() -> str:
        return wait_for_release()

    DBOS.launch()
    DBOS.start_workflow(background)
    print("started", flush=True)
    while True:  # the main thread idles until Ctrl-C
        time.sleep(0.05)
    """
)


def test_ctrl_c_names_what_it_waits_for_and_a_second_one_exits(backend: Backend, tmp_path: Path) -> None:
    app = tmp_path / "ctrlc_app.py"
    app.write_text(_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS_")}
    proc = subprocess.Popen(
        [sys.executable, str(app), backend.url, str(tmp_path / "release")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGINT)
        waiting = proc.stderr.readline()
        while "dbos: waiting for" not in waiting and waiting:
            waiting = proc.stderr.readline()
        assert "waiting for 1 workflow(s)" in waiting and "Ctrl-C again" in waiting
        assert proc.poll() is None  # it waits for the background workflow
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert proc.returncode == 130
        assert "stay PENDING" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert eventually(lambda: backend.rows(f"SELECT status FROM {backend.table('workflow_status')}")) == [("PENDING",)]
