"""Issue 17: bad input is a clear error at the call, and nothing is stuck, lost or written.

One test per item (both databases), then a catalogue of bad inputs through the
public API, the client and the CLI: each raises the expected type, names the
offending value or key, and leaves no workflow, step, message or event behind.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Optional

import pytest
from conftest import Backend, Harness, eventually
from test_cli import run_cli

from dbos import (
    DBOS,
    DBOSClient,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from dbos._execution.queues import QueueSpec
from dbos._execution.registry import REGISTRY
from dbos.error import DBOSConfigError, DBOSException, DBOSSerializationError

BI_QUEUE = Queue("bad_input_queue", polling_interval_sec=0.1)
BI_PARTITIONED = Queue("bad_input_partitioned", partition_queue=True, polling_interval_sec=0.1)


@DBOS.workflow()
def bi_echo(x: Any) -> Any:
    return x


@DBOS.workflow()
def bi_waits(what: str, seconds: float) -> Any:
    if what == "sleep":
        DBOS.sleep(seconds)
    elif what == "recv":
        return DBOS.recv("t", timeout_seconds=seconds)
    elif what == "get_event":
        return DBOS.get_event("elsewhere", "k", timeout_seconds=seconds)
    return None


@DBOS.step()
def bi_big_step(n: int) -> bytes:
    return b"x" * n


@DBOS.workflow()
def bi_big_result(n: int) -> int:
    try:
        bi_big_step(n)
    except DBOSSerializationError as e:
        return len(str(e))
    return 0


@DBOS.workflow()
def bi_big_output(n: int) -> bytes:
    return b"x" * n


@DBOS.workflow()
def bi_sets_event(key: str, size: int) -> None:
    DBOS.set_event(key, b"v" * size)


def _nothing_written(backend: Backend) -> None:
    for table in ("workflow_status", "operation_outputs", "notifications", "workflow_events"):
        assert backend.scalar(f"SELECT count(*) FROM {backend.table(table)}") == 0, table


# -- item 3: one malformed queue stalls every queue --------------------------------------


@pytest.mark.parametrize(
    "limiter",
    [
        {"limit": 1, "period": math.nan},
        {"limit": 1, "period": math.inf},
        {"limit": 1, "period": 1e300},
        {"limit": 1, "period": -1.0},
        {"limit": 10**30, "period": 1.0},
    ],
    ids=["nan", "inf", "1e300", "negative", "huge-limit"],
)
def test_queue_rejects_a_limiter_that_would_break_every_claim(limiter: Any) -> None:
    with pytest.raises(DBOSException, match="bad_limiter"):
        Queue("bad_limiter", limiter=limiter)
    assert "bad_limiter" not in REGISTRY.queues


@pytest.mark.parametrize("name", ["with\x00nul", "", "q" * 2000])
def test_queue_rejects_a_bad_name(name: str) -> None:
    with pytest.raises(DBOSException, match="Queue name"):
        Queue(name)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_one_broken_queue_does_not_stall_the_others(harness: Harness, backend: Backend) -> None:
    # A spec no Queue(...) accepts any more, registered behind validation's back: its claim fails.
    broken = QueueSpec("bi_broken\x00queue", None, 1, math.nan, None, False, False, 0.1)
    REGISTRY.queues[broken.name] = broken
    try:
        records = _Records()
        logging.getLogger("dbos").addHandler(records)  # before launch: the first tick fails at once
        try:
            harness.launch()
            handle = BI_QUEUE.enqueue(bi_echo, 7)
            assert handle.get_result() == 7  # the good queue is claimed although the broken one fails
            eventually(lambda: any("bi_broken" in m and "claiming failed" in m for m in records.messages),
                       timeout=10, what="(the broken queue named in the log)")
            assert len([m for m in records.messages if "bi_broken" in m]) == 1  # logged once, not every tick
        finally:
            logging.getLogger("dbos").removeHandler(records)
    finally:
        REGISTRY.queues.pop(broken.name, None)


# -- item 4: NUL in identifiers ------------------------------------------------------------


def test_nul_in_a_workflow_id_is_refused_and_never_collides(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("order-7"):
        assert bi_echo("first") == "first"
    with pytest.raises(DBOSException, match="NUL"):
        with SetWorkflowID("order-7\x00a"):
            bi_echo("second")
    assert backend.workflow_count() == 1
    assert DBOS.retrieve_workflow("order-7").get_result() == "first"


@pytest.mark.parametrize(
    "call",
    [
        lambda: DBOS.send("wf\x00x", "m"),
        lambda: DBOS.send("some-wf", "m", topic="t\x00"),
        lambda: DBOS.get_event("wf", "k\x00", timeout_seconds=0),
        lambda: SetEnqueueOptions(deduplication_id="d\x00"),
        lambda: SetEnqueueOptions(queue_partition_key="p\x00"),
        lambda: SetEnqueueOptions(app_version="v\x00"),
        lambda: DBOS.fork_workflow("wf\x00", 1),
        lambda: DBOS.cancel_workflow("wf\x00"),
    ],
    ids=["send-destination", "send-topic", "event-key", "dedup", "partition", "app-version", "fork", "cancel"],
)
def test_nul_in_any_identifier_is_refused(dbos: Harness, backend: Backend, call: Callable[[], Any]) -> None:
    with pytest.raises(DBOSException, match="NUL"):
        call()
    _nothing_written(backend)


def test_nul_in_config_identifiers_is_refused(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    for key in ("executor_id", "application_version"):
        with pytest.raises(DBOSConfigError, match=key):
            DBOS(config={"name": "app", "system_database_url": url, key: "a\x00b"})  # type: ignore[misc]


# -- item 5: NaN and infinite waits -------------------------------------------------------


@pytest.mark.parametrize("what", ["sleep", "recv", "get_event"])
@pytest.mark.parametrize("seconds", [math.nan, math.inf, -1.0, 1e300])
def test_bad_wait_durations_fail_the_call_and_hang_nothing(
    dbos: Harness, backend: Backend, what: str, seconds: float
) -> None:
    with SetWorkflowID(f"wait-{what}-{seconds}"):
        with pytest.raises(DBOSException, match="seconds"):
            bi_waits(what, seconds)
    # The workflow ended with that error: nothing stays PENDING for recovery to hang on.
    assert backend.status(f"wait-{what}-{seconds}") == "ERROR"


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -5, 0, 1e300])
def test_set_workflow_timeout_refuses_nan_infinity_and_nonsense(seconds: float) -> None:
    with pytest.raises(DBOSException, match="SetWorkflowTimeout"):
        SetWorkflowTimeout(seconds)


def test_client_workflow_timeout_is_checked(dbos: Harness, backend: Backend) -> None:
    client = DBOSClient(backend.url)
    try:
        with pytest.raises(DBOSException, match="workflow_timeout"):
            client.enqueue({"workflow_name": "bi_echo", "queue_name": "bad_input_queue",
                            "workflow_timeout": math.inf}, 1)
    finally:
        client.destroy()
    _nothing_written(backend)


# -- item 6: huge values and identifiers ----------------------------------------------------


def test_values_over_the_size_limit_fail_at_the_call(harness: Harness, backend: Backend) -> None:
    harness.launch(max_value_bytes=64 * 1024)
    big = b"x" * (100 * 1024)
    with pytest.raises(DBOSSerializationError, match="max_value_bytes"):
        bi_echo(big)
    with pytest.raises(DBOSSerializationError, match="max_value_bytes"):
        BI_QUEUE.enqueue(bi_echo, big)
    _nothing_written(backend)
    with SetWorkflowID("big-target"):
        bi_echo(1)
    with pytest.raises(DBOSSerializationError, match="message"):
        DBOS.send("big-target", big)
    # A step's result over the limit is that step's error, recorded like any other.
    with SetWorkflowID("big-step"):
        assert bi_big_result(100 * 1024) > 0
    # So is a workflow's result, and an event's value.
    with SetWorkflowID("big-result"), pytest.raises(DBOSSerializationError, match="result of workflow"):
        bi_big_output(100 * 1024)
    assert backend.status("big-result") == "ERROR"
    with SetWorkflowID("big-event"), pytest.raises(DBOSSerializationError, match="event"):
        bi_sets_event("k", 100 * 1024)
    assert backend.scalar(f"SELECT count(*) FROM {backend.table('workflow_events')}") == 0


def test_listing_without_inputs_and_outputs_does_not_read_them(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("listed"):
        bi_echo("payload")
    [full] = DBOS.list_workflows(workflow_ids=["listed"])
    assert full.input is not None and full.output == "payload"
    # Make the stored values unreadable: a listing that read them would fail.
    backend.execute(f"UPDATE {backend.table('workflow_status')} SET inputs = :b, output = :b", b=b"not pickle")
    [bare] = DBOS.list_workflows(workflow_ids=["listed"], load_input=False, load_output=False)
    assert (bare.workflow_id, bare.status, bare.input, bare.output) == ("listed", "SUCCESS", None, None)


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: SetWorkflowID("w" * 1_000_000), "workflow ID"),
        (lambda: DBOS.send("w" * 5000, 1), "destination_id"),
        (lambda: DBOS.send("some-wf", 1, topic="t" * 5000), "topic"),
        (lambda: DBOS.get_event("wf", "k" * 5000, timeout_seconds=0), "event key"),
        (lambda: SetEnqueueOptions(deduplication_id="d" * 5000), "deduplication_id"),
    ],
    ids=["workflow-id", "destination", "topic", "event-key", "dedup"],
)
def test_identifiers_over_the_index_limit_name_the_field_and_limit(
    dbos: Harness, backend: Backend, call: Callable[[], Any], field: str
) -> None:
    with pytest.raises(DBOSException) as info:
        call()
    assert field in str(info.value) and "1024 bytes" in str(info.value)
    assert len(str(info.value)) < 400  # the value is shown cut short
    _nothing_written(backend)


# -- item 9: duplicate workflow names ---------------------------------------------------------


def test_a_second_function_under_a_taken_workflow_name_is_an_error() -> None:
    @DBOS.workflow(name="bi-duplicate-name")
    def first() -> int:
        return 1

    with pytest.raises(DBOSException, match="bi-duplicate-name.*already registered"):

        @DBOS.workflow(name="bi-duplicate-name")
        def second() -> int:
            return 2

    info = REGISTRY.workflow("bi-duplicate-name")
    assert info is not None and info.func.__name__ == "first"  # the first one still stands


def test_the_same_definition_registered_again_is_fine() -> None:
    for _ in range(2):  # e.g. a module reloaded, or a test run twice

        @DBOS.workflow(name="bi-same-definition")
        def again() -> int:
            return 1


# -- the catalogue ------------------------------------------------------------------------------

Case = tuple[str, Callable[[], Any], type[BaseException], str]


def _config(**kw: Any) -> Callable[[], Any]:
    return lambda: DBOS(config={"name": "catalogue", **kw})  # type: ignore[misc, typeddict-item]


_CONFIG_CASES: list[Case] = [
    ("config executor_id empty", _config(executor_id=""), DBOSConfigError, "executor_id"),
    ("config executor_id NUL", _config(executor_id="a\x00"), DBOSConfigError, "executor_id"),
    ("config executor_id huge", _config(executor_id="e" * 5000), DBOSConfigError, "executor_id"),
    ("config app version empty", _config(application_version=""), DBOSConfigError, "application_version"),
    ("config app version NUL", _config(application_version="v\x00"), DBOSConfigError, "application_version"),
    ("config max_value_bytes small", _config(max_value_bytes=10), DBOSConfigError, "max_value_bytes"),
    ("config max_value_bytes huge", _config(max_value_bytes=2**40), DBOSConfigError, "max_value_bytes"),
    ("config max_value_bytes str", _config(max_value_bytes="64MB"), DBOSConfigError, "max_value_bytes"),
    ("config polling nan", _config(polling_interval_sec=math.nan), DBOSConfigError, "polling_interval_sec"),
    ("config polling inf", _config(polling_interval_sec=math.inf), DBOSConfigError, "polling_interval_sec"),
    ("config heartbeat nan", _config(heartbeat_interval_sec=math.nan), DBOSConfigError, "heartbeat_interval_sec"),
    ("config pool size 0", _config(sys_db_pool_size=0), DBOSConfigError, "sys_db_pool_size"),
    ("config unknown key", _config(executorid="x"), DBOSConfigError, "executorid"),
    ("config schema", _config(dbos_system_schema="a\"b"), DBOSConfigError, "dbos_system_schema"),
    ("config log level", _config(log_level="CHATTY"), DBOSConfigError, "log_level"),
    ("config empty database url", _config(system_database_url=""), DBOSConfigError, "system_database_url"),
    ("config sqlite in memory", _config(system_database_url="sqlite:///:memory:"), DBOSConfigError, ":memory:"),
    ("config malformed url", _config(system_database_url="postgresql://::::/"), DBOSConfigError, "::::"),
    ("config engine kwargs unknown", _config(db_engine_kwargs={"pool_sise": 3}), DBOSConfigError, "pool_sise"),
    ("config engine kwargs type", _config(db_engine_kwargs={"pool_size": "3"}), DBOSConfigError, "pool_size"),
    ("config engine kwargs negative", _config(db_engine_kwargs={"pool_timeout": -1}), DBOSConfigError,
     "pool_timeout"),
    ("config engine kwargs owned", _config(db_engine_kwargs={"isolation_level": "SERIALIZABLE"}), DBOSConfigError,
     "isolation_level"),
]

_QUEUE_CASES: list[Case] = [
    ("queue name NUL", lambda: Queue("q\x00"), DBOSException, "NUL"),
    ("queue name empty", lambda: Queue(""), DBOSException, "Queue name"),
    ("queue name huge", lambda: Queue("q" * 5000), DBOSException, "1024 bytes"),
    ("queue name int", lambda: Queue(5), DBOSException, "Queue name"),  # type: ignore[arg-type]
    ("limiter nan", lambda: Queue("cat_q1", limiter={"limit": 1, "period": math.nan}), DBOSException, "NaN"),
    ("limiter inf", lambda: Queue("cat_q2", limiter={"limit": 1, "period": math.inf}), DBOSException, "inf"),
    ("limiter 1e300", lambda: Queue("cat_q3", limiter={"limit": 1, "period": 1e300}), DBOSException, "1e+300"),
    ("limiter zero", lambda: Queue("cat_q4", limiter={"limit": 1, "period": 0}), DBOSException, "period"),
    ("limiter str", lambda: Queue("cat_q5", limiter={"limit": 1, "period": "1s"}), DBOSException, "'1s'"),
    ("limiter keys", lambda: Queue("cat_q6", limiter={"limit": 1}), DBOSException, "limiter"),  # type: ignore[typeddict-item]
    ("limit zero", lambda: Queue("cat_q7", limiter={"limit": 0, "period": 1}), DBOSException, "limit"),
    ("concurrency huge", lambda: Queue("cat_q8", concurrency=2**40), DBOSException, "concurrency"),
    ("concurrency bool", lambda: Queue("cat_q9", concurrency=True), DBOSException, "concurrency"),
    ("worker > global", lambda: Queue("cat_qa", concurrency=1, worker_concurrency=2), DBOSException, "worker_concurrency"),
    ("queue polling nan", lambda: Queue("cat_qb", polling_interval_sec=math.nan), DBOSException, "polling_interval_sec"),
    ("queue declared twice", lambda: Queue("bad_input_queue"), DBOSException, "bad_input_queue"),
]

_CONTEXT_CASES: list[Case] = [
    ("workflow id NUL", lambda: SetWorkflowID("a\x00b"), DBOSException, "NUL"),
    ("workflow id empty", lambda: SetWorkflowID(""), DBOSException, "workflow ID"),
    ("workflow id int", lambda: SetWorkflowID(7), DBOSException, "7"),  # type: ignore[arg-type]
    ("workflow id huge", lambda: SetWorkflowID("w" * 1_000_000), DBOSException, "1024 bytes"),
    ("timeout nan", lambda: SetWorkflowTimeout(math.nan), DBOSException, "NaN"),
    ("timeout inf", lambda: SetWorkflowTimeout(math.inf), DBOSException, "inf"),
    ("timeout negative", lambda: SetWorkflowTimeout(-1), DBOSException, "-1"),
    ("timeout str", lambda: SetWorkflowTimeout("5"), DBOSException, "'5'"),  # type: ignore[arg-type]
    ("timeout 1e300", lambda: SetWorkflowTimeout(1e300), DBOSException, "1e+300"),
    ("dedup NUL", lambda: SetEnqueueOptions(deduplication_id="d\x00"), DBOSException, "deduplication_id"),
    ("dedup empty", lambda: SetEnqueueOptions(deduplication_id=""), DBOSException, "deduplication_id"),
    ("partition NUL", lambda: SetEnqueueOptions(queue_partition_key="p\x00"), DBOSException, "queue_partition_key"),
    ("app version NUL", lambda: SetEnqueueOptions(app_version="v\x00"), DBOSException, "app_version"),
    ("priority 0", lambda: SetEnqueueOptions(priority=0), DBOSException, "priority"),
    ("priority huge", lambda: SetEnqueueOptions(priority=2**31), DBOSException, "priority"),
]

_RUNTIME_CASES: list[Case] = [
    ("send destination NUL", lambda: DBOS.send("x\x00", 1), DBOSException, "destination_id"),
    ("send destination huge", lambda: DBOS.send("x" * 5000, 1), DBOSException, "destination_id"),
    ("send topic NUL", lambda: DBOS.send("x", 1, topic="t\x00"), DBOSException, "topic"),
    ("send topic int", lambda: DBOS.send("x", 1, topic=5), DBOSException, "topic"),  # type: ignore[arg-type]
    ("send unserializable", lambda: DBOS.send("x", lambda: 1), DBOSSerializationError, "message"),
    ("get_event id NUL", lambda: DBOS.get_event("w\x00", "k", 0), DBOSException, "workflow_id"),
    ("get_event key NUL", lambda: DBOS.get_event("w", "k\x00", 0), DBOSException, "event key"),
    ("get_event timeout nan", lambda: DBOS.get_event("w", "k", math.nan), DBOSException, "NaN"),
    ("get_event timeout inf", lambda: DBOS.get_event("w", "k", math.inf), DBOSException, "inf"),
    ("get_event timeout negative", lambda: DBOS.get_event("w", "k", -2), DBOSException, "-2"),
    ("recv outside a workflow", lambda: DBOS.recv("t", 1), DBOSException, "DBOS.recv"),
    ("set_event outside a workflow", lambda: DBOS.set_event("k", 1), DBOSException, "DBOS.set_event"),
    ("fork id NUL", lambda: DBOS.fork_workflow("w\x00", 1), DBOSException, "workflow_id"),
    ("fork step not an int", lambda: DBOS.fork_workflow("w", "1"), DBOSException, "start_step"),
    ("fork app version NUL", lambda: DBOS.fork_workflow("w", 1, application_version="v\x00"), DBOSException,
     "application_version"),
    ("cancel id NUL", lambda: DBOS.cancel_workflow("w\x00"), DBOSException, "workflow_id"),
    ("resume id NUL", lambda: DBOS.resume_workflow("w\x00"), DBOSException, "workflow_id"),
    ("steps id NUL", lambda: DBOS.list_workflow_steps("w\x00"), DBOSException, "workflow_id"),
    ("retrieve id NUL", lambda: DBOS.retrieve_workflow("w\x00"), DBOSException, "workflow_id"),
    ("status id NUL", lambda: DBOS.get_workflow_status("w\x00"), DBOSException, "workflow_id"),
    ("list ids NUL", lambda: DBOS.list_workflows(workflow_ids=["w\x00"]), DBOSException, "workflow_ids"),
    ("list prefix NUL", lambda: DBOS.list_workflows(workflow_id_prefix="w\x00"), DBOSException, "workflow_id_prefix"),
    ("list name NUL", lambda: DBOS.list_workflows(name="n\x00"), DBOSException, "name"),
    ("list queued queue NUL", lambda: DBOS.list_queued_workflows(queue_name="q\x00"), DBOSException, "queue_name"),
    ("list limit negative", lambda: DBOS.list_workflows(limit=-1), DBOSException, "limit"),
    ("list status bogus", lambda: DBOS.list_workflows(status="DONE"), DBOSException, "DONE"),
    ("list start_time bogus", lambda: DBOS.list_workflows(start_time="yesterday"), DBOSException, "yesterday"),
    ("enqueue dedup NUL", lambda: _enqueue_with(deduplication_id="d\x00"), DBOSException, "deduplication_id"),
    ("enqueue partition missing", lambda: BI_PARTITIONED.enqueue(bi_echo, 1), DBOSException, "partition"),
    ("start unserializable argument", lambda: DBOS.start_workflow(bi_echo, lambda: 1), DBOSSerializationError,
     "arguments"),
]


def _enqueue_with(**options: Any) -> Any:
    with SetEnqueueOptions(**options):
        return BI_QUEUE.enqueue(bi_echo, 1)


def _client_cases(client: DBOSClient) -> list[Case]:
    base = {"workflow_name": "bi_echo", "queue_name": "bad_input_queue"}
    return [
        ("client queue NUL", lambda: client.enqueue({**base, "queue_name": "q\x00"}, 1), DBOSException,  # type: ignore[typeddict-item]
         "queue_name"),
        ("client workflow id NUL", lambda: client.enqueue({**base, "workflow_id": "w\x00"}, 1), DBOSException,  # type: ignore[typeddict-item]
         "workflow_id"),
        ("client timeout nan", lambda: client.enqueue({**base, "workflow_timeout": math.nan}, 1), DBOSException,  # type: ignore[typeddict-item]
         "workflow_timeout"),
        ("client dedup NUL", lambda: client.enqueue({**base, "deduplication_id": "d\x00"}, 1), DBOSException,  # type: ignore[typeddict-item]
         "deduplication_id"),
        ("client send NUL", lambda: client.send("w\x00", 1), DBOSException, "destination_id"),
        ("client get_event nan", lambda: client.get_event("w", "k", math.nan), DBOSException, "NaN"),
        ("client missing name", lambda: client.enqueue({"queue_name": "q"}, 1), DBOSException, "workflow_name"),  # type: ignore[typeddict-item]
    ]


_CLI_CASES: list[tuple[str, tuple[str, ...], str]] = [
    ("cli list limit negative", ("workflow", "list", "--limit", "-1"), "limit"),
    ("cli list status bogus", ("workflow", "list", "--status", "DONE"), "DONE"),
    ("cli list start time bogus", ("workflow", "list", "--start-time", "yesterday"), "yesterday"),
    ("cli fork unknown", ("workflow", "fork", "nope", "--step", "0"), "nope"),
    ("cli get unknown", ("workflow", "get", "no-such-workflow"), "no-such-workflow"),
    ("cli bad db url", ("workflow", "list", "--db-url", "mysql://u@h/db"), "mysql://"),
    ("cli cancel unknown", ("workflow", "cancel", "no-such-workflow"), "no-such-workflow"),
    ("cli resume unknown", ("workflow", "resume", "no-such-workflow"), "no-such-workflow"),
]


@pytest.mark.timeout(600)  # ten CLI subprocesses: slow on a loaded 2-core machine
def test_catalogue_of_bad_inputs(harness: Harness, backend: Backend, tmp_path: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a config that fell through to the default SQLite file would show here
    results: list[tuple[str, Optional[str]]] = []

    def check(label: str, call: Callable[[], Any], exc: type[BaseException], fragment: str) -> None:
        try:
            call()
        except exc as e:
            ok = fragment in str(e)
            results.append((label, None if ok else f"message does not name {fragment!r}: {e}"))
        except BaseException as e:  # noqa: BLE001 - any other outcome is a finding
            results.append((label, f"raised {type(e).__name__}: {e}"))
        else:
            results.append((label, "no error"))

    for case in _CONFIG_CASES:  # before launch: construction fails, nothing is created
        check(*case)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    registered = set(REGISTRY.queues)
    for case in _QUEUE_CASES:
        check(*case)
    assert set(REGISTRY.queues) == registered  # no bad queue was declared

    harness.launch()
    for case in _CONTEXT_CASES + _RUNTIME_CASES:
        check(*case)
    client = DBOSClient(backend.url)
    try:
        for case in _client_cases(client):
            check(*case)
    finally:
        client.destroy()
    for label, argv, fragment in _CLI_CASES:
        url_args = () if "--db-url" in argv else ("--db-url", backend.url)
        r = run_cli(*argv, *url_args)
        if r.code == 0 or "Traceback" in r.err:
            results.append((label, f"exit {r.code}: {r.err}"))
        else:
            results.append((label, None if fragment in r.err else f"stderr does not name {fragment!r}: {r.err}"))

    failures = [f"{label}: {problem}" for label, problem in results if problem is not None]
    assert not failures, "\n".join(failures)
    assert len(results) >= 60, len(results)
    _nothing_written(backend)
    assert DBOS.list_workflows() == [] and DBOS.list_queued_workflows() == []


# -- wrong or unclear answers ---------------------------------------------------------------------


def test_destroy_is_bounded_when_the_otlp_collector_is_down(harness: Harness, backend: Backend) -> None:
    import time

    harness.launch(enable_otlp=True, otlp_traces_endpoints=["http://127.0.0.1:1/v1/traces"],
                   otlp_logs_endpoints=["http://127.0.0.1:1/v1/logs"])
    with SetWorkflowID("traced"):
        assert bi_echo(1) == 1
    DBOS.logger.warning("a log record for the collector that is not there")
    start = time.monotonic()
    DBOS.destroy()
    assert time.monotonic() - start < 5.0  # it took 12-20 s: the exporters' retries with backoff


def test_same_id_with_other_arguments_returns_the_recorded_result_and_says_so(
    harness: Harness, backend: Backend
) -> None:
    harness.launch(log_level="DEBUG")
    records = _Records()
    records.setLevel(logging.DEBUG)
    logging.getLogger("dbos").addHandler(records)
    try:
        with SetWorkflowID("same-id"):
            assert bi_echo("first") == "first"
        with SetWorkflowID("same-id"):
            assert bi_echo("second") == "first"  # idempotency, as in DBOS
    finally:
        logging.getLogger("dbos").removeHandler(records)
    assert any("same-id" in m and "other arguments" in m for m in records.messages), records.messages


def test_cli_cancel_and_resume_report_what_happened(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("cli-finished"):
        bi_echo(1)
    r = run_cli("workflow", "cancel", "cli-finished", url=backend.url)
    assert r.code == 1 and "SUCCESS" in r.err and "not cancelled" in r.err, r  # it used to print CANCELLED
    assert backend.status("cli-finished") == "SUCCESS"
    r = run_cli("workflow", "resume", "cli-finished", url=backend.url)
    assert r.code == 1 and "SUCCESS" in r.err and "nothing to resume" in r.err, r  # it used to print resumed


def test_a_database_that_does_not_exist_is_reported_at_once(tmp_path: Any) -> None:
    import time

    from conftest import PG_BASE_URL, _with_database

    from dbos import DBOSInitializationError

    # A missing database is created by launch (as in DBOS 2.x: tests/test_create_database.py);
    # a missing role cannot be, and is a permanent error.
    url = _with_database(PG_BASE_URL, "no_such_database_17").replace("://postgres@", "://no_such_role_17@", 1)
    assert "no_such_role_17" in url
    DBOS(config={"name": "nodb", "system_database_url": url})
    start = time.monotonic()
    with pytest.raises(DBOSInitializationError, match="does not exist"):
        DBOS.launch()
    assert time.monotonic() - start < 1.0  # not retried for 1.6 s as "unreachable"


def test_cli_json_errors_carry_the_error_code(dbos: Harness, backend: Backend) -> None:
    import json

    r = run_cli("workflow", "get", "no-such-workflow", "--json", url=backend.url)
    assert r.code == 1 and r.out == ""
    [line] = r.err.splitlines()
    error = json.loads(line)
    assert error["dbos_error_code"] == 5 and "no-such-workflow" in error["error"], error
    assert error["type"] == "DBOSNonExistentWorkflowError"
    r = run_cli("workflow", "list", "--limit", "-1", "--json", url=backend.url)
    assert r.code == 1 and "limit" in json.loads(r.err)["error"]


def test_cli_migrate_honours_json(backend: Backend) -> None:
    import json

    r = run_cli("migrate", "--json", url=backend.url)
    assert r.code == 0, r
    assert set(json.loads(r.out)) == {"migrations_applied"}


def test_cli_db_url_before_the_subcommand(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("cli-before"):
        bi_echo(1)
    r = run_cli("--db-url", backend.url, "workflow", "get", "cli-before")
    assert r.code == 0 and "cli-before" in r.out, r


@pytest.mark.timeout(300)
def test_cli_broken_pipe_is_quiet(harness: Harness, backend: Backend) -> None:
    import os
    import subprocess

    from mgmt_helpers import dbos_command

    if not backend.is_sqlite:
        pytest.skip("the output size matters, not the database")
    harness.launch()
    for i in range(900):  # enough rows to overflow a pipe's buffer
        with SetWorkflowID(f"pipe-{i:04d}"):
            bi_echo(i)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    proc = subprocess.run(
        f"'{dbos_command()}' workflow list --limit 1000 --db-url '{backend.url}' | head -n 1",
        shell=True, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.stdout.startswith("WORKFLOW_ID"), proc
    assert proc.stderr == "", proc.stderr  # no "BrokenPipeError", no "Exception ignored"


@pytest.mark.parametrize("command", [("workflow", "list"), ("workflow", "get", "x"), ("workflow", "steps", "x"),
                                     ("queue", "list")], ids=["list", "get", "steps", "queue-list"])
def test_cli_read_only_commands_create_nothing(backend: Backend, tmp_path: Any, command: tuple[str, ...]) -> None:
    if backend.is_sqlite:
        missing = tmp_path / "typo.sqlite"
        r = run_cli(*command, url=f"sqlite:///{missing}")
        assert r.code == 1 and "does not exist" in r.err, r
        assert not missing.exists()  # no file left behind
    else:
        r = run_cli(*command, "--schema", "typo_schema", url=backend.url)
        assert r.code == 1 and "typo_schema" in r.err, r
        assert backend.scalar("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'typo_schema'") == 0


def test_cli_read_only_commands_do_not_upgrade_an_older_schema(backend: Backend) -> None:
    from dbos._storage import schema

    assert run_cli("migrate", url=backend.url).code == 0  # the SQLite file is created by launch or migrate
    table = backend.table(schema.migrations.name)
    latest = backend.scalar(f"SELECT max(version) FROM {table}")
    backend.execute(f"DELETE FROM {table} WHERE version = :v", v=latest)  # looks one version older
    r = run_cli("workflow", "list", url=backend.url)
    assert r.code == 1 and "dbos migrate" in r.err and f"version {latest - 1}" in r.err, r
    assert backend.scalar(f"SELECT max(version) FROM {table}") == latest - 1  # nothing was migrated
