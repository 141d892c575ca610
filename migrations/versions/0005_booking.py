"""booking: services, opening hours, exceptions, slot capacity, bookings and their timeline

Revision ID: 0005_booking
Revises: 0004_open311
Create Date: 2026-11-29 01:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_booking'
down_revision = '0004_open311'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('booking_services',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('provider_org_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('location', sa.Enum('centre', 'home', name='service_location', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('place', sa.String(length=200), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('slot_interval_minutes', sa.Integer(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('min_notice_minutes', sa.Integer(), nullable=False),
    sa.Column('horizon_days', sa.Integer(), nullable=False),
    sa.Column('cancel_deadline_minutes', sa.Integer(), nullable=False),
    sa.Column('max_open_per_resident', sa.Integer(), nullable=False),
    sa.Column('min_age', sa.SmallInteger(), nullable=True),
    sa.Column('max_age', sa.SmallInteger(), nullable=True),
    sa.Column('requires_confirmation', sa.Boolean(), nullable=False),
    sa.Column('reminder_minutes_before', sa.Integer(), nullable=True),
    sa.Column('urgent_visits', sa.Boolean(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('capacity >= 1', name=op.f('ck_booking_services_capacity_positive')),
    sa.CheckConstraint('duration_minutes > 0 AND slot_interval_minutes > 0', name=op.f('ck_booking_services_positive_durations')),
    sa.CheckConstraint('min_notice_minutes >= 0 AND cancel_deadline_minutes >= 0 AND horizon_days >= 1 AND max_open_per_resident >= 1', name=op.f('ck_booking_services_rule_ranges')),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_booking_services_community_id_communities')),
    sa.ForeignKeyConstraint(['provider_org_id'], ['orgs.id'], name=op.f('fk_booking_services_provider_org_id_orgs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_booking_services')),
    sa.UniqueConstraint('community_id', 'code', name=op.f('uq_booking_services_community_id_code'))
    )
    with op.batch_alter_table('booking_services', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_booking_services_community_id'), ['community_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_booking_services_provider_org_id'), ['provider_org_id'], unique=False)

    op.create_table('booking_service_exceptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('kind', sa.Enum('closed', 'open', name='exception_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('opens_minute', sa.Integer(), nullable=True),
    sa.Column('closes_minute', sa.Integer(), nullable=True),
    sa.Column('note', sa.String(length=200), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind <> 'open' OR opens_minute IS NOT NULL", name=op.f('ck_booking_service_exceptions_open_needs_hours')),
    sa.CheckConstraint('(opens_minute IS NULL) = (closes_minute IS NULL)', name=op.f('ck_booking_service_exceptions_both_or_none')),
    sa.CheckConstraint('opens_minute IS NULL OR (opens_minute >= 0 AND opens_minute < closes_minute AND closes_minute <= 1440)', name=op.f('ck_booking_service_exceptions_minute_range')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_booking_service_exceptions_created_by_id_users')),
    sa.ForeignKeyConstraint(['service_id'], ['booking_services.id'], name=op.f('fk_booking_service_exceptions_service_id_booking_services'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_booking_service_exceptions'))
    )
    with op.batch_alter_table('booking_service_exceptions', schema=None) as batch_op:
        batch_op.create_index('ix_booking_service_exceptions_day', ['service_id', 'day'], unique=False)

    op.create_table('booking_service_hours',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.SmallInteger(), nullable=False),
    sa.Column('opens_minute', sa.Integer(), nullable=False),
    sa.Column('closes_minute', sa.Integer(), nullable=False),
    sa.CheckConstraint('opens_minute >= 0 AND opens_minute < closes_minute AND closes_minute <= 1440', name=op.f('ck_booking_service_hours_minute_range')),
    sa.CheckConstraint('weekday BETWEEN 0 AND 6', name=op.f('ck_booking_service_hours_weekday_range')),
    sa.ForeignKeyConstraint(['service_id'], ['booking_services.id'], name=op.f('fk_booking_service_hours_service_id_booking_services'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_booking_service_hours'))
    )
    with op.batch_alter_table('booking_service_hours', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_booking_service_hours_service_id'), ['service_id'], unique=False)

    op.create_table('booking_slots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('booked', sa.Integer(), nullable=False),
    sa.Column('blocked', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('booked >= 0 AND booked <= capacity', name=op.f('ck_booking_slots_booked_within_capacity')),
    sa.ForeignKeyConstraint(['service_id'], ['booking_services.id'], name=op.f('fk_booking_slots_service_id_booking_services'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_booking_slots')),
    sa.UniqueConstraint('service_id', 'starts_at', name=op.f('uq_booking_slots_service_id_starts_at'))
    )

    op.create_table('bookings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('slot_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.Enum('slot', 'urgent', name='booking_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('status', sa.Enum('pending', 'confirmed', 'checked_in', 'completed', 'cancelled', 'no_show', 'rejected', name='booking_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('for_user_id', sa.Integer(), nullable=False),
    sa.Column('household_id', sa.Integer(), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('cancel_reason', sa.String(length=500), nullable=True),
    sa.Column('confirmed_by_id', sa.Integer(), nullable=True),
    sa.Column('grid_worker_id', sa.Integer(), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('routed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind = 'urgent' OR slot_id IS NOT NULL", name=op.f('ck_bookings_slot_unless_urgent')),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_bookings_community_id_communities')),
    sa.ForeignKeyConstraint(['confirmed_by_id'], ['users.id'], name=op.f('fk_bookings_confirmed_by_id_users')),
    sa.ForeignKeyConstraint(['for_user_id'], ['users.id'], name=op.f('fk_bookings_for_user_id_users')),
    sa.ForeignKeyConstraint(['grid_worker_id'], ['users.id'], name=op.f('fk_bookings_grid_worker_id_users')),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_bookings_household_id_households')),
    sa.ForeignKeyConstraint(['service_id'], ['booking_services.id'], name=op.f('fk_bookings_service_id_booking_services')),
    sa.ForeignKeyConstraint(['slot_id'], ['booking_slots.id'], name=op.f('fk_bookings_slot_id_booking_slots')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_bookings_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bookings'))
    )
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bookings_community_id'), ['community_id'], unique=False)
        batch_op.create_index('ix_bookings_for_user_starts', ['for_user_id', 'starts_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bookings_grid_worker_id'), ['grid_worker_id'], unique=False)
        batch_op.create_index('ix_bookings_service_starts', ['service_id', 'starts_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bookings_slot_id'), ['slot_id'], unique=False)
        batch_op.create_index('ix_bookings_user_starts', ['user_id', 'starts_at', 'id'], unique=False)

    op.create_table('booking_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('booking_id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=True),
    sa.Column('to_status', sa.String(length=20), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_booking_events_actor_id_users')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_booking_events_booking_id_bookings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_booking_events'))
    )
    with op.batch_alter_table('booking_events', schema=None) as batch_op:
        batch_op.create_index('ix_booking_events_booking', ['booking_id', 'created_at', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('booking_events', schema=None) as batch_op:
        batch_op.drop_index('ix_booking_events_booking')
    op.drop_table('booking_events')

    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.drop_index('ix_bookings_user_starts')
        batch_op.drop_index(batch_op.f('ix_bookings_slot_id'))
        batch_op.drop_index('ix_bookings_service_starts')
        batch_op.drop_index(batch_op.f('ix_bookings_grid_worker_id'))
        batch_op.drop_index('ix_bookings_for_user_starts')
        batch_op.drop_index(batch_op.f('ix_bookings_community_id'))
    op.drop_table('bookings')

    op.drop_table('booking_slots')

    with op.batch_alter_table('booking_service_hours', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_booking_service_hours_service_id'))
    op.drop_table('booking_service_hours')

    with op.batch_alter_table('booking_service_exceptions', schema=None) as batch_op:
        batch_op.drop_index('ix_booking_service_exceptions_day')
    op.drop_table('booking_service_exceptions')

    with op.batch_alter_table('booking_services', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_booking_services_provider_org_id'))
        batch_op.drop_index(batch_op.f('ix_booking_services_community_id'))
    op.drop_table('booking_services')
