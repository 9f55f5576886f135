"""The ``dbos`` logger: records carry the workflow ID and executor ID of where they were logged."""

from __future__ import annotations

import logging

from dbos._execution import context

LOGGER_NAME = "dbos"


class ContextFilter(logging.Filter):
    def __init__(self, executor_id: str) -> None:
        super().__init__()
        self.executor_id = executor_id

    def filter(self, record: logging.LogRecord) -> bool:
        run = context.current().run
        record.workflow_id = run.workflow_id if run is not None else ""
        record.executor_id = self.executor_id
        return True


def configure(level: str, executor_id: str) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    for f in list(logger.filters):
        if isinstance(f, ContextFilter):
            logger.removeFilter(f)
    logger.addFilter(ContextFilter(executor_id))
    if not any(getattr(h, "_dbos", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [dbos %(executor_id)s] %(message)s"))
        setattr(handler, "_dbos", True)
        logger.addHandler(handler)
        logger.propagate = False
    return logger
