"""activities (活动报名) and the volunteer time bank (时间银行)

Revision ID: 0006_activities
Revises: 0005_booking
Create Date: 2026-11-29 12:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_activities'
down_revision = '0005_booking'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('timebank_rewards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('provider', sa.String(length=100), nullable=False),
    sa.Column('cost', sa.Integer(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('cost > 0', name=op.f('ck_timebank_rewards_cost_positive')),
    sa.CheckConstraint('stock >= 0', name=op.f('ck_timebank_rewards_stock_nonnegative')),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_timebank_rewards_community_id_communities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_timebank_rewards')),
    sa.UniqueConstraint('community_id', 'code', name=op.f('uq_timebank_rewards_community_id_code'))
    )

    op.create_table('timebank_accounts',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=True),
    sa.Column('balance', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('balance >= 0', name=op.f('ck_timebank_accounts_balance_nonnegative')),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_timebank_accounts_community_id_communities')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_timebank_accounts_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_timebank_accounts'))
    )

    with op.batch_alter_table('timebank_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_timebank_accounts_community_id'), ['community_id'], unique=False)

    op.create_table('timebank_redemptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('reward_id', sa.Integer(), nullable=False),
    sa.Column('cost', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('requested', 'fulfilled', 'cancelled', name='redemption_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('handled_by_id', sa.Integer(), nullable=True),
    sa.Column('cancel_reason', sa.String(length=500), nullable=True),
    sa.Column('fulfilled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_timebank_redemptions_community_id_communities')),
    sa.ForeignKeyConstraint(['handled_by_id'], ['users.id'], name=op.f('fk_timebank_redemptions_handled_by_id_users')),
    sa.ForeignKeyConstraint(['reward_id'], ['timebank_rewards.id'], name=op.f('fk_timebank_redemptions_reward_id_timebank_rewards')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_timebank_redemptions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_timebank_redemptions'))
    )

    with op.batch_alter_table('timebank_redemptions', schema=None) as batch_op:
        batch_op.create_index('ix_timebank_redemptions_queue', ['community_id', 'status', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_timebank_redemptions_user', ['user_id', 'created_at', 'id'], unique=False)

    op.create_table('activities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('place', sa.String(length=200), nullable=False),
    sa.Column('cover_upload_id', sa.Integer(), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signup_opens_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signup_closes_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('seats_taken', sa.Integer(), nullable=False),
    sa.Column('signup_counter', sa.Integer(), nullable=False),
    sa.Column('max_party_size', sa.SmallInteger(), nullable=False),
    sa.Column('audience_mask', sa.Integer(), nullable=False),
    sa.Column('min_age', sa.SmallInteger(), nullable=True),
    sa.Column('max_age', sa.SmallInteger(), nullable=True),
    sa.Column('checkin_required', sa.Boolean(), nullable=False),
    sa.Column('status', sa.Enum('published', 'cancelled', name='activity_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('cancel_reason', sa.String(length=500), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('capacity >= 0', name=op.f('ck_activities_capacity_nonnegative')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_activities_ends_after_start')),
    sa.CheckConstraint('max_party_size >= 1', name=op.f('ck_activities_party_size_positive')),
    sa.CheckConstraint('seats_taken >= 0 AND seats_taken <= capacity', name=op.f('ck_activities_seats_within')),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_activities_community_id_communities')),
    sa.ForeignKeyConstraint(['cover_upload_id'], ['uploads.id'], name=op.f('fk_activities_cover_upload_id_uploads')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_activities_created_by_id_users')),
    sa.ForeignKeyConstraint(['org_id'], ['orgs.id'], name=op.f('fk_activities_org_id_orgs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activities'))
    )

    with op.batch_alter_table('activities', schema=None) as batch_op:
        batch_op.create_index('ix_activities_org', ['org_id', 'starts_at', 'id'], unique=False)
        batch_op.create_index('ix_activities_upcoming', ['community_id', 'status', 'starts_at', 'id'], unique=False)

    op.create_table('redemption_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('redemption_id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=True),
    sa.Column('to_status', sa.String(length=20), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_redemption_events_actor_id_users')),
    sa.ForeignKeyConstraint(['redemption_id'], ['timebank_redemptions.id'], name=op.f('fk_redemption_events_redemption_id_timebank_redemptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemption_events'))
    )

    with op.batch_alter_table('redemption_events', schema=None) as batch_op:
        batch_op.create_index('ix_redemption_events_redemption', ['redemption_id', 'created_at', 'id'], unique=False)

    op.create_table('volunteer_roles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('activity_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('seats_taken', sa.Integer(), nullable=False),
    sa.Column('credited_minutes', sa.Integer(), nullable=False),
    sa.Column('credit_mode', sa.Enum('measured', 'fixed', name='credit_mode', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.CheckConstraint('credited_minutes >= 0', name=op.f('ck_volunteer_roles_minutes_nonnegative')),
    sa.CheckConstraint('seats_taken >= 0 AND seats_taken <= capacity', name=op.f('ck_volunteer_roles_seats_within')),
    sa.ForeignKeyConstraint(['activity_id'], ['activities.id'], name=op.f('fk_volunteer_roles_activity_id_activities'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_volunteer_roles')),
    sa.UniqueConstraint('activity_id', 'code', name=op.f('uq_volunteer_roles_activity_id_code'))
    )

    op.create_table('activity_signups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('activity_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('volunteer_role_id', sa.Integer(), nullable=True),
    sa.Column('party_size', sa.SmallInteger(), nullable=False),
    sa.Column('member_ids', sa.JSON(), nullable=False),
    sa.Column('status', sa.Enum('confirmed', 'waitlisted', 'cancelled', 'checked_in', name='signup_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('queue_no', sa.Integer(), nullable=False),
    sa.Column('cancel_source', sa.String(length=20), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checked_out_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('credited_minutes', sa.Integer(), nullable=True),
    sa.Column('reminded_day_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminded_hour_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('party_size >= 1', name=op.f('ck_activity_signups_party_size_positive')),
    sa.ForeignKeyConstraint(['activity_id'], ['activities.id'], name=op.f('fk_activity_signups_activity_id_activities')),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_activity_signups_community_id_communities')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_activity_signups_user_id_users')),
    sa.ForeignKeyConstraint(['volunteer_role_id'], ['volunteer_roles.id'], name=op.f('fk_activity_signups_volunteer_role_id_volunteer_roles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activity_signups')),
    sa.UniqueConstraint('activity_id', 'user_id', name=op.f('uq_activity_signups_activity_id_user_id'))
    )

    with op.batch_alter_table('activity_signups', schema=None) as batch_op:
        batch_op.create_index('ix_activity_signups_queue', ['activity_id', 'role', 'status', 'queue_no'], unique=False)
        batch_op.create_index('ix_activity_signups_user', ['user_id', 'created_at', 'id'], unique=False)

    op.create_table('activity_checkin_scans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('activity_id', sa.Integer(), nullable=False),
    sa.Column('signup_id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('result', sa.String(length=30), nullable=False),
    sa.Column('scanned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['activity_id'], ['activities.id'], name=op.f('fk_activity_checkin_scans_activity_id_activities')),
    sa.ForeignKeyConstraint(['signup_id'], ['activity_signups.id'], name=op.f('fk_activity_checkin_scans_signup_id_activity_signups')),
    sa.ForeignKeyConstraint(['staff_id'], ['users.id'], name=op.f('fk_activity_checkin_scans_staff_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activity_checkin_scans')),
    sa.UniqueConstraint('activity_id', 'nonce', name=op.f('uq_activity_checkin_scans_activity_id_nonce'))
    )

    with op.batch_alter_table('activity_checkin_scans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_activity_checkin_scans_signup_id'), ['signup_id'], unique=False)

    op.create_table('activity_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('activity_id', sa.Integer(), nullable=False),
    sa.Column('signup_id', sa.Integer(), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=True),
    sa.Column('to_status', sa.String(length=20), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['activity_id'], ['activities.id'], name=op.f('fk_activity_events_activity_id_activities')),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_activity_events_actor_id_users')),
    sa.ForeignKeyConstraint(['signup_id'], ['activity_signups.id'], name=op.f('fk_activity_events_signup_id_activity_signups')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activity_events'))
    )

    with op.batch_alter_table('activity_events', schema=None) as batch_op:
        batch_op.create_index('ix_activity_events_activity', ['activity_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_activity_events_signup', ['signup_id', 'created_at', 'id'], unique=False)

    op.create_table('timebank_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.Enum('credit', 'debit', 'reversal', name='entry_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('source', sa.Enum('volunteer', 'award', 'redemption', name='entry_source', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=False),
    sa.Column('balance_after', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('signup_id', sa.Integer(), nullable=True),
    sa.Column('redemption_id', sa.Integer(), nullable=True),
    sa.Column('reverses_id', sa.Integer(), nullable=True),
    sa.Column('dedupe_key', sa.String(length=120), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'credit' AND points > 0) OR (kind = 'debit' AND points < 0) OR (kind = 'reversal' AND points <> 0)", name=op.f('ck_timebank_entries_sign_matches_kind')),
    sa.CheckConstraint('balance_after >= 0', name=op.f('ck_timebank_entries_balance_after_nonnegative')),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_timebank_entries_community_id_communities')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_timebank_entries_created_by_id_users')),
    sa.ForeignKeyConstraint(['redemption_id'], ['timebank_redemptions.id'], name=op.f('fk_timebank_entries_redemption_id_timebank_redemptions')),
    sa.ForeignKeyConstraint(['reverses_id'], ['timebank_entries.id'], name=op.f('fk_timebank_entries_reverses_id_timebank_entries')),
    sa.ForeignKeyConstraint(['signup_id'], ['activity_signups.id'], name=op.f('fk_timebank_entries_signup_id_activity_signups')),
    sa.ForeignKeyConstraint(['user_id'], ['timebank_accounts.user_id'], name=op.f('fk_timebank_entries_user_id_timebank_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_timebank_entries')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_timebank_entries_dedupe_key'))
    )

    with op.batch_alter_table('timebank_entries', schema=None) as batch_op:
        batch_op.create_index('ix_timebank_entries_board', ['community_id', 'source', 'created_at'], unique=False)
        batch_op.create_index('ix_timebank_entries_user', ['user_id', 'created_at', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('timebank_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_timebank_entries_user')
        batch_op.drop_index('ix_timebank_entries_board')

    op.drop_table('timebank_entries')

    with op.batch_alter_table('activity_events', schema=None) as batch_op:
        batch_op.drop_index('ix_activity_events_signup')
        batch_op.drop_index('ix_activity_events_activity')

    op.drop_table('activity_events')

    with op.batch_alter_table('activity_checkin_scans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_activity_checkin_scans_signup_id'))

    op.drop_table('activity_checkin_scans')

    with op.batch_alter_table('activity_signups', schema=None) as batch_op:
        batch_op.drop_index('ix_activity_signups_user')
        batch_op.drop_index('ix_activity_signups_queue')

    op.drop_table('activity_signups')

    op.drop_table('volunteer_roles')

    with op.batch_alter_table('redemption_events', schema=None) as batch_op:
        batch_op.drop_index('ix_redemption_events_redemption')

    op.drop_table('redemption_events')

    with op.batch_alter_table('activities', schema=None) as batch_op:
        batch_op.drop_index('ix_activities_upcoming')
        batch_op.drop_index('ix_activities_org')

    op.drop_table('activities')

    with op.batch_alter_table('timebank_redemptions', schema=None) as batch_op:
        batch_op.drop_index('ix_timebank_redemptions_user')
        batch_op.drop_index('ix_timebank_redemptions_queue')

    op.drop_table('timebank_redemptions')

    with op.batch_alter_table('timebank_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_timebank_accounts_community_id'))

    op.drop_table('timebank_accounts')

    op.drop_table('timebank_rewards')
