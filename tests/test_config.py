"""DBOSConfig validation and resolution: errors at construction naming the key; defaults; env."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Harness

from dbos import DBOS, DBOSInitializationError, SetWorkflowID
from dbos.error import DBOSConfigError, DBOSException


@DBOS.workflow()
def config_identity_workflow() -> tuple[str, str]:
    return DBOS.executor_id, DBOS.application_version


def _construct(config: Any) -> None:
    DBOS(config=config)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"name": "app", "no_such_key": 1}, "no_such_key"),
        ({"name": "app", "system_database_url": "mysql://u@h/db"}, "system_database_url"),
        ({"name": "app", "system_database_url": "not a url"}, "system_database_url"),
        ({"name": "app", "system_database_url": 5}, "system_database_url"),
        ({"name": "app", "application_database_url": "oracle://x/y"}, "application_database_url"),
        ({"name": "app", "sys_db_pool_size": 0}, "sys_db_pool_size"),
        ({"name": "app", "sys_db_pool_size": -3}, "sys_db_pool_size"),
        ({"name": "app", "sys_db_pool_size": 100_000}, "sys_db_pool_size"),
        ({"name": "app", "sys_db_pool_size": "10"}, "sys_db_pool_size"),
        ({"name": "app", "sys_db_pool_size": True}, "sys_db_pool_size"),
        ({"name": "app", "redis_url": "http://127.0.0.1:6379"}, "redis_url"),
        ({"name": "app", "redis_url": "127.0.0.1:6379"}, "redis_url"),
        ({"name": "app", "log_level": "LOUD"}, "log_level"),
        ({"name": "app", "log_level": 10}, "log_level"),
        ({"name": "app", "executor_id": 7}, "executor_id"),
        ({"name": "app", "application_version": ["v1"]}, "application_version"),
        ({"name": "app", "dbos_system_schema": "bad\"schema; drop"}, "dbos_system_schema"),
        ({}, "name"),
        ({"system_database_url": "sqlite:///x.sqlite"}, "name"),
        ({"name": ""}, "name"),
        ({"name": 42}, "name"),
    ],
)
def test_invalid_config_fails_at_construction_naming_the_key(
    config: dict[str, Any], key: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DBOSInitializationError) as info:
        _construct(config)
    assert isinstance(info.value, DBOSConfigError)
    assert isinstance(info.value, DBOSException)
    assert key in str(info.value), f"error message does not name {key!r}: {info.value}"
    # Nothing was written: construction failed before touching any database.
    assert list(tmp_path.iterdir()) == []


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(DBOSInitializationError):
        _construct(["name", "app"])


def test_failed_construction_leaves_no_half_built_instance(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DBOSConfigError):
        DBOS(config={"name": "app", "bogus": 1})  # type: ignore[typeddict-unknown-key]
    DBOS.destroy()  # must not fail on the half-built object
    with pytest.raises(DBOSConfigError):
        DBOS(config={"name": "app", "log_level": "LOUD"})
    DBOS(config={"name": "app", "log_level": "warning"})
    DBOS.launch()
    assert config_identity_workflow() == ("local", DBOS.application_version)
    DBOS.destroy()


def test_launch_before_construction_fails() -> None:
    DBOS.destroy()
    with pytest.raises(DBOSInitializationError):
        DBOS.launch()


def test_calling_a_workflow_before_launch_fails_clearly() -> None:
    with pytest.raises(DBOSException, match="launch"):
        config_identity_workflow()


def test_second_dbos_while_launched_fails(dbos: Harness) -> None:
    with pytest.raises(DBOSInitializationError):
        DBOS(config=dbos.config())
    # The launched instance keeps working.
    assert config_identity_workflow()[0] == "local"


def test_default_system_database_is_sqlite_file_named_after_app(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    DBOS(config={"name": "shop", "log_level": "WARNING"})
    DBOS.launch()
    with SetWorkflowID("default-db-wf"):
        config_identity_workflow()
    DBOS.destroy()
    db_file = tmp_path / "shop.sqlite"
    assert db_file.exists()
    import sqlite3

    with sqlite3.connect(db_file) as conn:
        (status,) = conn.execute(
            "SELECT status FROM workflow_status WHERE workflow_uuid = 'default-db-wf'"
        ).fetchone()
    conn.close()
    assert status == "SUCCESS"


def test_defaults_executor_local_and_app_version_hash(harness: Harness) -> None:
    harness.launch(executor_id=None, application_version=None)
    assert DBOS.executor_id == "local"
    version = DBOS.application_version
    assert isinstance(version, str) and len(version) >= 8
    with SetWorkflowID("defaults"):
        assert config_identity_workflow() == ("local", version)
    status = DBOS.retrieve_workflow("defaults").get_status()
    assert status.executor_id == "local"
    assert status.app_version == version
    # The default version is a function of the registered code: same code, same version.
    harness.restart(executor_id=None, application_version=None)
    assert DBOS.application_version == version


def test_executor_id_and_application_version_from_config(harness: Harness) -> None:
    harness.launch(executor_id="exec-cfg", application_version="v-cfg")
    assert DBOS.executor_id == "exec-cfg"
    assert DBOS.application_version == "v-cfg"
    with SetWorkflowID("cfg-ids"):
        assert config_identity_workflow() == ("exec-cfg", "v-cfg")
    status = DBOS.retrieve_workflow("cfg-ids").get_status()
    assert (status.executor_id, status.app_version) == ("exec-cfg", "v-cfg")
    assert harness.backend.scalar(
        f"SELECT executor_id FROM {harness.backend.table('workflow_status')} WHERE workflow_uuid = 'cfg-ids'"
    ) == "exec-cfg"


def test_explicit_config_beats_env_vmid_and_appversion(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 17: as in DBOS, an explicit executor_id / application_version wins over the environment.
    monkeypatch.setenv("DBOS__VMID", "vm-7")
    monkeypatch.setenv("DBOS__APPVERSION", "v-env")
    harness.launch(executor_id="exec-cfg", application_version="v-cfg")
    assert (DBOS.executor_id, DBOS.application_version) == ("exec-cfg", "v-cfg")


def test_env_vmid_and_appversion_apply_without_config(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS__VMID", "vm-7")
    monkeypatch.setenv("DBOS__APPVERSION", "v-env")
    harness.launch(executor_id=None, application_version=None)
    assert DBOS.executor_id == "vm-7"
    assert DBOS.application_version == "v-env"
    with SetWorkflowID("env-ids"):
        assert config_identity_workflow() == ("vm-7", "v-env")
    status = DBOS.retrieve_workflow("env-ids").get_status()
    assert (status.executor_id, status.app_version) == ("vm-7", "v-env")


def test_env_appid_is_recorded(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS__APPID", "app-123")
    harness.launch()
    with SetWorkflowID("appid"):
        config_identity_workflow()
    assert DBOS.retrieve_workflow("appid").get_status().app_id == "app-123"


def test_valid_optional_keys_are_accepted(harness: Harness) -> None:
    harness.launch(
        sys_db_pool_size=5,
        log_level="debug",
        redis_url=None,
        dbos_system_schema="dbos",
    )
    assert config_identity_workflow()[0] == "local"


def test_redis_url_is_accepted(harness: Harness) -> None:
    # Validated and accepted now (used by wakeups); a reachable Redis is on 127.0.0.1:6379.
    DBOS(config=harness.config(redis_url="redis://127.0.0.1:6379/0"))
    DBOS.destroy()
