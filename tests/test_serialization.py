"""Serialization: any picklable value round-trips; a non-serializable argument fails at
the call and writes nothing; a non-serializable result is recorded as an error."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import threading
from typing import Any

import pytest
from conftest import Backend, Harness

from dbos import DBOS, DBOSException, SetWorkflowID
from dbos.error import DBOSSerializationError


@dataclasses.dataclass(frozen=True)
class Money:
    amount: decimal.Decimal
    currency: str


class Unpicklable(Exception):
    """An exception that carries something pickle cannot handle."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.lock = threading.Lock()


RAN: list[str] = []


@DBOS.workflow()
def echo_workflow(*args: Any, **kwargs: Any) -> Any:
    RAN.append("echo")
    return args, kwargs


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


@pytest.mark.parametrize(
    "bad",
    [lambda: 1, threading.Lock(), (x for x in range(3))],
    ids=["lambda", "lock", "generator"],
)
def test_unserializable_argument_fails_at_the_call_and_writes_nothing(
    dbos: Harness, backend: Backend, bad: Any
) -> None:
    with SetWorkflowID("bad-arg"):
        with pytest.raises(DBOSSerializationError) as info:
            echo_workflow(1, bad)
    assert isinstance(info.value, DBOSException)
    assert "echo_workflow" in str(info.value)
    with pytest.raises(DBOSSerializationError):
        DBOS.start_workflow(echo_workflow, key=bad)
    assert RAN == []
    assert backend.workflow_count() == 0
    assert backend.scalar(f"SELECT count(*) FROM {backend.table('operation_outputs')}") == 0
    # The ID was not consumed: it can still be used.
    with SetWorkflowID("bad-arg"):
        assert echo_workflow(1) == ((1,), {})


def test_unserializable_argument_of_a_child_fails_in_the_parent(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def parent() -> str:
        try:
            echo_workflow(threading.Lock())
        except DBOSSerializationError:
            return "refused"
        return "accepted"

    with SetWorkflowID("ser-parent"):
        assert parent() == "refused"
    assert backend.workflow_count() == 1  # no child row


def test_unserializable_workflow_result_is_recorded_as_error(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def returns_lock() -> Any:
        return threading.Lock()

    with SetWorkflowID("bad-result"):
        with pytest.raises(DBOSSerializationError):
            returns_lock()
    assert backend.status("bad-result") == "ERROR"
    status = DBOS.retrieve_workflow("bad-result").get_status()
    assert status.status == "ERROR"
    assert isinstance(status.error, DBOSSerializationError)
    with SetWorkflowID("bad-result"):
        with pytest.raises(DBOSSerializationError):
            returns_lock()
    handle = DBOS.start_workflow(returns_lock)
    with pytest.raises(DBOSSerializationError):
        handle.get_result()
    assert handle.get_status().status == "ERROR"


def test_unserializable_step_result_is_recorded_as_step_error(dbos: Harness, backend: Backend) -> None:
    calls: list[int] = []

    @DBOS.step()
    def lock_step() -> Any:
        calls.append(1)
        return threading.Lock()

    @DBOS.workflow()
    def wf() -> str:
        try:
            lock_step()
        except DBOSSerializationError:
            return "step failed"
        return "step passed"

    with SetWorkflowID("bad-step"):
        assert wf() == "step failed"
    error = backend.scalar(
        f"SELECT error FROM {backend.table('operation_outputs')} WHERE workflow_uuid = 'bad-step'"
    )
    assert error is not None
    backend.force_pending("bad-step")
    with SetWorkflowID("bad-step"):
        assert wf() == "step failed"
    assert calls == [1]


def test_unpicklable_exception_keeps_its_type_on_replay(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def raises_unpicklable() -> None:
        raise Unpicklable("carries a lock")

    with SetWorkflowID("bad-error"):
        with pytest.raises(Unpicklable):
            raises_unpicklable()  # the caller sees the real exception
    assert backend.status("bad-error") == "ERROR"
    # Later readers (and replays) see the same type with the same message (issue 17 item 8),
    # rebuilt from its import path and text; what pickle could not keep (the lock) is gone.
    with pytest.raises(Unpicklable, match="^carries a lock$") as info:
        DBOS.retrieve_workflow("bad-error").get_result()
    assert not hasattr(info.value, "lock")


class _Local:
    class Hidden(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(f"code {code}")
            self.code = code
            self.lock = threading.Lock()

        def __str__(self) -> str:
            return f"hidden {self.code}"


def test_unpicklable_exception_that_cannot_be_rebuilt_is_a_dbos_exception_on_replay(
    dbos: Harness, backend: Backend
) -> None:
    @DBOS.step()
    def fails() -> None:
        raise _Local.Hidden(7)  # its __str__ needs an attribute the record cannot keep

    @DBOS.workflow()
    def wf() -> None:
        fails()

    with SetWorkflowID("bad-error-2"), pytest.raises(DBOSException, match="_Local.Hidden: hidden 7") as first:
        wf()  # the step raises what every replay will raise, caused by the original
    assert isinstance(first.value.__cause__, _Local.Hidden)
    with pytest.raises(DBOSException, match="_Local.Hidden: hidden 7"):
        DBOS.retrieve_workflow("bad-error-2").get_result()
    backend.force_pending("bad-error-2")
    dbos.restart()  # the step's recorded error replays as the same documented wrapper
    with pytest.raises(DBOSException, match="_Local.Hidden: hidden 7"):
        DBOS.retrieve_workflow("bad-error-2").get_result()


def test_picklable_values_round_trip(dbos: Harness, backend: Backend) -> None:
    value = {
        "money": Money(decimal.Decimal("9.99"), "EUR"),
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "set": frozenset({1, 2}),
        "bytes": b"\x00\xff",
        "nested": [(1, None), {"k": [1.5, True]}],
        "big": 2**80,
    }

    @DBOS.step()
    def identity(v: Any) -> Any:
        return v

    @DBOS.workflow()
    def wf(v: Any, *, tag: str) -> Any:
        return identity(v), tag

    with SetWorkflowID("roundtrip"):
        assert wf(value, tag="t") == (value, "t")
    status = DBOS.retrieve_workflow("roundtrip").get_status()
    assert status.input == {"args": (value,), "kwargs": {"tag": "t"}}
    assert status.output == (value, "t")
    # Replayed outputs come from the database, equal to the originals.
    backend.force_pending("roundtrip")
    with SetWorkflowID("roundtrip"):
        assert wf(value, tag="t") == (value, "t")


def test_custom_exception_round_trips_through_the_database(dbos: Harness) -> None:
    @DBOS.workflow()
    def fails() -> None:
        raise ValueError("bad value", 42)

    handle = DBOS.start_workflow(fails)
    with pytest.raises(ValueError):
        handle.get_result()
    err = handle.get_status().error
    assert isinstance(err, ValueError) and err.args == ("bad value", 42)


def test_dbos_exceptions_are_picklable() -> None:
    import pickle

    from dbos.error import DBOSMaxStepRetriesExceeded, DBOSNonExistentWorkflowError, DBOSUnexpectedStepError

    for err in (
        DBOSNonExistentWorkflowError("w"),
        DBOSUnexpectedStepError("w", 1, "a", "b"),
        DBOSMaxStepRetriesExceeded("s", 3, [ValueError("x")]),
        DBOSSerializationError("s"),
    ):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert str(copy) == str(err)
        assert copy.dbos_error_code == err.dbos_error_code
