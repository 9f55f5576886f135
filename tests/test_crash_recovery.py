"""A real process is SIGKILLed mid-workflow and restarted with the same DBOS__VMID:
the workflow completes, completed steps are not re-run, the transaction's row exists
exactly once. Runs on PostgreSQL and SQLite."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Backend, eventually

APP = Path(__file__).parent / "apps" / "crash_app.py"
WORKFLOW_ID = "crash-order-1"


def _marks(path: Path) -> collections.Counter[str]:
    if not path.exists():
        return collections.Counter()
    return collections.Counter(line for line in path.read_text().splitlines() if line)


def _env(vmid: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS_")}
    env["DBOS__VMID"] = vmid
    return env


def _run(backend: Backend, tmp_path: Path, mode: str, vmid: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), backend.url, WORKFLOW_ID, str(tmp_path / "marks"), str(tmp_path / "release"), mode],
        env=_env(vmid),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"app did not finish in {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


@pytest.mark.slow
def test_sigkill_mid_workflow_then_restart_with_same_vmid(backend: Backend, tmp_path: Path) -> None:
    backend.execute("CREATE TABLE crash_payments (order_id TEXT NOT NULL)")
    marks = tmp_path / "marks"
    steps_table = backend.table("operation_outputs")

    proc = _run(backend, tmp_path, "start", "crash-vm")
    try:

        def killed_at_step_4() -> bool:
            if proc.poll() is not None:
                _, out, err = _finish(proc)
                pytest.fail(f"app exited early ({proc.returncode})\nstdout:\n{out}\nstderr:\n{err}")
            recorded = backend.scalar(
                f"SELECT count(*) FROM {steps_table} WHERE workflow_uuid = :w", w=WORKFLOW_ID
            ) if _has_tables(backend) else 0
            return recorded == 3 and _marks(marks)["wait_for_release"] == 1

        eventually(killed_at_step_4, timeout=60, interval=0.02, what="(steps 1-3 recorded, step 4 running)")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    assert backend.status(WORKFLOW_ID) == "PENDING"
    assert [fid for fid, _ in backend.steps(WORKFLOW_ID)] == [1, 2, 3]
    before = _marks(marks)
    assert before == {"reserve_stock": 1, "send_receipt": 1, "wait_for_release": 1}
    assert backend.scalar("SELECT count(*) FROM crash_payments") == 1

    # Another executor does not pick it up.
    code, out, err = _finish(_run(backend, tmp_path, "noop", "some-other-vm"))
    assert code == 0, err
    assert backend.status(WORKFLOW_ID) == "PENDING"
    assert _marks(marks) == before

    # The same executor, restarted, resumes it from step 4.
    (tmp_path / "release").touch()
    code, out, err = _finish(_run(backend, tmp_path, "recover", "crash-vm"))
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "RESULT order-1:1:paid-order-1:released" in out

    after = _marks(marks)
    assert after["reserve_stock"] == 1  # recorded before the kill: not re-run
    assert after["send_receipt"] == 1
    assert after["wait_for_release"] == 2  # running when killed: a step is at-least-once
    assert after["ship"] == 1
    assert backend.scalar("SELECT count(*) FROM crash_payments") == 1  # exactly once
    assert backend.scalar(
        f"SELECT count(*) FROM {backend.table('transaction_outputs')} WHERE workflow_uuid = :w", w=WORKFLOW_ID
    ) == 1
    assert [fid for fid, _ in backend.steps(WORKFLOW_ID)] == [1, 2, 3, 4, 5]
    row: Any = backend.rows(
        f"SELECT status, executor_id, recovery_attempts FROM {backend.table('workflow_status')} "
        "WHERE workflow_uuid = :w",
        w=WORKFLOW_ID,
    )[0]
    assert (row[0], row[1], row[2]) == ("SUCCESS", "crash-vm", 2)


def _has_tables(backend: Backend) -> bool:
    """The child creates the schema at launch; before that there is nothing to count."""
    import sqlalchemy as sa

    schema = None if backend.is_sqlite else "dbos"
    return sa.inspect(backend.engine).has_table("operation_outputs", schema=schema)
