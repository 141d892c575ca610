"""community notices

Revision ID: 0011_notices
Revises: 0010_screen
Create Date: 2026-11-29 01:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0011_notices'
down_revision = '0010_screen'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=60), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('pinned', sa.Boolean(), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_notices_author_id_users')),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_notices_community_id_communities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notices'))
    )
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.create_index('ix_notices_community_published', ['community_id', 'published_at'], unique=False)


def downgrade():
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index('ix_notices_community_published')
    op.drop_table('notices')
