"""A small OTLP/HTTP receiver for tests: spans and log records, decoded with opentelemetry-proto.

``OTLPReceiver`` runs an ``http.server`` on a loopback port (chosen by the OS) in a
daemon thread. It accepts ``POST /v1/traces`` and ``POST /v1/logs`` with protobuf
bodies (optionally gzip-compressed), decodes them as ``ExportTraceServiceRequest`` /
``ExportLogsServiceRequest`` and keeps flattened copies (``ReceivedSpan``,
``ReceivedLog``) that tests read back. It answers 200 with the empty protobuf
response the exporters expect. Anything else gets 404 (unknown path) or 400 (a body
that does not decode).

    with OTLPReceiver() as rx:
        config["otlp_traces_endpoints"] = [rx.traces_url]
        ...
        spans = rx.wait_for_spans(lambda spans: any(s.name == "wf" for s in spans))
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    return getattr(v, kind)


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str


@dataclass(frozen=True)
class ReceivedLog:
    body: Any
    severity: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    trace_id: str
    span_id: str


@dataclass
class _Store:
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)
    spans: list[ReceivedSpan] = field(default_factory=list)
    logs: list[ReceivedLog] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, content-type)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


def decode_traces(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out: list[ReceivedSpan] = []
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        attributes=_attributes(s.attributes),
                        resource=resource,
                        scope=ss.scope.name,
                    )
                )
    return out


def decode_logs(body: bytes) -> list[ReceivedLog]:
    request = ExportLogsServiceRequest()
    request.ParseFromString(body)
    out: list[ReceivedLog] = []
    for rl in request.resource_logs:
        resource = _attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append(
                    ReceivedLog(
                        body=_value(r.body),
                        severity=r.severity_text,
                        attributes=_attributes(r.attributes),
                        resource=resource,
                        trace_id=r.trace_id.hex(),
                        span_id=r.span_id.hex(),
                    )
                )
    return out


def _handler(store: _Store) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path == "/v1/traces":
                    spans = decode_traces(body)
                    response = ExportTraceServiceResponse().SerializeToString()
                    with store.changed:
                        store.spans.extend(spans)
                elif self.path == "/v1/logs":
                    logs = decode_logs(body)
                    response = ExportLogsServiceResponse().SerializeToString()
                    with store.changed:
                        store.logs.extend(logs)
                else:
                    self._reply(404, b"")
                    return
            except Exception as e:  # noqa: BLE001 - a body that does not decode
                self._reply(400, str(e).encode())
                return
            with store.changed:
                store.requests.append((self.path, self.headers.get("Content-Type") or ""))
                store.changed.notify_all()
            self._reply(200, response)

        def _reply(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    return Handler


class OTLPReceiver:
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self._store = _Store()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._store))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        return f"{self.base_url}/v1/traces"

    @property
    def logs_url(self) -> str:
        return f"{self.base_url}/v1/logs"

    def start(self) -> "OTLPReceiver":
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "OTLPReceiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- what was received ---------------------------------------------------------
    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._store.lock:
            return list(self._store.spans)

    @property
    def logs(self) -> list[ReceivedLog]:
        with self._store.lock:
            return list(self._store.logs)

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._store.lock:
            return list(self._store.requests)

    def _wait(self, get: Callable[[], list[Any]], ok: Callable[[list[Any]], bool], timeout: float, what: str) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._store.changed:
            while True:
                items = get()
                if ok(items):
                    return items
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the OTLP receiver did not get {what} within {timeout}s; got {items!r}")
                self._store.changed.wait(left)

    def wait_for_spans(self, ok: Callable[[list[ReceivedSpan]], bool], timeout: float = 20) -> list[ReceivedSpan]:
        return self._wait(lambda: list(self._store.spans), ok, timeout, "the expected spans")

    def wait_for_logs(self, ok: Callable[[list[ReceivedLog]], bool], timeout: float = 20) -> list[ReceivedLog]:
        return self._wait(lambda: list(self._store.logs), ok, timeout, "the expected log records")
