"""Helpers shared by the auth, classes, context-manager, tracing and logging tests (issue 6).

- ``AuthApp``: runs tests/apps/auth_app.py as a real executor process (its own
  DBOS__VMID); the app appends one JSON line per event to a marks file, which is
  how a test sees what ran, where, and as whom.
- ``SpanCapture`` / ``span_capture()``: an OpenTelemetry SDK TracerProvider with an
  in-memory exporter, installed as the global provider only while a test asks for
  it (see ``spans`` in test_tracing.py), so other tests still see "no provider".
- ``LogCapture``: a logging handler that keeps the records of the ``dbos`` logger.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from conftest import Backend, eventually
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

APPS = Path(__file__).parent / "apps"
AUTH_APP = APPS / "auth_app.py"


def wid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- the subprocess app ---------------------------------------------------------------


class AuthApp:
    """One run of tests/apps/auth_app.py: ``AuthApp(backend, tmp_path, mode, workflow_id, vmid).start()``."""

    def __init__(
        self,
        backend: Backend,
        tmp_path: Path,
        mode: str,
        workflow_id: str,
        vmid: str,
        *,
        env: Optional[dict[str, str]] = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.marks = tmp_path / "marks.jsonl"
        self.release = tmp_path / "release"
        self.args = [sys.executable, str(AUTH_APP), backend.url, str(self.marks), str(self.release), mode,
                     workflow_id, *extra]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS_") and not k.startswith("OTEL_")}
        self.env["DBOS__VMID"] = vmid
        self.env.update(env or {})
        self.proc: Optional[subprocess.Popen[str]] = None

    def start(self) -> "AuthApp":
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return self

    def events(self) -> list[dict[str, Any]]:
        return read_marks(self.marks)

    def alive(self) -> None:
        """Fail (with its output) if the app already exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            code, out, err = self.finish()
            pytest.fail(f"app exited early ({code})\nstdout:\n{out}\nstderr:\n{err}")

    def kill_when(self, condition: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = 60) -> None:
        """SIGKILL the app once ``condition(events)`` holds."""
        assert self.proc is not None

        def reached() -> bool:
            self.alive()
            return condition(self.events())

        try:
            eventually(reached, timeout=timeout, interval=0.02, what=what)
            os.kill(self.proc.pid, signal.SIGKILL)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.communicate(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"app did not finish in {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
        return self.proc.returncode, out, err

    def result(self, timeout: float = 60) -> Any:
        """Wait for the app to exit 0 and return the JSON it printed after ``RESULT``."""
        code, out, err = self.finish(timeout)
        assert code == 0, f"app failed ({code})\nstdout:\n{out}\nstderr:\n{err}"
        for line in out.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        pytest.fail(f"app printed no RESULT\nstdout:\n{out}\nstderr:\n{err}")


def read_marks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written when the process was killed
    return out


# -- spans --------------------------------------------------------------------------


class SpanCapture:
    """A TracerProvider whose spans land in an InMemorySpanExporter (synchronously).

    OpenTelemetry lets a process set its global TracerProvider once. This one
    provider object is made global while a test uses it and then unset again
    (``uninstall``), so DBOS in the other tests of the same worker process still
    runs with no provider (its spans skipped), exactly as it would in their own
    process. The provider object itself is created once per process.
    """

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "dbos-tests"}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("dbos-tests")

    def install(self) -> None:
        current = trace.get_tracer_provider()
        if current is self.provider:
            return
        if not isinstance(current, trace.ProxyTracerProvider):
            pytest.fail(f"another TracerProvider is already installed globally in this process: {current!r}")
        trace.set_tracer_provider(self.provider)
        assert trace.get_tracer_provider() is self.provider

    def uninstall(self) -> None:
        """Back to "no global TracerProvider" (OpenTelemetry's own test utilities do the same)."""
        if trace.get_tracer_provider() is not self.provider:
            return
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
        trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
        # A ProxyTracer obtained before (DBOS takes one at import) caches the real tracer
        # it found: forget it, so a provider installed later is the one it uses.
        from dbos._telemetry.tracing import TRACERS

        if isinstance(TRACERS.default, trace.ProxyTracer) and hasattr(TRACERS.default, "_real_tracer"):
            TRACERS.default._real_tracer = None

    def clear(self) -> None:
        self.exporter.clear()

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def of_workflow(self, workflow_id: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if (s.attributes or {}).get("dbos.workflow_id") == workflow_id]

    def wait_for(
        self,
        condition: Callable[[list[ReadableSpan]], bool],
        prefix: Optional[str] = None,
        what: str = "",
        timeout: float = 10,
    ) -> list[ReadableSpan]:
        """Wait until ``condition(spans)`` holds (spans of workflows run in the background end
        just after their result is set). With ``prefix``: only the DBOS spans of workflows whose
        ID starts with it (a test's workflow and its children, ``<id>-<step>``), so a stray span
        of another test's leftover thread cannot interfere."""

        def ready() -> list[ReadableSpan]:
            found = self.finished()
            if prefix is not None:
                found = [s for s in found if str((s.attributes or {}).get("dbos.workflow_id", "")).startswith(prefix)]
            return found if condition(found) else []

        return eventually(ready, timeout=timeout, what=what or "(the expected spans)")


_capture: Optional[SpanCapture] = None
_capture_lock = threading.Lock()


def span_capture() -> SpanCapture:
    global _capture
    with _capture_lock:
        if _capture is None:
            _capture = SpanCapture()
        return _capture


def span_id(span: Any) -> str:
    return format(span.context.span_id, "016x")


def trace_id(span: Any) -> str:
    return format(span.context.trace_id, "032x")


def parent_id(span: Any) -> Optional[str]:
    return format(span.parent.span_id, "016x") if span.parent is not None else None


# -- logs ---------------------------------------------------------------------------


class LogCapture(logging.Handler):
    """Keeps every record the ``dbos`` logger handles; use as a context manager."""

    def __init__(self, logger_name: str = "dbos") -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock2 = threading.Lock()
        self._logger = logging.getLogger(logger_name)

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def __enter__(self) -> "LogCapture":
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._logger.removeHandler(self)

    def matching(self, text: str) -> list[logging.LogRecord]:
        with self._lock2:
            return [r for r in self.records if text in r.getMessage()]
