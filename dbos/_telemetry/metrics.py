"""Counters an executor keeps for ``/metrics``: plain dict increments on the hot path
(a few hundred nanoseconds, no lock: the GIL makes each one atomic enough for a
counter read at scrape time), turned into Prometheus families only when scraped."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Optional

from prometheus_client.core import HistogramMetricFamily

# Histogram buckets, seconds: steps are milliseconds, workflows up to minutes.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = BUCKETS
    counts: list[int] = field(default_factory=list)  # one per bucket, then +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds


class Stats:
    def __init__(self) -> None:
        self.started: dict[tuple[str, str], int] = {}  # (name, queue) -> count
        self.finished: dict[tuple[str, str, str], int] = {}  # (name, queue, status)
        self.claims: dict[str, int] = {}  # queue -> rows claimed
        self.workflow_seconds = Histogram()
        self.step_seconds = Histogram()
        self._lock = threading.Lock()  # for the histograms' lists only

    def workflow_started(self, name: str, queue: Optional[str]) -> None:
        key = (name, queue or "")
        self.started[key] = self.started.get(key, 0) + 1

    def workflow_finished(self, name: str, queue: Optional[str], status: str, seconds: float) -> None:
        key = (name, queue or "", status)
        self.finished[key] = self.finished.get(key, 0) + 1
        with self._lock:
            self.workflow_seconds.observe(seconds)

    def step_done(self, seconds: float) -> None:
        with self._lock:
            self.step_seconds.observe(seconds)

    def claimed(self, queue: str, n: int) -> None:
        self.claims[queue] = self.claims.get(queue, 0) + n


def histogram_family(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    """A Prometheus histogram from our per-bucket counts (made cumulative here)."""
    counts = list(h.counts)
    cumulative, total = [], 0
    for bound, n in zip([*(str(b) for b in h.buckets), "+Inf"], counts):
        total += n
        cumulative.append((bound, total))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=h.total)
