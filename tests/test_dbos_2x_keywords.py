"""DBOS 2.x keywords and config keys (issue 18: "Names and keywords", items 15 and 17):
config keys DBOS knows are accepted (implemented, or logged once as having no effect),
unknown ones rejected with a did-you-mean; DBOSClient's DBOS keywords, its unreachable
database raising at once; EnqueueOptions' DBOS keys, unknown keys rejected; blank
workflow IDs; any system schema name; run_dbos_database_migrations and run_migrations.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from conftest import PG_BASE_URL, Backend, Harness, _drop_pg_database, _require_postgres, _with_database

import dbos
from dbos import DBOS, DBOSClient, DBOSConfiguredInstance, DBOSException, Queue, SetWorkflowID
from dbos._config import settings as settings_module
from dbos._config.settings import load_settings
from dbos.error import DBOSConfigError

QUEUE = Queue("kw2x_queue")


@DBOS.workflow(name="kw_echo")
def kw_echo(x: Any) -> Any:
    return x


@DBOS.workflow(name="kw_whoami")
def kw_whoami() -> Any:
    return DBOS.authenticated_user, DBOS.authenticated_roles


@DBOS.required_roles(["admin"])
@DBOS.workflow(name="kw_admin_only")
def kw_admin_only() -> str:
    return "ok"


@DBOS.dbos_class("kw_ledger")
class KwLedger(DBOSConfiguredInstance):
    def __init__(self, config_name: str) -> None:
        super().__init__(config_name)

    @DBOS.workflow(name="kw_ledger.who")
    def who(self, x: int) -> str:
        return f"{self.config_name}:{x}"


KW_EAST = KwLedger("kw-east")


# -- config keys ------------------------------------------------------------------------


def test_unknown_config_key_says_what_was_meant() -> None:
    with pytest.raises(DBOSConfigError, match="unknown config key 'sytem_database_url' .did you mean 'system_database_url'"):
        load_settings({"name": "a", "sytem_database_url": "sqlite:///x.sqlite"}, env={})
    with pytest.raises(DBOSConfigError, match="unknown config key 'zzz'$"):
        load_settings({"name": "a", "zzz": 1}, env={})


def test_dbos_2x_config_keys_are_accepted_and_logged_once(caplog: pytest.LogCaptureFixture, tmp_path: Any) -> None:
    settings_module._warned_no_effect.discard("use_listen_notify")
    settings_module._warned_no_effect.discard("conductor_key")
    config = {"name": "a", "system_database_url": f"sqlite:///{tmp_path}/a.sqlite", "use_listen_notify": True,
              "conductor_key": "k", "enable_patching": False, "kafka_queue_polling_interval_sec": 0.5,
              "notification_listener_polling_interval_sec": 0.25}
    with caplog.at_level(logging.WARNING, logger="dbos"):
        s = load_settings(config, env={})
        load_settings(config, env={})
    said = [r.getMessage() for r in caplog.records if "has no effect in dbos-fleet" in r.getMessage()]
    assert len([m for m in said if "'use_listen_notify'" in m]) == 1  # once per process
    assert len([m for m in said if "'conductor_key'" in m]) == 1
    # notification_listener_polling_interval_sec is how often waits poll: our polling interval.
    assert s.polling_interval_sec == 0.25
    assert load_settings({**config, "polling_interval_sec": 2}, env={}).polling_interval_sec == 2


def test_database_url_and_a_system_database_beside_the_application_one() -> None:
    s = load_settings({"name": "a", "database_url": "postgresql://u:p@h:5433/shop"}, env={})
    assert s.application_database_url == "postgresql+psycopg://u:p@h:5433/shop"
    assert s.system_database_url == "postgresql+psycopg://u:p@h:5433/shop_dbos_sys"  # as DBOS 2.x
    s = load_settings({"name": "a", "application_database_url": "sqlite:///app.sqlite"}, env={})
    assert s.system_database_url == s.application_database_url == "sqlite:///app.sqlite"
    s = load_settings({"name": "a", "application_database_url": "postgresql://h/shop"},
                      env={"DBOS_SYSTEM_DATABASE_URL": "postgresql://h/sys"})
    assert s.system_database_url == "postgresql+psycopg://h/sys"  # the environment's wins over the derived one


def test_launch_with_only_an_application_database_uses_one_beside_it(harness: Harness, backend: Backend) -> None:
    if backend.is_sqlite:  # SQLite: the system tables live in the application's own file
        harness.launch(system_database_url=None, application_database_url=backend.url)
        with SetWorkflowID("kw-beside-1"):
            assert kw_echo(5) == 5
        DBOS.destroy()
        assert backend.status("kw-beside-1") == "SUCCESS"
        return
    app = backend.other_database()
    app_db = sa.make_url(app.url).database
    try:
        harness.launch(system_database_url=None, application_database_url=app.url)
        with SetWorkflowID("kw-beside-1"):
            assert kw_echo(5) == 5
        DBOS.destroy()
        with psycopg.connect(_with_database(PG_BASE_URL, f"{app_db}_dbos_sys")) as conn:
            row = conn.execute("SELECT status FROM dbos.workflow_status WHERE workflow_uuid = 'kw-beside-1'").fetchone()
        assert row == ("SUCCESS",)
    finally:
        DBOS.destroy()
        _drop_pg_database(f"{app_db}_dbos_sys")


def test_system_database_engine(harness: Harness, backend: Backend) -> None:
    engine = sa.create_engine(backend.url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        harness.launch(system_database_url=None, system_database_engine=engine)
        assert kw_echo("e") == "e"
    finally:
        engine.dispose()
    with pytest.raises(DBOSConfigError, match="system_database_engine' must be a SQLAlchemy Engine"):
        load_settings({"name": "a", "system_database_engine": "postgresql://x/y"}, env={})


def test_run_migrations_false_verifies_instead_of_migrating(harness: Harness, backend: Backend) -> None:
    target = backend.other_database() if not backend.is_sqlite else None
    url = target.url if target is not None else backend.url.replace(".sqlite", "-fresh.sqlite")
    with pytest.raises(DBOSException, match="no DBOS system tables.*dbos migrate creates them"):
        harness.launch(system_database_url=url, run_migrations=False)
    dbos.run_dbos_database_migrations(url)
    harness.launch(system_database_url=url, run_migrations=False)
    assert kw_echo(1) == 1


@pytest.mark.parametrize("schema", ["My-Schema 2", "9lives", "UPPER"])
def test_any_system_schema_name(harness: Harness, backend: Backend, schema: str) -> None:
    harness.launch(dbos_system_schema=schema)
    with SetWorkflowID(f"kw-schema-{schema}"):
        assert QUEUE.enqueue(kw_echo, schema).get_result() == schema
    assert [w.workflow_id for w in DBOS.list_workflows(workflow_ids=[f"kw-schema-{schema}"])] == [f"kw-schema-{schema}"]
    if not backend.is_sqlite:
        assert backend.scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s", s=schema) > 5
        with DBOSClient(backend.url, dbos_system_schema=schema) as client:
            assert client.retrieve_workflow(f"kw-schema-{schema}").get_result() == schema


def test_unusable_system_schema_names_are_refused() -> None:
    for bad in ('a"b', "50%", "x" * 64, "tab\there"):
        with pytest.raises(DBOSConfigError, match="dbos_system_schema"):
            load_settings({"name": "a", "dbos_system_schema": bad}, env={})


def test_application_version_is_empty_after_destroy(dbos: Harness) -> None:
    assert DBOS.application_version != ""
    dbos.destroy()
    assert DBOS.application_version == ""


# -- run_dbos_database_migrations --------------------------------------------------------


def test_run_dbos_database_migrations_creates_migrates_and_grants() -> None:
    _require_postgres()
    name = f"kw_mig_{uuid.uuid4().hex[:10]}"
    role = f"kw_role_{uuid.uuid4().hex[:8]}"
    url = _with_database(PG_BASE_URL, name)
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}"')
    try:
        dbos.run_dbos_database_migrations(url, schema="Mig Schema", application_role=role)
        dbos.run_dbos_database_migrations(url, schema="Mig Schema", application_role=role)  # idempotent
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT has_schema_privilege(%s, 'Mig Schema', 'USAGE')", (role,)).fetchone() == (True,)
            assert conn.execute(
                "SELECT has_table_privilege(%s, '\"Mig Schema\".workflow_status', 'INSERT')", (role,)
            ).fetchone() == (True,)
        with pytest.raises(ValueError, match="application_role"):
            dbos.run_dbos_database_migrations(url, application_role="  ")
    finally:
        _drop_pg_database(name)
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


# -- DBOSClient ------------------------------------------------------------------------


def test_client_on_an_unreachable_database_raises_at_once() -> None:
    start = time.monotonic()
    with pytest.raises(sa.exc.OperationalError):
        DBOSClient("postgresql://postgres@127.0.0.1:1/nowhere")
    assert time.monotonic() - start < 1.0  # one attempt, not the retry ladder (~1.6 s)
    lazy = DBOSClient(system_database_url="postgresql://postgres@127.0.0.1:1/nowhere", lazy=True)
    try:
        with pytest.raises(sa.exc.OperationalError):
            lazy.check_connection()
    finally:
        lazy.destroy()


def test_client_takes_dbos_2x_keywords(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("kw-client-1"):
        kw_echo("c")
    with DBOSClient(system_database_url=backend.url, dbos_system_schema="dbos", system_database_pool_size=2,
                    use_listen_notify=False, application_name="test-app", serializer=None) as client:
        client.check_connection()
        assert client.retrieve_workflow("kw-client-1").get_result() == "c"
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_a_keyword'"):
        DBOSClient(backend.url, not_a_keyword=1)
    with pytest.raises(DBOSException, match="both lazy and use_listen_notify"):
        DBOSClient(backend.url, lazy=True, use_listen_notify=True)


def test_enqueue_options_dbos_keys(dbos: Harness, backend: Backend) -> None:
    with DBOSClient(backend.url) as client:
        h = client.enqueue({"workflow_name": "kw_ledger.who", "queue_name": "kw2x_queue", "class_name": "kw_ledger",
                            "instance_name": "kw-east"}, 7)
        assert h.get_result() == "kw-east:7"
        h = client.enqueue({"workflow_name": "kw_whoami", "queue_name": "kw2x_queue", "authenticated_user": "ann",
                            "authenticated_roles": ["admin", "ops"]})
        assert h.get_result() == ("ann", ["admin", "ops"])
        st = h.get_status()
        assert (st.authenticated_user, st.authenticated_roles) == ("ann", ["admin", "ops"])
        assert client.enqueue({"workflow_name": "kw_admin_only", "queue_name": "kw2x_queue",
                               "authenticated_user": "ann", "authenticated_roles": ["admin"]}).get_result() == "ok"
        with pytest.raises(DBOSException, match="EnqueueOptions has no key 'class_nme' .did you mean 'class_name'"):
            client.enqueue({"workflow_name": "kw_echo", "queue_name": "kw2x_queue", "class_nme": "x"}, 1)  # type: ignore[typeddict-unknown-key]
        with pytest.raises(DBOSException, match="Invalid duplication_policy 'return-all'"):
            client.enqueue({"workflow_name": "kw_echo", "queue_name": "kw2x_queue", "deduplication_id": "d",
                            "duplication_policy": "return-all"}, 1)  # type: ignore[typeddict-item]
        with pytest.raises(DBOSException, match="'return-existing' requires a deduplication_id"):
            client.enqueue({"workflow_name": "kw_echo", "queue_name": "kw2x_queue",
                            "duplication_policy": "return-existing"}, 1)
        for blank in ("", "   "):
            with pytest.raises(DBOSException, match="workflow_id'. must (not be blank|be a non-empty string)"):
                client.enqueue({"workflow_name": "kw_echo", "queue_name": "kw2x_queue", "workflow_id": blank}, 1)
    assert backend.workflow_count() == 3  # nothing was written by the refused calls


def test_blank_workflow_ids_are_refused(dbos: Harness) -> None:
    for blank in ("   ", "\t"):
        with pytest.raises(DBOSException, match="must not be blank"):
            SetWorkflowID(blank)
