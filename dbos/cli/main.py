"""The ``dbos`` command. Errors are one clear line and a non-zero exit, never a traceback.

Connection: ``--db-url`` or ``$DBOS_SYSTEM_DATABASE_URL``; ``--redis-url`` or
``$DBOS_REDIS_URL`` (optional, for instant wakeups of other processes).

Timestamps: tables and ``workflow get`` print them as RFC 3339 UTC with
milliseconds (``2026-12-01T10:09:17.123Z``); ``--json`` keeps them as epoch
milliseconds, exactly as ``WorkflowStatus`` holds them (docs/decisions.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any, Callable, Optional, Sequence

from dbos._api.migrate import migrate_databases
from dbos._config.settings import normalize_database_url
from dbos._storage.database import Database
from dbos._storage.migrations import migrate_system, require_system_tables
from dbos.cli import argtypes, bulk
from dbos.error import DBOSException, DBOSNonExistentWorkflowError

_STATUS_COLUMNS = ("workflow_id", "status", "name", "queue_name", "executor_id", "app_version", "created_at")
# Fields holding epoch milliseconds: shown as RFC 3339 to people, left as numbers in --json.
_TIMESTAMP_FIELDS = frozenset({"created_at", "updated_at", "started_at", "workflow_deadline_epoch_ms"})


def _db_url(args: argparse.Namespace) -> str:
    # --db-url after the subcommand, else before it (``dbos --db-url URL workflow list``).
    url = args.db_url or getattr(args, "global_db_url", None) or os.environ.get("DBOS_SYSTEM_DATABASE_URL")
    if not url:
        raise DBOSException("no database: pass --db-url or set DBOS_SYSTEM_DATABASE_URL")
    return normalize_database_url(url, "--db-url")


def _client(args: argparse.Namespace) -> Any:
    from dbos._api.client import DBOSClient

    return DBOSClient(
        _db_url(args),
        redis_url=args.redis_url or os.environ.get("DBOS_REDIS_URL") or None,
        system_database_schema=args.schema,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _status_dict(status: Any) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in vars(status).items()}


def rfc3339(epoch_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 in UTC, to the millisecond: ``2026-12-01T10:09:17.123Z``."""
    seconds, millis = divmod(int(epoch_ms), 1000)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def _readable(row: dict[str, Any]) -> dict[str, Any]:
    """A row as people read it: timestamps in RFC 3339."""
    return {
        k: rfc3339(v) if k in _TIMESTAMP_FIELDS and isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in row.items()
    }


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _emit(args: argparse.Namespace, data: Any, columns: Optional[Sequence[str]] = None) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif isinstance(data, list) and columns is not None:
        print(_table([_readable(row) for row in data], columns))
    elif isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for key, value in _readable(data).items():
            print(f"{key.ljust(width)}  {value}")
    else:
        print(data)


def _filters(args: argparse.Namespace, queued: bool) -> dict[str, Any]:
    f: dict[str, Any] = {
        "status": args.status,
        "start_time": args.start_time,
        "end_time": args.end_time,
        "name": args.name,
        "limit": args.limit,
        "offset": args.offset,
        "sort_desc": args.sort_desc,
    }
    if queued:
        f["queue_name"] = args.queue
    else:
        f.update(app_version=args.app_version, user=args.user, workflow_id_prefix=args.prefix)
    return f


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = migrate_databases(_db_url(args), args.app_db_url, args.schema, args.app_role)
    if args.json:
        print(json.dumps({"migrations_applied": applied}))
    else:
        print(f"migrations applied: {applied}" if applied else "database is up to date")
    return 0


def _require_system_database(args: argparse.Namespace) -> None:
    """Commands that read or manage workflows never create a database, schema or file:
    a typo in --db-url or --schema is an error naming what does not exist (only
    ``dbos migrate`` creates them)."""
    url = _db_url(args)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1].split("?", 1)[0]
        if not os.path.exists(path):
            raise DBOSException(f"SQLite database file {path} does not exist (dbos migrate creates it)")
    db = Database(url, args.schema, 1)
    try:
        require_system_tables(db, "the SQLite file" if url.startswith("sqlite") else f"schema {args.schema!r} of this database")
    finally:
        db.dispose()


