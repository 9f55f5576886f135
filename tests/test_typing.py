"""Decorated functions keep their types for type checkers (checked with mypy)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

SNIPPET = '''
from dbos import DBOS, WorkflowHandle, WorkflowHandleAsync


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


async def main() -> None:
    ah = await DBOS.start_workflow_async(awf, 1)
    reveal_type(ah)


reveal_type(wf)
reveal_type(st)
reveal_type(tx)
reveal_type(C().method)
h = DBOS.start_workflow(wf, 1, y="b")
reveal_type(h)
reveal_type(h.get_result())
wf("not an int")
'''

EXPECTED = [
    'Revealed type is "def (x: int, *, y: str =) -> str"',
    'Revealed type is "def (x: int) -> typing.Coroutine[Any, Any, float]"',
    'Revealed type is "def (a: bytes) -> int"',
    'Revealed type is "def (n: int) -> list[int]"',
    'Revealed type is "dbos._api.handles.WorkflowHandle[str]"',
    'Revealed type is "str"',
    'Revealed type is "dbos._api.handles.WorkflowHandleAsync[bytes]"',
    'Argument 1 to "wf" has incompatible type "str"; expected "int"',
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
    for line in EXPECTED:
        assert line in output, f"missing {line!r} in:\n{stdout}{stderr}"
    # Exactly one error: the deliberately wrong call.
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, stdout
