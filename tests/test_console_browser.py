"""The fleet console in headless Chromium (issue 15), driven by Playwright, against
real PostgreSQL with real ``dbos-worker`` processes of tests/apps/handover_app.py
(handover_helpers.Cluster) and the console served by ``dbos console`` or by a
``dbos-coordinator`` under ``/``.

Without Playwright or /usr/bin/chromium these tests FAIL saying what to install
(scripts/test installs chromium when run as root); they never skip.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import Backend
from console_helpers import browser_session, expect, screenshot, start_console_process
from handover_helpers import VERSION, Cluster, expected, free_port, unique

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from browser_session()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.set_default_timeout(WAIT_MS)
    try:
        yield p
    finally:
        context.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture
def cluster(backend: Backend, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(backend, tmp_path)
    try:
        yield c
    finally:
        c.close()


def _console(cluster: Cluster, tmp_path: Path, **options: Any) -> str:
    proc, url = start_console_process(tmp_path, cluster.backend.url, redis_url=cluster.redis_url, **options)
    cluster.all.append(proc)  # ended with the cluster's processes
    return url


def _listed(page: Any) -> list[str]:
    return [str(x) for x in page.locator("#workflows tbody tr[data-workflow]").evaluate_all(
        "rows => rows.map(r => r.dataset.workflow)")]


def test_fleet_page_shows_a_killed_worker_turn_dead(cluster: Cluster, page: Any, tmp_path: Path) -> None:
    port = free_port()
    live = cluster.start_worker(unique("live"), wait=False)
    doomed = cluster.start_worker(unique("doomed"), version="ho-v2", wait=False)
    cluster.start_coordinator(http_port=port, dead_after=2)  # the console under the coordinator's /
    for w in (live, doomed):
        cluster.wait_registered(w)
    page.goto(f"http://127.0.0.1:{port}/fleet")
    state = "tr[data-executor='{}'] td.state"
    for w in (live, doomed):
        expect()(page.locator(state.format(w.name))).to_have_text("RUNNING")
    for version, w in ((VERSION, live), ("ho-v2", doomed)):  # grouped by version
        expect()(page.locator(f"section.version[data-version='{version}'] tr[data-executor='{w.name}']")).to_have_count(1)
    expect()(page.locator("#leader code")).to_contain_text(f"-{cluster.coordinators[0].pid}-")
    doomed.kill()
    expect()(page.locator(state.format(doomed.name))).to_have_text("DEAD")  # no reload: the page refreshes
    expect()(page.locator(state.format(live.name))).to_have_text("RUNNING")
    screenshot(page.locator("main"), tmp_path, "console-fleet.png")
    row = page.locator(f"tr[data-executor='{doomed.name}']")
    expect()(row).to_contain_text(str(doomed.pid))


def test_failed_workflow_detail_and_fork_onto_v2(cluster: Cluster, page: Any, tmp_path: Path) -> None:
    v1, v2 = unique("bug"), unique("fix")
    workers = [cluster.start_worker(unique("w1"), version=v1, wait=False),
               cluster.start_worker(unique("w2"), version=v2, wait=False)]
    url = _console(cluster, tmp_path)  # while the workers start
    for w in workers:
        cluster.wait_registered(w)
    wid = cluster.client.enqueue({"queue_name": "ho_a", "workflow_name": "flaky", "workflow_id": unique("flaky"),
                                  "app_version": v1}, "t1").workflow_id
    cluster.wait(lambda: cluster.statuses([wid])[wid].status == "ERROR", "(flaky failed on the bug version)")

    page.goto(f"{url}/workflows/{wid}")
    expect()(page.locator("#wf-status")).to_have_text("ERROR")
    failing = page.locator("#steps tr[data-step='2']")
    expect()(failing).to_have_class(re.compile("failed"))
    expect()(failing).to_contain_text("risky")
    expect()(failing).to_contain_text(f"ValueError: {v1} cannot handle 't1' at step 2")
    expect()(page.locator("#steps tr[data-step='1']")).not_to_have_class(re.compile("failed"))
    expect()(page.locator("pre[data-value='Error']")).to_contain_text("cannot handle")
    expect()(page.locator("#timeline rect.bar")).to_have_count(2)
    expect()(page.locator("#timeline rect.bar.error")).to_have_count(1)
    screenshot(page.locator("main"), tmp_path, "console-timeline.png")

    expect()(page.locator("#fork-step")).to_have_value("2")  # the failing step is the default
    page.fill("#fork-version", v2)
    page.click("#fork")
    body = page.locator("#confirm-body")
    expect()(body).to_contain_text("Steps 1 work are copied")
    expect()(page.locator("#confirm-version")).to_have_text(v2)
    page.click("#confirm-ok")
    link = page.locator("#fork-link")
    expect()(link).to_be_visible()
    fork_id = link.inner_text()

    status = cluster.client.get_workflow(fork_id)  # the fork, as the library sees it
    assert status is not None and status.forked_from == wid and status.app_version == v2
    assert cluster.result(fork_id) == "t1|s1|ok-t1|s3"
    assert [r.step for r in cluster.step_runs([fork_id])] == [3], "step 1 was copied, not re-run"
    assert cluster.statuses([wid])[wid].status == "ERROR"  # the original is left alone
    link.click()
    expect()(page.locator("#wf-status")).to_have_text("SUCCESS")
    expect()(page.locator("table.fields")).to_contain_text(wid)  # forked from, linked


def test_cancel_from_the_page_stops_a_running_workflow(cluster: Cluster, page: Any, tmp_path: Path) -> None:
    w = cluster.start_worker(unique("w"), hold=True, wait=False)
    url = _console(cluster, tmp_path)
    cluster.wait_registered(w)
    wid = cluster.enqueue("ho_a", unique("run"), hold_at=3)
    cluster.wait(lambda: any(r.step == 3 for r in cluster.step_runs([wid])), "(running, held at step 3)")
    page.goto(f"{url}/workflows/{wid}")
    expect()(page.locator("#wf-status")).to_have_text("PENDING")
    page.click("#cancel")
    expect()(page.locator("#confirm-body")).to_contain_text("CANCELLED")
    page.click("#confirm-ok")
    expect()(page.locator("#wf-status")).to_have_text("CANCELLED")
    status = cluster.client.get_workflow(wid)
    assert status is not None and status.status == "CANCELLED"
    cluster.unhold(w.name)
    cluster.wait(lambda: (cluster.executor(w.name) or {}).get("running") == 0, "(the workflow stopped)")
    assert max(r.step for r in cluster.step_runs([wid])) == 3, "a step after the cancel ran"
    assert cluster.statuses([wid])[wid].status == "CANCELLED"


def test_filters_paging_bulk_and_escaping(cluster: Cluster, page: Any, tmp_path: Path) -> None:
    w = cluster.start_worker(unique("w"), wait=False)
    url = _console(cluster, tmp_path)
    cluster.wait_registered(w)
    jobs = [cluster.enqueue("ho_a", f"fa-{i}-{uuid.uuid4().hex[:4]}") for i in range(7)]
    flakies = [cluster.client.enqueue({"queue_name": "ho_b", "workflow_name": "flaky"}, f"f{i}").workflow_id
               for i in range(3)]
    nowhere = unique("none")  # a version no executor runs: its work waits
    waiting = [cluster.enqueue("ho_c", unique("wait"), version=nowhere) for _ in range(3)]
    evil = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
    xss = cluster.client.enqueue({"queue_name": "ho_a", "workflow_name": "job", "workflow_id": unique("xss")},
                                 evil, 0, 2, 0.0).workflow_id
    cluster.wait_done(jobs + flakies + [xss])
    client = cluster.client

    def same(**filters: Any) -> list[str]:
        return [s.workflow_id for s in client.list_workflows(sort_desc=True, load_input=False, load_output=False,
                                                             **filters)]

    page.goto(f"{url}/workflows?status=SUCCESS&limit=5")
    expect()(page.locator("#workflows tbody tr[data-workflow]")).to_have_count(5)
    assert _listed(page) == same(status="SUCCESS", limit=5)
    page.click("#next")
    expect()(page.locator("#pageinfo")).to_contain_text("6–")
    second = _listed(page)
    assert second == same(status="SUCCESS", limit=5, offset=5), (second, same(status="SUCCESS"))
    page.click("#prev")
    expect()(page.locator("#pageinfo")).to_contain_text("1–5")
    assert _listed(page) == same(status="SUCCESS", limit=5)

    page.goto(f"{url}/workflows")
    page.fill("input[name='name']", "flaky")
    page.click("#apply")
    expect()(page.locator("#workflows tbody tr[data-workflow]")).to_have_count(3)
    assert _listed(page) == same(name="flaky", limit=20)
    assert "name=flaky" in page.url
    page.fill("input[name='name']", "")
    page.fill("input[name='prefix']", "wf-fa-")
    page.select_option("select[name='sort']", "asc")
    page.click("#apply")
    expect()(page.locator("#workflows tbody tr[data-workflow]")).to_have_count(7)
    assert _listed(page) == [s.workflow_id for s in client.list_workflows(workflow_id_prefix="wf-fa-", limit=20)]

    # refreshing without a reload: a new workflow of the filter appears by itself
    late = cluster.enqueue("ho_a", f"fa-late-{uuid.uuid4().hex[:4]}")
    expect()(page.locator(f"#workflows tr[data-workflow='{late}']")).to_have_count(1)

    # bulk cancel of the filtered list, with a confirmation naming the filter
    page.goto(f"{url}/workflows")
    page.fill("input[name='app_version']", nowhere)
    page.select_option("select[name='status']", "ENQUEUED")
    page.click("#apply")
    expect()(page.locator("#workflows tbody tr[data-workflow]")).to_have_count(3)
    assert sorted(_listed(page)) == sorted(same(app_version=nowhere, status="ENQUEUED"))
    page.click("#bulk-cancel")
    expect()(page.locator("#confirm-body")).to_contain_text(f"app_version = {nowhere}")
    page.click("#confirm-ok")
    expect()(page.locator("#flash")).to_contain_text("3 of 3")
    assert {s.status for s in cluster.statuses(waiting).values()} == {"CANCELLED"}

    # a workflow whose input and output hold markup: shown as text, never run
    page.goto(f"{url}/workflows/{xss}")
    out = page.locator("pre[data-value='Output']")
    expect()(out).to_contain_text("<script>window.__pwned=1</script>")
    expect()(page.locator("pre[data-value='Input']")).to_contain_text("onerror=window.__pwned=2")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("document.scripts.length") == 1  # console.js only
    assert cluster.result(xss) == expected(evil)


def test_without_the_token_a_public_bind_refuses_everything(backend: Backend, page: Any, tmp_path: Path) -> None:
    # (Without DBOS_CONSOLE_TOKEN at all, `dbos console --host 0.0.0.0` does not start: test_console_api.py.)
    token = "tok-" + uuid.uuid4().hex
    proc, url = start_console_process(tmp_path, backend.url, host="0.0.0.0", token=token)
    try:
        for path in ("/", "/fleet", "/versions", "/queues", "/workflows", "/workflows/any-id"):
            response = page.goto(url + path)
            assert response is not None and response.status == 401, path
            expect()(page.locator("form[action='/login']")).to_be_visible()
            assert page.locator("#main").count() == 0, "a page rendered without the token"
        api = page.context.request
        for path in ("/api/executors", "/api/versions", "/api/leader", "/api/launches", "/api/queues",
                     "/api/workflows", "/api/workflows/x", "/api/workflows/x/steps", "/api/workflows/x/events",
                     "/api/openapi.json", "/static/console.js"):
            assert api.get(url + path).status == 401, path
            assert api.get(url + path, headers={"Authorization": "Bearer nope"}).status == 401, path
        for path in ("/api/workflows/x/cancel", "/api/workflows/x/resume", "/api/workflows/x/fork",
                     "/api/workflows/bulk", "/logout"):
            assert api.post(url + path, data="{}").status == 401, path

        page.goto(url + "/fleet")
        page.fill("input[name='token']", "wrong")
        page.click("button[type='submit']")
        expect()(page.locator(".error")).to_have_text("wrong token")
        page.fill("input[name='token']", token)
        page.click("button[type='submit']")
        expect()(page.locator("h1")).to_have_text("Fleet")
        assert page.url.endswith("/fleet")
        assert page.context.request.get(url + "/api/executors").status == 200  # the session cookie
        page.click("#logout")
        expect()(page.locator("form[action='/login']")).to_be_visible()
        assert page.context.request.get(url + "/api/executors").status == 401
    finally:
        proc.terminate()

