"""Tracing benchmark: what OpenTelemetry tracing adds to the cost of a durable step.

Two worker processes run the same workload on the same PostgreSQL database: one
workflow of 1,000 trivial ``@DBOS.step`` calls per round.

- ``off``: no TracerProvider is installed (DBOS skips its spans).
- ``on``:  an SDK TracerProvider with a BatchSpanProcessor and an exporter that
  discards the spans is installed globally before launch, so every workflow and
  step makes a real span that is batched and handed to an exporter.

OpenTelemetry's global provider can be set only once per process, hence one
process per mode. The rounds alternate between the two workers (off/on, then
on/off, ...), so a noisy machine moves both figures alike. Each round's figure is
total time / steps; the result is the median over the rounds, for wall-clock time
and for process CPU time (all threads, including the span exporter's).

    .venv/bin/python bench/tracing.py [--pg-url URL] [--steps 1000] [--rounds 9] [--json PATH]

A database ``bench_tracing_<random>`` is created on the server of ``--pg-url``
and dropped at the end. Target: tracing must not double the cost of a step
(ratio on/off < 2). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

DEFAULT_PG = os.environ.get("DBOS_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_RATIO = 2.0


# -- the worker (one process per mode) --------------------------------------------------------


def worker(mode: str, url: str, steps: int) -> int:
    exported = [0]
    provider: Any = None
    if mode == "on":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class DiscardExporter(SpanExporter):
            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                exported[0] += len(spans)
                return SpanExportResult.SUCCESS

            def shutdown(self) -> None:
                pass

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(DiscardExporter()))
        trace.set_tracer_provider(provider)

    from dbos import DBOS

    @DBOS.step(name="bench_tracing.noop_step")
    def noop_step(i: int) -> int:
        return i

    @DBOS.workflow(name="bench_tracing.steps_workflow")
    def steps_workflow(n: int) -> int:
        for i in range(n):
            noop_step(i)
        return n

    DBOS(config={
        "name": f"bench-tracing-{mode}",
        "system_database_url": url,
        "executor_id": f"bench-{mode}",
        "application_version": "bench-tracing",
        "log_level": "WARNING",
        "sys_db_pool_size": 4,  # one workflow at a time: few connections, on a shared server
    })
    DBOS.launch()
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "run":
                cpu0, t0 = time.process_time(), time.perf_counter()
                steps_workflow(steps)
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)
            elif command == "quit":
                break
    finally:
        DBOS.destroy()
        if provider is not None:
            provider.shutdown()  # flushes the batch processor
    print(json.dumps({"exported_spans": exported[0]}), flush=True)
    return 0


class Worker:
    def __init__(self, mode: str, url: str, steps: int) -> None:
        self.mode = mode
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", mode, "--url", url, "--steps", str(steps)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def run(self) -> dict[str, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.mode} worker exited (code {self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def quit(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.read()
        self.proc.wait(timeout=60)
        return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- the driver ---------------------------------------------------------------------------------


def _with_database(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + database + ("?" + query if query else "")


def _admin(url: str, sql: str) -> None:
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)


def measure(pg_url: str, steps: int, rounds: int) -> dict[str, Any]:
    database = f"bench_tracing_{secrets.token_hex(6)}"
    _admin(pg_url, f'CREATE DATABASE "{database}"')
    url = _with_database(pg_url, database)
    workers: dict[str, Worker] = {}
    try:
        # Start one worker first, so the two do not race to create the schema.
        workers["off"] = Worker("off", url, steps)
        workers["off"].run()  # warm-up (and schema creation)
        workers["on"] = Worker("on", url, steps)
        workers["on"].run()  # warm-up
        samples: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for r in range(rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            for mode in order:
                samples[mode].append(workers[mode].run())
            print(
                f"round {r + 1}/{rounds}: off {samples['off'][-1]['wall'] / steps * 1e3:.3f} ms/step, "
                f"on {samples['on'][-1]['wall'] / steps * 1e3:.3f} ms/step",
                file=sys.stderr,
            )
        exported = {mode: w.quit().get("exported_spans", 0) for mode, w in workers.items()}
    finally:
        for w in workers.values():
            w.kill()
        _admin(pg_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def per_step(mode: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[mode]) / steps

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "steps_per_workflow": steps,
        "rounds": rounds,
        "off_wall_ms_per_step": per_step("off", "wall") * 1e3,
        "on_wall_ms_per_step": per_step("on", "wall") * 1e3,
        "off_cpu_ms_per_step": per_step("off", "cpu") * 1e3,
        "on_cpu_ms_per_step": per_step("on", "cpu") * 1e3,
        "exported_spans": exported,
        "expected_spans_on": (rounds + 1) * (steps + 1),
    }
    result["wall_ratio"] = result["on_wall_ms_per_step"] / result["off_wall_ms_per_step"]
    result["cpu_ratio"] = result["on_cpu_ms_per_step"] / result["off_cpu_ms_per_step"]
    result["added_wall_us_per_step"] = (result["on_wall_ms_per_step"] - result["off_wall_ms_per_step"]) * 1e3
    result["added_cpu_us_per_step"] = (result["on_cpu_ms_per_step"] - result["off_cpu_ms_per_step"]) * 1e3
    return result


def report(r: dict[str, Any]) -> None:
    ok = r["wall_ratio"] < TARGET_RATIO
    print(f"Tracing cost per step (one workflow of {r['steps_per_workflow']} steps, median of {r['rounds']} rounds)")
    print(f"{'':28}{'tracing off':>14}{'tracing on':>14}{'on / off':>10}{'added':>12}")
    print(f"{'wall-clock per step':28}{r['off_wall_ms_per_step']:>11.3f} ms{r['on_wall_ms_per_step']:>11.3f} ms"
          f"{r['wall_ratio']:>9.2f}x{r['added_wall_us_per_step']:>9.1f} us")
    print(f"{'process CPU per step':28}{r['off_cpu_ms_per_step']:>11.3f} ms{r['on_cpu_ms_per_step']:>11.3f} ms"
          f"{r['cpu_ratio']:>9.2f}x{r['added_cpu_us_per_step']:>9.1f} us")
    print(f"spans exported: on={r['exported_spans'].get('on')} (expected {r['expected_spans_on']}), "
          f"off={r['exported_spans'].get('off')}")
    print(f"target: tracing on < {TARGET_RATIO:.0f}x tracing off (wall-clock) -- {'met' if ok else 'MISSED'}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--worker", choices=["off", "on"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.url, args.steps)
    result = measure(args.pg_url, args.steps, args.rounds)
    report(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
