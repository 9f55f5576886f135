"""A ``dbos-worker`` app that cannot be imported (tests/test_worker.py)."""

from __future__ import annotations

import w12_no_such_module  # noqa: F401
