"""Async waits benchmark (issue 18): many async workflows waiting at once, with and
without a cap on executor threads.

An async parent workflow starts N async children (``DBOS.start_workflow_async``)
and awaits every child's handle (``asyncio.gather`` of ``get_result()``). Each
child waits 2 s in one of:

- ``sleep``: ``await DBOS.sleep_async(2)``;
- ``recv``: ``await DBOS.recv_async(timeout_seconds=2)`` (nobody sends: it times out);
- ``get_event``: ``await DBOS.get_event_async(<the parent>, "never", timeout_seconds=2)``.

Each (kind, cap) runs in its own process (``--child``, the same file), under
``max_executor_threads=32`` and with the default (no cap given), so the thread
count is that process's alone. Figures: the wall time from the parent's start to
its last child's result, and the peak thread count of the process (sampled every
5 ms, ``threading.active_count()``). A run that has not finished after
``--timeout`` seconds is reported as such (a wait holding a thread each, N above
the cap, never finishes: the parent's awaits hold the threads its children need).

The floor is the 2 s wait itself: ``asyncio.gather`` of N ``asyncio.sleep(2)``,
measured in each child process before its run; every wall time is printed with
its ratio to it ("x floor").

Wake latency (``--latency``, one process, no cap): one async workflow waiting in
``recv_async`` / ``get_event_async`` / a child handle's ``get_result()``, woken by
a send / set_event / the child's return from this process; p50 and p90 of the
time from just before the wake to the wait's return, over ``--samples`` rounds.

Usage: .venv/bin/python bench/async_waits.py [--pg-url URL] [-n 300] [--json PATH]
Creates a database bench_async_<random> on the server and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from typing import Any, Optional

import psycopg
import sqlalchemy as sa

from dbos import DBOS, SetWorkflowID

WAIT = 2.0
KINDS = ("sleep", "recv", "get_event")
CAPPED = 32


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


# -- workflows ------------------------------------------------------------------------


@DBOS.workflow()
async def child(kind: str, parent_id: str) -> int:
    if kind == "sleep":
        await DBOS.sleep_async(WAIT)
    elif kind == "recv":
        await DBOS.recv_async(timeout_seconds=WAIT)
    else:
        await DBOS.get_event_async(parent_id, "never", timeout_seconds=WAIT)
    return 1


@DBOS.workflow()
async def parent(kind: str, n: int) -> int:
    me = DBOS.workflow_id
    assert me is not None
    handles = [await DBOS.start_workflow_async(child, kind, me) for _ in range(n)]
    return sum(await asyncio.gather(*(h.get_result() for h in handles)))


@DBOS.workflow()
async def receiver() -> float:
    message = await DBOS.recv_async("t", timeout_seconds=60)
    return time.perf_counter() - float(message)


@DBOS.workflow()
async def event_waiter(target: str) -> float:
    value = await DBOS.get_event_async(target, "k", timeout_seconds=60)
    return time.perf_counter() - float(value)


@DBOS.workflow()
async def event_setter() -> None:
    await DBOS.recv_async("go", timeout_seconds=60)
    await DBOS.set_event_async("k", time.perf_counter())


@DBOS.workflow()
async def finisher() -> float:
    await DBOS.recv_async("go", timeout_seconds=60)
    return time.perf_counter()


@DBOS.workflow()
async def result_waiter(target: str) -> float:
    handle: Any = await DBOS.retrieve_workflow_async(target)
    done = await handle.get_result()
    return time.perf_counter() - float(done)


# -- one run, in its own process --------------------------------------------------------


class PeakThreads:
    def __init__(self) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, threading.active_count())

    def __enter__(self) -> "PeakThreads":
        self.peak = threading.active_count()
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


def config(url: str, threads: Optional[int]) -> Any:
    c: dict[str, Any] = {"name": "bench-async", "system_database_url": url, "log_level": "WARNING"}
    if threads is not None:
        c["max_executor_threads"] = threads
    return c


async def floor(n: int) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(asyncio.sleep(WAIT) for _ in range(n)))
    return time.perf_counter() - t0


def run_child(url: str, kind: str, n: int, threads: Optional[int], timeout: float) -> dict[str, Any]:
    DBOS(config=config(url, threads))
    DBOS.launch()

    async def main() -> dict[str, Any]:
        floor_s = await floor(n)
        base = threading.active_count()
        peak = PeakThreads()

        def give_up() -> None:
            # Waits holding a thread each, past the cap, never finish (nor does the
            # cancellation of the parent, whose end needs a thread too): report and exit.
            print(json.dumps({"floor_s": floor_s, "wall_s": None, "peak_threads": peak.peak,
                              "threads_before": base}), flush=True)
            os._exit(0)

        watchdog = threading.Timer(timeout, give_up)
        watchdog.daemon = True
        with peak:
            t0 = time.perf_counter()
            watchdog.start()
            with SetWorkflowID(f"parent-{kind}-{threads}-{secrets.token_hex(4)}"):
                done = await parent(kind, n)
            wall = time.perf_counter() - t0
            watchdog.cancel()
        assert done == n
        return {"floor_s": floor_s, "wall_s": wall, "peak_threads": peak.peak, "threads_before": base}

    out = asyncio.run(main())
    print(json.dumps(out), flush=True)
    os._exit(0)


def run_latency(url: str, samples: int) -> dict[str, Any]:
    DBOS(config=config(url, None))
    DBOS.launch()

    async def main() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"recv": [], "get_event": [], "get_result": []}
        for _ in range(samples):
            h = await DBOS.start_workflow_async(receiver)
            await asyncio.sleep(0.02)  # the receiver is waiting: a wake, not a find
            await DBOS.send_async(h.workflow_id, repr(time.perf_counter()), "t")
            out["recv"].append(await h.get_result())

            setter = await DBOS.start_workflow_async(event_setter)
            waiter = await DBOS.start_workflow_async(event_waiter, setter.workflow_id)
            await asyncio.sleep(0.02)
            await DBOS.send_async(setter.workflow_id, 1, "go")
            out["get_event"].append(await waiter.get_result())

            fin = await DBOS.start_workflow_async(finisher)
            waiter = await DBOS.start_workflow_async(result_waiter, fin.workflow_id)
            await asyncio.sleep(0.02)
            await DBOS.send_async(fin.workflow_id, 1, "go")
            out["get_result"].append(await waiter.get_result())
        return out

    got = asyncio.run(main())
    DBOS.destroy()
    return {k: {"p50_ms": pct(v, 50) * 1000, "p90_ms": pct(v, 90) * 1000} for k, v in got.items()}


# -- the driver ---------------------------------------------------------------------------


def _conninfo(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def spawn(url: str, kind: str, n: int, threads: Optional[int], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", url, kind, str(n), str(threads or 0), str(timeout)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} {threads} failed:\n{proc.stderr}")
    line: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return line


def main(argv: Optional[list[str]] = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, kind, n, threads, timeout = sys.argv[2:7]
        run_child(url, kind, int(n), int(threads) or None, float(timeout))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server on which this script may create and drop a database",
    )
    p.add_argument("-n", type=int, default=300, help="async children per run (default 300)")
    p.add_argument("--timeout", type=float, default=60.0, help="give a run up this many seconds (default 60)")
    p.add_argument("--samples", type=int, default=50, help="wake-latency rounds (default 50)")
    p.add_argument("--no-latency", action="store_true", help="skip the wake-latency figures")
    p.add_argument("--latency-only", action="store_true", help="only the wake-latency figures")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)

    admin = _conninfo(sa.make_url(args.pg_url))
    dbname = f"bench_async_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    url = _conninfo(sa.make_url(args.pg_url).set(database=dbname))
    result: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "n": args.n,
        "wait_s": WAIT,
        "runs": [],
    }
    try:
        for kind in () if args.latency_only else KINDS:
            for threads in (CAPPED, None):
                log(f"{kind}, max_executor_threads={threads or 'default'} ...")
                r = spawn(url, kind, args.n, threads, args.timeout)
                result["runs"].append({"kind": kind, "max_executor_threads": threads, **r})
        if not args.no_latency:
            log("wake latency ...")
            result["latency"] = run_latency(url, args.samples)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    m = result["machine"]
    print(f"\ndbos async waits benchmark  {result['date']}  {m['cpus']} CPUs  Python {m['python']}")
    print(f"{args.n} async children each waiting {WAIT:g} s, awaited by one async parent workflow\n")
    print(f"{'wait':<10} {'max_executor_threads':>20} {'floor s':>8} {'wall s':>8} {'x floor':>8} {'peak threads':>13}")
    for r in result["runs"]:
        cap = str(r["max_executor_threads"]) if r["max_executor_threads"] else "default"
        if r["wall_s"] is None:
            wall, ratio = f">{args.timeout:g}", "never"
        else:
            wall, ratio = f"{r['wall_s']:.2f}", f"{r['wall_s'] / r['floor_s']:.2f}x"
        print(f"{r['kind']:<10} {cap:>20} {r['floor_s']:>8.2f} {wall:>8} {ratio:>8} {r['peak_threads']:>13}")
    if "latency" in result:
        print(f"\nwake latency, one waiter, {args.samples} rounds (ms)")
        for k, v in result["latency"].items():
            print(f"  {k:<11} p50 {v['p50_ms']:7.3f}   p90 {v['p90_ms']:7.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
