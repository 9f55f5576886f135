"""``dbos-worker`` as a real process (issue 12): loading the app, start-up errors, identity.

Every worker here is the installed ``dbos-worker`` console script (or ``python -m
worker``) on a fresh PostgreSQL database with Redis wakeups; its workflows
(tests/apps/worker_flows.py) count every execution in the side tables
``w12_runs`` / ``w12_tx``. Drain, idle exit, the admin server and ``dbos fleet
executors`` are in test_worker_drain.py, test_worker_idle.py and test_worker_admin.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
from conftest import Backend, eventually
from worker_helpers import APPS, STARTED, WORKER, Fleet, check_exactly_once, fleet_fixture, new_id

fleet = pytest.fixture(fleet_fixture, name="fleet")

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


# -- the app: a file, a dotted module, module:attr; with and without DBOS(...) ------------------

FORMS = {
    # name: (APP, its own DBOS(...)?, working directory is tests/apps?, python -m worker?)
    "file-own-config": ("worker_app.py", True, False, False),
    "file-config-from-env": ("worker_bare.py", False, False, False),
    "dotted-module": ("w12pkg.bare", False, True, False),
    "module-attr-instance": ("w12pkg.inst:dbos", True, True, False),
    "module-attr-factory": ("w12pkg.factory:create", True, True, False),
    "python-m-worker": ("worker_app.py", True, False, True),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_app_forms_run_workflows(fleet: Fleet, backend: Backend, tmp_path: Path, form: str) -> None:
    app, own_config, in_apps, module_form = FORMS[form]
    vmid = new_id("form")
    env: dict[str, str] = {}
    if not own_config:
        # The only way this app reaches the test's database and Redis.
        env = {"DBOS_SYSTEM_DATABASE_URL": backend.url, "DBOS_REDIS_URL": fleet.redis_url or "",
               "DBOS_APP_NAME": "w12-from-env"}
    worker = fleet.start(app, vmid=vmid, env=env, cwd=APPS if in_apps else tmp_path, module_form=module_form)
    ids = [fleet.enqueue("w12_plain", "quick", f"{form}-{i}") for i in range(3)]
    rows = fleet.wait_status(ids, alive=[worker])
    assert {r["executor_id"] for r in rows.values()} == {vmid}
    assert [h for h in ids if fleet.client.retrieve_workflow(h).get_result() != vmid] == []
    assert {r.pid for r in fleet.runs()} == {worker.pid}
    check_exactly_once(fleet, ids)
    assert f"dbos-worker started: executor {vmid}" in worker.stderr()
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=15) == 0, worker.describe()
    assert fleet.executor_row(vmid)["state"] == "STOPPED"  # type: ignore[index]


def test_default_executor_id_is_host_and_pid(fleet: Fleet, backend: Backend) -> None:
    env = {"DBOS_SYSTEM_DATABASE_URL": backend.url, "DBOS_REDIS_URL": fleet.redis_url or ""}
    worker = fleet.start("worker_bare.py", vmid="", env=env, name="default-id")
    expected = f"{socket.gethostname()}-{worker.pid}"
    row = fleet.executor_row(expected)
    assert row is not None and row["state"] == "RUNNING" and row["pid"] == worker.pid
    [wid] = [fleet.enqueue("w12_plain", "quick", "default-id")]
    assert fleet.wait_status([wid], alive=[worker])[wid]["executor_id"] == expected
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=15) == 0


@pytest.mark.slow
@pytest.mark.fresh_database
def test_workers_starting_at_once_on_an_empty_database_migrate_it_once(fleet: Fleet, backend: Backend) -> None:
    workers = [fleet.spawn("worker_app.py", name=f"m{i}") for i in range(4)]
    for w in workers:
        w.wait_started()  # none failed
    from dbos._storage.migrations import SYSTEM_MIGRATIONS
    from dbos._storage.schema import migrations

    table = backend.table(migrations.name)
    versions = [int(v) for (v,) in backend.rows(f"SELECT version FROM {table} ORDER BY version")]
    assert versions == list(range(1, len(SYSTEM_MIGRATIONS) + 1)), versions
    ids = [fleet.enqueue("w12_plain", "quick", new_id("m")) for _ in range(8)]
    fleet.wait_status(ids, alive=workers)
    for w in workers:
        w.signal(signal.SIGTERM)
    assert [w.wait_exit(15) for w in workers] == [0] * 4


# -- exit 2 with the error: import errors, bad config, bad flags ------------------------------


def run_worker(app: str, *args: str, env: Optional[dict[str, str]] = None, cwd: Path = APPS,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS", "W12_"))}
    full.update({"W12_DIR": str(cwd), "DBOS__VMID": new_id("bad")})
    full.update(env or {})
    return subprocess.run([str(WORKER), app, *args], env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(
    "app, fragments",
    [
        ("worker_broken.py", ["cannot import", "ModuleNotFoundError", "w12_no_such_module"]),
        ("w12pkg.no_such_app", ["cannot import 'w12pkg.no_such_app'", "No module named 'w12pkg.no_such_app'"]),
        ("w12pkg.bare:no_such_attr", ["has no attribute 'no_such_attr'"]),
        ("no/such/dir/app.py", ["no such file"]),
    ],
    ids=["raises-at-import", "no-such-module", "no-such-attribute", "no-such-file"],
)
def test_app_that_cannot_be_imported_exits_2(backend: Backend, app: str, fragments: list[str]) -> None:
    if app.endswith(".py") and "/" not in app:
        app = str(APPS / app)
    proc = run_worker(app, env={"DBOS_SYSTEM_DATABASE_URL": backend.url})
    assert proc.returncode == 2, proc
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    assert STARTED not in proc.stderr


@pytest.mark.parametrize(
    "app, env, fragments",
    [
        ("worker_app.py", {"W12_DB": "mysql://root@127.0.0.1/shop"}, ["system_database_url", "mysql://"]),
        ("worker_bare.py", {"DBOS_SYSTEM_DATABASE_URL": "mysql://root@127.0.0.1/shop"},
         ["bad config", "system_database_url"]),
        ("worker_bare.py", {"DBOS_REDIS_URL": "http://127.0.0.1:6379"}, ["bad config", "redis_url"]),
        ("worker_bare.py", {"DBOS_APP_NAME": "no spaces allowed"}, ["bad config", "'name'"]),
    ],
    ids=["own-config-bad-url", "env-bad-url", "env-bad-redis", "env-bad-name"],
)
def test_bad_config_exits_2(backend: Backend, app: str, env: dict[str, str], fragments: list[str]) -> None:
    full = {"DBOS_SYSTEM_DATABASE_URL": backend.url, "W12_DB": backend.url, **env}
    proc = run_worker(str(APPS / app), env=full)
    assert proc.returncode == 2, proc
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    assert STARTED not in proc.stderr
    # Refused before anything was registered under its executor ID.
    assert backend.scalar(f"SELECT count(*) FROM {backend.table('executors')}") == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--drain-timeout", "-1"], "--drain-timeout"),
        (["--exit-when-idle", "soon"], "--exit-when-idle"),
        (["--admin-port", "70000"], "--admin-port"),
        (["--queues", "a,,b"], "--queues"),
    ],
)
def test_bad_flags_exit_2(backend: Backend, args: list[str], fragment: str) -> None:
    proc = run_worker(str(APPS / "worker_app.py"), *args, env={"W12_DB": backend.url})
    assert proc.returncode == 2, proc
    assert fragment in proc.stderr


# -- identity ------------------------------------------------------------------------------------


def hold_work(fleet: Fleet, tag: str) -> list[str]:
    """Two queued gated workflows and the direct (unqueued) gated child of a third, all running
    (transaction committed, ticking) on the only worker; their IDs."""
    ids = [fleet.enqueue("w12_plain", "gated", tag) for _ in range(2)]
    spawner = fleet.enqueue("w12_plain", "spawn", tag)
    fleet.wait_status([spawner])
    ids.append(fleet.client.retrieve_workflow(spawner).get_result())
    assert fleet.rows(ids)[ids[-1]]["queue_name"] is None
    eventually(lambda: all(fleet.runs(w, "tick") for w in ids) and {w for w, _, _ in fleet.tx_rows()} >= set(ids),
               timeout=20)
    return ids


def test_live_executor_id_refused_then_reusable_after_sigkill(fleet: Fleet, backend: Backend) -> None:
    vmid = new_id("dup")
    holder = fleet.start("worker_app.py", vmid=vmid, name="holder")
    tag = new_id("t")
    ids = hold_work(fleet, tag)
    before = fleet.executor_row(vmid)
    assert before is not None

    # A second worker under the same ID while the holder lives: refused at once, exit 2.
    second = fleet.spawn("worker_app.py", vmid=vmid, name="second")
    code = second.wait_exit(timeout=30)
    assert code == 2, second.describe()
    err = second.stderr()
    assert vmid in err and f"pid {holder.pid}" in err and socket.gethostname() in err, err
    assert "waiting up to" not in err  # same host, holder alive: no wait for a stale heartbeat
    # ... and it changed nothing: the holder keeps its row, incarnation and work.
    holder.check_alive()
    after = fleet.executor_row(vmid)
    assert after is not None and (after["pid"], after["incarnation"]) == (holder.pid, before["incarnation"])
    assert fleet.status_of(ids) == {w: ("PENDING", vmid) for w in ids}
    assert {r.pid for r in fleet.runs()} == {holder.pid}

    # SIGKILL the holder: its heartbeat is still fresh, but its pid is gone on this host,
    # so a restart under the same ID starts at once and recovers the work (same-ID recovery).
    holder.kill()
    fresh_beat = fleet.executor_row(vmid)
    assert fresh_beat is not None and fresh_beat["state"] == "RUNNING"
    restarted = fleet.spawn("worker_app.py", vmid=vmid, name="restarted")
    restarted.wait_started()
    err = restarted.stderr()
    assert "waiting up to" not in err and "held by a live executor" not in err, err
    row = fleet.executor_row(vmid)
    assert row is not None and row["pid"] == restarted.pid and row["incarnation"] == before["incarnation"] + 1
    assert "1 workflow(s) recovered" in err, err  # the direct child; the queued ones were requeued
    fleet.release(tag)
    rows = fleet.wait_status(ids, alive=[restarted])
    assert {r["executor_id"] for r in rows.values()} == {vmid}
    check_exactly_once(fleet, ids, gated_ids=ids)
    for w in ids:  # the killed holder recorded begin and pay; the restart resumed after them
        assert [r.pid for r in fleet.runs(w, "begin")] == [holder.pid]
        assert fleet.runs(w, "end")[0].pid == restarted.pid
    restarted.signal(signal.SIGTERM)
    assert restarted.wait_exit(timeout=15) == 0


@pytest.mark.slow
def test_holder_on_another_host_waited_for_then_refused_or_taken(fleet: Fleet, backend: Backend) -> None:
    """A holder elsewhere gets up to twice the dead-after (2 x 3 s) to go stale."""
    vmid = new_id("far")
    first = fleet.start("worker_app.py", vmid=vmid, name="first")
    first.kill()
    table = backend.table("executors")
    backend.execute(f"UPDATE {table} SET hostname = 'w12-elsewhere', pid = 4242 WHERE executor_id = :e", e=vmid)
    stop = threading.Event()

    def beat() -> None:  # the holder on the other host keeps heartbeating
        while not stop.is_set():
            backend.execute(f"UPDATE {table} SET heartbeat_at = :t WHERE executor_id = :e",
                            t=int(time.time() * 1000), e=vmid)
            stop.wait(0.2)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        started = time.monotonic()
        refused = fleet.spawn("worker_app.py", vmid=vmid, name="refused")
        assert refused.wait_exit(timeout=30) == 2, refused.describe()
        waited = time.monotonic() - started
        err = refused.stderr()
        assert "waiting up to 6 s" in err and "w12-elsewhere" in err and "pid 4242" in err, err
        assert vmid in err
        assert waited >= 6, f"refused after {waited:.1f} s, before twice the dead-after"
    finally:
        stop.set()
        beater.join(timeout=5)
    # The holder stops heartbeating (it crashed): the next start waits for the stale
    # heartbeat, then takes the ID.
    taker = fleet.spawn("worker_app.py", vmid=vmid, name="taker")
    taker.wait_started(timeout=30)
    row = fleet.executor_row(vmid)
    assert row is not None and row["pid"] == taker.pid and row["hostname"] == socket.gethostname()
    taker.signal(signal.SIGTERM)
    assert taker.wait_exit(timeout=15) == 0


def test_plain_launch_sharing_a_live_id_warns_and_recovers_nothing(fleet: Fleet, backend: Backend) -> None:
    """Issue 17 item 2: a plain ``DBOS.launch()`` under the executor ID of a live worker."""
    vmid = new_id("shared")
    holder = fleet.start("worker_app.py", vmid=vmid, name="holder")
    tag = new_id("t")
    ids = hold_work(fleet, tag)
    attempts = {w: r["attempts"] for w, r in fleet.rows(ids).items()}
    before = fleet.executor_row(vmid)
    assert before is not None

    plain = fleet.plain(vmid).wait_ready()
    err = plain.stderr()
    assert f"executor ID {vmid} is also used by the live pid {holder.pid}" in err, err
    assert "0 workflow(s) recovered" in err, err
    # It took neither the row nor the work; it does not heartbeat under that ID.
    row = fleet.executor_row(vmid)
    assert row is not None and (row["pid"], row["incarnation"]) == (holder.pid, before["incarnation"])
    # Its work was not put back on the queue (a claim counts an attempt; both processes
    # have the same executor ID, so the row's executor_id alone cannot tell).
    assert {w: (r["status"], r["executor_id"], r["attempts"]) for w, r in fleet.rows(ids).items()} == {
        w: ("PENDING", vmid, attempts[w]) for w in ids
    }
    fleet.release(tag)
    fleet.wait_status(ids, alive=[holder])
    assert plain.proc.poll() is None
    assert plain.stop() == 0
    assert {r.pid for r in fleet.runs()} == {holder.pid}, "the plain process ran some of the holder's work"
    bodies = sorted(r.workflow_id for r in fleet.runs(label="body") if r.workflow_id in ids)
    assert bodies == sorted(ids)  # one execution each
    check_exactly_once(fleet, ids, gated_ids=ids)
    holder.signal(signal.SIGTERM)
    assert holder.wait_exit(timeout=15) == 0
