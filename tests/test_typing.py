"""Types survive the public API for type checkers (checked with mypy): decorated functions,
start_workflow / enqueue (and their async variants) and the context managers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

SNIPPET = '''
from dbos import (
    DBOS,
    DBOSContextEnsure,
    DBOSContextSetAuth,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowHandle,
    WorkflowHandleAsync,
)


@DBOS.workflow()
def wf(x: int, *, y: str = "a") -> str:
    return str(x) + y


@DBOS.workflow()
async def awf(x: int) -> bytes:
    return b""


@DBOS.step()
async def st(x: int) -> float:
    return 1.0


@DBOS.transaction()
def tx(a: bytes) -> int:
    return 1


class C:
    @DBOS.step()
    def method(self, n: int) -> list[int]:
        return [n]

    @DBOS.workflow()
    async def ameth(self, n: int) -> dict[str, int]:
        return {}


q = Queue("typing_q")


async def main() -> None:
    ah = await DBOS.start_workflow_async(awf, 1)
    reveal_type(ah)
    reveal_type(await DBOS.start_workflow_async(C().ameth, 2))
    reveal_type(await q.enqueue_async(awf, 1))
    await DBOS.start_workflow_async(awf, "1")
    await q.enqueue_async(awf)


reveal_type(wf)
reveal_type(st)
reveal_type(tx)
reveal_type(C().method)
h = DBOS.start_workflow(wf, 1, y="b")
reveal_type(h)
reveal_type(h.get_result())
reveal_type(q.enqueue(wf, 1, y="b"))
wf("not an int")
DBOS.start_workflow(wf, "1")
q.enqueue(wf, 1, z="b")

# Each context manager's __enter__ returns its own type (not the shared base).
with SetWorkflowID("a") as cm1:
    reveal_type(cm1)
with SetWorkflowTimeout(1.0) as cm2:
    reveal_type(cm2)
with SetEnqueueOptions(priority=1) as cm3:
    reveal_type(cm3)
with DBOSContextEnsure() as cm4:
    reveal_type(cm4)
with DBOSContextSetAuth("u", None) as cm5:
    reveal_type(cm5)
'''

EXPECTED = [
    'Revealed type is "def (x: int, *, y: str =) -> str"',
    'Revealed type is "def (x: int) -> typing.Coroutine[Any, Any, float]"',
    'Revealed type is "def (a: bytes) -> int"',
    'Revealed type is "def (n: int) -> list[int]"',
    'Revealed type is "dbos._api.handles.WorkflowHandle[str]"',
    'Revealed type is "str"',
    'Revealed type is "dbos._api.handles.WorkflowHandleAsync[bytes]"',
    'Revealed type is "dbos._api.handles.WorkflowHandleAsync[dict[str, int]]"',
    'Revealed type is "dbos._api.handles.WorkflowHandle[str]"',
    'Revealed type is "dbos._api.context_managers.SetWorkflowID"',
    'Revealed type is "dbos._api.context_managers.SetWorkflowTimeout"',
    'Revealed type is "dbos._api.context_managers.SetEnqueueOptions"',
    'Revealed type is "dbos._api.context_managers.DBOSContextEnsure"',
    'Revealed type is "dbos._api.context_managers.DBOSContextSetAuth"',
]

# The deliberately wrong calls: start_workflow / enqueue check the workflow's arguments.
EXPECTED_ERRORS = [
    'Argument 1 to "wf" has incompatible type "str"; expected "int"',
    'Argument 2 to "start_workflow_async" of "DBOS" has incompatible type "str"; expected "int"',
    'Missing positional argument "x" in call to "enqueue_async" of "Queue"',
    'Argument 2 to "start_workflow" of "DBOS" has incompatible type "str"; expected "int"',
    'Unexpected keyword argument "z" for "enqueue" of "Queue"',
]


@pytest.mark.slow
def test_decorators_preserve_types_for_mypy(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    api = pytest.importorskip("mypy.api")
    source = tmp_path / "typed_app.py"
    source.write_text(textwrap.dedent(SNIPPET))
    # A cache that outlives the test keeps reruns fast (the first run takes ~15 s).
    cache = Path(str(request.config.rootpath)) / ".mypy_cache" / "tests-typing"
    stdout, stderr, _ = api.run(
        ["--strict", "--show-absolute-path", "--hide-error-context", "--no-pretty",
         "--cache-dir", str(cache), str(source)]
    )
    output = stdout.replace("builtins.", "")  # older mypy versions print builtins.int
    for line in EXPECTED + EXPECTED_ERRORS:
        assert line in output, f"missing {line!r} in:\n{stdout}{stderr}"
    # No other error: only the deliberately wrong calls.
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == len(EXPECTED_ERRORS), stdout
