"""``dbos-coordinator``: hands a dead executor's work to live ones, within seconds.

Any number may run against one system database; the holder of the leader lease
acts (``dbos._services.coordinator``: the rules live in the library). It never
imports user code. SIGTERM / SIGINT give the lease up at once and exit 0.

Exit codes: 0 after a signal; 2 for bad arguments or a database or Redis that
cannot be reached at start (later outages are retried with backoff).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Optional, Sequence

from dbos.cli import argtypes

EXIT_USAGE = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dbos-coordinator",
                                description="Declare silent executors dead and hand their work to live ones.")
    p.add_argument("--db-url", help="system database URL (default: $DBOS_SYSTEM_DATABASE_URL)")
    p.add_argument("--redis-url", help="Redis URL for instant wakeups (default: $DBOS_REDIS_URL)")
    p.add_argument("--dead-after", type=argtypes.positive_seconds, default=3.0, metavar="SEC",
                   help="an executor silent this long is DEAD (default 3)")
    p.add_argument("--interval", type=argtypes.positive_seconds, default=1.0, metavar="SEC",
                   help="seconds between scans (default 1; also at once on a Redis hint)")
    p.add_argument("--http-host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    p.add_argument("--http-port", type=argtypes.port, default=None, help="serve /healthz, /metrics and /api/* here")
    p.add_argument("--schema", default="dbos", help=argparse.SUPPRESS)
    launch = p.add_argument_group("launcher", "start an executor for a version with waiting work and none running")
    launch.add_argument("--launcher", choices=("none", "local", "kubernetes"), default="none",
                        help="how (default none: waiting work is only reported)")
    launch.add_argument("--worker-cmd", metavar="CMD",
                        help="the worker command, split as a shell would; may contain {version}; "
                             "give it --exit-when-idle (e.g. 'dbos-worker shop/app.py --exit-when-idle 30')")
    launch.add_argument("--max-launches-per-version", type=argtypes.count, default=1, metavar="N",
                        help="launches in flight per version at most (default 1)")
    launch.add_argument("--launch-timeout", type=argtypes.positive_seconds, default=120.0, metavar="SEC",
                        help="a launch whose executor has not heartbeat by then failed (default 120)")
    launch.add_argument("--launch-log-dir", default=None, metavar="DIR",
                        help="local launcher: one log file per launch here (default ./dbos-launches)")
    launch.add_argument("--image-template", metavar="TEMPLATE",
                        help="kubernetes: the image, with {version} (e.g. registry/shop:{version})")
    launch.add_argument("--image-configmap", metavar="NAME",
                        help="kubernetes: a ConfigMap mapping version -> image (before --image-template)")
    launch.add_argument("--namespace", help="kubernetes: the Jobs' namespace (default: this pod's, else default)")
    launch.add_argument("--secret-name", default="dbos-fleet",
                        help="kubernetes: the Secret with the database and Redis URLs (default dbos-fleet)")
    keep = p.add_argument_group("retention", "the leader garbage-collects finished workflows (issue 16)")
    keep.add_argument("--retention-days", type=argtypes.positive_seconds, default=None, metavar="DAYS",
                      help="delete finished workflows created more than DAYS ago (default: keep)")
    keep.add_argument("--retention-rows", type=argtypes.count, default=None, metavar="N",
                      help="delete finished workflows older than the newest N workflows (default: keep)")
    keep.add_argument("--retention-interval", type=argtypes.positive_seconds, default=60.0, metavar="SEC",
                      help="seconds between collections (default 60)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    import redis

    from dbos._api.coordinator_http import CoordinatorHTTP
    from dbos._config.settings import normalize_database_url
    from dbos._services.coordinator import Coordinator
    from dbos._storage.database import Database
    from dbos._storage.migrations import migrate_system
    from dbos._telemetry.logs import configure
    from dbos._wakeups.hub import Hub
    from dbos._wakeups.redis_bridge import namespace_for
    from dbos.error import DBOSException

    def fail(message: str) -> int:
        print(f"dbos-coordinator: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    raw_url = args.db_url or os.environ.get("DBOS_SYSTEM_DATABASE_URL")
    if not raw_url:
        return fail("no database: pass --db-url or set DBOS_SYSTEM_DATABASE_URL")
    try:
        url = normalize_database_url(raw_url, "--db-url")
    except DBOSException as e:
        return fail(str(e))
    redis_url = args.redis_url or os.environ.get("DBOS_REDIS_URL") or None
    logger = configure(os.environ.get("DBOS_LOG_LEVEL", "INFO").upper(), "coordinator")

    db = Database(url, args.schema, 2)
    try:
        migrate_system(db)
    except Exception as e:
        db.dispose()
        return fail(f"cannot prepare the system database {_safe(url)}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
    hub = Hub()
    bridge = None
    if redis_url is not None:
        try:
            redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3).ping()
        except (redis.RedisError, ValueError) as e:
            db.dispose()
            return fail(f"cannot reach Redis at {redis_url}: {e}")
        bridge = hub.attach_redis(redis_url, namespace_for(url, args.schema), logger)

    try:
        launcher = _launcher(args, url, redis_url, logger)
    except Exception as e:
        db.dispose()
        return fail(f"--launcher {args.launcher}: {e}")
    coord = Coordinator(
        db, hub, logger, dead_after_sec=args.dead_after, interval_sec=args.interval, launcher=launcher,
        max_launches_per_version=args.max_launches_per_version, launch_timeout_sec=args.launch_timeout,
    )
    hub.add_listener("fleet:", lambda _key: coord.wake())
    retention = None
    if args.retention_days is not None or args.retention_rows is not None:
        from dbos._services.retention import Retention, RetentionConfig

        retention = Retention(
            Database(url, args.schema, 1),  # its own connection: a batch never waits for the tick's
            RetentionConfig(args.retention_days, args.retention_rows, args.retention_interval),
            lambda: coord.is_leader, logger,
        )
    http = None
    if args.http_port is not None:
        try:
            http = CoordinatorHTTP(coord, args.http_host, args.http_port, logger, redis_url=redis_url)
            http.start()
        except DBOSException as e:
            db.dispose()
            return fail(str(e))
    if bridge is not None:
        bridge.start()
        threading.Thread(target=bridge.want, args=("fleet:",), name="dbos-coordinator-want", daemon=True).start()
    logger.info(
        "dbos-coordinator %s started: database %s, redis %s, dead after %g s, every %g s, launcher %s",
        coord.holder, _safe(url), "on" if bridge is not None else "off", args.dead_after, args.interval,
        args.launcher,
    )
    coord.start()
    if retention is not None:
        retention.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if retention is not None:
            retention.stop()
            retention.db.dispose()
        coord.stop()
        coord.step_down()
        if http is not None:
            http.stop()
        if bridge is not None:
            bridge.stop()
        db.dispose()
    logger.info("dbos-coordinator %s stopped", coord.holder)
    return 0


def _launcher(args: argparse.Namespace, db_url: str, redis_url: Optional[str], logger: Any) -> Any:
    if args.launcher == "none":
        return None
    from pathlib import Path

    from coordinator import launchers

    if not args.worker_cmd:
        raise ValueError("needs --worker-cmd (the worker command, with --exit-when-idle)")
    if args.launcher == "local":
        log_dir = Path(args.launch_log_dir or "dbos-launches").resolve()
        return launchers.LocalLauncher(args.worker_cmd, log_dir, launchers.child_env(db_url, redis_url), logger)
    return launchers.KubernetesLauncher(
        image_template=args.image_template, image_configmap=args.image_configmap,
        worker_args=launchers.worker_argv(args.worker_cmd, "{version}"),
        namespace=args.namespace or launchers.in_cluster_namespace(), secret_name=args.secret_name, logger=logger,
    )


def _safe(url: str) -> str:
    try:
        import sqlalchemy as sa

        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


if __name__ == "__main__":
    sys.exit(main())
