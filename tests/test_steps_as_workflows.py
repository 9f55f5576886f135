"""Steps and transactions as workflows (issue 18), as in DBOS Transact 2.31.1: a
transaction called outside a workflow is a one-step temporary workflow; a step or a
transaction can be started or enqueued as one; role checks, step numbering and
unserializable results behave as DBOS's do."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import Backend, Harness

from dbos import DBOS, SetWorkflowID
from dbos.error import DBOSSerializationError


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


# -- item 14: an unpicklable step result ------------------------------------------


def test_unpicklable_step_result_is_a_type_error(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def returns_lock() -> Any:
        counter.hit("step")
        return threading.Lock()

    @DBOS.workflow()
    def wf() -> str:
        try:
            returns_lock()
        except TypeError as e:  # what DBOS code catches
            assert isinstance(e, DBOSSerializationError)
            return "caught"
        return "not raised"

    with SetWorkflowID("unpicklable-step"):
        assert wf() == "caught"
    assert counter["step"] == 1
    # The replay raises the same type (the step is recorded with its error).
    backend.force_pending("unpicklable-step")
    with SetWorkflowID("unpicklable-step"):
        assert wf() == "caught"
    assert counter["step"] == 1


def test_unpicklable_workflow_result_is_a_type_error(dbos: Harness) -> None:
    @DBOS.workflow()
    def wf() -> Any:
        return threading.Lock()

    with pytest.raises(TypeError):
        wf()


# -- item 13: retries outside a workflow --------------------------------------------


def test_step_with_retries_outside_a_workflow_runs_once(dbos: Harness) -> None:
    counter = Counter()

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=5)
    def fails() -> None:
        counter.hit("fails")
        raise ValueError("own error")

    with pytest.raises(ValueError, match="own error"):
        fails()
    assert counter["fails"] == 1

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=5)
    async def fails_async() -> None:
        counter.hit("async")
        raise KeyError("own async error")

    import asyncio

    with pytest.raises(KeyError):
        asyncio.run(fails_async())
    assert counter["async"] == 1
