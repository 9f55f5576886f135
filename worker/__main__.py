"""``dbos-worker APP``: run a DBOS app as one executor of a fleet.

Imports the app (a ``.py`` path, a dotted module, or ``module:attr``), launches
DBOS under an executor ID no live process holds, serves the admin endpoints
when asked, and on SIGTERM / SIGINT drains: no more claims, up to
``--drain-timeout`` seconds for what runs, the rest handed back to the fleet
at once, exit 0. The rules (identity, drain, hand-back) are the library's
(``dbos._api.fleet``); this file is the process around them (docs/fleet.md).

Exit codes: 0 after a drain; 2 for a usage error, an app that cannot be
imported, a bad config or an executor ID held by a live process; 1 for
anything else that stops the launch (e.g. the database is unreachable).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Optional, Sequence

from dbos.cli import argtypes

EXIT_USAGE = 2


class WorkerError(Exception):
    """Why the worker cannot start; exits with ``code`` and the message."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _queue_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if any(not n for n in names):
        raise argparse.ArgumentTypeError(f"--queues takes comma-separated queue names, got {text!r}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dbos-worker", description="Run a DBOS app as one executor of a dbos-fleet fleet."
    )
    p.add_argument("app", metavar="APP", help="the app: a .py file, a dotted module, or module:attr")
    p.add_argument("--drain-timeout", type=argtypes.seconds, default=25.0, metavar="SEC",
                   help="on SIGTERM/SIGINT, how long running workflows may finish before they are "
                        "handed back to the fleet (default 25)")
    p.add_argument("--exit-when-idle", type=argtypes.seconds, default=None, metavar="SEC",
                   help="drain and exit 0 once nothing of this version and these queues has been "
                        "waiting or running for SEC seconds (a Job per app version)")
    p.add_argument("--queues", type=_queue_list, default=None, metavar="A,B",
                   help="serve only these queues (and the internal one of resume and fork)")
    p.add_argument("--admin-host", default="127.0.0.1", metavar="HOST",
                   help="admin server address (default 127.0.0.1; any other needs $DBOS_ADMIN_TOKEN)")
    p.add_argument("--admin-port", type=argtypes.port, default=None, metavar="PORT",
                   help="serve the admin endpoints on this port (off by default; DBOS's is 3001)")
    return p


