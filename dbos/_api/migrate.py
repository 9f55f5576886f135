"""``dbos.run_dbos_database_migrations``: what ``dbos migrate`` does, from Python (DBOS 2.x):
create the databases a PostgreSQL server lacks, apply every migration not yet applied to
the system (and application) database, and optionally grant an application role what
executors need, for deployments that migrate as an owner and run as a role without DDL."""

from __future__ import annotations

from typing import Optional

from dbos._config.settings import check_schema_name, normalize_database_url
from dbos._storage.database import Database, ensure_database
from dbos._storage.migrations import grant_schema, migrate_application, migrate_system


def migrate_databases(
    system_database_url: str, app_database_url: Optional[str], schema: str, application_role: Optional[str]
) -> int:
    """Create, migrate and grant; return how many migrations were applied."""
    check_schema_name("schema", schema)
    if application_role is not None and (not isinstance(application_role, str) or not application_role.strip()):
        raise ValueError(f"application_role must be a role name, got {application_role!r}")
    sys_url = normalize_database_url(system_database_url, "system_database_url")
    app_url = normalize_database_url(app_database_url, "app_database_url") if app_database_url else sys_url
    for url in {sys_url, app_url}:
        ensure_database(url)
    db = Database(sys_url, schema, 2)
    app_db = db if app_url == sys_url else Database(app_url, schema, 2)
    try:
        applied = migrate_system(db) + migrate_application(app_db)
        if application_role is not None:
            for target in {id(db): db, id(app_db): app_db}.values():
                grant_schema(target, application_role)
        return applied
    finally:
        db.dispose()
        if app_db is not db:
            app_db.dispose()


def run_dbos_database_migrations(
    system_database_url: str,
    *,
    app_database_url: Optional[str] = None,
    schema: str = "dbos",
    application_role: Optional[str] = None,
) -> None:
    """Create or upgrade the DBOS tables (as ``dbos migrate``); grant ``application_role``
    (PostgreSQL) use of them."""
    migrate_databases(system_database_url, app_database_url, schema, application_role)
