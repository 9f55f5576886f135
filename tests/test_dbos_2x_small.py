"""Small DBOS 2.x names (issue 18, "Names"): DBOS.register_instance, dbos.VersionInfo
read as DBOS's TypedDict, the async application-version methods, PropagateOtelContext."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Backend, Harness
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from dbos import DBOS, DBOSException, PropagateOtelContext, Queue, SetWorkflowID, VersionInfo

QUEUE = Queue("small_queue")


@DBOS.dbos_class("small_plain")
class SmallPlain:
    """Not a DBOSConfiguredInstance: registered by DBOS.register_instance."""

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name

    @DBOS.workflow(name="small_plain.who")
    def who(self) -> str:
        return self.config_name


@DBOS.workflow(name="small_echo")
def small_echo(x: int) -> int:
    return x


def test_register_instance(dbos: Harness, backend: Backend) -> None:
    name = f"north-{backend.kind}"
    inst = SmallPlain(name)
    DBOS.register_instance(inst)
    with SetWorkflowID("small-who-1"):
        assert inst.who() == name
    st = DBOS.get_workflow_status("small-who-1")
    assert st is not None and (st.class_name, st.config_name) == ("small_plain", name)
    with pytest.raises(DBOSException, match="needs an instance with a config_name"):
        DBOS.register_instance(object())


def test_version_info_reads_as_dbos_typed_dict(dbos: Harness) -> None:
    infos = DBOS.list_application_versions()
    assert infos and isinstance(infos[0], VersionInfo)
    assert infos[0]["version_name"] == infos[0].version_name == DBOS.application_version
    assert infos[0]["application_name"] is None
    with pytest.raises(KeyError):
        infos[0]["nope"]

    async def main() -> tuple[int, str]:
        listed = await DBOS.list_application_versions_async()
        latest = await DBOS.get_latest_application_version_async()
        assert latest is not None
        await DBOS.set_latest_application_version_async(latest.version_name)
        return len(listed), latest.version_name

    assert asyncio.run(main()) == (len(infos), DBOS.application_version)


def test_propagate_otel_context_carries_a_given_context(dbos: Harness, backend: Backend) -> None:
    trace_id = 0x0AF7651916CD43DD8448EB211C80319C
    given = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id, 0x00F067AA0BA902B7, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))))
    with PropagateOtelContext(given), SetWorkflowID("small-otel-1"):
        assert QUEUE.enqueue(small_echo, 3).get_result() == 3
    stored = backend.scalar(f"SELECT trace_context FROM {backend.table('workflow_status')} "
                            "WHERE workflow_uuid = 'small-otel-1'")
    assert f"{trace_id:032x}" in stored
    with PropagateOtelContext(), SetWorkflowID("small-otel-2"):  # no context given: nothing changes
        assert QUEUE.enqueue(small_echo, 4).get_result() == 4
