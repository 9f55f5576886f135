"""A worker's drain behind PgBouncer in transaction mode (issue 12): workers and their
heartbeats, claims and hand-back all go through PgBouncer (no session state, no
prepared statements kept), and the work a SIGTERMed worker hands back completes on
another one, each transaction exactly once."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Iterator

import pytest
from conftest import Backend
from handover_helpers import Cluster, expected, unique

from tests.test_pgbouncer import pgbouncer  # noqa: F401  (the module-scoped PgBouncer fixture)

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


class BouncedCluster(Cluster):
    """Processes connect through PgBouncer; the test's own reads go direct."""

    def __init__(self, backend: Backend, tmp_path: Path, bounced_url: str) -> None:
        super().__init__(backend, tmp_path)
        self.bounced_url = bounced_url

    def _env(self, **extra: str) -> dict[str, str]:
        env = super()._env(**extra)
        env["DBOS_SYSTEM_DATABASE_URL"] = self.bounced_url
        env["HO_SIDE_DB_URL"] = self.backend.url  # the app's side-table recorder is not ours
        return env


@pytest.fixture
def cluster(backend: Backend, tmp_path: Path, pgbouncer: int) -> Iterator[Cluster]:  # noqa: F811
    database = backend.url.rsplit("/", 1)[1]
    c = BouncedCluster(backend, tmp_path, f"postgresql://postgres@127.0.0.1:{pgbouncer}/{database}")
    try:
        yield c
    finally:
        c.close()


def test_drain_behind_pgbouncer_hands_back_and_completes_elsewhere(cluster: Cluster) -> None:
    w1 = cluster.start_worker(unique("pb1"), hold=True)
    tags = [unique("pb") for _ in range(4)]
    ids = [cluster.enqueue("ho_a", t, hold_at=3) for t in tags]
    cluster.wait(lambda: len({r.workflow_id for r in cluster.step_runs(ids) if r.step == 3}) == 4,
                 "(all four held at step 3 on the first worker)")
    w2 = cluster.start_worker(unique("pb2"))
    w1.popen.send_signal(signal.SIGTERM)  # --drain-timeout 2: the held steps are handed back
    try:
        code = w1.popen.wait(timeout=20)
    except Exception:
        raise AssertionError(f"the drained worker did not exit:\n{w1.log()}") from None
    assert code == 0, w1.log()
    w1.ended = True
    assert "handed 4 workflow(s) back" in w1.log(), w1.log()
    cluster.wait_done(ids, timeout=40)
    for t, wid in zip(tags, ids):
        assert cluster.result(wid) == expected(t)
    assert cluster.tx_counts() == {wid: 1 for wid in ids}
    finished_on = {r.executor_id for r in cluster.step_runs(ids) if r.step == 5}
    assert finished_on == {w2.name}
    # Steps 1-2 (recorded on the first worker) were not run again.
    for wid in ids:
        assert sorted(r.step for r in cluster.step_runs([wid]) if r.step < 3) == [1, 2]
