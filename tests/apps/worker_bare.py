"""A ``dbos-worker`` app with no ``DBOS(...)`` of its own (tests/test_worker*.py): the worker
builds the config from ``DBOS_SYSTEM_DATABASE_URL``, ``DBOS_REDIS_URL`` and ``DBOS_APP_NAME``.
The workflows are tests/apps/worker_flows.py's."""

from __future__ import annotations

from worker_flows import POLL  # noqa: F401  (registers the queues and workflows)
