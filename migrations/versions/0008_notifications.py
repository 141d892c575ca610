"""notification preferences

Revision ID: 0008_notifications
Revises: 0007_canteen
Create Date: 2026-11-29 00:50:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0008_notifications'
down_revision = '0007_canteen'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('notification_preferences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('group', sa.String(length=20), nullable=False),
    sa.Column('wechat', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_preferences_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_preferences')),
    sa.UniqueConstraint('user_id', 'group', name=op.f('uq_notification_preferences_user_id_group'))
    )


def downgrade():
    op.drop_table('notification_preferences')