def load_app(spec: str) -> tuple[ModuleType, Any]:
    """Import ``spec``; return the module and the ``:attr`` object (None without one)."""
    target, _, attr = spec.partition(":") if not Path(spec).is_file() else (spec, "", "")
    if target.endswith(".py") or os.sep in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise WorkerError(f"cannot import {spec!r}: no such file {str(path)!r}")
        name = path.stem
        sys.path.insert(0, str(path.parent))
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise WorkerError(f"cannot import {spec!r}: not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException as e:
            sys.modules.pop(name, None)
            raise _import_error(spec, e) from e
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(target)
        except BaseException as e:
            raise _import_error(spec, e) from e
    obj = None
    if attr:
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise WorkerError(f"cannot import {spec!r}: module {module.__name__!r} has no attribute {attr!r}") from None
    return module, obj


def _import_error(spec: str, e: BaseException) -> WorkerError:
    if isinstance(e, SystemExit):
        return WorkerError(f"cannot import {spec!r}: it called sys.exit({e.code!r}) at import")
    from dbos.error import DBOSInitializationError

    detail = "".join(traceback.format_exception(e)).rstrip()
    if isinstance(e, DBOSInitializationError):
        return WorkerError(f"cannot start {spec!r}: {e}\n{detail}")
    return WorkerError(f"cannot import {spec!r}: {type(e).__name__}: {e}\n{detail}")


def _config_from_env(module: ModuleType) -> dict[str, Any]:
    config: dict[str, Any] = {"name": os.environ.get("DBOS_APP_NAME") or module.__name__.rsplit(".", 1)[-1]}
    for key, env in (
        ("system_database_url", "DBOS_SYSTEM_DATABASE_URL"),
        ("application_database_url", "DBOS_APPLICATION_DATABASE_URL"),
        ("redis_url", "DBOS_REDIS_URL"),
    ):
        if os.environ.get(env):
            config[key] = os.environ[env]
    return config


def _safe_url(url: str) -> str:
    try:
        import sqlalchemy as sa

        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


class _Signals:
    """SIGTERM / SIGINT: the first asks for a drain, the second skips its wait."""

    def __init__(self) -> None:
        self.drain = threading.Event()
        self.skip = threading.Event()
        self.name = ""

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.drain.is_set():
            self.skip.set()
        else:
            self.name = signal.Signals(signum).name
            self.drain.set()


def run(args: argparse.Namespace, signals: _Signals) -> int:
    if not os.environ.get("DBOS__VMID"):
        os.environ["DBOS__VMID"] = f"{socket.gethostname()}-{os.getpid()}"

    from dbos import DBOS
    from dbos._api import fleet as dbos_fleet
    from dbos._api.admin import AdminServer
    from dbos.error import DBOSException, DBOSInitializationError

    dbos_fleet.refuse_shared_executor_id(signals.drain)
    module, obj = load_app(args.app)
    if obj is not None and callable(obj) and not isinstance(obj, DBOS) and DBOS._instance is None:
        try:
            obj = obj()
        except BaseException as e:
            raise _import_error(args.app, e) from e
    inst = DBOS._instance
    if inst is None:
        try:
            inst = DBOS(config=_config_from_env(module))  # type: ignore[arg-type]
        except DBOSInitializationError as e:
            raise WorkerError(f"bad config for {args.app!r}: {e}") from e
    logger = inst.logger
    if args.queues is not None:
        if inst._launched:
            raise WorkerError("--queues needs an app that does not call DBOS.launch() at import")
        try:
            DBOS.listen_queues(args.queues)
        except DBOSException as e:
            raise WorkerError(f"--queues: {e}") from e

    admin = None
    if args.admin_port is not None:
        try:
            admin = AdminServer(args.admin_host, args.admin_port, logger)
            admin.start()
        except DBOSInitializationError as e:
            raise WorkerError(str(e)) from e
    try:
        if signals.drain.is_set() and not inst._launched:
            # Told to stop while it imported the app (a pod terminated during start-up):
            # nothing runs yet, and nothing may be claimed after the signal.
            logger.info("%s before launch: exiting without launching", signals.name)
            return 0
        if not inst._launched:
            try:
                DBOS.launch()
            except dbos_fleet.LaunchInterrupted:
                logger.info("%s during launch: exiting before taking the executor ID", signals.name)
                return 0
            except DBOSInitializationError as e:
                code = EXIT_USAGE if isinstance(e, dbos_fleet.ExecutorIdInUse) or _is_config(e) else 1
                raise WorkerError(f"cannot launch {args.app!r}: {e}", code) from e
        rt = dbos_fleet.runtime()
        served = args.queues if args.queues is not None else "all"
        logger.info(
            "dbos-worker started: executor %s (incarnation %d), app version %s, queues %s, database %s",
            rt.executor_id, rt.incarnation, rt.app_version, served, _safe_url(inst.settings.system_database_url),
        )
        reason = _wait_for_stop(args, signals, logger)
        running = len(rt.running_ids())
        logger.info("draining (%s): %d workflow(s) running, up to %.1f s to finish", reason, running,
                    args.drain_timeout)
        released = dbos_fleet.drain(args.drain_timeout, signals.skip)
        if released:
            logger.info("drained: handed %d workflow(s) back to the fleet: %s", len(released),
                        ", ".join(f"{w} ({q})" for w, q in released[:20]) + (" ..." if len(released) > 20 else ""))
        else:
            logger.info("drained: nothing to hand back")
        DBOS.destroy()
        logger.info("executor %s stopped", rt.executor_id)
        return 0
    finally:
        if admin is not None:
            admin.stop()


def _is_config(e: Exception) -> bool:
    from dbos.error import DBOSConfigError

    return isinstance(e, DBOSConfigError)


def _wait_for_stop(args: argparse.Namespace, signals: _Signals, logger: logging.Logger) -> str:
    """Block until a signal, or until idle for ``--exit-when-idle`` seconds; say why."""
    from dbos._api import fleet as dbos_fleet

    idle_for = args.exit_when_idle
    step = 0.5 if idle_for is None else min(0.5, max(0.05, idle_for / 4))
    idle_since: Optional[float] = None
    while not signals.drain.wait(step):
        if idle_for is None:
            continue
        try:
            idle = dbos_fleet.idle()
        except Exception as e:  # the database is away: not idle, try again
            logger.warning("idle check failed: %s", e)
            idle = False
        now = time.monotonic()
        if not idle:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        if idle_since is not None and now - idle_since >= idle_for:
            return f"idle for {idle_for:g} s"
    return signals.name


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    signals = _Signals()
    signals.install()
    try:
        code = run(args, signals)
    except WorkerError as e:
        print(f"dbos-worker: error: {e}", file=sys.stderr)
        return e.code
    _exit_now_if_stuck(code)
    return code


def _exit_now_if_stuck(code: int) -> None:
    """After a drain everything still running was handed back; a workflow thread stuck
    in user code (a step that never returns) must not keep the process from exiting
    (at exit Python joins every thread of a thread pool, daemon or not), so exit at
    once, logs flushed. The threads an exit waits for (non-daemon ones, and the
    workflow pool's, which inherit daemon status from whoever first submitted work)
    get a moment first: the pool's idle threads, just told to stop, end in it, and a
    normal exit still runs the app's ``atexit`` handlers."""
    stuck = [
        t for t in threading.enumerate()
        if t is not threading.main_thread() and (not t.daemon or t.name.startswith(("dbos-workflow", "dbos-blocking")))
    ]
    end = time.monotonic() + 1.0
    for t in stuck:
        t.join(max(0.0, end - time.monotonic()))
    stuck = [t for t in stuck if t.is_alive()]
    if stuck:
        logging.getLogger("dbos").info("exiting with %d thread(s) still running (any work of theirs was handed back)",
                                       len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
