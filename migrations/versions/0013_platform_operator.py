"""users.is_platform_operator: the platform role that sees every community's failed jobs

The outbox belongs to the deployment, not to a community, so its failed jobs (whose arguments
name other communities' rows) are for the people who run the platform, not for an org's admin.

Revision ID: 0013_platform_operator
Revises: 0012_perf_indexes
Create Date: 2026-12-01 09:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0013_platform_operator'
down_revision = '0012_perf_indexes'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_platform_operator', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('is_platform_operator')
