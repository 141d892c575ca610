"""big screen token per community

Revision ID: 0010_screen
Revises: 0009_alarms
Create Date: 2026-11-29 01:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0010_screen'
down_revision = '0009_alarms'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('communities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('screen_token_hash', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('communities', schema=None) as batch_op:
        batch_op.drop_column('screen_token_hash')
