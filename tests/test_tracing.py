"""OpenTelemetry tracing (issue 6), on PostgreSQL.

- With the SDK's in-memory exporter (a TracerProvider made global only for the tests
  that ask for ``spans``): a span per workflow, step and transaction; parents as the
  calls nest (child workflows too, started directly, in the background or on a
  queue); the dbos.* attributes; DBOS.span is the current span; the trace of the
  code that enqueues continues in the queued workflow.
- Across processes: a workflow enqueued here is run by another executor process,
  which exports its spans over OTLP to a receiver this test runs; they continue
  the trace of the enqueuing span.
- A real OTLP/HTTP receiver on a loopback port gets spans and log records when
  enable_otlp + otlp_traces_endpoints / otlp_logs_endpoints are set.
- With OTLP off and no provider: no exporter threads, spans skipped.
- OTLP setup is all or nothing: a malformed endpoint fails DBOS(config=...), and
  a logs exporter failing after the trace exporter's thread started fails the
  launch naming the setting, with no thread, handler or tracer left behind.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from auth_helpers import AuthApp, SpanCapture, parent_id, span_capture, span_id, trace_id, wid
from conftest import APP_VERSION, Backend, Harness, eventually
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from otlp_receiver import OTLPReceiver

from dbos import DBOS, Queue, SetEnqueueOptions, SetWorkflowID
from dbos._telemetry.tracing import TRACERS
from dbos.error import DBOSConfigError, DBOSInitializationError

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

trace_queue = Queue("tracing_tests_queue")
remote_queue = Queue("auth_trace_queue")  # the queue tests/apps/auth_app.py serves


@pytest.fixture
def spans() -> Iterator[SpanCapture]:
    """The in-memory TracerProvider, global for this test only; its exporter starts empty."""
    cap = span_capture()
    cap.install()
    cap.clear()
    try:
        yield cap
    finally:
        cap.uninstall()
        cap.clear()


# -- the workload -------------------------------------------------------------------------


@DBOS.step(name="tracing_tests.step")
def t_step(x: int) -> int:
    DBOS.span.set_attribute("user.step_value", x)
    return x + 1


@DBOS.transaction(name="tracing_tests.tx")
def t_tx(x: int) -> int:
    DBOS.span.set_attribute("user.tx_value", x)
    return x * 2


@DBOS.workflow(name="tracing_tests.child")
def t_child(x: int) -> int:
    return t_step(x)


@DBOS.workflow(name="tracing_tests.parent")
def t_parent() -> dict[str, Any]:
    DBOS.span.set_attribute("user.workflow_attr", "on-the-workflow-span")
    a = t_step(1)  # step 1
    b = t_tx(2)  # step 2
    c = t_child(3)  # step 3: child <id>-3 (4: its DBOS.getResult)
    started = DBOS.start_workflow(t_child, 4)  # step 5: child <id>-5
    d = started.get_result()  # step 6
    queued = trace_queue.enqueue(t_child, 5)  # step 7: child <id>-7
    e = queued.get_result()  # step 8
    return {"values": [a, b, c, d, e], "started": started.workflow_id, "queued": queued.workflow_id}


@DBOS.workflow(name="tracing_tests.span_ids")
def t_span_ids() -> dict[str, Any]:
    return {"workflow": format(DBOS.span.get_span_context().span_id, "016x"), "step": t_span_step()}


@DBOS.step(name="tracing_tests.span_step")
def t_span_step() -> str:
    return format(DBOS.span.get_span_context().span_id, "016x")


@DBOS.workflow(name="tracing_tests.failing")
def t_failing() -> None:
    t_step(0)
    raise ValueError("the workflow failed")


@DBOS.step(name="tracing_tests.async_step")
async def t_async_step(x: int) -> int:
    await asyncio.sleep(0)
    DBOS.span.set_attribute("user.async_step", x)
    return x + 100


@DBOS.workflow(name="tracing_tests.async_parent")
async def t_async_parent() -> list[int]:
    a = await t_async_step(1)
    b = t_tx(2)  # a sync transaction called from an async workflow
    c = await t_async_child(3)
    return [a, b, c]


@DBOS.workflow(name="tracing_tests.async_child")
async def t_async_child(x: int) -> int:
    return await t_async_step(x)


@DBOS.step(name="auth_app.remote_step")
def remote_step(x: int) -> int:
    return x * 2


@DBOS.workflow(name="auth_app.remote_target")
def remote_target(x: int) -> int:  # the same workflow as tests/apps/auth_app.py's
    return remote_step(x) + 1


@DBOS.workflow(name="tracing_tests.logging")
def t_logging(x: int) -> int:
    DBOS.logger.warning("otlp-log from the workflow %s", x)
    return t_logging_step(x)


@DBOS.step(name="tracing_tests.logging_step")
def t_logging_step(x: int) -> int:
    DBOS.logger.warning("otlp-log from the step %s", x)
    return x


def by_name(found: list[Any], name: str) -> list[Any]:
    return [s for s in found if s.name == name]


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- spans with the in-memory exporter --------------------------------------------------------


def test_span_per_workflow_step_transaction_nested(spans: SpanCapture, dbos: Harness) -> None:
    workflow_id = wid("traced")
    with SetWorkflowID(workflow_id):
        out = t_parent()
    assert out["values"] == [2, 4, 4, 5, 6]
    children = [f"{workflow_id}-3", out["started"], out["queued"]]
    assert out["started"] == f"{workflow_id}-5" and out["queued"] == f"{workflow_id}-7"

    # Children run on other threads; their spans end just after their results are set.
    found = spans.wait_for(lambda f: len(by_name(f, "tracing_tests.child")) == 3 and len(f) == 9, workflow_id)
    [root] = by_name(found, "tracing_tests.parent")
    assert root.parent is None  # nothing was active when the test called it
    assert attrs(root) == {
        "dbos.workflow_id": workflow_id,
        "dbos.executor_id": "local",
        "dbos.app_version": APP_VERSION,
        "dbos.operation_type": "workflow",
        "dbos.function_name": "tracing_tests.parent",
        "user.workflow_attr": "on-the-workflow-span",
    }
    # Every span is in the root's trace.
    assert {trace_id(s) for s in found} == {trace_id(root)}

    [step] = [s for s in by_name(found, "tracing_tests.step") if attrs(s)["dbos.workflow_id"] == workflow_id]
    assert parent_id(step) == span_id(root)
    assert attrs(step) == {
        "dbos.workflow_id": workflow_id,
        "dbos.step_id": 1,
        "dbos.executor_id": "local",
        "dbos.app_version": APP_VERSION,
        "dbos.operation_type": "step",
        "dbos.function_name": "tracing_tests.step",
        "user.step_value": 1,
    }
    [tx] = by_name(found, "tracing_tests.tx")
    assert parent_id(tx) == span_id(root)
    assert attrs(tx)["dbos.step_id"] == 2
    assert attrs(tx)["dbos.operation_type"] == "transaction"
    assert attrs(tx)["user.tx_value"] == 2

    child_spans = {attrs(s)["dbos.workflow_id"]: s for s in by_name(found, "tracing_tests.child")}
    assert set(child_spans) == set(children)
    for child_id, child in child_spans.items():
        assert parent_id(child) == span_id(root), child_id
        assert attrs(child)["dbos.operation_type"] == "workflow"
        [child_step] = [s for s in by_name(found, "tracing_tests.step") if attrs(s)["dbos.workflow_id"] == child_id]
        assert parent_id(child_step) == span_id(child)
        assert attrs(child_step)["dbos.step_id"] == 1
    # Only the queued child names its queue.
    assert attrs(child_spans[out["queued"]])["dbos.queue_name"] == "tracing_tests_queue"
    assert "dbos.queue_name" not in attrs(child_spans[out["started"]])
    assert "dbos.queue_name" not in attrs(root)


def test_dbos_span_is_the_current_span(spans: SpanCapture, dbos: Harness) -> None:
    workflow_id = wid("current")
    with SetWorkflowID(workflow_id):
        ids = t_span_ids()
    found = spans.wait_for(lambda f: len(f) == 2, workflow_id)
    [wf_span] = by_name(found, "tracing_tests.span_ids")
    [step_span] = by_name(found, "tracing_tests.span_step")
    assert ids == {"workflow": span_id(wf_span), "step": span_id(step_span)}
    assert parent_id(step_span) == span_id(wf_span)

    # Outside any workflow DBOS.span is the caller's current span (or none at all).
    assert not DBOS.span.is_recording()
    with spans.tracer.start_as_current_span("request") as request:
        assert DBOS.span is request
        DBOS.span.set_attribute("user.request", "yes")
    [req] = by_name(spans.finished(), "request")
    assert attrs(req) == {"user.request": "yes"}


def test_workflow_called_under_a_span_continues_its_trace(spans: SpanCapture, dbos: Harness) -> None:
    prefix = wid("under")
    with spans.tracer.start_as_current_span("http-request") as request:
        with SetWorkflowID(f"{prefix}-direct"):
            t_child(7)
        with SetWorkflowID(f"{prefix}-started"):
            handle = DBOS.start_workflow(t_child, 8)
    assert handle.get_result() == 9
    found = spans.wait_for(lambda f: len(by_name(f, "tracing_tests.child")) == 2, prefix)
    for child in by_name(found, "tracing_tests.child"):
        assert trace_id(child) == format(request.get_span_context().trace_id, "032x")
        assert parent_id(child) == format(request.get_span_context().span_id, "016x")


def test_failed_workflow_and_step_spans_record_the_error(spans: SpanCapture, dbos: Harness) -> None:
    workflow_id = wid("failing")
    with pytest.raises(ValueError), SetWorkflowID(workflow_id):
        t_failing()
    found = spans.wait_for(lambda f: len(by_name(f, "tracing_tests.failing")) == 1, workflow_id)
    [span] = by_name(found, "tracing_tests.failing")
    assert span.status.status_code == StatusCode.ERROR
    assert any(e.name == "exception" and "the workflow failed" in str(e.attributes) for e in span.events)


def test_async_workflow_spans_nest(spans: SpanCapture, dbos: Harness) -> None:
    workflow_id = wid("async")

    async def main() -> list[int]:
        with SetWorkflowID(workflow_id):
            return await t_async_parent()

    assert asyncio.run(main()) == [101, 4, 103]
    found = spans.wait_for(lambda f: len(f) == 5, workflow_id)
    [root] = by_name(found, "tracing_tests.async_parent")
    [child] = by_name(found, "tracing_tests.async_child")
    [tx] = by_name(found, "tracing_tests.tx")
    steps = {attrs(s)["dbos.workflow_id"]: s for s in by_name(found, "tracing_tests.async_step")}
    assert parent_id(steps[workflow_id]) == span_id(root)
    assert attrs(steps[workflow_id])["dbos.step_id"] == 1
    assert attrs(steps[workflow_id])["user.async_step"] == 1
    assert parent_id(tx) == span_id(root) and attrs(tx)["dbos.step_id"] == 2
    assert parent_id(child) == span_id(root) and attrs(child)["dbos.workflow_id"] == f"{workflow_id}-3"
    assert parent_id(steps[f"{workflow_id}-3"]) == span_id(child)


def test_queued_workflow_continues_the_enqueuers_trace(spans: SpanCapture, dbos: Harness) -> None:
    workflow_id = wid("queued")
    with spans.tracer.start_as_current_span("enqueue-request") as request, SetWorkflowID(workflow_id):
        handle = trace_queue.enqueue(t_child, 1)
    assert handle.get_result() == 2
    ctx = request.get_span_context()
    stored = dbos.backend.scalar(
        f"SELECT trace_context FROM {dbos.backend.table('workflow_status')} WHERE workflow_uuid = :w",
        w=handle.workflow_id,
    )
    assert stored is not None
    traceparent = json.loads(stored)["traceparent"]
    assert traceparent.split("-")[1:3] == [format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")]
    found = spans.wait_for(lambda f: len(by_name(f, "tracing_tests.child")) == 1, workflow_id)
    [child] = by_name(found, "tracing_tests.child")
    assert trace_id(child) == format(ctx.trace_id, "032x")
    assert parent_id(child) == format(ctx.span_id, "016x")
    assert attrs(child)["dbos.queue_name"] == "tracing_tests_queue"


@pytest.mark.slow
def test_trace_context_propagates_to_a_workflow_run_by_another_process(
    spans: SpanCapture, dbos: Harness, backend: Backend, tmp_path: Path
) -> None:
    workflow_id = wid("remote")
    with spans.tracer.start_as_current_span("enqueue-for-remote") as request:
        # Enqueued for another app version: only the remote executor (that version) may run it.
        with SetWorkflowID(workflow_id), SetEnqueueOptions(app_version="remote-v"):
            handle = remote_queue.enqueue(remote_target, 20)
    ctx = request.get_span_context()
    with OTLPReceiver() as rx:
        app = AuthApp(backend, tmp_path, "trace_executor", workflow_id, "remote-vm",
                      env={"DBOS__APPVERSION": "remote-v"}, extra=(rx.traces_url,)).start()
        assert app.result() == 41
        received = rx.wait_for_spans(lambda s: {"auth_app.remote_target", "auth_app.remote_step"} <= {x.name for x in s})
    assert handle.get_result() == 41
    assert handle.get_status().executor_id == "remote-vm"
    [wf_span] = [s for s in received if s.name == "auth_app.remote_target"]
    [step_span] = [s for s in received if s.name == "auth_app.remote_step"]
    # The remote workflow's span continues the trace of the span that enqueued it.
    assert wf_span.trace_id == format(ctx.trace_id, "032x")
    assert wf_span.parent_span_id == format(ctx.span_id, "016x")
    assert step_span.trace_id == wf_span.trace_id and step_span.parent_span_id == wf_span.span_id
    assert wf_span.attributes["dbos.workflow_id"] == workflow_id
    assert wf_span.attributes["dbos.queue_name"] == "auth_trace_queue"
    assert wf_span.attributes["dbos.executor_id"] == "remote-vm"
    assert wf_span.attributes["dbos.app_version"] == "remote-v"
    assert step_span.attributes["dbos.step_id"] == 1
    assert step_span.attributes["app.remote_step"] == 20
    assert wf_span.resource["app.role"] == "executor"
    assert wf_span.resource["service.name"] == "auth-app"
    # This process ran none of it.
    assert by_name(spans.finished(), "auth_app.remote_target") == []


# -- a real OTLP receiver ---------------------------------------------------------------------


def test_export_spans_and_logs_to_an_otlp_receiver(dbos: Harness) -> None:
    dbos.destroy()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # no global provider here
    workflow_id = wid("otlp")
    with OTLPReceiver() as rx:
        dbos.launch(
            enable_otlp=True,
            otlp_traces_endpoints=[rx.traces_url],
            otlp_logs_endpoints=[rx.logs_url],
            otlp_attributes={"deployment.environment": "test", "team": "fleet"},
            executor_id="otlp-exec",
        )
        with SetWorkflowID(workflow_id):
            assert t_logging(3) == 3
        handle = trace_queue.enqueue(t_child, 1)
        assert handle.get_result() == 2
        DBOS.destroy()  # shuts the exporters down, which flushes them
        received = rx.wait_for_spans(
            lambda s: {"tracing_tests.logging", "tracing_tests.logging_step", "tracing_tests.child"}
            <= {x.name for x in s}
        )
        logs = rx.wait_for_logs(lambda found: len([r for r in found if "otlp-log" in str(r.body)]) >= 2)
        assert {path for path, _ in rx.requests} == {"/v1/traces", "/v1/logs"}
        assert all(ctype == "application/x-protobuf" for _, ctype in rx.requests)

    [wf_span] = [s for s in received if s.name == "tracing_tests.logging"]
    [step_span] = [s for s in received if s.name == "tracing_tests.logging_step"]
    [queued] = [s for s in received if s.name == "tracing_tests.child"]
    assert wf_span.parent_span_id == ""
    assert step_span.parent_span_id == wf_span.span_id and step_span.trace_id == wf_span.trace_id
    assert wf_span.attributes["dbos.workflow_id"] == workflow_id
    assert wf_span.attributes["dbos.executor_id"] == "otlp-exec"
    assert wf_span.attributes["dbos.app_version"] == APP_VERSION
    assert step_span.attributes["dbos.step_id"] == 1
    assert queued.attributes["dbos.queue_name"] == "tracing_tests_queue"
    for span in (wf_span, step_span, queued):
        assert span.resource["service.name"] == "test-app"
        assert span.resource["deployment.environment"] == "test" and span.resource["team"] == "fleet"

    wf_log = next(r for r in logs if r.body == "otlp-log from the workflow 3")
    step_log = next(r for r in logs if r.body == "otlp-log from the step 3")
    for record in (wf_log, step_log):
        assert record.attributes["workflow_id"] == workflow_id
        assert record.attributes["executor_id"] == "otlp-exec"
        assert record.severity.startswith("WARN")
        assert record.resource["team"] == "fleet"
        assert record.trace_id == wf_span.trace_id  # logs correlate with the spans
    assert wf_log.span_id == wf_span.span_id
    assert step_log.span_id == step_span.span_id

    # Shut down: no exporter thread is left, and DBOS is back on the global (absent) provider.
    eventually(lambda: not [t for t in threading.enumerate() if t.name.startswith("Otel")], timeout=10)
    assert TRACERS.active is TRACERS.default


def test_only_traces_or_only_logs_endpoint(dbos: Harness) -> None:
    dbos.destroy()
    with OTLPReceiver() as rx:
        dbos.launch(enable_otlp=True, otlp_logs_endpoints=[rx.logs_url])
        assert TRACERS.active is TRACERS.default  # no trace exporter configured
        with SetWorkflowID(wid("logs-only")):
            t_logging(1)
        DBOS.destroy()
        rx.wait_for_logs(lambda found: any("otlp-log" in str(r.body) for r in found))
        assert rx.spans == []


# -- OTLP setup failures -------------------------------------------------------------------------


def _new_threads(before: set[int]) -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.ident not in before)


@pytest.mark.parametrize(
    "endpoint",
    ["http://collector:notaport/v1/logs", "http://[::1/v1/logs", "http://collector :4318/v1/logs", "http:///v1/logs"],
)
def test_malformed_otlp_logs_endpoint_fails_construction(harness: Harness, endpoint: str) -> None:
    before = {t.ident for t in threading.enumerate()}
    config = harness.config(
        enable_otlp=True, otlp_traces_endpoints=["http://127.0.0.1:9/v1/traces"], otlp_logs_endpoints=[endpoint]
    )
    with pytest.raises(DBOSConfigError, match="otlp_logs_endpoints") as raised:
        DBOS(config=config)
    assert repr(endpoint) in str(raised.value)
    assert _new_threads(before) == []
    assert TRACERS.active is TRACERS.default


def test_otlp_logs_setup_failure_shuts_down_the_trace_exporter(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.exporter.otlp.proto.http import _log_exporter

    def broken_exporter(**_kwargs: Any) -> Any:
        raise ValueError("cannot build the logs exporter")

    # Fails after the trace exporter (and its thread) exists: what setup started must go.
    monkeypatch.setattr(_log_exporter, "OTLPLogExporter", broken_exporter)
    before = {t.ident for t in threading.enumerate()}
    handlers = list(DBOS.logger.handlers)
    DBOS(config=harness.config(
        enable_otlp=True,
        otlp_traces_endpoints=["http://127.0.0.1:9/v1/traces"],
        otlp_logs_endpoints=["http://127.0.0.1:9/v1/logs"],
    ))
    with pytest.raises(DBOSInitializationError, match="otlp_logs_endpoints") as raised:
        DBOS.launch()
    assert "cannot build the logs exporter" in str(raised.value)
    assert _new_threads(before) == []
    assert TRACERS.active is TRACERS.default
    assert DBOS.logger.handlers == handlers
    # Nothing half-launched stays behind: the same process launches fine afterwards.
    monkeypatch.undo()
    harness.launch()
    assert trace_queue.enqueue(t_child, 1).get_result() == 2


# -- OTLP off ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "otlp",
    [
        {},
        {"enable_otlp": True},  # on, but no endpoints: nothing to export to
        {"enable_otlp": False, "otlp_traces_endpoints": ["http://127.0.0.1:9/v1/traces"],
         "otlp_logs_endpoints": ["http://127.0.0.1:9/v1/logs"]},
    ],
    ids=["default", "enabled-without-endpoints", "disabled-with-endpoints"],
)
def test_otlp_off_starts_no_exporter_threads(harness: Harness, otlp: dict[str, Any]) -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    before = {t.ident for t in threading.enumerate()}
    harness.launch(**otlp)
    workflow_id = wid("quiet")
    with SetWorkflowID(workflow_id):
        out = t_span_ids()
    assert trace_queue.enqueue(t_child, 1).get_result() == 2
    new = sorted(t.name for t in threading.enumerate() if t.ident not in before)
    assert new and all(name.startswith("dbos-") for name in new), new
    # No provider: the spans are skipped (DBOS.span inside is the invalid, non-recording span).
    assert out == {"workflow": "0" * 16, "step": "0" * 16}
    assert TRACERS.active is TRACERS.default
    assert harness.backend.scalar(
        f"SELECT count(*) FROM {harness.backend.table('workflow_status')} WHERE trace_context IS NOT NULL"
    ) == 0
    assert [h for h in DBOS.logger.handlers if "opentelemetry" in type(h).__module__] == []
