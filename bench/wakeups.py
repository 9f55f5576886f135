"""Wakeups benchmark (issue 3): how fast a waiter in one process learns of a change
made in another, with Redis and with database polling only, against the floor.

The floor is one single-row INSERT + COMMIT on one raw psycopg connection in
autocommit (median of many, measured before and after the runs in the same
process). Every figure is printed with its ratio to it ("x floor").

Two processes: this one (the "driver") and a child (``--child``, the same file)
that runs an ``echo`` workflow looping on ``recv("ping")``. Figures, per mode:

- send -> recv, one way: a workflow here sends a message carrying ``time.time()``
  taken just before ``DBOS.send``; the workflow in the child computes the latency
  when ``recv`` returns. The child's reply is timed the same way here. The
  receiver is always already waiting (a short gap before each send), so each
  sample is a wake, not a find. Both directions are pooled.
- set_event -> get_event: this process waits in ``get_event``; the child's
  workflow sets the event to ``time.time()`` taken just before ``set_event``.
- get_result after completion: this process waits in ``handle.get_result()`` on
  a workflow in the child that returns ``time.time()`` as its result.
- ping-pong: round trips per second between two workflows (no gap).
- what a one-way wake is made of (the rows starting with "·"): the DBOS.send call
  inside a workflow (its transaction), a recv that finds its message already
  stored (its deadline checkpoint + the consume transaction), and a raw redis-py
  PUBLISH to a pattern subscriber on another connection.
- the raw wake: what a cross-process wake costs with no library at all, timed
  like send -> recv (same 10 ms idle before each): one INSERT+COMMIT on the
  floor's connection, one PUBLISH, a bare subscriber in another process.
- the floor after the same 10 ms idle: an idle machine wakes slowly (CPU idle
  states, the VM's scheduler), and every sample of a wake starts idle, while
  the floor is measured back to back. This row shows how much of a wake that is.

With polling only, each sender waits a random 0-1 s before sending, so the send
falls at a random point of the receiver's 1 s polling cycle.

Target with Redis: p50 of send -> recv <= 3x the floor.

Usage: .venv/bin/python bench/wakeups.py [--pg-url URL] [--redis-url URL] [--json PATH]
Creates a database bench_wakeups_<random> on the server and drops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any, Optional

import psycopg

from dbos import DBOS, SetWorkflowID

TARGET_X_FLOOR = 3.0
FLOOR_SAMPLES = 1000  # before the runs, and again after them
GAP = 0.01  # idle time before each send, so the receiver is waiting (a wake, not a find)
IDLE_FLOOR_SAMPLES = 200  # the floor again, each insert after the same idle GAP
CHILD_VMID = "bench-wakeups-child"
PAYLOAD = b"\x80\x05K\x01."


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


# -- workflows (registered in both processes; the child runs echo and finisher) -----


@DBOS.workflow()
def finisher() -> float:
    delay = DBOS.recv("go", timeout_seconds=120)
    time.sleep(delay or 0)
    return time.time()


@DBOS.workflow()
def echo() -> int:
    """Child side. ping fields: sent, reply_to, gap (sleep before replying),
    event (+delay: set it to the time just before set_event), spawn (start a finisher
    with that ID), stop."""
    count = 0
    while True:
        ping = DBOS.recv("ping", timeout_seconds=600)
        got = time.time()
        if ping is None or ping.get("stop"):
            return count
        count += 1
        if ping.get("spawn"):
            with SetWorkflowID(ping["spawn"]):
                DBOS.start_workflow(finisher)
        if ping.get("event"):
            time.sleep(ping.get("delay", 0))
            DBOS.set_event(ping["event"], time.time())
        if ping.get("reply_to"):
            time.sleep(ping.get("gap", 0) + random.uniform(0, ping.get("jitter", 0)))
            DBOS.send(ping["reply_to"], {"one_way": got - ping["sent"], "sent": time.time()}, "pong")


@DBOS.workflow()
def driver(child_id: str, rounds: int, gap: float, jitter: float) -> list[list[float]]:
    """Driver side: ``rounds`` ping-pongs; returns [ping one-way, pong one-way, round trip,
    duration of the DBOS.send call]. Each side waits gap + uniform(0, jitter) before it
    sends, so the receiver is waiting and (polling) its poll phase is random."""
    me = DBOS.workflow_id
    out = []
    for _ in range(rounds):
        if gap or jitter:
            time.sleep(gap + random.uniform(0, jitter))
        t0 = time.perf_counter()
        sent = time.time()
        DBOS.send(child_id, {"sent": sent, "reply_to": me, "gap": gap, "jitter": jitter}, "ping")
        t_send = time.perf_counter() - t0
        pong = DBOS.recv("pong", timeout_seconds=120)
        now, t1 = time.time(), time.perf_counter()
        assert pong is not None, "no pong within 120 s"
        out.append([pong["one_way"], now - pong["sent"], t1 - t0, t_send])
    return out


@DBOS.workflow()
def finder(n: int) -> list[float]:
    """Times recv when the message is already stored (no wait): its deadline checkpoint
    plus the consume transaction."""
    DBOS.recv("go", timeout_seconds=60)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        DBOS.recv("t", timeout_seconds=60)
        out.append(time.perf_counter() - t0)
    return out


def redis_hop(url: str, n: int) -> list[float]:
    """Raw redis-py PUBLISH on one connection to a pattern subscriber on another (a thread
    in this process, as in the library): what one hint costs."""
    import threading

    import redis

    pub = redis.Redis.from_url(url)
    ps = redis.Redis.from_url(url).pubsub()
    ps.psubscribe("bench-wakeups-hop:*")
    ps.get_message(timeout=2)
    out: list[float] = []

    def listen() -> None:
        while len(out) < n:
            m = ps.get_message(timeout=0.5)
            if m is not None and m["type"] == "pmessage":
                out.append(time.perf_counter() - float(m["data"]))

    t = threading.Thread(target=listen)
    t.start()
    for _ in range(n):
        time.sleep(0.005)
        pub.publish("bench-wakeups-hop:x", repr(time.perf_counter()))
    t.join(30)
    ps.close()
    pub.close()
    return out


def raw_wake_subscriber(url: str) -> int:
    """``--raw-wake-sub``: a bare redis-py subscriber in its own process. Prints READY,
    then, for each message (a ``time.time()`` stamp), the delay since that stamp."""
    import redis

    ps = redis.Redis.from_url(url).pubsub()
    ps.subscribe("bench-wakeups-raw")
    ps.get_message(timeout=2)
    print("READY", flush=True)
    while True:
        m = ps.get_message(timeout=30)
        if m is None or m["data"] == b"stop":
            return 0
        if m["type"] == "message":
            print(time.time() - float(m["data"]), flush=True)


def raw_wake(floor: "Floor", url: str, n: int, gap: float) -> list[float]:
    """The least a cross-process wake can cost here, with no library at all: after the
    same idle gap as the library's samples, one INSERT+COMMIT on the floor's connection,
    then one PUBLISH, received by a bare subscriber in another process."""
    import redis

    sub = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--raw-wake-sub", url], stdout=subprocess.PIPE, text=True
    )
    pub = redis.Redis.from_url(url)
    try:
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != "READY":
            raise RuntimeError("the raw subscriber did not start")
        for _ in range(n):
            time.sleep(gap)
            floor.n += 1
            stamp = time.time()
            floor.conn.execute("INSERT INTO floor (k, n, v) VALUES (%s, %s, %s)", ("w", floor.n, PAYLOAD))
            pub.publish("bench-wakeups-raw", repr(stamp))
        pub.publish("bench-wakeups-raw", "stop")
        out, _ = sub.communicate(timeout=60)
        return [float(line) for line in out.split()]
    finally:
        pub.close()
        if sub.poll() is None:
            sub.kill()
            sub.wait(30)


# -- the child process ---------------------------------------------------------------


def child_main(spec: dict[str, Any]) -> int:
    DBOS(config=spec["config"])
    DBOS.launch()
    try:
        _wait_bridge(spec["config"])
        with SetWorkflowID(spec["workflow_id"]):
            handle = DBOS.start_workflow(echo)
        print("READY", flush=True)
        print(f"RESULT {handle.get_result()}", flush=True)
        return 0
    finally:
        DBOS.destroy()


def _wait_bridge(config: dict[str, Any]) -> None:
    if config.get("redis_url"):
        from dbos._api.instance import runtime

        bridge = runtime().wakeups.bridge
        if bridge is None or not bridge.connected.wait(30):
            raise RuntimeError("the Redis bridge did not connect")


# -- the driver -------------------------------------------------------------------------


class Floor:
    def __init__(self, conninfo: str) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.conn.execute("CREATE TABLE floor (k text NOT NULL, n integer NOT NULL, v bytea, PRIMARY KEY (k, n))")
        self.n = 0
        self.samples: list[float] = []
        self.idle_samples: list[float] = []

    def measure(self, count: int, idle: float = 0.0) -> None:
        """``count`` inserts back to back, or (``idle`` > 0) each after sleeping ``idle``
        seconds, as a waiter's work follows an idle wait (kept apart: not the floor)."""
        into = self.idle_samples if idle else self.samples
        for _ in range(count):
            if idle:
                time.sleep(idle)
            self.n += 1
            t0 = time.perf_counter()
            self.conn.execute("INSERT INTO floor (k, n, v) VALUES (%s, %s, %s)", ("f", self.n, PAYLOAD))
            into.append(time.perf_counter() - t0)

    def close(self) -> None:
        self.conn.close()


