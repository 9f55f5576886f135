"""The console's JSON API (issue 15), every endpoint with httpx against the running
app (in this process, on a port of its own), on PostgreSQL and SQLite: reads, bad
input (unknown IDs 404, bad filters 400 naming the filter, a fork step out of
range), actions and their CSRF rule, the token rule, the OpenAPI document.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Any, Iterator

import httpx
import pytest
from conftest import Backend, Harness, eventually
from console_helpers import InProcessConsole
from handover_helpers import BIN, free_port

from dbos import DBOS, DBOSClient, Queue
from dbos._api.console import SHOWN_CHARS, ConsoleTokenRequired, Source, build_console

CONSOLE_Q = Queue("console_q", concurrency=3, worker_concurrency=2, polling_interval_sec=0.1)
RATED_Q = Queue("console_rated", limiter={"limit": 5, "period": 2.5}, partition_queue=True, polling_interval_sec=0.1)
_gate = threading.Event()


@DBOS.step()
def c_add(x: int) -> int:
    return x + 1


@DBOS.step()
def c_fail(x: int) -> int:
    raise ValueError(f"no good: {x}")


@DBOS.workflow()
def c_ok(x: int) -> str:
    DBOS.set_event("progress", {"done": x})
    return "<b>" + "x" * (SHOWN_CHARS + 500) if x == 99 else str(c_add(x))


@DBOS.workflow()
def c_bad(x: int) -> int:
    c_add(x)
    return c_fail(x)


_flaky_calls: list[int] = []


@DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=0.01, backoff_rate=1.0)
def c_flaky(x: int) -> int:
    _flaky_calls.append(x)
    if len(_flaky_calls) < 3:
        raise RuntimeError("not yet")
    return x


@DBOS.workflow()
def c_retried(x: int) -> int:
    return c_flaky(x) + c_add(x)


@DBOS.workflow()
def c_parent(x: int) -> int:
    return int(c_ok(x)) + 1


@DBOS.workflow()
def c_wait(x: int) -> int:
    c_add(x)
    _gate.wait(20)
    return DBOS.recv("never", timeout_seconds=0.1) or x


@pytest.fixture
def app(dbos: Harness) -> Iterator[InProcessConsole]:
    c = InProcessConsole(dbos.backend.url)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def http(app: InProcessConsole) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.url, timeout=10) as client:
        yield client


def _csrf(http: httpx.Client) -> dict[str, str]:
    page = http.get("/fleet").text
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return {"X-CSRF-Token": token}


def _finished(n: int = 3) -> tuple[list[str], str, str]:
    ok = [DBOS.start_workflow(c_ok, i).workflow_id for i in range(n)]
    for w in ok:
        DBOS.retrieve_workflow(w).get_result()
    bad = DBOS.start_workflow(c_bad, 5)
    with pytest.raises(ValueError):
        bad.get_result()
    parent = DBOS.start_workflow(c_parent, 7)
    assert parent.get_result() == 9
    return ok, bad.workflow_id, parent.workflow_id


def test_fleet_reads(http: httpx.Client, dbos: Harness) -> None:
    CONSOLE_Q.enqueue(c_ok, 1).get_result()
    executors = http.get("/api/executors").json()
    assert [(e["executor_id"], e["state"]) for e in executors] == [("local", "RUNNING")]
    assert executors[0]["app_version"] == "test-version" and executors[0]["pid"] > 0
    versions = http.get("/api/versions").json()
    assert [(v["app_version"], v["live_executors"], v["latest"]) for v in versions] == [("test-version", 1, True)]
    assert http.get("/api/leader").json() == {"leader": None}  # no coordinator ran
    assert http.get("/api/launches").json() == []
    assert http.get("/api/launches?hours=x").status_code == 400
    queues = {q["queue_name"]: q for q in http.get("/api/queues").json()}
    q = queues["console_q"]
    assert (q["concurrency"], q["worker_concurrency"], q["live_executors"]) == (3, 2, 1)
    assert q["enqueued"] == 0 and q["pending"] == 0 and q["fullness"] == 0
    rated = queues["console_rated"]
    assert (rated["rate_limit"], rated["rate_period_s"], rated["partitioned"], rated["concurrency"]) == (5, 2.5, True, None)
    assert len(q["starts_per_minute"]) == 15 and sum(p["started"] for p in q["starts_per_minute"]) == 1
    r = http.get("/api/queues?minutes=500")
    assert r.status_code == 400 and "minutes" in r.json()["error"]


def test_queue_counts_and_oldest_waiting(http: httpx.Client, dbos: Harness, backend: Backend) -> None:
    client = DBOSClient(backend.url)
    try:
        for i in range(4):  # a queue no executor here serves: they wait
            client.enqueue({"queue_name": "console_idle", "workflow_name": "c_ok"}, i)
    finally:
        client.destroy()
    q = {q["queue_name"]: q for q in http.get("/api/queues").json()}["console_idle"]
    assert q["enqueued"] == 4 and q["pending"] == 0 and q["oldest_enqueued_age_s"] >= 0
    assert q["concurrency"] is None and q["live_executors"] == 0


def test_workflow_list_filters_and_paging(http: httpx.Client, dbos: Harness) -> None:
    ok, bad, parent = _finished(5)
    client = DBOSClient(dbos.backend.url)
    try:
        for params, same in [
            ({}, {"sort_desc": True, "limit": 50}),
            ({"status": "SUCCESS", "limit": "2", "offset": "1"}, {"status": "SUCCESS", "limit": 2, "offset": 1, "sort_desc": True}),
            ({"status": "ERROR,SUCCESS", "sort": "asc"}, {"status": ["ERROR", "SUCCESS"], "limit": 50}),
            ({"name": "c_ok", "limit": "3"}, {"name": "c_ok", "limit": 3, "sort_desc": True}),
            ({"prefix": ok[0][:8]}, {"workflow_id_prefix": ok[0][:8], "limit": 50, "sort_desc": True}),
            ({"app_version": "test-version", "limit": "4"}, {"app_version": "test-version", "limit": 4, "sort_desc": True}),
            ({"start_time": "2000-01-01T00:00:00Z", "end_time": "2999-01-01T00:00:00Z"},
             {"start_time": "2000-01-01T00:00:00Z", "end_time": "2999-01-01T00:00:00Z", "limit": 50, "sort_desc": True}),
        ]:
            body = http.get("/api/workflows", params=params).json()
            want = [s.workflow_id for s in client.list_workflows(**same, load_input=False, load_output=False)]
            assert [w["workflow_id"] for w in body["workflows"]] == want, params
        page = http.get("/api/workflows", params={"limit": "3"}).json()
        assert page["next_offset"] == 3 and page["offset"] == 0
        rest = http.get("/api/workflows", params={"limit": "3", "offset": "3"}).json()
        total = len(client.list_workflows())
        assert len(page["workflows"]) + len(rest["workflows"]) == min(total, 6)
        last = http.get("/api/workflows", params={"limit": "100"}).json()
        assert last["next_offset"] is None and len(last["workflows"]) == total
        assert {w["workflow_id"] for w in http.get("/api/workflows", params={"executor": "local"}).json()["workflows"]} \
            == {s.workflow_id for s in client.list_workflows()}
        assert http.get("/api/workflows", params={"executor": "elsewhere"}).json()["workflows"] == []
    finally:
        client.destroy()


_BAD_FILTERS = [
    ({"status": "DONE"}, "status"), ({"limit": "-1"}, "limit"), ({"limit": "many"}, "limit"),
    ({"limit": "5000"}, "limit"), ({"offset": "x"}, "offset"), ({"start_time": "yesterday"}, "start_time"),
    ({"end_time": "2026-13-45"}, "end_time"), ({"sort": "up"}, "sort"), ({"colour": "red"}, "colour"),
]


def test_bad_filters_are_400_naming_the_filter(http: httpx.Client) -> None:
    for params, named in _BAD_FILTERS:
        r = http.get("/api/workflows", params=params)
        assert r.status_code == 400, (params, r.text)
        assert named in r.json()["error"], params


def test_workflow_detail_steps_events(http: httpx.Client, dbos: Harness) -> None:
    ok, bad, parent = _finished(1)
    w = http.get(f"/api/workflows/{bad}").json()
    assert w["status"] == "ERROR" and w["name"] == "c_bad" and w["executor_id"] == "local"
    assert w["error"]["text"] == "ValueError: no good: 5" and w["output"] is None
    assert '"args"' in w["input"]["text"] and w["recovery_attempts"] >= 1 and w["started_at"] >= w["created_at"]
    steps = http.get(f"/api/workflows/{bad}/steps").json()
    assert [(s["function_id"], s["function_name"]) for s in steps] == [(1, "c_add"), (2, "c_fail")]
    assert steps[0]["output"]["text"] == "6" and steps[0]["error"] is None
    assert steps[1]["error"]["text"] == "ValueError: no good: 5"
    assert all(s["completed_at"] >= s["started_at"] and s["duration_ms"] >= 0 for s in steps)
    events = http.get(f"/api/workflows/{ok[0]}/events").json()
    assert events == {"events": [{"key": "progress", "value": {"text": '{\n  "done": 0\n}', "truncated": False,
                                                               "length": 15}}], "messages": []}
    p = http.get(f"/api/workflows/{parent}").json()
    steps = http.get(f"/api/workflows/{parent}/steps").json()
    child = steps[0]["child_workflow_id"]
    assert child and [c["workflow_id"] for c in p["children"]] == [child]
    assert http.get(f"/api/workflows/{child}").json()["parent_workflow_id"] == parent


def test_step_attempts_are_shown(http: httpx.Client, dbos: Harness) -> None:
    """A step that succeeded on its third attempt shows 3; one that ran once shows 1."""
    _flaky_calls.clear()
    wid = DBOS.start_workflow(c_retried, 2).workflow_id
    assert DBOS.retrieve_workflow(wid).get_result() == 5
    steps = http.get(f"/api/workflows/{wid}/steps").json()
    assert [(s["function_name"], s["attempts"]) for s in steps] == [("c_flaky", 3), ("c_add", 1)]
    fork = DBOS.fork_workflow(wid, 2)  # the copied step keeps its attempts
    assert fork.get_result() == 5
    assert http.get(f"/api/workflows/{fork.workflow_id}/steps").json()[0]["attempts"] == 3


def test_large_values_are_cut_unless_full(http: httpx.Client, dbos: Harness) -> None:
    wid = DBOS.start_workflow(c_ok, 99).workflow_id
    DBOS.retrieve_workflow(wid).get_result()
    cut = http.get(f"/api/workflows/{wid}").json()["output"]
    assert cut["truncated"] and len(cut["text"]) == SHOWN_CHARS and cut["length"] == SHOWN_CHARS + 505
    full = http.get(f"/api/workflows/{wid}", params={"full": "1"}).json()["output"]
    assert not full["truncated"] and len(full["text"]) == full["length"] and full["text"].startswith('"<b>xxx')


def test_unknown_and_bad_ids(http: httpx.Client, dbos: Harness) -> None:
    headers = _csrf(http)
    for path in ("/api/workflows/nope", "/api/workflows/nope/steps", "/api/workflows/nope/events"):
        r = http.get(path)
        assert r.status_code == 404 and "nope" in r.json()["error"], path
    for action in ("cancel", "resume", "fork"):
        r = http.post(f"/api/workflows/nope/{action}", json={"start_step": 1}, headers=headers)
        assert r.status_code == 404, (action, r.text)
    r = http.get("/api/workflows/" + "x" * 5000)
    assert r.status_code == 400 and "workflow_id" in r.json()["error"]


def test_cancel_resume_fork_and_bulk(http: httpx.Client, dbos: Harness, backend: Backend) -> None:
    headers = _csrf(http)
    ok, bad, _ = _finished(1)
    _gate.clear()
    running = DBOS.start_workflow(c_wait, 1).workflow_id
    eventually(lambda: backend.steps(running), what="(c_wait at its gate)")
    r = http.post(f"/api/workflows/{running}/cancel", headers=headers)
    assert r.json() == {"workflow_id": running, "status": "CANCELLED"}
    _gate.set()
    assert backend.status(running) == "CANCELLED"
    r = http.post(f"/api/workflows/{ok[0]}/resume", headers=headers)
    assert r.status_code == 409 and "SUCCESS" in r.json()["error"]
    r = http.post(f"/api/workflows/{running}/resume", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "ENQUEUED"
    eventually(lambda: backend.status(running) == "SUCCESS", what="(resumed workflow done)")
    for body, named in [({"start_step": 9}, "1..3"), ({"start_step": 0}, "start_step"), ({}, "start_step"),
                        ({"start_step": "2"}, "start_step"), ({"start_step": 2, "app_version": 3}, "app_version")]:
        r = http.post(f"/api/workflows/{bad}/fork", json=body, headers=headers)
        assert r.status_code == 400 and named in r.json()["error"], (body, r.text)
    assert http.post(f"/api/workflows/{bad}/fork", content=b"{no", headers=headers).status_code == 400
    r = http.post(f"/api/workflows/{bad}/fork", json={"start_step": 2, "app_version": "test-version"}, headers=headers)
    fork = r.json()["workflow_id"]
    assert r.status_code == 200 and fork != bad
    eventually(lambda: backend.status(fork) == "ERROR", what="(the fork ran, and failed again at step 2)")
    assert http.get(f"/api/workflows/{fork}").json()["forked_from"] == bad
    # bulk: cancel what waits on a queue nobody serves here, then resume it
    client = DBOSClient(backend.url)
    try:
        waiting = [client.enqueue({"queue_name": "console_idle", "workflow_name": "c_ok"}, i).workflow_id
                   for i in range(3)]
    finally:
        client.destroy()
    r = http.post("/api/workflows/bulk", json={"action": "cancel", "filters": {"queue": "console_idle"}},
                  headers=headers)
    assert r.status_code == 200 and sorted(r.json()["changed"]) == sorted(waiting) and r.json()["matched"] == 3
    assert {backend.status(w) for w in waiting} == {"CANCELLED"}
    r = http.post("/api/workflows/bulk", json={"action": "resume", "filters": {"queue": "console_idle",
                                                                             "status": "CANCELLED"}}, headers=headers)
    assert sorted(r.json()["changed"]) == sorted(waiting)
    eventually(lambda: {backend.status(w) for w in waiting} == {"SUCCESS"}, what="(resumed on the internal queue)")
    for body, named in [({"action": "delete"}, "action"), ({"action": "cancel", "filters": {"colour": "red"}}, "colour"),
                        ({"action": "cancel", "filters": {"limit": 5}}, "filters")]:
        r = http.post("/api/workflows/bulk", json=body, headers=headers)
        assert r.status_code == 400 and named in r.json()["error"], body


def test_posts_need_the_csrf_token_and_same_origin(http: httpx.Client, dbos: Harness) -> None:
    ok, _, _ = _finished(1)
    r = http.post(f"/api/workflows/{ok[0]}/cancel")
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = http.post(f"/api/workflows/{ok[0]}/cancel", headers={"X-CSRF-Token": "guess"})
    assert r.status_code == 403
    r = http.post(f"/api/workflows/{ok[0]}/cancel", headers={**_csrf(http), "Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]
    assert http.post(f"/api/workflows/{ok[0]}/cancel", headers=_csrf(http)).status_code == 200
    # a rebound DNS name pointing at loopback is refused on a console without a token
    assert http.get("/api/executors", headers={"Host": "evil.example:8089"}).status_code == 403


def test_pages_and_static(http: httpx.Client) -> None:
    for path in ("/", "/fleet", "/versions", "/queues", "/workflows", "/workflows/some-id"):
        r = http.get(path)
        assert r.status_code == 200 and '<script src="/static/console.js">' in r.text, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
    for name in ("console.js", "console.css", "index.html"):
        assert http.get(f"/static/{name}").status_code == 200
    assert http.get("/login").status_code == 404  # no token: nothing to log in to


def test_openapi_describes_every_route(http: httpx.Client, app: InProcessConsole) -> None:
    from openapi_spec_validator import validate

    spec = http.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    validate(spec)  # a valid OpenAPI 3.1 document
    api_routes = {getattr(r, "path").replace(":str", "") for r in app.app.routes
                  if getattr(r, "path", "").startswith("/api/")}
    assert api_routes == set(spec["paths"]), api_routes ^ set(spec["paths"])
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["responses"]["200"], (path, method)
            if "{workflow_id}" in path:
                assert any(p["name"] == "workflow_id" and p["in"] == "path" for p in op["parameters"]), path
    for required in ("/api/executors", "/api/versions", "/api/queues", "/api/workflows", "/api/workflows/{workflow_id}",
                     "/api/workflows/{workflow_id}/steps"):
        assert required in spec["paths"]
    refs = str(spec).count("#/components/schemas/")
    assert refs and all(name in spec["components"]["schemas"] for name in ("Error", "Executor", "Step"))


def test_token_rule(dbos: Harness) -> None:
    with pytest.raises(ConsoleTokenRequired, match="DBOS_CONSOLE_TOKEN"):
        build_console(Source(dbos.backend.url), host="0.0.0.0", token=None)
    c = InProcessConsole(dbos.backend.url, host="127.0.0.1", token="s3cret")
    try:
        with httpx.Client(base_url=c.url, timeout=10) as h:
            for path in ("/", "/fleet", "/workflows", "/workflows/x", "/static/console.js", "/api/executors",
                         "/api/workflows", "/api/workflows/x", "/api/workflows/x/steps", "/api/openapi.json"):
                assert h.get(path).status_code == 401, path
                assert h.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
            for path in ("/api/workflows/x/cancel", "/api/workflows/x/fork", "/api/workflows/bulk", "/logout"):
                assert h.post(path, json={}).status_code == 401, path
            page = h.get("/fleet", headers={"Accept": "text/html"})
            assert page.status_code == 401 and 'action="/login"' in page.text
            assert h.get("/api/executors", headers={"Authorization": "Bearer s3cret"}).status_code == 200
            bearer_post = h.post("/api/workflows/nope/cancel", headers={"Authorization": "Bearer s3cret"})
            assert bearer_post.status_code == 404  # a bearer POST needs no CSRF token
            assert h.post("/login", data={"token": "wrong"}).status_code == 401
            r = h.post("/login", data={"token": "s3cret"})
            assert r.status_code == 303 and "dbos_console_session" in r.headers["set-cookie"]
            assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=strict" in r.headers["set-cookie"]
            assert h.get("/api/executors").status_code == 200  # the cookie
            assert h.post("/api/workflows/nope/cancel").status_code == 403  # a cookie POST needs the CSRF token
            assert h.post("/api/workflows/nope/cancel", headers=_csrf(h)).status_code == 404
    finally:
        c.close()


def test_dbos_console_refuses_a_public_bind_without_token(tmp_path: Any) -> None:
    env = {"PATH": str(BIN)}
    r = subprocess.run([str(BIN / "dbos"), "console", "--db-url", f"sqlite:///{tmp_path / 'c.sqlite'}", "--host", "0.0.0.0",
                        "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "DBOS_CONSOLE_TOKEN" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_dbos_console_bad_database_is_one_line(tmp_path: Any) -> None:
    r = subprocess.run([str(BIN / "dbos"), "console", "--db-url", "postgresql://nobody@127.0.0.1:1/none",
                        "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot open the database" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_mounted_under_another_app_its_routes_first(dbos: Harness) -> None:
    """As the coordinator mounts it: the host app's routes win; off loopback without a
    token the console is not mounted at all (the host app goes on serving its own)."""
    import logging

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from dbos._api.console import mount_console
    from dbos._api.http_thread import HTTPServerThread

    def host_app() -> Starlette:
        return Starlette(routes=[Route("/api/executors", lambda r: JSONResponse(["mine"])),
                                 Route("/healthz", lambda r: JSONResponse({"ok": True}))])

    def served(app: Starlette) -> Iterator[httpx.Client]:
        server = HTTPServerThread(app, "127.0.0.1", 0, "host app (test)", logging.getLogger("test"))
        server.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as c:
                yield c
        finally:
            server.stop()

    log = logging.getLogger("test")
    source = Source(dbos.backend.url)
    try:
        app = host_app()
        assert mount_console(app, source, "127.0.0.1", None, log)
        for c in served(app):
            assert c.get("/api/executors").json() == ["mine"]
            assert c.get("/healthz").json() == {"ok": True}
            assert c.get("/fleet").status_code == 200 and c.get("/api/leader").json() == {"leader": None}
        public = host_app()
        assert not mount_console(public, source, "0.0.0.0", None, log)
        for c in served(public):
            assert c.get("/healthz").status_code == 200 and c.get("/fleet").status_code == 404
        guarded = host_app()
        assert mount_console(guarded, source, "0.0.0.0", "tok", log)
        for c in served(guarded):
            assert c.get("/healthz").status_code == 200 and c.get("/fleet").status_code == 401
            assert c.get("/api/leader", headers={"Authorization": "Bearer tok"}).status_code == 200
    finally:
        source.close()
