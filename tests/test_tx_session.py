"""``DBOS.sql_session.commit()`` / ``rollback()`` inside a ``@DBOS.transaction`` raise
``sqlalchemy.exc.InvalidRequestError``, as in DBOS 2.x (issue 18, item 12): the
transaction is the library's, committed with its checkpoint."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from conftest import Harness

from dbos import DBOS


@DBOS.transaction()
def txs_try(action: str) -> str:
    DBOS.sql_session.execute(sa.text("SELECT 1"))
    try:
        getattr(DBOS.sql_session, action)()
    except sqlalchemy.exc.InvalidRequestError as e:
        return f"refused: {e}"
    return "allowed"


@DBOS.transaction()
def txs_commit_uncaught() -> str:
    DBOS.sql_session.commit()
    return "unreachable"


@DBOS.workflow()
def txs_workflow(action: str) -> str:
    return txs_try(action)


def test_commit_and_rollback_in_a_transaction_are_refused(harness: Harness) -> None:
    harness.launch()
    for action in ("commit", "rollback"):
        out = txs_workflow(action)
        assert out.startswith("refused:") and f"sql_session.{action}()" in out, out
        assert txs_try(action).startswith("refused:")  # also outside a workflow


def test_an_uncaught_commit_fails_the_transaction(harness: Harness) -> None:
    harness.launch()
    with pytest.raises(sqlalchemy.exc.InvalidRequestError):
        txs_commit_uncaught()