def run_mode(
    label: str, db_url: str, redis_url: Optional[str], sizes: dict[str, int], gap: float, jitter: float,
    floor: "Floor",
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "bench-wakeups",
        "system_database_url": db_url,
        "application_version": "bench-wakeups-v1",
        "executor_id": "bench-wakeups-driver",
        "log_level": "WARNING",
    }
    if redis_url:
        config["redis_url"] = redis_url
    DBOS(config=config)  # type: ignore[arg-type]
    DBOS.launch()
    child_id = f"echo-{label}-{uuid.uuid4().hex[:8]}"
    child_cfg = dict(config)
    child_cfg.pop("executor_id")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    env["DBOS__VMID"] = CHILD_VMID
    spec = {"config": child_cfg, "workflow_id": child_id}
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        _wait_bridge(config)
        assert child.stdout is not None
        line = child.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"child did not start: {line!r}")
        out: dict[str, Any] = {"mode": label}

        # send -> recv, one way, both directions (after a few warm-up rounds).
        log(f"[{label}] send->recv: {sizes['rounds']} ping-pongs")
        with SetWorkflowID(f"drv-warm-{uuid.uuid4().hex[:8]}"):
            driver(child_id, sizes["warmup"], gap, jitter)
        with SetWorkflowID(f"drv-{uuid.uuid4().hex[:8]}"):
            rows = driver(child_id, sizes["rounds"], gap, jitter)
        out["send_recv"] = [r[0] for r in rows] + [r[1] for r in rows]
        out["send_call"] = [r[3] for r in rows]

        # recv of a message already stored (this process, no wait)
        with SetWorkflowID(f"find-{uuid.uuid4().hex[:8]}"):
            handle = DBOS.start_workflow(finder, sizes["finds"])
        for i in range(sizes["finds"]):
            DBOS.send(handle.workflow_id, i, "t")
        DBOS.send(handle.workflow_id, None, "go")
        out["recv_find"] = handle.get_result()
        if redis_url:
            out["redis_hop"] = redis_hop(redis_url, 200)
            out["raw_wake"] = raw_wake(floor, redis_url, 200, gap)

        # set_event -> get_event
        log(f"[{label}] set_event->get_event: {sizes['events']} samples")
        samples = []
        for i in range(sizes["events"]):
            key = f"ev-{i}"
            delay = gap + random.uniform(0, jitter)
            DBOS.send(child_id, {"sent": time.time(), "event": key, "delay": delay}, "ping")
            stamp = DBOS.get_event(child_id, key, timeout_seconds=120)
            samples.append(time.time() - stamp)
        out["event"] = samples

        # get_result after completion
        log(f"[{label}] get_result: {sizes['results']} samples")
        samples = []
        for i in range(sizes["results"]):
            wid = f"fin-{label}-{i}-{uuid.uuid4().hex[:6]}"
            DBOS.send(child_id, {"sent": time.time(), "spawn": wid}, "ping")
            handle = DBOS.retrieve_workflow(wid, existing_workflow=False)
            DBOS.send(wid, gap + random.uniform(0, jitter), "go")  # it returns after this delay
            finished = handle.get_result()
            samples.append(time.time() - finished)
        out["result"] = samples

        # ping-pong rate, no gap
        log(f"[{label}] ping-pong: {sizes['pingpong']} round trips")
        t0 = time.perf_counter()
        with SetWorkflowID(f"drv-pp-{uuid.uuid4().hex[:8]}"):
            rows = driver(child_id, sizes["pingpong"], 0.0, 0.0)
        elapsed = time.perf_counter() - t0
        out["pingpong_rtt"] = [r[2] for r in rows]
        out["pingpong_per_s"] = sizes["pingpong"] / elapsed

        DBOS.send(child_id, {"stop": True}, "ping")
        child.wait(60)
        return out
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        DBOS.destroy()


