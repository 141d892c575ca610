"""Service booking (预约服务): services, opening hours, exceptions, slot capacity, bookings."""

from __future__ import annotations

import enum
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.accounts import Org, User
from app.models.base import Base, str_enum, utcnow
from app.models.community import Community, Household

MINUTES_PER_DAY = 24 * 60


class ServiceLocation(enum.StrEnum):
    CENTRE = "centre"
    HOME = "home"


class ExceptionKind(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"


class BookingStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CHECKED_IN = "checked_in"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    REJECTED = "rejected"


class BookingKind(enum.StrEnum):
    SLOT = "slot"
    URGENT = "urgent"


class Service(Base):
    """A bookable community service with its rules (capacity, notice, horizon, eligibility)."""

    __tablename__ = "booking_services"
    __table_args__ = (
        UniqueConstraint("community_id", "code"),
        CheckConstraint("duration_minutes > 0 AND slot_interval_minutes > 0",
                        name="positive_durations"),
        CheckConstraint("capacity >= 1", name="capacity_positive"),
        CheckConstraint("min_notice_minutes >= 0 AND cancel_deadline_minutes >= 0 "
                        "AND horizon_days >= 1 AND max_open_per_resident >= 1",
                        name="rule_ranges"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    provider_org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(String(500), default="")
    location: Mapped[ServiceLocation] = mapped_column(
        str_enum(ServiceLocation, "service_location"), default=ServiceLocation.CENTRE)
    place: Mapped[str] = mapped_column(String(200), default="", doc="where the centre is")
    duration_minutes: Mapped[int] = mapped_column(Integer)
    slot_interval_minutes: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer, doc="places per slot")
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=120)
    horizon_days: Mapped[int] = mapped_column(Integer, default=14)
    cancel_deadline_minutes: Mapped[int] = mapped_column(Integer, default=120)
    max_open_per_resident: Mapped[int] = mapped_column(Integer, default=2)
    min_age: Mapped[int | None] = mapped_column(SmallInteger, doc="of the person served")
    max_age: Mapped[int | None] = mapped_column(SmallInteger, doc="inclusive, by birth year")
    requires_confirmation: Mapped[bool] = mapped_column(Boolean, default=False)
    reminder_minutes_before: Mapped[int | None] = mapped_column(Integer, default=120)
    urgent_visits: Mapped[bool] = mapped_column(Boolean, default=False,
                                                doc="takes one-tap home-visit requests")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    community: Mapped[Community] = relationship(lazy="raise")
    provider: Mapped[Org] = relationship(lazy="raise")
    hours: Mapped[list[ServiceHours]] = relationship(
        lazy="raise", cascade="all, delete-orphan",
        order_by="(ServiceHours.weekday, ServiceHours.opens_minute)")

    @property
    def tz(self) -> ZoneInfo:
        """The community's time zone (needs `community` loaded)."""
        return ZoneInfo(self.community.timezone)


class ServiceHours(Base):
    """A weekly opening range: weekday 0 = Monday; minutes from local midnight (1440 = 24:00)."""

    __tablename__ = "booking_service_hours"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint(f"opens_minute >= 0 AND opens_minute < closes_minute "
                        f"AND closes_minute <= {MINUTES_PER_DAY}", name="minute_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(
        ForeignKey("booking_services.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(SmallInteger)
    opens_minute: Mapped[int] = mapped_column(Integer)
    closes_minute: Mapped[int] = mapped_column(Integer)


class ServiceException(Base):
    """A dated exception: closed (all day, or a range) or extra opening hours."""

    __tablename__ = "booking_service_exceptions"
    __table_args__ = (
        Index("ix_booking_service_exceptions_day", "service_id", "day"),
        CheckConstraint("(opens_minute IS NULL) = (closes_minute IS NULL)", name="both_or_none"),
        CheckConstraint(f"opens_minute IS NULL OR (opens_minute >= 0 AND opens_minute < "
                        f"closes_minute AND closes_minute <= {MINUTES_PER_DAY})",
                        name="minute_range"),
        CheckConstraint("kind <> 'open' OR opens_minute IS NOT NULL", name="open_needs_hours"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("booking_services.id",
                                                       ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[ExceptionKind] = mapped_column(str_enum(ExceptionKind, "exception_kind"))
    opens_minute: Mapped[int | None] = mapped_column(Integer)
    closes_minute: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Slot(Base):
    """The capacity row of one slot, created when first booked or adjusted.

    `booked` only changes through conditional UPDATEs; the CHECK is the backstop.
    """

    __tablename__ = "booking_slots"
    __table_args__ = (
        UniqueConstraint("service_id", "starts_at"),
        CheckConstraint("booked >= 0 AND booked <= capacity", name="booked_within_capacity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("booking_services.id",
                                                       ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def remaining(self) -> int:
        """Places still free (none while blocked)."""
        return 0 if self.blocked else max(0, self.capacity - self.booked)


class Booking(Base):
    """A resident's booking of a slot, or a one-tap urgent home-visit request (no slot)."""

    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_user_starts", "user_id", "starts_at", "id"),
        Index("ix_bookings_for_user_starts", "for_user_id", "starts_at", "id"),
        Index("ix_bookings_service_starts", "service_id", "starts_at", "id"),
        CheckConstraint("kind = 'urgent' OR slot_id IS NOT NULL", name="slot_unless_urgent"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("booking_services.id"))
    slot_id: Mapped[int | None] = mapped_column(ForeignKey("booking_slots.id"), index=True)
    kind: Mapped[BookingKind] = mapped_column(str_enum(BookingKind, "booking_kind"),
                                              default=BookingKind.SLOT)
    status: Mapped[BookingStatus] = mapped_column(str_enum(BookingStatus, "booking_status"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), doc="who booked")
    for_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), doc="who is served")
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"))
    starts_at: Mapped[datetime] = mapped_column(doc="urgent visits: when it was asked for")
    ends_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(String(500), default="")
    address: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[int] = mapped_column(Integer, default=1, doc="+1 on every reschedule")
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    grid_worker_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    confirmed_at: Mapped[datetime | None]
    checked_in_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    routed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    service: Mapped[Service] = relationship(lazy="raise")
    user: Mapped[User] = relationship(lazy="raise", foreign_keys=[user_id])
    for_user: Mapped[User] = relationship(lazy="raise", foreign_keys=[for_user_id])
    confirmed_by: Mapped[User | None] = relationship(lazy="raise", foreign_keys=[confirmed_by_id])
    household: Mapped[Household | None] = relationship(lazy="raise")
    events: Mapped[list[BookingEvent]] = relationship(
        lazy="raise", order_by="(BookingEvent.created_at, BookingEvent.id)",
        cascade="all, delete-orphan")

    @property
    def start(self) -> datetime:
        """The start in the community's time (needs `service.community` loaded)."""
        return self.starts_at.astimezone(self.service.tz)

    @property
    def end(self) -> datetime:
        """The end in the community's time (needs `service.community` loaded)."""
        return self.ends_at.astimezone(self.service.tz)


class BookingEvent(Base):
    """The timeline of a booking: every move, with who, when, from, to and a note."""

    __tablename__ = "booking_events"
    __table_args__ = (Index("ix_booking_events_booking", "booking_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
