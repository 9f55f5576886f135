"""Table definitions for the system database and the application database.

Tables are declared without a schema; on PostgreSQL the engine translates
``None`` to the configured schema (``schema_translate_map``), on SQLite they
live in the file's main schema. Columns hold epoch milliseconds for time and
pickled bytes for values.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

system = sa.MetaData()

LIVE = ("ENQUEUED", "PENDING")
TERMINAL = ("SUCCESS", "ERROR", "CANCELLED", "RETRIES_EXCEEDED")
# DELAYED: enqueued with a delay, not claimable before ``delay_until_epoch_ms`` (then ENQUEUED).
DELAYED = "DELAYED"
STATUSES = LIVE + TERMINAL + (DELAYED,)
QUEUED = (DELAYED,) + LIVE  # a queued workflow not finished yet


def status_in(*values: str) -> sa.ColumnElement[bool]:
    """``workflow_status.status`` compared with SQL literals, not bind parameters.

    The partial indexes (live rows: ``status IN ('ENQUEUED', 'PENDING')``) can
    only serve a query whose status condition the planner can check against
    their predicate. psycopg prepares a statement after a few executions, and
    PostgreSQL's generic plan for a prepared statement cannot see a parameter's
    value: with ``status = $1`` it falls back to an index over the whole
    history. Literals keep every plan on the partial indexes. Only the known
    statuses are accepted, so nothing user-supplied reaches the SQL text.
    """
    for v in values:
        if v not in STATUSES:
            raise ValueError(f"unknown workflow status {v!r}; expected one of {', '.join(STATUSES)}")
    literals = [sa.literal_column(f"'{v}'", sa.Text) for v in values]
    column = workflow_status.c.status
    return column == literals[0] if len(literals) == 1 else column.in_(literals)

workflow_status = sa.Table(
    "workflow_status",
    system,
    # Byte order ("C") on PostgreSQL, so the primary key also serves
    # workflow_id_prefix (LIKE 'p%' becomes a range scan of it) and no second
    # index over the random-keyed IDs is needed. Compared with other text
    # columns, a non-default collation wins over the default one.
    sa.Column("workflow_uuid", sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql"), primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("class_name", sa.Text),
    sa.Column("config_name", sa.Text),
    sa.Column("authenticated_user", sa.Text),
    sa.Column("assumed_role", sa.Text),
    sa.Column("authenticated_roles", sa.Text),  # JSON list
    sa.Column("inputs", sa.LargeBinary),
    sa.Column("output", sa.LargeBinary),
    sa.Column("error", sa.LargeBinary),
    sa.Column("executor_id", sa.Text),
    sa.Column("application_version", sa.Text),
    sa.Column("application_id", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger),  # when an executor began it (dequeue time)
    sa.Column("recovery_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("queue_name", sa.Text),
    sa.Column("priority", sa.Integer),
    sa.Column("deduplication_id", sa.Text),
    sa.Column("queue_partition_key", sa.Text),
    sa.Column("timeout_ms", sa.BigInteger),
    sa.Column("deadline_ms", sa.BigInteger),
    sa.Column("parent_workflow_id", sa.Text),
    sa.Column("forked_from", sa.Text),
    sa.Column("trace_context", sa.Text),
    sa.Column("delay_until_epoch_ms", sa.BigInteger),  # DELAYED until then (migration v6)
    sa.Column("attributes", sa.Text),  # a JSON object: DBOS 2.x's workflow attributes (migration v10)
    sa.Column("schedule_name", sa.Text),  # the schedule whose tick this is (migration v11)
    # DBOS 2.x: some fork names this workflow as its source (migration v12)
    sa.Column("was_forked_from", sa.Boolean, nullable=False, server_default=sa.false()),
)

operation_outputs = sa.Table(
    "operation_outputs",
    system,
    sa.Column("workflow_uuid", sa.Text, primary_key=True),
    sa.Column("function_id", sa.Integer, primary_key=True),
    sa.Column("function_name", sa.Text, nullable=False),
    sa.Column("output", sa.LargeBinary),
    sa.Column("error", sa.LargeBinary),
    sa.Column("child_workflow_id", sa.Text),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("completed_at", sa.BigInteger),
    sa.Column("attempts", sa.Integer),  # how many times the step ran to this outcome; NULL: once
)

notifications = sa.Table(
    "notifications",
    system,
    # seq orders messages (FIFO per destination and topic); message_id makes a
    # send from a workflow idempotent on replay ("<workflow_id>-<function_id>").
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("message_id", sa.Text, nullable=False, unique=True),
    sa.Column("destination_uuid", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),  # '' for no topic
    sa.Column("message", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# A workflow waiting in recv: which step (function_id) a message for this topic
# may be handed to directly (PostgreSQL; see messages.py). A row outlives its
# wait harmlessly: a hand-off to a step already recorded does not happen.
recv_waits = sa.Table(
    "recv_waits",
    system,
    sa.Column("workflow_uuid", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("function_id", sa.Integer, nullable=False),
)

workflow_events = sa.Table(
    "workflow_events",
    system,
    sa.Column("workflow_uuid", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

executors = sa.Table(
    "executors",
    system,
    sa.Column("executor_id", sa.Text, primary_key=True),
    sa.Column("app_version", sa.Text, nullable=False),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # RUNNING | DRAINING | STOPPED | DEAD
    # Each start of a process under this ID is a new incarnation: a hand-over
    # decided against one never takes work from the next (docs/fleet.md).
    sa.Column("incarnation", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("queues", sa.Text),  # JSON list of the queues it serves; NULL: all
    sa.Column("running", sa.Integer, nullable=False, server_default="0"),
    # JSON list of {name, concurrency, worker_concurrency} of the queues it serves: what
    # the coordinator's autoscaling signal divides the waiting work by.
    sa.Column("queue_specs", sa.Text),
)

# The coordinators' leader: one row, held by whoever renewed it last, until it expires.
leader_lease = sa.Table(
    "leader_lease",
    system,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("term", sa.BigInteger, nullable=False),
)

# Every app version an executor launched with; the latest (highest timestamp) is
# where clients send unpinned work. ``set_latest`` moves a version's timestamp up.
application_versions = sa.Table(
    "application_versions",
    system,
    sa.Column("version_id", sa.Text, primary_key=True),
    sa.Column("version_name", sa.Text, nullable=False, unique=True),
    sa.Column("version_timestamp", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Executors the coordinator's launcher started for a version with waiting work.
launches = sa.Table(
    "launches",
    system,
    sa.Column("launch_id", sa.Text, primary_key=True),
    sa.Column("app_version", sa.Text, nullable=False),
    sa.Column("launcher", sa.Text, nullable=False),  # local | kubernetes
    sa.Column("state", sa.Text, nullable=False),  # LAUNCHING | SUCCEEDED | FAILED
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger),
    sa.Column("handle", sa.Text),  # pid or Job name
    sa.Column("executor_id", sa.Text),  # the DBOS__VMID given to the launched worker
    sa.Column("error", sa.Text),
    sa.Index("launches_version_state", "app_version", "state"),
)

# Cron schedules every executor sees: the @DBOS.scheduled ones (kind "decorator",
# named by their workflow) and DBOS.create_schedule's (kind "dynamic"). A tick
# runs as the workflow ``sched-<schedule_name>-<tick ISO time>``, so whichever
# executors fire it, it runs once; ``last_fired_at`` (epoch ms of the newest tick
# fired) bounds the missed-tick rule (docs/decisions.md).
schedules = sa.Table(
    "schedules",
    system,
    sa.Column("schedule_name", sa.Text, primary_key=True),
    sa.Column("schedule_id", sa.Text),  # a UUID, new when the name is created again (migration v11)
    sa.Column("workflow_name", sa.Text, nullable=False),
    sa.Column("workflow_class_name", sa.Text),
    sa.Column("schedule", sa.Text, nullable=False),  # the crontab
    sa.Column("context", sa.LargeBinary),  # pickled; passed to every tick (dynamic schedules)
    sa.Column("status", sa.Text, nullable=False),  # ACTIVE | PAUSED
    sa.Column("kind", sa.Text, nullable=False),  # decorator | dynamic
    sa.Column("queue_name", sa.Text),
    sa.Column("last_fired_at", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # DBOS 2.x (migration v11): on start, run every tick missed since the last one fired;
    # the IANA zone whose wall clock the crontab reads (NULL: UTC).
    sa.Column("automatic_backfill", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cron_timezone", sa.Text),
)

# Queues stored in the database (``DBOS.register_queue``): one row a queue, its limits
# for the whole fleet. Every executor claims from every stored queue (unless it
# listens to others only) and the claim reads its limits here, under the queue's
# claim lock, so a change applies to the next claim anywhere. NULL: no such limit.
queues = sa.Table(
    "queues",
    system,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("concurrency", sa.Integer),  # fleet-wide, across partitions
    sa.Column("worker_concurrency", sa.Integer),  # per executor, across partitions (0: paused)
    sa.Column("rate_limit_max", sa.Integer),
    sa.Column("rate_limit_period_sec", sa.Float),
    sa.Column("priority_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("partition_queue", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("partition_concurrency", sa.Integer),  # fleet-wide, per partition
    sa.Column("partition_worker_concurrency", sa.Integer),  # per executor, per partition
    sa.Column("partition_rate_limit_max", sa.Integer),
    sa.Column("partition_rate_limit_period_sec", sa.Float),
    sa.Column("polling_interval_sec", sa.Float, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

migrations = sa.Table(
    "dbos_migrations",
    system,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)

application = sa.MetaData()

transaction_outputs = sa.Table(
    "transaction_outputs",
    application,
    sa.Column("workflow_uuid", sa.Text, primary_key=True),
    sa.Column("function_id", sa.Integer, primary_key=True),
    sa.Column("output", sa.LargeBinary),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

app_migrations = sa.Table(
    "dbos_app_migrations",
    application,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)
