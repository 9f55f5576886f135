"""An ASGI app served by uvicorn on a daemon thread of its own, so it answers while
every executor thread is busy (the admin server, the coordinator's HTTP side)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import uvicorn

from dbos.error import DBOSInitializationError


class HTTPServerThread:
    def __init__(self, app: Any, host: str, port: int, what: str, logger: logging.Logger) -> None:
        self.host, self.port, self.what, self.logger = host, port, what, logger
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"dbos-{what}", daemon=True)

    def start(self, timeout_sec: float = 10.0) -> None:
        """Return once it listens; raise if it cannot (the port is taken, ...)."""
        self._thread.start()
        end = time.monotonic() + timeout_sec
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                raise DBOSInitializationError(f"the {self.what} could not listen on {self.host}:{self.port}")
            time.sleep(0.01)
        if self.port == 0:
            sockets = [s for srv in (self._server.servers or []) for s in (srv.sockets or [])]
            if sockets:
                self.port = int(sockets[0].getsockname()[1])
        self.logger.info("%s listening on http://%s:%d", self.what, self.host, self.port)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
