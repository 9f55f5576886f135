"""The installed ``dbos`` command (issue 5), run as a subprocess.

`dbos migrate`, `dbos workflow list|get|steps|cancel|resume|fork`, `dbos queue list`,
with --db-url and with $DBOS_SYSTEM_DATABASE_URL; filters as options; readable
tables and --json; errors are one line on stderr and a non-zero exit, never a
traceback. Workflows are run by a DBOS launched in this process on the same database.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from typing import Any, Optional

import pytest
from conftest import APP_VERSION, Backend, Harness, eventually
from mgmt_helpers import Counter, dbos_command, rfc3339, wait_status

from dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSContextSetAuth,
    Queue,
    SetWorkflowID,
    SetWorkflowTimeout,
)

CLI_SERIAL = Queue("cli_serial", concurrency=1, polling_interval_sec=0.1)


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def run_cli(*args: str, url: Optional[str] = None, env_url: Optional[str] = None, timeout: float = 60) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    if env_url is not None:
        env["DBOS_SYSTEM_DATABASE_URL"] = env_url
    argv = [dbos_command(), *args]
    if url is not None:
        argv += ["--db-url", url]
    return Result(subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout))


def assert_clean_error(r: Result, *fragments: str) -> None:
    """A non-zero exit with exactly one line on stderr, naming the problem, and no traceback."""
    assert r.code != 0, r
    assert "Traceback" not in r.err and "Traceback" not in r.out, r
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r
    for fragment in fragments:
        assert fragment in lines[0], r


def table_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [line.split() for line in lines[1:]]


# -- migrate -------------------------------------------------------------------------------


@pytest.mark.fresh_database
def test_migrate_with_db_url_and_env(backend: Backend, tmp_path: Any) -> None:
    r = run_cli("migrate", url=backend.url)
    assert r.code == 0, r
    assert "migrations applied" in r.out
    assert backend.scalar(f"SELECT count(*) FROM {backend.table('workflow_status')}") == 0
    assert backend.scalar(f"SELECT count(*) FROM {backend.table('transaction_outputs')}") == 0
    again = run_cli("migrate", env_url=backend.url)  # the URL from the environment
    assert again.code == 0, again
    assert "up to date" in again.out


def test_missing_database_url_is_a_clean_error() -> None:
    r = run_cli("workflow", "list")
    assert_clean_error(r, "DBOS_SYSTEM_DATABASE_URL")
    assert_clean_error(run_cli("migrate"), "--db-url")


def test_unreachable_database_is_a_clean_error() -> None:
    start = time.monotonic()
    r = run_cli("workflow", "list", url="postgresql://postgres@127.0.0.1:1/postgres")
    assert_clean_error(r, "dbos: error")
    assert "unreachable" in r.err or "connect" in r.err.lower()
    assert time.monotonic() - start < 30
    assert_clean_error(run_cli("migrate", url="postgresql://postgres@127.0.0.1:1/postgres"), "dbos: error")
    assert_clean_error(run_cli("workflow", "list", url="mysql://x@y/z"), "postgresql://")


# -- workflow list / get / steps ---------------------------------------------------------------


def _populate(dbos: Harness) -> dict[str, int]:
    @DBOS.step()
    def add(x: int) -> int:
        return x + 1

    @DBOS.workflow(name="cli-alpha")
    def alpha(x: int) -> int:
        return add(add(x))

    @DBOS.workflow(name="cli-beta")
    def beta(x: int) -> int:
        raise ValueError(f"beta failed on {x}")

    created: dict[str, int] = {}
    for workflow_id, fn, user in (("cli-a1", alpha, "alice"), ("cli-b1", beta, None), ("cli-a2", alpha, "bob")):
        with DBOSContextSetAuth(user, ["r"] if user else None), SetWorkflowID(workflow_id):
            try:
                fn(1)
            except ValueError:
                pass
        created[workflow_id] = DBOS.list_workflows(workflow_ids=[workflow_id])[0].created_at or 0
        time.sleep(0.01)
    dbos.restart(application_version="cli-v2")
    with SetWorkflowID("other-1"):
        alpha(10)
    created["other-1"] = DBOS.list_workflows(workflow_ids=["other-1"])[0].created_at or 0
    return created


def test_workflow_list_get_steps(dbos: Harness, backend: Backend) -> None:
    created = _populate(dbos)
    url = backend.url

    r = run_cli("workflow", "list", url=url)
    assert r.code == 0, r
    header = r.out.splitlines()[0].split()
    assert header[:3] == ["WORKFLOW_ID", "STATUS", "NAME"]
    rows = table_rows(r.out)
    assert [row[0] for row in rows] == ["cli-a1", "cli-b1", "cli-a2", "other-1"]
    assert rows[0][1:3] == ["SUCCESS", "cli-alpha"] and rows[1][1] == "ERROR"
    assert [row[-1] for row in rows] == [rfc3339(created[row[0]]) for row in rows]  # CREATED_AT, readable

    data = run_cli("workflow", "list", "--json", "--sort-desc", "--limit", "3", env_url=url).json()
    assert [d["workflow_id"] for d in data] == ["other-1", "cli-a2", "cli-b1"]
    by_id = {d["workflow_id"]: d for d in data}
    a2 = by_id["cli-a2"]
    assert a2["status"] == "SUCCESS" and a2["name"] == "cli-alpha" and a2["output"] == 3
    assert a2["authenticated_user"] == "bob" and a2["app_version"] == APP_VERSION
    assert a2["executor_id"] == "local" and a2["created_at"] == created["cli-a2"]  # epoch ms in JSON
    assert a2["input"] == {"args": [1], "kwargs": {}}
    assert "ValueError" in by_id["cli-b1"]["error"] and "beta failed on 1" in by_id["cli-b1"]["error"]

    r = run_cli("workflow", "get", "cli-a1", url=url)
    assert r.code == 0, r
    fields = {line.split()[0]: line.split(None, 1)[1] if len(line.split()) > 1 else "" for line in r.out.splitlines()}
    assert fields["workflow_id"] == "cli-a1" and fields["status"] == "SUCCESS" and fields["output"] == "3"
    got = run_cli("workflow", "get", "cli-b1", "--json", url=url).json()
    assert got["workflow_id"] == "cli-b1" and got["status"] == "ERROR" and "beta failed" in got["error"]

    r = run_cli("workflow", "steps", "cli-a1", url=url)
    assert r.code == 0, r
    assert r.out.splitlines()[0].split()[:2] == ["FUNCTION_ID", "FUNCTION_NAME"]
    rows = table_rows(r.out)
    assert [row[0] for row in rows] == ["1", "2"]
    assert rows[0][1].endswith("<locals>.add") and rows[0][2] == "2"
    steps = run_cli("workflow", "steps", "cli-a1", "--json", url=url).json()
    assert [(s["function_id"], s["output"], s["error"], s["child_workflow_id"]) for s in steps] == [
        (1, 2, None, None), (2, 3, None, None)]



RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_timestamps_are_rfc3339_for_people_and_epoch_ms_in_json(dbos: Harness, backend: Backend) -> None:
    """Tables and `workflow get` print timestamps as RFC 3339 UTC with milliseconds;
    --json keeps them as epoch milliseconds, as WorkflowStatus has them (docs/decisions.md)."""

    @DBOS.workflow(name="cli-ts")
    def stamped(x: int) -> int:
        return x

    with SetWorkflowID("cli-ts-1"), SetWorkflowTimeout(3600):
        stamped(1)
    status = DBOS.list_workflows(workflow_ids=["cli-ts-1"])[0]
    assert status.created_at is not None and status.updated_at is not None
    deadline = status.workflow_deadline_epoch_ms
    assert deadline is not None
    url = backend.url

    r = run_cli("workflow", "list", url=url)
    assert r.code == 0, r
    assert r.out.splitlines()[0].split()[-1] == "CREATED_AT"
    created_cell = table_rows(r.out)[0][-1]  # the last column (empty cells do not split)
    assert RFC3339_MS.match(created_cell), r
    assert created_cell == rfc3339(status.created_at)

    r = run_cli("workflow", "get", "cli-ts-1", url=url)
    assert r.code == 0, r
    fields = dict(line.split(None, 1) for line in r.out.splitlines() if len(line.split()) > 1)
    assert fields["created_at"] == rfc3339(status.created_at)
    assert fields["updated_at"] == rfc3339(status.updated_at)
    assert fields["workflow_deadline_epoch_ms"] == rfc3339(deadline)
    assert fields["workflow_timeout_ms"] == "3600000"  # a duration, not a moment: unchanged

    listed = run_cli("workflow", "list", "--json", url=url).json()[0]
    got = run_cli("workflow", "get", "cli-ts-1", "--json", url=url).json()
    for data in (listed, got):
        assert data["created_at"] == status.created_at and isinstance(data["created_at"], int)
        assert data["updated_at"] == status.updated_at and isinstance(data["updated_at"], int)
        assert data["workflow_deadline_epoch_ms"] == deadline
    queued = run_cli("queue", "list", url=url)
    assert queued.code == 0 and queued.out.strip() == "(none)", queued


def test_rfc3339_rendering() -> None:
    from dbos.cli.main import rfc3339 as render

    assert render(0) == "1970-01-01T00:00:00.000Z"
    assert render(1796119757123) == "2026-12-01T10:09:17.123Z"
    assert render(1700000000999) == "2023-11-14T22:13:20.999Z"  # never rounded up to the next second


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # options map to the same query on both backends
def test_workflow_list_filter_options(dbos: Harness, backend: Backend) -> None:
    created = _populate(dbos)
    url = backend.url

    def ids(*options: str) -> list[str]:
        return [d["workflow_id"] for d in run_cli("workflow", "list", "--json", *options, url=url).json()]

    assert ids("--status", "ERROR") == ["cli-b1"]
    assert ids("--name", "cli-alpha") == ["cli-a1", "cli-a2", "other-1"]
    assert ids("--user", "bob") == ["cli-a2"]
    assert ids("--app-version", "cli-v2") == ["other-1"]
    assert ids("--prefix", "cli-a") == ["cli-a1", "cli-a2"]
    assert ids("--limit", "2", "--offset", "1") == ["cli-b1", "cli-a2"]
    assert ids("--start-time", rfc3339(created["cli-b1"]), "--end-time", rfc3339(created["cli-a2"])) == [
        "cli-b1", "cli-a2"]
    assert run_cli("workflow", "list", "--status", "CANCELLED", url=url).out.strip() == "(none)"


# -- cancel / resume / fork / queue list ----------------------------------------------------------


def test_workflow_cancel_resume_fork(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def first() -> str:
        counter.hit("first")
        return "first"

    @DBOS.workflow()
    def waiting() -> str:
        return first() + "+" + str(DBOS.recv("go", timeout_seconds=60))

    url = backend.url
    with SetWorkflowID("cli-wait"):
        handle = DBOS.start_workflow(waiting)
    eventually(lambda: len(DBOS.list_workflow_steps("cli-wait")) == 2)  # step 1 + the recv's deadline

    r = run_cli("workflow", "cancel", "cli-wait", url=url)
    assert r.code == 0, r
    assert "CANCELLED" in r.out
    assert backend.status("cli-wait") == "CANCELLED"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()  # the execution in this process was preempted from the other process

    DBOS.send("cli-wait", "msg", topic="go")
    r = run_cli("workflow", "resume", "cli-wait", "--json", url=url)
    assert r.json() == {"workflow_id": "cli-wait", "resumed": True}
    assert DBOS.retrieve_workflow("cli-wait").get_result() == "first+msg"
    assert counter["first"] == 1

    r = run_cli("workflow", "fork", "cli-wait", "--step", "2", "--json", url=url)
    forked = r.json()
    assert forked["forked_from"] == "cli-wait" and forked["start_step"] == 2
    assert forked["workflow_id"] != "cli-wait"
    DBOS.send(forked["workflow_id"], "again", topic="go")
    assert DBOS.retrieve_workflow(forked["workflow_id"]).get_result() == "first+again"
    assert counter["first"] == 1  # step 1 copied, not re-run

    r = run_cli("workflow", "fork", "cli-wait", "--forked-workflow-id", "cli-fork-named", url=url)
    assert r.code == 0, r
    assert "cli-fork-named" in r.out
    DBOS.send("cli-fork-named", "third", topic="go")
    assert DBOS.retrieve_workflow("cli-fork-named").get_result() == "first+third"
    assert counter["first"] == 2  # --step defaults to 1: everything re-runs

    r = run_cli("workflow", "fork", "cli-wait", "--step", "2", "--app-version", "cli-v9", "--json", url=url)
    pinned = r.json()["workflow_id"]
    status = DBOS.list_workflows(workflow_ids=[pinned])[0]
    assert status.app_version == "cli-v9" and status.status == "ENQUEUED"


def test_queue_list(dbos: Harness, backend: Backend) -> None:
    entered, release = threading.Event(), threading.Event()

    @DBOS.workflow()
    def blocker() -> None:
        entered.set()
        assert release.wait(120)

    @DBOS.workflow(name="cli-queued")
    def queued(i: int) -> int:
        return i

    try:
        with SetWorkflowID("cli-q-blocker"):
            CLI_SERIAL.enqueue(blocker)
        assert entered.wait(10)
        for i in range(2):
            with SetWorkflowID(f"cli-q-{i}"):
                CLI_SERIAL.enqueue(queued, i)
        r = run_cli("queue", "list", url=backend.url)
        assert r.code == 0, r
        rows = table_rows(r.out)
        assert [(row[0], row[1]) for row in rows] == [
            ("cli-q-blocker", "PENDING"), ("cli-q-0", "ENQUEUED"), ("cli-q-1", "ENQUEUED")]
        assert all("cli_serial" in row for row in rows)
        data = run_cli("queue", "list", "--json", "--queue", "cli_serial", "--status", "ENQUEUED",
                       env_url=backend.url).json()
        assert [d["workflow_id"] for d in data] == ["cli-q-0", "cli-q-1"]
        assert data[0]["queue_name"] == "cli_serial" and data[0]["name"] == "cli-queued"
        r = run_cli("workflow", "cancel", "cli-q-0", url=backend.url)
        assert r.code == 0, r
        data = run_cli("queue", "list", "--json", url=backend.url).json()
        assert [d["workflow_id"] for d in data] == ["cli-q-blocker", "cli-q-1"]
    finally:
        release.set()
    wait_status(backend, "cli-q-1", "SUCCESS")
    assert backend.status("cli-q-0") == "CANCELLED"


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # the CLI's error paths do not depend on it
def test_cli_errors_are_one_line(dbos: Harness, backend: Backend) -> None:
    url = backend.url
    with SetWorkflowID("cli-exists"):
        DBOS.start_workflow(_noop_workflow).get_result()
    for action in ("get", "steps", "cancel", "resume"):
        assert_clean_error(run_cli("workflow", action, "no-such-wf", url=url), "no-such-wf")
    assert_clean_error(run_cli("workflow", "fork", "no-such-wf", url=url), "no-such-wf")
    # (a step past the last recorded one is accepted, as in DBOS 2.x: the fork replays)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_cli_bad_options_are_one_line(backend: Backend) -> None:
    url = backend.url
    assert_clean_error(run_cli("workflow", "list", "--start-time", "last tuesday", url=url), "RFC 3339")
    assert_clean_error(run_cli("queue", "list", "--end-time", "2024-99-99", url=url), "RFC 3339")
    assert_clean_error(run_cli("workflow", "list", "--status", "FINISHED", url=url), "status")
    # argparse usage errors: non-zero, no traceback
    r = run_cli("workflow", "list", "--limit", "many", url=url)
    assert r.code != 0 and "Traceback" not in r.err
    r = run_cli("workflow", "frobnicate", url=url)
    assert r.code != 0 and "Traceback" not in r.err


@DBOS.workflow()
def _noop_workflow() -> str:
    return "noop"
