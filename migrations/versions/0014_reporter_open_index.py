"""the home screen's open reports from a partial index, newest first

ix_reports_reporter_status (reporter_id, status, created_at) made the home screen read every one
of a resident's open reports - six states, so six ranges - and sort them to show the newest
three: with a million reports (a hundred a resident) 49 index and table pages a resident, against
17 with ten thousand. ix_reports_reporter_open holds only the reports a resident still follows,
in the order shown: three entries, however many there are.

Revision ID: 0014_reporter_open_index
Revises: 0013_platform_operator
Create Date: 2026-11-30 10:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0014_reporter_open_index'
down_revision = '0013_platform_operator'
branch_labels = None
depends_on = None

# the states of app.models.reports.FOLLOWED_REPORT_STATES when this was written
FOLLOWED = sa.text("status IN ('submitted', 'routed', 'accepted', 'in_progress', 'reopened', "
                   "'resolved')")


def upgrade():
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index('ix_reports_reporter_open', ['reporter_id', 'created_at', 'id'],
                              unique=False, postgresql_where=FOLLOWED, sqlite_where=FOLLOWED)
        batch_op.drop_index('ix_reports_reporter_status')


def downgrade():
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index('ix_reports_reporter_status',
                              ['reporter_id', 'status', 'created_at'], unique=False)
        batch_op.drop_index('ix_reports_reporter_open')
