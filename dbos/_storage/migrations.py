"""Versioned migrations for the system and application databases.

Each migration is a function of (connection, dialect) appended to a list; the
version is its position (1-based). ``migrate`` applies, in one transaction per
database, every version not yet recorded. Concurrent launches are safe: on
PostgreSQL the transaction holds an advisory lock, on SQLite BEGIN IMMEDIATE
serializes writers. Never edit a released migration; append a new one.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import sqlalchemy as sa

from dbos._storage import schema as s
from dbos._storage.database import Database, retry_on_disconnect
from dbos._storage.dialect import Dialect

Migration = Callable[[sa.Connection, Dialect], None]

_ACTIVE = "status IN ('ENQUEUED', 'PENDING')"


def _where(predicate: str) -> dict[str, Any]:
    """Partial-index options, the same predicate on both databases."""
    return {"postgresql_where": sa.text(predicate), "sqlite_where": sa.text(predicate)}


def _not_null(column: str) -> dict[str, Any]:
    """Only rows where ``column`` is set (most rows skip the index)."""
    return _where(f"{column} IS NOT NULL")


def _v1_system(conn: sa.Connection, dialect: Dialect) -> None:
    for table in s.system.sorted_tables:
        if table is not s.migrations:
            table.create(conn, checkfirst=True)
    ws = s.workflow_status
    indexes = [
        # recovery: this executor's PENDING workflows
        sa.Index("ws_executor_status", ws.c.executor_id, ws.c.status, **_where(_ACTIVE)),
        sa.Index("ws_created_at", ws.c.created_at, ws.c.workflow_uuid),  # list order: (created_at, id)
        sa.Index("ws_name_created", ws.c.name, ws.c.created_at),
        sa.Index("ws_user_created", ws.c.authenticated_user, ws.c.created_at, **_not_null("authenticated_user")),
        sa.Index("ws_version_created", ws.c.application_version, ws.c.created_at),
        # Finished rows only: live rows have the queue and executor indexes, and
        # keeping them out leaves the claim no index to prefer over ws_queue_ready
        # when statistics are stale (status = 'ENQUEUED' estimated at one row).
        sa.Index(
            "ws_status_created",
            ws.c.status,
            ws.c.created_at,
            **_where(f"NOT ({_ACTIVE})"),
        ),
        sa.Index("ws_parent", ws.c.parent_workflow_id, **_not_null("parent_workflow_id")),
        # rate limiter: starts of a queue within its window
        sa.Index("ws_queue_started", ws.c.queue_name, ws.c.started_at, **_not_null("queue_name")),
        # The claim: a queue's ENQUEUED rows in claim order. Only rows waiting to
        # start are in it, so neither history nor running work can slow a claim,
        # and the planner has no cheaper-looking index to prefer.
        sa.Index(
            "ws_queue_ready",
            ws.c.queue_name,
            ws.c.priority,
            ws.c.created_at,
            **_where("queue_name IS NOT NULL AND status = 'ENQUEUED'"),
        ),
        # Limits: what runs now, fleet-wide and per executor.
        sa.Index(
            "ws_queue_running",
            ws.c.queue_name,
            ws.c.executor_id,
            **_where("queue_name IS NOT NULL AND status = 'PENDING'"),
        ),
        # list_queued_workflows(): live queued rows in list order, any queue
        sa.Index(
            "ws_queued_created",
            ws.c.created_at,
            ws.c.workflow_uuid,
            **_where(f"queue_name IS NOT NULL AND {_ACTIVE}"),
        ),
        # list_queued_workflows(queue_name=...): live rows of a queue in list order
        sa.Index(
            "ws_queue_created",
            ws.c.queue_name,
            ws.c.created_at,
            ws.c.workflow_uuid,
            **_where(f"queue_name IS NOT NULL AND {_ACTIVE}"),
        ),
        sa.Index(
            "ws_queue_dedup",
            ws.c.queue_name,
            ws.c.deduplication_id,
            unique=True,
            **_where(f"deduplication_id IS NOT NULL AND {_ACTIVE}"),
        ),
        sa.Index(
            "ws_deadline",
            ws.c.deadline_ms,
            **_where(f"deadline_ms IS NOT NULL AND {_ACTIVE}"),
        ),
        sa.Index(
            "notifications_dest_topic",
            s.notifications.c.destination_uuid,
            s.notifications.c.topic,
            s.notifications.c.seq,
        ),
        sa.Index(
            "operation_outputs_child",
            s.operation_outputs.c.child_workflow_id,
            **_not_null("child_workflow_id"),
        ),
    ]
    for index in indexes:
        index.create(conn, checkfirst=True)
        # sa.Index attaches itself to the shared Table; detach it, or the next
        # table.create() in this process would create it twice.
        index.table.indexes.discard(index)  # type: ignore[union-attr]


def _schema(conn: sa.Connection) -> Any:
    return (conn.get_execution_options().get("schema_translate_map") or {}).get(None)


def _add_columns(conn: sa.Connection, table: str, columns: list[tuple[str, str]]) -> None:
    """ALTER TABLE ... ADD COLUMN for each (name, DDL type) the table lacks (a database
    created from today's table definitions has them already)."""
    schema = _schema(conn)
    have = {c["name"] for c in sa.inspect(conn).get_columns(table, schema=schema)}
    qualified = f'"{schema}".{table}' if schema else table
    for name, ddl in columns:
        if name not in have:
            conn.execute(sa.text(f"ALTER TABLE {qualified} ADD COLUMN {name} {ddl}"))


def _v2_system(conn: sa.Connection, dialect: Dialect) -> None:
    """Messages handed straight to a waiting recv (``recv_waits``)."""
    s.recv_waits.create(conn, checkfirst=True)


def _v3_system(conn: sa.Connection, dialect: Dialect) -> None:
    """The fleet: executor incarnations, served queues and load; the leader lease."""
    _add_columns(conn, "executors", [
        ("incarnation", "BIGINT NOT NULL DEFAULT 0"), ("queues", "TEXT"), ("running", "INTEGER NOT NULL DEFAULT 0"),
    ])
    s.leader_lease.create(conn, checkfirst=True)


def _v4_system(conn: sa.Connection, dialect: Dialect) -> None:
    """Versions as first-class: the registered app versions; the launcher's launches."""
    s.application_versions.create(conn, checkfirst=True)
    s.launches.create(conn, checkfirst=True)


def _v5_system(conn: sa.Connection, dialect: Dialect) -> None:
    """Executors publish their queues' limits (the autoscaling signal)."""
    _add_columns(conn, "executors", [("queue_specs", "TEXT")])


_QUEUED = "status IN ('DELAYED', 'ENQUEUED', 'PENDING')"


def _v6_system(conn: sa.Connection, dialect: Dialect) -> None:
    """Delayed enqueues: ``delay_until_epoch_ms`` and the DELAYED status, which the
    deduplication and queued-listing indexes now cover as well."""
    _add_columns(conn, "workflow_status", [("delay_until_epoch_ms", "BIGINT")])
    schema = _schema(conn)
    ws = s.workflow_status
    prefix = f'"{schema}".' if schema else ""
    for name in ("ws_queue_dedup", "ws_queued_created", "ws_queue_created"):
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {prefix}{name}"))
    indexes = [
        sa.Index(
            "ws_queue_dedup", ws.c.queue_name, ws.c.deduplication_id, unique=True,
            **_where(f"deduplication_id IS NOT NULL AND {_QUEUED}"),
        ),
        sa.Index(
            "ws_queued_created", ws.c.created_at, ws.c.workflow_uuid, **_where(f"queue_name IS NOT NULL AND {_QUEUED}")
        ),
        sa.Index(
            "ws_queue_created", ws.c.queue_name, ws.c.created_at, ws.c.workflow_uuid,
            **_where(f"queue_name IS NOT NULL AND {_QUEUED}"),
        ),
        # The promotion of due DELAYED rows to ENQUEUED (queues.promote_delayed).
        sa.Index("ws_delayed_until", ws.c.delay_until_epoch_ms, **_where("status = 'DELAYED'")),
    ]
    for index in indexes:
        index.create(conn, checkfirst=True)
        index.table.indexes.discard(index)  # type: ignore[union-attr]


def _v7_system(conn: sa.Connection, dialect: Dialect) -> None:
    """Cron schedules (issue 16); retention by age reads ws_status_created, deletes of
    children read ws_parent, so garbage collection needs no new index."""
    s.schedules.create(conn, checkfirst=True)


def _v8_system(conn: sa.Connection, dialect: Dialect) -> None:
    """Steps record how many attempts their outcome took (the console's step timeline)."""
    _add_columns(conn, "operation_outputs", [("attempts", "INTEGER")])


def _v9_system(conn: sa.Connection, dialect: Dialect) -> None:
    """Queues stored in the database, whose limits change at run time (issue 18)."""
    s.queues.create(conn, checkfirst=True)


def _v10_system(conn: sa.Connection, dialect: Dialect) -> None:
    """DBOS 2.x's workflow attributes: a JSON object per workflow (NULL when it has none)."""
    _add_columns(conn, "workflow_status", [("attributes", "TEXT")])


def _v11_system(conn: sa.Connection, dialect: Dialect) -> None:
    """DBOS 2.x's schedule options (automatic_backfill, cron_timezone) and schedule_id;
    a tick's workflow records its schedule's name (``list_workflows(schedule_name=)``)."""
    _add_columns(conn, "schedules", [
        ("schedule_id", "TEXT"), ("automatic_backfill", "BOOLEAN NOT NULL DEFAULT FALSE"), ("cron_timezone", "TEXT"),
    ])
    t = s.schedules
    for name in conn.execute(sa.select(t.c.schedule_name).where(t.c.schedule_id.is_(None))).scalars().all():
        conn.execute(t.update().where(t.c.schedule_name == name).values(schedule_id=str(uuid.uuid4())))
    _add_columns(conn, "workflow_status", [("schedule_name", "TEXT")])
    ws = s.workflow_status
    index = sa.Index("ws_schedule_created", ws.c.schedule_name, ws.c.created_at, **_not_null("schedule_name"))
    index.create(conn, checkfirst=True)
    index.table.indexes.discard(index)  # type: ignore[union-attr]


def _v12_system(conn: sa.Connection, dialect: Dialect) -> None:
    """DBOS 2.x's ``was_forked_from``: set on a fork's source (``list_workflows(was_forked_from=)``).
    Sources of forks made before it are marked too (one pass over ``forked_from``). And
    an index of the forks by source (forks only: most rows skip it), which
    ``send(send_to_forks=True)`` walks a generation at a time and ``list_workflows(forked_from=)``
    and the console read."""
    _add_columns(conn, "workflow_status", [("was_forked_from", "BOOLEAN NOT NULL DEFAULT FALSE")])
    ws = s.workflow_status
    index = sa.Index("ws_forked_from", ws.c.forked_from, **_not_null("forked_from"))
    index.create(conn, checkfirst=True)
    index.table.indexes.discard(index)  # type: ignore[union-attr]
    forks = sa.select(ws.c.forked_from).where(ws.c.forked_from.is_not(None)).scalar_subquery()
    conn.execute(sa.update(ws).where(ws.c.workflow_uuid.in_(forks)).values(was_forked_from=True))


def _v1_application(conn: sa.Connection, dialect: Dialect) -> None:
    s.transaction_outputs.create(conn, checkfirst=True)


SYSTEM_MIGRATIONS: list[Migration] = [_v1_system, _v2_system, _v3_system, _v4_system, _v5_system, _v6_system, _v7_system, _v8_system,
                                     _v9_system, _v10_system, _v11_system, _v12_system]
APPLICATION_MIGRATIONS: list[Migration] = [_v1_application]


def migrate_system(db: Database) -> int:
    return _migrate(db, s.migrations, SYSTEM_MIGRATIONS, lock_key=0x7DB05)


def migrate_application(db: Database) -> int:
    return _migrate(db, s.app_migrations, APPLICATION_MIGRATIONS, lock_key=0x7DB06)


def _migrate(db: Database, table: sa.Table, steps: list[Migration], lock_key: int) -> int:
    """Apply pending migrations; return the number applied."""

    def apply() -> int:
        with db.transaction() as conn:
            if not db.dialect.is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
            table.create(conn, checkfirst=True)
            done = set(conn.execute(sa.select(table.c.version)).scalars())
            applied = 0
            for version, step in enumerate(steps, start=1):
                if version in done:
                    continue
                step(conn, db.dialect)
                conn.execute(
                    table.insert().values(version=version, applied_at=int(time.time() * 1000))
                )
                applied += 1
            return applied

    return retry_on_disconnect(apply)


def reset_system(db: Database, *, truncate: bool = False) -> None:
    """Drop every system table (on PostgreSQL the whole schema), so the next
    ``migrate_system`` builds the system database afresh; ``truncate``: delete
    every row instead, keeping the tables (``DBOS.reset_system_database``)."""
    _reset(db, s.system, s.migrations, truncate)


def reset_application(db: Database, *, truncate: bool = False) -> None:
    """The same for this library's tables in the application database (the user's own stay)."""
    _reset(db, s.application, s.app_migrations, truncate)


def _reset(db: Database, metadata: sa.MetaData, versions: sa.Table, truncate: bool) -> None:
    def apply() -> None:
        with db.transaction() as conn:
            present = set(sa.inspect(conn).get_table_names(schema=None if db.dialect.is_sqlite else db.schema))
            if truncate:
                for table in reversed(metadata.sorted_tables):
                    if table is not versions and table.name in present:
                        conn.execute(table.delete())
            elif not db.dialect.is_sqlite and metadata is s.system:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{db.schema}" CASCADE'))
            else:
                for table in reversed(metadata.sorted_tables):
                    if table.name in present:
                        table.drop(conn)

    retry_on_disconnect(apply)


def current_version(db: Database, table: sa.Table = s.migrations) -> int:
    with db.read() as conn:
        if not sa.inspect(conn).has_table(table.name, schema=db.schema):
            return 0
        return int(conn.execute(sa.select(sa.func.max(table.c.version))).scalar() or 0)


def require_system_tables(db: Database, where: str) -> None:
    """Check, without writing, that the system tables exist at this build's version (a
    process told not to migrate: ``run_migrations=False``, the read-only CLI commands);
    ``where`` names the database for the message."""
    from dbos.error import DBOSException

    version = current_version(db)
    if version == 0:
        raise DBOSException(f"no DBOS system tables in {where} (dbos migrate creates them)")
    if version < len(SYSTEM_MIGRATIONS):
        raise DBOSException(
            f"the system tables in {where} are at version {version}, this dbos needs {len(SYSTEM_MIGRATIONS)}: "
            "run dbos migrate (or launch an executor of this version) first"
        )


def grant_schema(db: Database, role: str) -> None:
    """PostgreSQL: give ``role`` what an executor needs in the system schema (use, read and
    write every table and sequence, now and later): for an application role that cannot run
    DDL, after the migrations ran as another."""
    if db.dialect.is_sqlite:
        return

    def apply() -> None:
        with db.write() as conn:
            quote = conn.dialect.identifier_preparer.quote
            schema, grantee = quote(db.schema or "public"), quote(role)
            for stmt in (
                f"GRANT USAGE ON SCHEMA {schema} TO {grantee}",
                f"GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA {schema} TO {grantee}",
                f"GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA {schema} TO {grantee}",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL ON TABLES TO {grantee}",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL ON SEQUENCES TO {grantee}",
            ):
                conn.execute(sa.text(stmt))

    retry_on_disconnect(apply)
