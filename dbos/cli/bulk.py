"""``dbos workflow cancel|resume|delete`` over many workflows, and ``dbos workflow gc``.

Each takes one workflow ID (as before) or the filters of ``workflow list``
(``--status PENDING --name charge --queue payments``). ``--dry-run`` lists what
would be touched and changes nothing; more than ``HANDFUL`` workflows need a
``y`` at the prompt, or ``--yes`` (without a terminal the command refuses).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any, Callable

from dbos._execution import management, retention
from dbos.error import DBOSException

HANDFUL = 5
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SEC = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

Command = Callable[[argparse.Namespace], int]


def duration_sec(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` or plain seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 7d, 12h, 30m, 90s)")
    return float(m.group(1)) * _UNIT_SEC[m.group(2)]


def _has_filters(args: argparse.Namespace) -> bool:
    return any(getattr(args, k) is not None for k in
               ("status", "name", "queue", "start_time", "end_time", "app_version", "user", "prefix"))


def _select(client: Any, args: argparse.Namespace) -> list[Any]:
    if args.workflow_id is not None:
        found = client.get_workflow(args.workflow_id)
        if found is None:
            raise DBOSException(f"Workflow {args.workflow_id} does not exist")
        return [found]
    if not _has_filters(args):
        raise DBOSException("give a workflow ID or at least one filter (--status, --name, --queue, ...)")
    f = management.workflow_filter(
        status=args.status.split(",") if args.status else None, start_time=args.start_time,
        end_time=args.end_time, name=args.name, app_version=args.app_version, user=args.user,
        workflow_id_prefix=args.prefix, queue_name=args.queue, limit=args.limit,
    )
    return management.list_workflows(client.runtime, f, load_input=False, load_output=False)


def _confirm(verb: str, count: int, args: argparse.Namespace) -> None:
    if count <= HANDFUL or args.yes:
        return
    if not sys.stdin.isatty():
        raise DBOSException(f"refusing to {verb} {count} workflows without --yes (no terminal to ask)")
    answer = input(f"{verb} {count} workflows? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise DBOSException("nothing done")


def _bulk(verb: str, act: Callable[[Any, list[str], argparse.Namespace], None],
          emit: Callable[[argparse.Namespace, Any, Any], None]) -> Callable[[Any, argparse.Namespace], int]:
    def run(client: Any, args: argparse.Namespace) -> int:
        chosen = _select(client, args)
        ids = [s.workflow_id for s in chosen]
        rows = [{"workflow_id": s.workflow_id, "status": s.status, "name": s.name, "queue_name": s.queue_name}
                for s in chosen]
        if args.dry_run:
            print(f"would {verb} {len(ids)} workflow(s) (dry run: nothing changed)", file=sys.stderr)
            emit(args, rows, ("workflow_id", "status", "name", "queue_name"))
            return 0
        _confirm(verb, len(ids), args)
        act(client, ids, args)
        after = {s.workflow_id: s.status for s in
                 management.list_workflows(client.runtime, management.workflow_filter(workflow_ids=ids),
                                           load_input=False, load_output=False)} if ids else {}
        result = [{"workflow_id": w, "before": r["status"], "after": after.get(w, "(deleted)")}
                  for w, r in zip(ids, rows)]
        print(f"{verb}: {len(ids)} workflow(s)", file=sys.stderr)
        emit(args, result, ("workflow_id", "before", "after"))
        return 0

    return run


def _cancel(client: Any, ids: list[str], args: argparse.Namespace) -> None:
    for w in ids:
        client.cancel_workflow(w)


def _resume(client: Any, ids: list[str], args: argparse.Namespace) -> None:
    for w in ids:
        client.resume_workflow(w)


def _delete(client: Any, ids: list[str], args: argparse.Namespace) -> None:
    client.delete_workflows(ids, delete_children=args.delete_children)


def cmd_gc(client: Any, args: argparse.Namespace, emit: Callable[[argparse.Namespace, Any, Any], None]) -> int:
    if args.older_than is None and args.keep_rows is None:
        raise DBOSException("give --older-than (e.g. 7d) and/or --keep-rows N")
    cutoff = int((time.time() - args.older_than) * 1000) if args.older_than is not None else None
    rt = client.runtime
    if args.dry_run:
        from dbos._storage import retention as store

        cutoffs = [c for c in (cutoff, rt.sys_db.query(lambda c: store.cutoff_for_rows(c, args.keep_rows))
                               if args.keep_rows is not None else None) if c is not None]
        n = rt.sys_db.query(lambda c: store.count_finished_before(c, max(cutoffs))) if cutoffs else 0
        emit(args, {"would_delete": n, "cutoff_ms": max(cutoffs) if cutoffs else None}, None)
        return 0
    result = retention.garbage_collect(rt, cutoff_epoch_timestamp_ms=cutoff, rows_threshold=args.keep_rows,
                                       batch_size=args.batch_size)
    emit(args, {"deleted": result.deleted, "batches": result.batches, "cutoff_ms": result.cutoff_ms,
                "seconds": round(result.seconds, 3)}, None)
    return 0


def add_commands(wsub: Any, common: argparse.ArgumentParser, with_client: Callable[..., Command],
                 single: dict[str, Command],
                 emit: Callable[[argparse.Namespace, Any, Any], None]) -> None:
    """Register cancel, resume, delete and gc under ``dbos workflow``; ``single``: the
    one-ID cancel and resume of cli/main.py (their checks and output stay as they were)."""
    selection = argparse.ArgumentParser(add_help=False)
    selection.add_argument("workflow_id", nargs="?", help="one workflow (or use the filters)")
    selection.add_argument("--status", help="ENQUEUED, PENDING, ... (comma-separated for several)")
    selection.add_argument("--name", help="workflow function name")
    selection.add_argument("--queue", help="queue name")
    selection.add_argument("--start-time", help="created at or after (RFC 3339)")
    selection.add_argument("--end-time", help="created at or before (RFC 3339)")
    selection.add_argument("--app-version", help="application version")
    selection.add_argument("--user", help="authenticated user")
    selection.add_argument("--prefix", help="workflow ID prefix")
    selection.add_argument("--limit", type=int, help="at most this many")
    selection.add_argument("--dry-run", action="store_true", help="list what would be touched; change nothing")
    selection.add_argument("--yes", action="store_true", help=f"no confirmation for more than {HANDFUL}")

    verbs = {
        "cancel": (_cancel, "cancel a workflow, or every workflow matching the filters"),
        "resume": (_resume, "resume a CANCELLED, RETRIES_EXCEEDED or PENDING workflow, or all matching"),
        "delete": (_delete, "delete finished workflows (one, or all matching) and all they recorded"),
    }
    for verb, (act, text) in verbs.items():
        bulk = with_client(_bulk(verb, act, emit))
        one = single.get(verb)

        def dispatch(args: argparse.Namespace, bulk: Command = bulk, one: Any = one) -> int:
            if one is not None and args.workflow_id is not None and not _has_filters(args) and not args.dry_run:
                return int(one(args))
            return int(bulk(args))

        a = wsub.add_parser(verb, parents=[common, selection], help=text)
        if verb == "delete":
            a.add_argument("--delete-children", action="store_true", help="their child workflows too")
        a.set_defaults(func=dispatch)

    gc = wsub.add_parser("gc", parents=[common], help="garbage-collect finished workflows by age and/or count")
    gc.add_argument("--older-than", type=duration_sec, metavar="AGE", help="created longer ago than this (7d, 12h)")
    gc.add_argument("--keep-rows", type=int, metavar="N", help="keep (at least) the newest N workflows")
    gc.add_argument("--batch-size", type=int, default=retention.DEFAULT_BATCH, help="rows per transaction")
    gc.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    gc.set_defaults(func=with_client(lambda client, args: cmd_gc(client, args, emit)))