def summarize(results: list[dict[str, Any]], floor: list[float], idle_floor: list[float]) -> dict[str, Any]:
    fl = statistics.median(floor)
    summary: dict[str, Any] = {
        "floor_ms": {"p50": fl * 1e3, "p99": pct(floor, 99) * 1e3, "mean": statistics.mean(floor) * 1e3,
                     "samples": len(floor)},
        "modes": {},
    }
    if idle_floor:
        summary["idle_floor_ms"] = {"p50": pct(idle_floor, 50) * 1e3, "p99": pct(idle_floor, 99) * 1e3,
                                    "x_floor": pct(idle_floor, 50) / fl, "samples": len(idle_floor)}
    for r in results:
        m: dict[str, Any] = {}
        for key in ("send_recv", "event", "result", "pingpong_rtt", "send_call", "recv_find", "redis_hop", "raw_wake"):
            if key not in r:
                continue
            s = r[key]
            m[key] = {"p50_ms": pct(s, 50) * 1e3, "p99_ms": pct(s, 99) * 1e3, "x_floor": pct(s, 50) / fl,
                      "samples": len(s)}
        m["pingpong_round_trips_per_s"] = r["pingpong_per_s"]
        m["pingpong_messages_per_s"] = 2 * r["pingpong_per_s"]
        summary["modes"][r["mode"]] = m
    return summary


