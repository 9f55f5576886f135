"""Authentication and roles (issue 6): DBOSContextSetAuth, DBOS.set_authentication,
authenticated_user / authenticated_roles / assumed_role inside workflows and steps,
what is recorded on the workflow, propagation to children, list_workflows(user=),
@DBOS.required_roles / @DBOS.default_required_roles, and recovery (in process, and in
another process after a SIGKILL). PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from pathlib import Path
from typing import Any, Optional

import pytest
from auth_helpers import AuthApp, wid
from conftest import Backend, Harness, eventually

from dbos import (
    DBOS,
    DBOSClient,
    DBOSContextSetAuth,
    DBOSException,
    DBOSNotAuthorizedError,
    Queue,
    SetWorkflowID,
)

auth_queue = Queue("auth_tests_queue")


def who() -> dict[str, Any]:
    return {"user": DBOS.authenticated_user, "roles": DBOS.authenticated_roles, "role": DBOS.assumed_role}


def recorded(workflow_id: str) -> tuple[Optional[str], Optional[list[str]], Optional[str]]:
    st = DBOS.list_workflows(workflow_ids=[workflow_id])[0]
    return st.authenticated_user, st.authenticated_roles, st.assumed_role


@DBOS.step(name="auth_tests.who_step")
def who_step() -> dict[str, Any]:
    return who()


@DBOS.transaction(name="auth_tests.who_tx")
def who_tx() -> dict[str, Any]:
    return who()


@DBOS.workflow(name="auth_tests.who_wf")
def who_wf() -> dict[str, Any]:
    return {"wf": who(), "step": who_step(), "tx": who_tx()}


@DBOS.workflow(name="auth_tests.family_wf")
def family_wf() -> dict[str, Any]:
    direct = who_wf()  # step 1: child <id>-1 (2: its DBOS.getResult)
    started = DBOS.start_workflow(who_wf)  # step 3: child <id>-3
    queued = auth_queue.enqueue(who_wf)  # step 4: child <id>-4
    return {
        "self": who(),
        "step": who_step(),
        "direct": direct,
        "started": started.get_result(),
        "queued": queued.get_result(),
        "ids": [started.workflow_id, queued.workflow_id],
    }


@DBOS.workflow(name="auth_tests.switch_wf")
def switch_wf() -> dict[str, Any]:
    before = who()
    DBOS.set_authentication("switched", ["ops"])
    after = who()
    child = who_wf()
    return {"before": before, "after": after, "child": child}


@DBOS.workflow(name="auth_tests.async_wf")
async def async_wf() -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"wf": who(), "step": await async_step()}


@DBOS.step(name="auth_tests.async_step")
async def async_step() -> dict[str, Any]:
    return who()


# -- a class with default and explicit roles (the reference's example) ---------------


@DBOS.dbos_class()
@DBOS.default_required_roles(["user"])
class AuthUserService:
    @DBOS.workflow()
    def view_profile(self) -> dict[str, Any]:
        return {"user": DBOS.authenticated_user, "role": DBOS.assumed_role}

    @DBOS.required_roles(["admin"])
    @DBOS.workflow()
    def delete_account(self) -> dict[str, Any]:
        return {"user": DBOS.authenticated_user, "role": DBOS.assumed_role, "step": self.audit()}

    @DBOS.required_roles(["auditor", "admin"])
    @DBOS.step()
    def audit(self) -> dict[str, Any]:
        return who()

    @DBOS.required_roles(["superuser"])
    @DBOS.step()
    def super_step(self) -> str:
        return "never"

    @DBOS.workflow()
    def calls_super_step(self) -> str:
        return self.super_step()

    @staticmethod
    @DBOS.workflow()
    def static_report() -> dict[str, Any]:
        return who()

    @DBOS.required_roles(["admin"])
    @DBOS.transaction()
    def admin_tx(self) -> dict[str, Any]:
        return who()

    @DBOS.workflow()
    def uses_admin_tx(self) -> dict[str, Any]:
        return self.admin_tx()

    @DBOS.required_roles(["user"])
    @DBOS.workflow()
    def child_as_user(self) -> dict[str, Any]:
        return who()

    @DBOS.required_roles(["admin"])
    @DBOS.workflow()
    def admin_then_user_child(self) -> dict[str, Any]:
        return {"self": who(), "child": self.child_as_user()}


@DBOS.required_roles(["admin", "editor"])
@DBOS.workflow(name="auth_tests.first_role_wf")
def first_role_wf() -> Optional[str]:
    return DBOS.assumed_role


@DBOS.workflow(name="auth_tests.open_wf")
def open_wf() -> Optional[str]:
    return DBOS.assumed_role


# -- basics ---------------------------------------------------------------------------


def test_no_auth_by_default(dbos: Harness) -> None:
    assert who() == {"user": None, "roles": None, "role": None}
    with SetWorkflowID(wid("noauth")) as _:
        out = who_wf()
    assert out == {"wf": who(), "step": who(), "tx": who()} == {
        "wf": {"user": None, "roles": None, "role": None},
        "step": {"user": None, "roles": None, "role": None},
        "tx": {"user": None, "roles": None, "role": None},
    }
    st = DBOS.list_workflows()[0]
    assert (st.authenticated_user, st.authenticated_roles, st.assumed_role) == (None, None, None)


def test_context_set_auth_in_workflow_step_and_transaction(dbos: Harness) -> None:
    workflow_id = wid("setauth")
    with DBOSContextSetAuth("alice", ["reader", "writer"]):
        assert who() == {"user": "alice", "roles": ["reader", "writer"], "role": None}
        with SetWorkflowID(workflow_id):
            out = who_wf()
    assert who() == {"user": None, "roles": None, "role": None}  # restored after the block
    expected = {"user": "alice", "roles": ["reader", "writer"], "role": None}
    assert out == {"wf": expected, "step": expected, "tx": expected}
    assert recorded(workflow_id) == ("alice", ["reader", "writer"], None)


def test_context_set_auth_nests_and_restores(dbos: Harness) -> None:
    with DBOSContextSetAuth("outer", ["a"]):
        with DBOSContextSetAuth("inner", ["b", "c"]):
            assert who() == {"user": "inner", "roles": ["b", "c"], "role": None}
            inner_id = wid("inner")
            with SetWorkflowID(inner_id):
                who_wf()
        assert who() == {"user": "outer", "roles": ["a"], "role": None}
        outer_id = wid("outer")
        with SetWorkflowID(outer_id):
            who_wf()
        with DBOSContextSetAuth("empty-roles", []):
            assert who() == {"user": "empty-roles", "roles": [], "role": None}
    assert recorded(inner_id) == ("inner", ["b", "c"], None)
    assert recorded(outer_id) == ("outer", ["a"], None)


def test_context_set_auth_restores_after_an_exception(dbos: Harness) -> None:
    with pytest.raises(RuntimeError):
        with DBOSContextSetAuth("bob", ["x"]):
            raise RuntimeError("boom")
    assert who() == {"user": None, "roles": None, "role": None}


def test_set_authentication(dbos: Harness) -> None:
    workflow_id = wid("setauthn")

    def as_middleware() -> dict[str, Any]:
        # What HTTP middleware does: set the user for the rest of this request's context.
        DBOS.set_authentication("carol", ["support"])
        assert who() == {"user": "carol", "roles": ["support"], "role": None}
        with SetWorkflowID(workflow_id):
            out = who_wf()
        DBOS.set_authentication(None, None)
        assert who() == {"user": None, "roles": None, "role": None}
        return out

    out = contextvars.copy_context().run(as_middleware)
    expected = {"user": "carol", "roles": ["support"], "role": None}
    assert out == {"wf": expected, "step": expected, "tx": expected}
    assert recorded(workflow_id) == ("carol", ["support"], None)
    assert who() == {"user": None, "roles": None, "role": None}  # the copied context only


def test_set_authentication_inside_a_workflow_reaches_later_children(dbos: Harness) -> None:
    workflow_id = wid("switch")
    with DBOSContextSetAuth("dave", ["dev"]), SetWorkflowID(workflow_id):
        out = switch_wf()
    assert out["before"] == {"user": "dave", "roles": ["dev"], "role": None}
    assert out["after"] == {"user": "switched", "roles": ["ops"], "role": None}
    assert out["child"]["wf"] == out["after"]
    assert recorded(workflow_id) == ("dave", ["dev"], None)
    assert recorded(f"{workflow_id}-1") == ("switched", ["ops"], None)


def test_propagates_to_children_steps_and_list_filter(dbos: Harness) -> None:
    workflow_id = wid("family")
    with DBOSContextSetAuth("erin", ["r1", "r2"]), SetWorkflowID(workflow_id):
        out = family_wf()
    expected = {"user": "erin", "roles": ["r1", "r2"], "role": None}
    assert out["self"] == out["step"] == expected
    for kind in ("direct", "started", "queued"):
        assert out[kind] == {"wf": expected, "step": expected, "tx": expected}, kind
    children = [f"{workflow_id}-1", *out["ids"]]
    for child in children:
        assert recorded(child) == ("erin", ["r1", "r2"], None)
    # Someone else's workflow, and an anonymous one.
    other = wid("other")
    with DBOSContextSetAuth("frank", ["r1"]), SetWorkflowID(other):
        who_wf()
    who_wf()
    erins = {s.workflow_id for s in DBOS.list_workflows(user="erin")}
    assert erins == {workflow_id, *children}
    assert {s.workflow_id for s in DBOS.list_workflows(user="frank")} == {other}
    assert DBOS.list_workflows(user="nobody") == []
    assert {s.workflow_id for s in DBOS.list_workflows(user="erin", workflow_id_prefix=workflow_id)} == erins


def test_async_workflow_and_step_see_auth(dbos: Harness) -> None:
    workflow_id = wid("async")

    async def main() -> dict[str, Any]:
        with DBOSContextSetAuth("gina", ["g"]), SetWorkflowID(workflow_id):
            return await async_wf()

    out = asyncio.run(main())
    expected = {"user": "gina", "roles": ["g"], "role": None}
    assert out == {"wf": expected, "step": expected}
    assert recorded(workflow_id) == ("gina", ["g"], None)


def test_threads_do_not_share_auth(dbos: Harness) -> None:
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def worker(user: str) -> None:
        with DBOSContextSetAuth(user, [f"role-{user}"]):
            barrier.wait(timeout=10)  # both blocks are open at once
            with SetWorkflowID(f"{user}-{wid('t')}") as s:
                results[user] = (s.wfid, who_wf())
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=worker, args=(u,)) for u in ("hank", "iris")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for user in ("hank", "iris"):
        workflow_id, out = results[user]
        assert out["wf"] == {"user": user, "roles": [f"role-{user}"], "role": None}
        assert recorded(workflow_id) == (user, [f"role-{user}"], None)


# -- roles ----------------------------------------------------------------------------


def test_reference_example_default_and_required_roles(dbos: Harness) -> None:
    service = AuthUserService()
    with DBOSContextSetAuth("[email protected]", ["user"]):
        view_id = wid("view")
        with SetWorkflowID(view_id):
            assert service.view_profile() == {"user": "[email protected]", "role": "user"}
        before = dbos.backend.workflow_count()
        with pytest.raises(DBOSNotAuthorizedError) as e:
            service.delete_account()
        assert dbos.backend.workflow_count() == before  # refused before anything is written
    message = str(e.value)
    assert "AuthUserService.delete_account" in message
    assert "admin" in message
    assert recorded(view_id) == ("[email protected]", ["user"], "user")

    delete_id = wid("delete")
    with DBOSContextSetAuth("[email protected]", ["user", "admin"]), SetWorkflowID(delete_id):
        out = service.delete_account()
    # The step requires auditor or admin: the workflow's user holds admin, which the step assumes.
    assert out == {
        "user": "[email protected]",
        "role": "admin",
        "step": {"user": "[email protected]", "roles": ["user", "admin"], "role": "admin"},
    }
    assert recorded(delete_id) == ("[email protected]", ["user", "admin"], "admin")


def test_unauthenticated_caller_is_refused(dbos: Harness) -> None:
    with pytest.raises(DBOSNotAuthorizedError) as e:
        AuthUserService().view_profile()
    assert "AuthUserService.view_profile" in str(e.value) and "user" in str(e.value)
    with pytest.raises(DBOSNotAuthorizedError) as e2:
        AuthUserService.static_report()  # a static method takes the class default too
    assert "AuthUserService.static_report" in str(e2.value)
    with DBOSContextSetAuth("nobody", None):
        with pytest.raises(DBOSNotAuthorizedError):
            AuthUserService().view_profile()
    assert dbos.backend.workflow_count() == 0


def test_role_is_the_first_required_role_held(dbos: Harness) -> None:
    with DBOSContextSetAuth("kim", ["editor", "admin"]):
        assert first_role_wf() == "admin"  # the function's order, not the user's
    with DBOSContextSetAuth("lee", ["viewer", "editor"]):
        assert first_role_wf() == "editor"
    with DBOSContextSetAuth("max", ["viewer"]):
        with pytest.raises(DBOSNotAuthorizedError) as e:
            first_role_wf()
    assert "auth_tests.first_role_wf" in str(e.value)
    assert "admin" in str(e.value) and "editor" in str(e.value)
    with DBOSContextSetAuth("max", ["viewer"]):
        assert open_wf() is None  # no required roles: nothing assumed


def test_child_workflow_assumes_its_own_required_role(dbos: Harness) -> None:
    workflow_id = wid("admin-child")
    with DBOSContextSetAuth("nina", ["user", "admin"]), SetWorkflowID(workflow_id):
        out = AuthUserService().admin_then_user_child()
    assert out["self"] == {"user": "nina", "roles": ["user", "admin"], "role": "admin"}
    assert out["child"] == {"user": "nina", "roles": ["user", "admin"], "role": "user"}
    assert recorded(workflow_id)[2] == "admin"
    assert recorded(f"{workflow_id}-1") == ("nina", ["user", "admin"], "user")


def test_step_and_transaction_roles_are_enforced(dbos: Harness) -> None:
    service = AuthUserService()
    with DBOSContextSetAuth("olga", ["user"]):
        with pytest.raises(DBOSNotAuthorizedError) as e:
            service.calls_super_step()
        assert "AuthUserService.super_step" in str(e.value) and "superuser" in str(e.value)
        with pytest.raises(DBOSNotAuthorizedError) as e2:
            service.uses_admin_tx()
        assert "AuthUserService.admin_tx" in str(e2.value)
    with DBOSContextSetAuth("olga", ["user", "admin"]):
        assert service.uses_admin_tx()["user"] == "olga"
    # Outside any workflow, a step with required roles checks the context's auth too.
    with pytest.raises(DBOSNotAuthorizedError):
        service.audit()
    with DBOSContextSetAuth("pat", ["auditor"]):
        assert service.audit() == {"user": "pat", "roles": ["auditor"], "role": None}


def test_start_workflow_and_enqueue_enforce_roles(dbos: Harness) -> None:
    service = AuthUserService()
    # As in DBOS 2.x (issue 18): the workflow is recorded and ends ERROR; its result raises.
    with DBOSContextSetAuth("quinn", ["user"]):
        denied = [
            DBOS.start_workflow(service.delete_account),
            auth_queue.enqueue(service.delete_account),
            DBOS.start_workflow(first_role_wf),
        ]
    for handle in denied:
        with pytest.raises(DBOSNotAuthorizedError) as e:
            handle.get_result()
        assert handle.get_status().status == "ERROR"
    assert "AuthUserService.delete_account" in str(e.value) or "first_role_wf" in str(e.value)
    assert dbos.backend.workflow_count() == 3

    with DBOSContextSetAuth("quinn", ["user", "admin"]):
        started = DBOS.start_workflow(service.delete_account)
        queued = auth_queue.enqueue(service.delete_account)
    assert started.get_result()["role"] == "admin"
    assert queued.get_result()["role"] == "admin"
    for handle in (started, queued):
        st = handle.get_status()
        assert (st.authenticated_user, st.authenticated_roles, st.assumed_role) == ("quinn", ["user", "admin"], "admin")
    assert queued.get_status().queue_name == "auth_tests_queue"


async def _enqueue_async_denied() -> None:
    with DBOSContextSetAuth("ruth", []):
        await auth_queue.enqueue_async(first_role_wf)


def test_async_enqueue_and_start_enforce_roles(dbos: Harness) -> None:
    asyncio.run(_enqueue_async_denied())  # recorded; its execution ends it ERROR (issue 18)

    async def start_denied() -> Any:
        with DBOSContextSetAuth("ruth", ["viewer"]):
            handle = await DBOS.start_workflow_async(AuthUserService().view_profile)
        return await handle.get_result()

    with pytest.raises(DBOSNotAuthorizedError):
        asyncio.run(start_denied())
    assert dbos.backend.workflow_count() == 2
    eventually(lambda: [w.status for w in DBOS.list_workflows()] == ["ERROR", "ERROR"])


def test_role_decorators_validate_their_argument() -> None:
    with pytest.raises(DBOSException):
        DBOS.required_roles("admin")  # type: ignore[arg-type]
    with pytest.raises(DBOSException):
        DBOS.default_required_roles([1])  # type: ignore[list-item]


# -- recovery ---------------------------------------------------------------------------


def test_auth_survives_recovery_in_process(dbos: Harness) -> None:
    workflow_id = wid("recover")
    with DBOSContextSetAuth("sam", ["user", "admin"]), SetWorkflowID(workflow_id):
        first = AuthUserService().delete_account()
    dbos.backend.force_pending(workflow_id)
    dbos.backend.delete_steps_from(workflow_id, 1)
    dbos.restart()  # recovery runs it again, with no context of its own
    handle = DBOS.retrieve_workflow(workflow_id)
    assert handle.get_result() == first
    assert handle.get_status().recovery_attempts == 2
    assert recorded(workflow_id) == ("sam", ["user", "admin"], "admin")


@pytest.mark.slow
def test_auth_survives_sigkill_and_restart_in_another_process(backend: Backend, tmp_path: Path) -> None:
    workflow_id = wid("killed")
    app = AuthApp(backend, tmp_path, "auth_start", workflow_id, "auth-vm").start()
    first_pid = app.proc.pid if app.proc else None
    app.kill_when(lambda events: any(e["event"] == "waiting" for e in events), "(the workflow waiting in step 4)")
    assert backend.status(workflow_id) == "PENDING"
    assert [fid for fid, _ in backend.steps(workflow_id)] == [1, 2, 3]

    (tmp_path / "release").touch()
    result = AuthApp(backend, tmp_path, "recover", workflow_id, "auth-vm").start().result()
    alice = {"user": "alice", "roles": ["reader", "admin"], "role": "admin"}

    def auth_of(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: entry[k] for k in ("user", "roles", "role")}

    # Before the kill, in the first process; after it, in the restarted one: the same auth.
    assert result["before"]["pid"] == first_pid
    assert result["final_pid"] != first_pid
    assert result["after"]["pid"] == result["final_pid"]
    for key in ("before", "after", "child_before", "child_after"):
        assert auth_of(result[key]) == alice, key
    assert result["child_after"]["workflow_id"] == f"{workflow_id}-6"

    with DBOSClient(backend.url) as client:
        statuses = {s.workflow_id: s for s in client.list_workflows(user="alice")}
        assert set(statuses) == {workflow_id, f"{workflow_id}-2", f"{workflow_id}-6"}
        for st in statuses.values():
            assert st.status == "SUCCESS"
            assert (st.authenticated_user, st.authenticated_roles, st.assumed_role) == (
                "alice", ["reader", "admin"], "admin"
            )
            assert st.executor_id == "auth-vm"
        assert statuses[workflow_id].recovery_attempts == 2
        assert (statuses[workflow_id].class_name, statuses[workflow_id].config_name) == ("Vault", "vault-main")
    eventually(lambda: backend.status(workflow_id) == "SUCCESS")
