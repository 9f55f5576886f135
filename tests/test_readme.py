"""Issue 17: the README's snippet runs as written (in an empty directory, with nothing but
the installed package), twice: the second run must not replay the first run's outcome."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_snippet_runs_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "no python block in README.md"
    snippet = blocks[0]
    assert "..." not in snippet  # no elided code in what a reader will paste
    (tmp_path / "shop.py").write_text(snippet)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    outputs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "shop.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split()
        assert len(lines) == 2 and lines[0] == lines[1], r.stdout  # run, then the recorded result
        outputs.append(lines[0])
    assert outputs[0] != outputs[1]  # each run is a new order
