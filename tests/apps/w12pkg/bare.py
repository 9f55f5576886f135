"""``dbos-worker w12pkg.bare``: no DBOS instance; the worker's config comes from the environment."""

from __future__ import annotations

from worker_flows import POLL  # noqa: F401  (registers the queues and workflows)
