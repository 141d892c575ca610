"""indexes for the home screen's per-resident reads (open reports, unread count)

Both keep the home screen's cost flat as a resident's history grows: the open-report list
reads only the resident's reports in the open states (not every closed one since they moved
in), and the unread count reads only unread rows.

Revision ID: 0012_perf_indexes
Revises: 0011_notices
Create Date: 2026-11-29 02:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0012_perf_indexes'
down_revision = '0011_notices'
branch_labels = None
depends_on = None

UNREAD = sa.text('read_at IS NULL')


def upgrade():
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index('ix_reports_reporter_status',
                              ['reporter_id', 'status', 'created_at'], unique=False)
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_user_unread', ['user_id'], unique=False,
                              postgresql_where=UNREAD, sqlite_where=UNREAD)


def downgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_user_unread')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index('ix_reports_reporter_status')
