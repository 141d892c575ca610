"""The schema comes from the migrations only, and they match the models."""

from __future__ import annotations

import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.extensions import db
from app.models.reports import FOLLOWED_REPORT_STATES


def test_models_and_migrations_do_not_drift(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ; run `flask db migrate`: {diff}"


def test_schema_is_at_the_latest_revision(app):
    from alembic.script import ScriptDirectory
    from flask_migrate import Migrate

    config = app.extensions["migrate"].migrate.get_config()
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}"
    with db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == tuple(heads)
    assert isinstance(app.extensions["migrate"].migrate, Migrate)


@pytest.mark.postgres
def test_migrations_run_without_the_requests_statement_bound(app, monkeypatch):
    """An index built over a large table may take longer than DB_STATEMENT_TIMEOUT_MS allows a
    request; the migrations lift it for their own transaction only."""
    from alembic.runtime.environment import EnvironmentContext
    from flask_migrate import upgrade

    seen = []

    def run_migrations(context, **kw):
        seen.append(context.get_context().connection.exec_driver_sql(
            "SHOW statement_timeout").scalar())

    monkeypatch.setattr(EnvironmentContext, "run_migrations", run_migrations)
    upgrade()
    assert seen == ["0"]
    with db.engine.connect() as conn:  # the pooled connections keep the bound
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"


def test_the_home_screens_partial_index_holds_the_followed_states(app):
    """Alembic compares an index's columns, not its WHERE: a state added to the followed ones
    needs a migration, or the home screen's query stops matching the index."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            predicate = conn.exec_driver_sql(
                "SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = 'ix_reports_reporter_open'").scalar_one()
        else:
            predicate = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_reports_reporter_open'"
            ).scalar_one()
    # in the same order too: SQLite matches a partial index's WHERE with the query's as written
    assert re.findall(r"'(\w+)'", predicate) == [str(s) for s in FOLLOWED_REPORT_STATES]
