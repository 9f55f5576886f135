"""The patch-fork story, end to end, on this machine:

    python examples/patch_fork/run.py [--db-url URL] [--redis-url URL]

1. A v1 worker (``examples/patch_fork/v1/shop.py``) and a coordinator with the
   local launcher run.
2. A digital order fails on v1 at step 3 (``ship`` divides by zero parcels).
3. ``dbos workflow fork ID --from-failure --app-version v2``: a new workflow,
   pinned to v2, that reuses the recorded steps 1 and 2 of v1.
4. No v2 executor runs, so the coordinator launches one
   (``--worker-cmd "... examples/patch_fork/{version}/shop.py --exit-when-idle 5"``).
5. The fork succeeds on v2 (steps 1-2 show the v1 executor: reused, not re-run),
   and the launched v2 worker exits by itself once v2 has nothing left.

Without ``--db-url`` it uses a fresh SQLite file in a temporary directory; with
a PostgreSQL URL it uses that database (it must exist).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db-url", help="system database (default: a fresh SQLite file)")
    p.add_argument("--redis-url", help="Redis for instant wakeups (optional)")
    args = p.parse_args(argv)

    from dbos import DBOSClient

    work = Path(tempfile.mkdtemp(prefix="patch-fork-"))
    db_url = args.db_url or f"sqlite:///{work / 'shop.sqlite'}"
    env = {**os.environ, "DBOS_SYSTEM_DATABASE_URL": db_url, "DBOS_APP_NAME": "shop", "PYTHONUNBUFFERED": "1"}
    if args.redis_url:
        env["DBOS_REDIS_URL"] = args.redis_url
    py = sys.executable
    children: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str], extra: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(work / f"{name}.log", "wb")
        child = subprocess.Popen(argv, env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        children.append(child)
        return child

    print(f"working in {work} (logs: *.log), database {db_url}")
    try:
        start("worker-v1", [py, "-m", "worker", str(HERE / "v1" / "shop.py")],
              {"DBOS__APPVERSION": "v1", "DBOS__VMID": "shop-v1-a"})
        worker_cmd = f"{py} -m worker {HERE}/{{version}}/shop.py --exit-when-idle 5"
        start("coordinator", [py, "-m", "coordinator", "--launcher", "local", "--worker-cmd", worker_cmd,
                              "--launch-log-dir", str(work)], {})
        client = DBOSClient(db_url, redis_url=args.redis_url)
        try:
            def v1_running() -> bool:
                return any(v.version_name == "v1" for v in client.list_application_versions())

            wait_for("the v1 worker", v1_running)
            order = {"item": "e-book", "price": 12, "weight": 0.0, "parcels": 0}
            handle = client.enqueue({"queue_name": "orders", "workflow_name": "checkout", "app_version": "v1"}, order)
            print(f"1. order {handle.workflow_id} enqueued on v1")
            try:
                handle.get_result()
                raise SystemExit("the v1 workflow was expected to fail")
            except Exception as e:
                print(f"2. it failed on v1: {type(e).__name__}: {e}")
            steps = client.list_workflow_steps(handle.workflow_id)
            for s in steps:
                print(f"     step {s['function_id']} {s['function_name']}: "
                      f"{s['output'] if s['error'] is None else 'ERROR ' + repr(s['error'])}")

            cli = [py, "-m", "dbos.cli.main", "workflow", "fork", handle.workflow_id, "--from-failure",
                   "--app-version", "v2", "--db-url", db_url, "--json"]
            out = subprocess.run(cli, env=env, capture_output=True, text=True, check=True, cwd=ROOT).stdout
            fork = json.loads(out)
            print(f"3. forked onto v2 from step {fork['start_step']}: {fork['workflow_id']}")
            print("4. no v2 executor runs: the coordinator launches one")
            result = client.retrieve_workflow(fork["workflow_id"]).get_result()
            print("5. the fork succeeded on v2:")
            for line in result:
                print(f"     {line}")

            def v2_gone() -> bool:
                v2 = [v for v in _versions(py, db_url, env) if v["app_version"] == "v2"]
                return bool(v2) and v2[0]["live_executors"] == 0

            wait_for("the launched v2 worker to exit when idle", v2_gone, timeout=60)
            print("6. the launched v2 worker exited by itself (idle)")
        finally:
            client.destroy()
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=40)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


def _versions(py: str, db_url: str, env: dict[str, str]) -> list[dict[str, Any]]:
    out = subprocess.run([py, "-m", "dbos.cli.main", "fleet", "versions", "--db-url", db_url, "--json"],
                         env=env, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return list(json.loads(out))


if __name__ == "__main__":
    sys.exit(main())
