"""Keep psycopg's prepared statements across requests: end transactions that wrote nothing
with COMMIT, not ROLLBACK.

psycopg 3 prepares a statement on the server once a connection has run it five times
(`prepare_threshold`), so PostgreSQL stops parsing and planning it on every request. But psycopg
forgets every prepared statement, and its counts, on each ROLLBACK - and every read-only request
ends with one (the session closes its transaction that way). So nothing was ever prepared: the
home screen's five statements were planned again on every request, 1.8 of its 3.1 ms of database
CPU (`make bench`, profiled in-process).

For a transaction that wrote nothing, COMMIT and ROLLBACK have the same effect; so a rollback
becomes a commit when every statement the transaction ran began with SELECT (one statement
each). Anything else - INSERT, UPDATE, DELETE, a CTE, SAVEPOINT, several statements in one string,
a transaction in error - still rolls back.
"""

from __future__ import annotations

from psycopg.pq import TransactionStatus
from sqlalchemy import event, literal_column
from sqlalchemy.engine import Engine

WROTE = "linli_may_have_written"


def written(value):
    """One of our own constants (a LIMIT, a list of states) written into the SQL text instead of
    bound as a parameter - never a value from a request.

    A prepared statement is planned once (a generic plan) only when PostgreSQL judges that plan
    as good as one made for the values; with the LIMIT or the IN list as parameters it could not
    tell, and planned the ticket page and the home screen's open reports on every request. Written
    when the statement is compiled (SQLAlchemy caches it), not at each execution as
    `literal_execute` would (5% of the home screen's CPU).
    """
    if isinstance(value, (list, tuple, set, frozenset)):
        return [literal_column(_sql_literal(v)) for v in value]
    return literal_column(_sql_literal(value))


def _sql_literal(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"only integers and strings are written into SQL, not {value!r}")
    if isinstance(value, int):
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


def may_write(statement: str) -> bool:
    """False only for a single plain SELECT (a SELECT ... FOR UPDATE only locks)."""
    return statement.lstrip()[:6].upper() != "SELECT" or ";" in statement


def keep_prepared_statements(engine: Engine) -> None:
    """Install on a psycopg engine (does nothing for other drivers)."""
    dialect = engine.dialect
    if dialect.driver != "psycopg":
        return
    rollback, commit = dialect.do_rollback, dialect.do_commit

    @event.listens_for(engine, "before_cursor_execute")
    def _note_writes(conn, _cursor, statement, _parameters, _context, _executemany):
        if may_write(statement):
            conn.connection.info[WROTE] = True

    def do_rollback(dbapi_connection) -> None:
        info = _info(dbapi_connection)
        wrote = True if info is None else info.pop(WROTE, False)
        status = dbapi_connection.driver_connection.info.transaction_status
        if wrote or status != TransactionStatus.INTRANS:
            rollback(dbapi_connection)  # psycopg returns at once when no transaction is open
        else:
            dbapi_connection.commit()

    def do_commit(dbapi_connection) -> None:
        info = _info(dbapi_connection)
        if info is not None:
            info.pop(WROTE, None)
        commit(dbapi_connection)

    dialect.do_rollback, dialect.do_commit = do_rollback, do_commit


def _info(dbapi_connection) -> dict | None:
    """The pooled connection's info dict; None for the dialect's first, unpooled connection."""
    try:
        return dbapi_connection.info
    except NotImplementedError:
        return None
