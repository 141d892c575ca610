"""Read-only transactions end with COMMIT on PostgreSQL so psycopg keeps its prepared
statements (app.prepared); every transaction that may have written still rolls back."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import Community
from app.prepared import may_write, written

INSERT = ("INSERT INTO communities (code, name, timezone, radius_m, created_at) "
          "VALUES ('tmp', '临时', 'Asia/Shanghai', 1500, now())")
COUNT = select(func.count()).select_from(Community).where(Community.name != "x")


def _prepared(conn) -> list[str]:
    return list(conn.execute(text("SELECT statement FROM pg_prepared_statements")).scalars())


def _communities() -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Community)).scalar_one()


@pytest.mark.postgres
def test_a_read_only_statement_stays_prepared_across_rolled_back_transactions(app):
    with db.engine.connect() as conn:
        for _ in range(7):  # psycopg prepares on the 5th run (prepare_threshold)
            conn.execute(COUNT).scalar_one()
            conn.rollback()  # what every read-only request ends with
        assert any("FROM communities" in s for s in _prepared(conn))


@pytest.mark.postgres
@pytest.mark.parametrize("write", [
    INSERT,
    "  " + INSERT.lower(),
    "WITH c AS (" + INSERT + " RETURNING id) SELECT id FROM c",  # noqa: S608 - constants
    "SELECT 1; " + INSERT,
])
def test_a_transaction_that_wrote_is_still_rolled_back(app, write):
    with db.engine.connect() as conn:
        conn.execute(COUNT).scalar_one()  # a read first: the write must still count
        conn.exec_driver_sql(write)
        conn.execute(COUNT).scalar_one()
        conn.rollback()
    assert _communities() == 0


@pytest.mark.postgres
def test_the_session_rolls_back_a_flushed_write(app):
    db.session.execute(COUNT).scalar_one()
    db.session.add(Community(code="tmp", name="临时"))
    db.session.flush()
    db.session.rollback()
    assert _communities() == 0
    db.session.add(Community(code="tmp", name="临时"))
    db.session.flush()
    db.session.remove()  # the end of a request that failed after writing
    assert _communities() == 0


@pytest.mark.postgres
def test_after_a_commit_the_next_read_only_transaction_keeps_the_statements(app):
    with db.engine.connect() as conn:
        conn.exec_driver_sql(INSERT)
        conn.commit()
        for _ in range(7):
            conn.execute(COUNT).scalar_one()
            conn.rollback()
        assert any("FROM communities" in s for s in _prepared(conn))
    assert _communities() == 1


@pytest.mark.postgres
def test_a_failed_transaction_rolls_back_and_the_connection_goes_on(app):
    with db.engine.connect() as conn:
        with pytest.raises(Exception, match="division by zero"):
            conn.execute(text("SELECT 1 / 0"))
        conn.rollback()
        assert conn.execute(text("SELECT 2")).scalar_one() == 2


@pytest.mark.parametrize(("statement", "writes"), [
    ("SELECT 1", False),
    ("\n  select id from users where id = 1 for update", False),
    ("INSERT INTO x VALUES (1)", True),
    ("UPDATE x SET a = 1", True),
    ("WITH a AS (SELECT 1) SELECT * FROM a", True),
    ("SAVEPOINT sa_savepoint_1", True),
    ("SELECT 1; DELETE FROM x", True),
    ("/* comment */ SELECT 1", True),
])
def test_only_a_single_plain_select_counts_as_read_only(statement, writes):
    assert may_write(statement) is writes


def test_written_constants_are_in_the_sql_text_and_run_on_either_database(app):
    stmt = (select(Community.id).where(Community.name.in_(written(["O'Brien", "邻里"])))
            .limit(written(3)))
    sql = str(stmt.compile(db.engine))
    assert "IN ('O''Brien', '邻里')" in sql and "LIMIT 3" in sql
    db.session.add(Community(code="quoted", name="O'Brien"))
    db.session.flush()
    assert len(db.session.execute(stmt).all()) == 1


@pytest.mark.parametrize("value", [1.5, None, True, b"x"])
def test_only_integers_and_strings_are_written(value):
    with pytest.raises(TypeError):
        written(value)