def print_table(s: dict[str, Any]) -> None:
    fl = s["floor_ms"]
    print(f"floor (INSERT+COMMIT, autocommit, raw psycopg): p50 {fl['p50']:.3f} ms, p99 {fl['p99']:.3f} ms, "
          f"mean {fl['mean']:.3f} ms, n={fl['samples']}")
    names = {"send_recv": "send -> recv (one way)", "event": "set_event -> get_event",
             "result": "get_result after completion", "pingpong_rtt": "ping-pong round trip",
             "send_call": "· DBOS.send call (in a wf)", "recv_find": "· recv, message already there",
             "redis_hop": "· raw Redis publish -> sub",
             "raw_wake": "· raw wake (no library)"}
    for mode, m in s["modes"].items():
        print(f"\n{mode}")
        print(f"  {'figure':<32}{'p50 ms':>10}{'p99 ms':>10}{'x floor':>10}{'n':>6}")
        for key, name in names.items():
            f = m.get(key)
            if f is None:
                continue
            print(f"  {name:<32}{f['p50_ms']:>10.3f}{f['p99_ms']:>10.3f}{f['x_floor']:>10.2f}{f['samples']:>6}")
        print(f"  ping-pong rate: {m['pingpong_round_trips_per_s']:.1f} round trips/s "
              f"= {m['pingpong_messages_per_s']:.1f} messages/s")
    idle = s.get("idle_floor_ms")
    if idle is not None:
        print(f"\nthe floor after the same {GAP * 1e3:.0f} ms idle as each send: p50 {idle['p50']:.3f} ms "
              f"= {idle['x_floor']:.2f}x the floor (n={idle['samples']})")
    redis = s["modes"].get("redis")
    if redis is not None:
        x = redis["send_recv"]["x_floor"]
        verdict = "met" if x <= TARGET_X_FLOOR else "MISSED"
        print(f"target: Redis send -> recv p50 <= {TARGET_X_FLOOR:.0f}x floor: {x:.2f}x ({verdict})")
        raw = redis.get("raw_wake")
        if raw is not None:
            print(f"  the raw wake (commit + publish -> another process, no library) is {raw['x_floor']:.2f}x; "
                  f"send -> recv is {redis['send_recv']['p50_ms'] / raw['p50_ms']:.2f}x the raw wake")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default=os.environ.get("DBOS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--redis-url", default=os.environ.get("DBOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--no-polling", action="store_true", help="skip the polling-only run")
    p.add_argument("--rounds", type=int, default=200, help="ping-pongs for send->recv with Redis (2 samples each)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--raw-wake-sub", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child_main(json.loads(args.child))
    if args.raw_wake_sub:
        return raw_wake_subscriber(args.raw_wake_sub)

    base = args.pg_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"bench_wakeups_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db_url = base.rsplit("/", 1)[0] + "/" + name
    floor: Optional[Floor] = None
    try:
        floor = Floor(db_url)
        log(f"database {name}; floor: {FLOOR_SAMPLES} inserts")
        floor.measure(FLOOR_SAMPLES)
        results = []
        redis_sizes = {"finds": 200, "warmup": 20, "rounds": args.rounds, "events": 100, "results": 100, "pingpong": 500}
        results.append(run_mode("redis", db_url, args.redis_url, redis_sizes, gap=GAP, jitter=0.0, floor=floor))
        floor.measure(IDLE_FLOOR_SAMPLES, idle=GAP)
        if not args.no_polling:
            # Random send times against the 1 s polling phase (a fixed gap phase-locks the two
            # pollers and makes the figure meaningless).
            polling_sizes = {"finds": 200, "warmup": 1, "rounds": 15, "events": 15, "results": 8, "pingpong": 6}
            results.append(run_mode("polling", db_url, None, polling_sizes, gap=GAP, jitter=1.0, floor=floor))
        floor.measure(FLOOR_SAMPLES)
        summary = summarize(results, floor.samples, floor.idle_samples)
        print_table(summary)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=2)
        return 0
    finally:
        if floor is not None:
            floor.close()
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
