"""One shape for every background loop.

A Service has a name, an interval and ``run_once()``; ``start()`` runs it on a
daemon thread every interval (with jitter, errors logged once per state
change), ``stop()`` wakes and joins it. Tests call ``run_once()`` directly.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Optional


class Service:
    name = "service"

    def __init__(self, interval_sec: float, logger: logging.Logger, jitter: float = 0.1) -> None:
        self.interval_sec = interval_sec
        self.logger = logger
        self._jitter = jitter
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._failing = False

    def run_once(self) -> None:
        raise NotImplementedError

    def next_delay(self) -> float:
        """Seconds until the next tick (a wake() cuts it short)."""
        return self.interval_sec * (1 + random.uniform(-self._jitter, self._jitter))

    def wake(self) -> None:
        """Run the next tick now instead of at the end of the interval."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name=f"dbos-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                if self._failing:
                    self.logger.info("%s recovered", self.name)
                    self._failing = False
            except Exception as e:
                if not self._failing:
                    self.logger.warning("%s failed: %s (will retry)", self.name, e)
                    self._failing = True
            if self._stop.is_set():
                break
            delay = self.next_delay()
            if delay > 0:
                self._wake.wait(delay)
            self._wake.clear()
