"""Work of a version no live executor runs waits for it (issue 13): it is never
given to another version, and the coordinator reports it as waiting, in
``/api/versions`` and in ``/metrics`` (``dbos_fleet_waiting_workflows``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from handover_helpers import Cluster, expected, free_port, http_get, parse_metrics, unique

pytestmark = [pytest.mark.parametrize("backend", ["postgres"], indirect=True), pytest.mark.timeout(240)]


def _versions(port: int) -> dict[str, dict[str, Any]]:
    code, body = http_get(port, "/api/versions")
    assert code == 200, body
    return {v["app_version"]: v for v in json.loads(body)}


def _waiting_metric(port: int) -> dict[str, float]:
    code, body = http_get(port, "/metrics")
    assert code == 200
    samples = parse_metrics(body.decode()).get("dbos_fleet_waiting_workflows", [])
    return {labels["app_version"]: value for labels, value in samples}


def test_work_of_a_version_without_executor_waits_and_is_reported(cluster: Cluster) -> None:
    v1, v2, v3 = unique("v1"), unique("v2"), unique("v3")
    port = free_port()
    cluster.start_coordinator(http_port=port)
    w1 = cluster.start_worker(unique("w1"), version=v1)
    w2 = cluster.start_worker(unique("w2"), version=v2, hold=True)

    # v2's work starts on v2's only executor, which then dies; v3 never had one.
    v2_tags = [unique("two") for _ in range(3)]
    v2_ids = [cluster.enqueue("ho_a", t, hold_at=3, version=v2) for t in v2_tags]
    cluster.wait(lambda: len({r.workflow_id for r in cluster.step_runs(v2_ids) if r.step == 3}) == 3,
                 "(v2's work in flight on its executor)")
    w2.kill()
    v3_ids = [cluster.enqueue("ho_b", unique("three"), version=v3) for _ in range(2)]

    def handed_over_and_waiting() -> bool:
        st = cluster.statuses(v2_ids)
        if any(s.status != "ENQUEUED" for s in st.values()):
            return False
        return _versions(port).get(v2, {}).get("waiting") == 3 and _waiting_metric(port).get(v2) == 3.0

    cluster.wait(handed_over_and_waiting, "(v2's work handed over, waiting)", timeout=20)
    # v1 keeps working meanwhile: its own new work finishes, v2's and v3's is left alone.
    v1_tags = [unique("one") for _ in range(3)]
    v1_ids = [cluster.enqueue("ho_a", t, version=v1) for t in v1_tags]
    assert {s.executor_id for s in cluster.wait_done(v1_ids, timeout=20).values()} == {w1.name}
    cluster.wait(lambda: _versions(port).get(v3, {}).get("waiting") == 2, "(v3 reported waiting)", timeout=10)

    st = cluster.statuses(v2_ids + v3_ids)
    assert {s.status for s in st.values()} == {"ENQUEUED"}
    assert {st[w].application_version for w in v2_ids} == {v2}
    assert {st[w].queue_name for w in v2_ids} == {"ho_a"}  # back on its own queue
    assert not [r for r in cluster.step_runs(v2_ids + v3_ids) if r.pid != w2.pid], "another version ran it"
    versions = _versions(port)
    assert versions[v2]["waiting"] == 3 and versions[v2]["live_executors"] == 0
    assert versions[v3]["waiting"] == 2
    assert versions[v1]["waiting"] == 0 and versions[v1]["live_executors"] == 1
    metric = _waiting_metric(port)
    assert metric == {v2: 3.0, v3: 2.0}, metric
    assert f"3 workflow(s) of app version {v2} wait" in cluster.coordinators[0].log()

    # An executor of v2 arrives: v2's work completes there (v3's still waits).
    w2b = cluster.start_worker(unique("w2b"), version=v2)
    st = cluster.wait_done(v2_ids, timeout=20)
    assert {s.executor_id for s in st.values()} == {w2b.name}
    assert [cluster.result(w) for w in v2_ids] == [expected(t) for t in v2_tags]
    assert cluster.tx_counts() == {w: 1 for w in v2_ids + v1_ids}
    cluster.wait(lambda: _waiting_metric(port) == {v3: 2.0}, "(only v3 still waiting)", timeout=10)
    assert _versions(port)[v2]["waiting"] == 0
    assert {s.status for s in cluster.statuses(v3_ids).values()} == {"ENQUEUED"}