def _with_client(fn: Callable[[Any, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        _require_system_database(args)  # then the client's own migration has nothing to do
        client = _client(args)
        try:
            return fn(client, args)
        finally:
            client.destroy()

    return run


@_with_client
def cmd_list(client: Any, args: argparse.Namespace) -> int:
    # The table shows no inputs or outputs: only --json loads them (they may be large).
    loads = {"load_input": args.json, "load_output": args.json}
    rows = [_status_dict(s) for s in client.list_workflows(**_filters(args, queued=False), **loads)]
    _emit(args, rows, _STATUS_COLUMNS)
    return 0


@_with_client
def cmd_queue_list(client: Any, args: argparse.Namespace) -> int:
    loads = {"load_input": args.json}  # as cmd_list
    rows = [_status_dict(s) for s in client.list_queued_workflows(**_filters(args, queued=True), **loads)]
    _emit(args, rows, _STATUS_COLUMNS)
    return 0


@_with_client
def cmd_get(client: Any, args: argparse.Namespace) -> int:
    status = client.get_workflow(args.workflow_id)
    if status is None:
        raise DBOSNonExistentWorkflowError(args.workflow_id)
    _emit(args, _status_dict(status))
    return 0


@_with_client
def cmd_steps(client: Any, args: argparse.Namespace) -> int:
    if client.get_workflow(args.workflow_id) is None:
        raise DBOSNonExistentWorkflowError(args.workflow_id)
    rows = [_jsonable(dict(s)) for s in client.list_workflow_steps(args.workflow_id)]
    _emit(args, rows, ("function_id", "function_name", "output", "error", "child_workflow_id"))
    return 0


@_with_client
def cmd_cancel(client: Any, args: argparse.Namespace) -> int:
    if client.get_workflow(args.workflow_id) is None:  # cancel itself ignores an unknown ID
        raise DBOSNonExistentWorkflowError(args.workflow_id)
    client.cancel_workflow(args.workflow_id)
    after = client.get_workflow(args.workflow_id)  # report what the database says, not what we asked
    status = after.status if after is not None else None
    if status != "CANCELLED":
        raise DBOSException(f"Workflow {args.workflow_id} is {status}: it had already finished, not cancelled")
    _emit(args, {"workflow_id": args.workflow_id, "status": status})
    return 0


@_with_client
def cmd_resume(client: Any, args: argparse.Namespace) -> int:
    before = client.get_workflow(args.workflow_id)
    if before is not None and before.status in ("SUCCESS", "ERROR"):  # resume leaves these alone
        raise DBOSException(f"Workflow {args.workflow_id} is {before.status}: finished, nothing to resume")
    handle = client.resume_workflow(args.workflow_id)
    _emit(args, {"workflow_id": handle.workflow_id, "resumed": True})
    return 0


@_with_client
def cmd_fork(client: Any, args: argparse.Namespace) -> int:
    from dbos._api.context_managers import SetWorkflowID

    step = _failed_step(client, args.workflow_id) if args.from_failure else args.step
    if args.forked_workflow_id:
        with SetWorkflowID(args.forked_workflow_id):
            handle = client.fork_workflow(args.workflow_id, step, application_version=args.app_version)
    else:
        handle = client.fork_workflow(args.workflow_id, step, application_version=args.app_version)
    _emit(args, {"workflow_id": handle.workflow_id, "forked_from": args.workflow_id, "start_step": step,
                 "app_version": args.app_version})
    return 0


def _failed_step(client: Any, workflow_id: str) -> int:
    """``--from-failure``: the first step that recorded an error, else (the workflow
    failed in its own code) the step after the last one recorded."""
    status = client.get_workflow(workflow_id)
    if status is None:
        raise DBOSException(f"Workflow {workflow_id} does not exist")
    if status.status not in ("ERROR", "RETRIES_EXCEEDED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED", "CANCELLED"):
        raise DBOSException(f"--from-failure: workflow {workflow_id} did not fail (it is {status.status})")
    steps = client.list_workflow_steps(workflow_id)
    failed = [s["function_id"] for s in steps if s.get("error") is not None]
    if failed:
        return int(min(failed))
    return max((int(s["function_id"]) for s in steps), default=0) + 1


_VERSION_COLUMNS = ("app_version", "latest", "live_executors", "waiting", "oldest_waiting_age_s",
                    "launches_in_flight", "enqueued", "running")


def cmd_fleet_versions(args: argparse.Namespace) -> int:
    from dbos._execution.fleet import versions_view

    db = Database(_db_url(args), args.schema)
    try:
        migrate_system(db)
        rows = versions_view(db, args.dead_after)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows, _VERSION_COLUMNS))
    return 0


_EXECUTOR_COLUMNS = ("executor_id", "app_version", "state", "heartbeat_age_s", "running", "hostname", "pid", "queues")
_DAY_MS = 24 * 3600 * 1000


def cmd_fleet_executors(args: argparse.Namespace) -> int:
    from dbos._execution.fleet import executor_view

    db = Database(_db_url(args), args.schema)
    try:
        migrate_system(db)
        rows = executor_view(db, args.dead_after, None if args.all else _DAY_MS)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        shown = [{**r, "queues": "all" if r["queues"] is None else ",".join(r["queues"])} for r in rows]
        print(_table(shown, _EXECUTOR_COLUMNS))
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from dbos._api.console import serve

    return serve(_db_url(args), args.schema, args.redis_url or os.environ.get("DBOS_REDIS_URL") or None,
                 args.host, args.port, args.dead_after, os.environ.get("DBOS_CONSOLE_TOKEN") or None)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db-url", help="system database URL (default: $DBOS_SYSTEM_DATABASE_URL)")
    common.add_argument("--redis-url", help="Redis URL for wakeups (default: $DBOS_REDIS_URL)")
    common.add_argument("--schema", default="dbos", help="system schema on PostgreSQL (default: dbos)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--status", help="ENQUEUED, PENDING, SUCCESS, ERROR, CANCELLED or RETRIES_EXCEEDED")
    listing.add_argument("--start-time", help="created at or after (RFC 3339)")
    listing.add_argument("--end-time", help="created at or before (RFC 3339)")
    listing.add_argument("--name", help="workflow function name")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.add_argument("--offset", type=int, help="skip this many")
    listing.add_argument("--sort-desc", action="store_true", help="newest first")

    p = argparse.ArgumentParser(prog="dbos", description="Manage dbos-fleet workflows and databases")
    p.add_argument("--db-url", dest="global_db_url", help="as --db-url after the subcommand")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", parents=[common], help="create or upgrade the system (and application) database")
    m.add_argument("--app-db-url", help="application database URL (default: the system database)")
    m.add_argument("--app-role", help="PostgreSQL role to grant use of the system schema (it may lack DDL rights)")
    m.set_defaults(func=cmd_migrate)

    wf = sub.add_parser("workflow", help="list, inspect, cancel, resume and fork workflows")
    wsub = wf.add_subparsers(dest="action", required=True)
    lst = wsub.add_parser("list", parents=[common, listing], help="list workflows")
    lst.add_argument("--app-version", help="application version")
    lst.add_argument("--user", help="authenticated user")
    lst.add_argument("--prefix", help="workflow ID prefix")
    lst.set_defaults(func=cmd_list)
    for action, func, text in (
        ("get", cmd_get, "show one workflow"),
        ("steps", cmd_steps, "list a workflow's recorded steps"),
    ):
        a = wsub.add_parser(action, parents=[common], help=text)
        a.add_argument("workflow_id")
        a.set_defaults(func=func)
    # cancel / resume / delete: one ID or the list filters (bulk, --dry-run, --yes); gc (issue 16)
    bulk.add_commands(wsub, common, _with_client, {"cancel": cmd_cancel, "resume": cmd_resume}, _emit)
    fk = wsub.add_parser("fork", parents=[common], help="start a new workflow from a step of another")
    fk.add_argument("workflow_id")
    fk_from = fk.add_mutually_exclusive_group()
    fk_from.add_argument("--step", type=int, default=1, help="first step to re-run (default 1)")
    fk_from.add_argument("--from-failure", action="store_true",
                         help="re-run from the step that failed (the patch-fork: pair it with --app-version)")
    fk.add_argument("--app-version", help="run the fork on executors of this version")
    fk.add_argument("--forked-workflow-id", help="ID of the new workflow")
    fk.set_defaults(func=cmd_fork)

    q = sub.add_parser("queue", help="inspect queues")
    qsub = q.add_subparsers(dest="action", required=True)
    ql = qsub.add_parser("list", parents=[common, listing], help="list enqueued and running queued workflows")
    ql.add_argument("--queue", help="queue name")
    ql.set_defaults(func=cmd_queue_list)

    fl = sub.add_parser("fleet", help="inspect the fleet's executors")
    fsub = fl.add_subparsers(dest="action", required=True)
    fe = fsub.add_parser("executors", parents=[common], help="list executors and their derived state")
    fe.add_argument("--dead-after", type=argtypes.positive_seconds, default=3.0, metavar="SEC",
                    help="a RUNNING or DRAINING executor silent this long shows as DEAD (default 3)")
    fe.add_argument("--all", action="store_true", help="also stopped and dead executors older than a day")
    fe.set_defaults(func=cmd_fleet_executors)
    fv = fsub.add_parser("versions", parents=[common], help="per app version: executors, waiting work, launches")
    fv.add_argument("--dead-after", type=argtypes.positive_seconds, default=3.0, metavar="SEC",
                    help="a RUNNING executor silent this long is not live (default 3)")
    fv.set_defaults(func=cmd_fleet_versions)

    co = sub.add_parser("console", parents=[common], help="serve the fleet console (pages and /api/) over HTTP")
    co.add_argument("--host", default="127.0.0.1",
                    help="address (default 127.0.0.1; any other requires $DBOS_CONSOLE_TOKEN)")
    co.add_argument("--port", type=int, default=8089, help="port (default 8089)")
    co.add_argument("--dead-after", type=argtypes.positive_seconds, default=3.0, metavar="SEC",
                    help="a RUNNING or DRAINING executor silent this long shows as DEAD (default 3)")
    co.set_defaults(func=cmd_console)
    return p


def _error(args: argparse.Namespace, e: BaseException, text: str) -> int:
    """One line on stderr; with --json, one JSON object with the library's error code."""
    if getattr(args, "json", False):
        code = getattr(e, "dbos_error_code", None)
        print(json.dumps({"error": text, "type": type(e).__name__, "dbos_error_code": code}), file=sys.stderr)
    else:
        print(f"dbos: error: {text}", file=sys.stderr)
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (``dbos workflow list | head``): no error, no traceback at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except DBOSException as e:
        return _error(args, e, str(e).splitlines()[0] if str(e) else type(e).__name__)
    except Exception as e:  # a database that is down, a bad URL, ...
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return _error(args, e, f"{type(e).__name__}: {text}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
