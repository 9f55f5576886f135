"""The OpenAPI 3.1 document of the console's JSON API (``GET /api/openapi.json``)."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "an error, named", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ID = {"name": "workflow_id", "in": "path", "required": True, "schema": {"type": "string"}}
_FULL = {"name": "full", "in": "query", "schema": {"type": "string", "enum": ["1", "true"]},
         "description": "values in full instead of cut to 2,000 characters"}


def _q(name: str, text: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": text}


_FILTERS = [
    _q("status", "comma-separated: ENQUEUED, PENDING, SUCCESS, ERROR, CANCELLED, RETRIES_EXCEEDED"),
    _q("name", "workflow function name"), _q("queue", "queue name"), _q("app_version", "application version"),
    _q("executor", "executor ID"), _q("prefix", "workflow ID prefix"),
    _q("start_time", "created at or after (RFC 3339)"), _q("end_time", "created at or before (RFC 3339)"),
    _q("limit", "page size (default 50, at most 1000)", "integer"), _q("offset", "skip this many", "integer"),
    {"name": "sort", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]},
     "description": "by creation time (default desc)"},
]


def _get(summary: str, params: list[dict[str, Any]], schema: dict[str, Any], errors: tuple[str, ...] = ()) -> Any:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}
    for code in errors + ("401", "503"):
        responses[code] = _ERROR
    return {"get": {"summary": summary, "parameters": params, "responses": responses}}


def _post(summary: str, params: list[dict[str, Any]], body: dict[str, Any], errors: tuple[str, ...]) -> Any:
    responses: dict[str, Any] = {"200": {"description": "done", "content": {"application/json": {"schema": {"type": "object"}}}}}
    for code in errors + ("401", "403"):
        responses[code] = _ERROR
    return {"post": {"summary": summary, "parameters": params,
                     "requestBody": {"required": False, "content": {"application/json": {"schema": body}}},
                     "responses": responses}}


def _list(ref: str) -> dict[str, Any]:
    return {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"}}


_OBJECT = {"type": "object"}


def openapi() -> dict[str, Any]:
    value = {"type": ["object", "null"], "properties": {"text": {"type": "string"}, "truncated": {"type": "boolean"},
                                                        "length": {"type": "integer"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "dbos console API", "version": "1",
                 "description": "Read the fleet and its workflows; cancel, resume and fork them. POSTs from a "
                                "browser session carry X-CSRF-Token; with DBOS_CONSOLE_TOKEN every call needs "
                                "Authorization: Bearer <token> or the login cookie."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "cookie": {"type": "apiKey", "in": "cookie", "name": "dbos_console_session"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "Value": value,
                "Executor": {"type": "object", "properties": {
                    "executor_id": {"type": "string"}, "app_version": {"type": "string"},
                    "state": {"enum": ["RUNNING", "DRAINING", "STOPPED", "DEAD"]},
                    "heartbeat_age_s": {"type": "number"}, "running": {"type": "integer"},
                    "hostname": {"type": "string"}, "pid": {"type": "integer"}, "started_at": {"type": "integer"}}},
                "Version": _OBJECT, "Queue": _OBJECT, "Launch": _OBJECT,
                "WorkflowRow": {"type": "object", "properties": {
                    "workflow_id": {"type": "string"}, "status": {"type": "string"}, "name": {"type": "string"},
                    "queue_name": {"type": ["string", "null"]}, "executor_id": {"type": ["string", "null"]},
                    "app_version": {"type": ["string", "null"]}, "created_at": {"type": "integer"}}},
                "Step": {"type": "object", "properties": {
                    "function_id": {"type": "integer"}, "function_name": {"type": "string"},
                    "started_at": {"type": ["integer", "null"]}, "completed_at": {"type": ["integer", "null"]},
                    "output": {"$ref": "#/components/schemas/Value"}, "error": {"$ref": "#/components/schemas/Value"},
                    "child_workflow_id": {"type": ["string", "null"]}}},
            },
        },
        "security": [{}, {"bearer": []}, {"cookie": []}],
        "paths": {
            "/api/executors": _get("executors with their derived state", [_q("all", "also rows silent over a day")],
                                   _list("Executor")),
            "/api/versions": _get("per app version: live executors, waiting work, launches", [], _list("Version")),
            "/api/leader": _get("the leading coordinator's lease", [], _OBJECT),
            "/api/launches": _get("recent launches", [_q("hours", "how far back (default 24)", "integer")],
                                  _list("Launch"), ("400",)),
            "/api/queues": _get("per queue: counts, limits, fullness, starts per minute",
                                [_q("minutes", "chart span (default 15)", "integer")], _list("Queue"), ("400",)),
            "/api/workflows": _get("workflows, filtered and paged as list_workflows", _FILTERS, {
                "type": "object", "properties": {"workflows": _list("WorkflowRow"), "limit": {"type": "integer"},
                                                 "offset": {"type": "integer"},
                                                 "next_offset": {"type": ["integer", "null"]}}}, ("400",)),
            "/api/workflows/{workflow_id}": _get("one workflow: status, input, output, error, children",
                                                 [_ID, _FULL], _OBJECT, ("400", "404")),
            "/api/workflows/{workflow_id}/steps": _get("its recorded steps with timings", [_ID, _FULL],
                                                       _list("Step"), ("400", "404")),
            "/api/workflows/{workflow_id}/events": _get("its events and undelivered messages", [_ID, _FULL],
                                                        _OBJECT, ("400", "404")),
            "/api/workflows/{workflow_id}/cancel": _post("cancel it", [_ID], _OBJECT, ("400", "404")),
            "/api/workflows/{workflow_id}/resume": _post("resume it", [_ID], _OBJECT, ("400", "404", "409")),
            "/api/workflows/{workflow_id}/fork": _post("fork it from a step, optionally onto another version", [_ID], {
                "type": "object", "required": ["start_step"],
                "properties": {"start_step": {"type": "integer", "minimum": 1},
                               "app_version": {"type": ["string", "null"]}}}, ("400", "404")),
            "/api/workflows/bulk": _post("cancel or resume every workflow the filters match (at most 1,000)", [], {
                "type": "object", "required": ["action"],
                "properties": {"action": {"enum": ["cancel", "resume"]},
                               "filters": {"type": "object", "additionalProperties": {"type": "string"}}}},
                ("400",)),
            "/api/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OK"}}}},
        },
    }
