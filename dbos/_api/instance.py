"""Where the decorated functions find the launched runtime.

The reference API is a process-wide singleton (``DBOS(config=...)`` then
``DBOS.launch()``), and decorators run before it exists; this holder is the
one place that singleton's runtime is published.
"""

from __future__ import annotations

import threading
from typing import Optional

from dbos._execution import context
from dbos._execution.runtime import Runtime
from dbos.error import DBOSException


class _Holder:
    def __init__(self) -> None:
        self.runtime: Optional[Runtime] = None
        self.lock = threading.Lock()


HOLDER = _Holder()


def runtime() -> Runtime:
    rt = HOLDER.runtime
    if rt is None:
        run = context.current().run
        if run is not None:
            # A workflow still running while DBOS is destroyed: its own runtime, whose
            # next step preempts it (it stays PENDING), never an error it would record.
            return run.runtime
        raise DBOSException(
            "DBOS is not launched: call DBOS(config=...) and DBOS.launch() before running workflows"
        )
    return rt


def maybe_runtime() -> Optional[Runtime]:
    return HOLDER.runtime
