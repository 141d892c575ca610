"""Community activities (活动报名): activities, volunteer roles, signups, scans and timeline.

Seats are counters on the activity (participants) and on each volunteer role, changed only by
conditional UPDATEs under the activity's row lock; CHECK constraints keep them within capacity
whatever the code does.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.accounts import User
from app.models.base import Base, str_enum, utcnow
from app.models.uploads import Upload

PARTICIPANT = "participant"
AUDIENCE_TAGS = ("elderly", "children", "family", "all")


class ActivityStatus(enum.StrEnum):
    PUBLISHED = "published"
    CANCELLED = "cancelled"


class SignupStatus(enum.StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"


class CreditMode(enum.StrEnum):
    MEASURED = "measured"  # the measured time between check-in and check-out, capped by hours
    FIXED = "fixed"  # the role's hours, however long the volunteer stayed


class Activity(Base):
    """An activity residents sign up for, with participant seats and volunteer roles."""

    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint("seats_taken >= 0 AND seats_taken <= capacity", name="seats_within"),
        CheckConstraint("capacity >= 0", name="capacity_nonnegative"),
        CheckConstraint("max_party_size >= 1", name="party_size_positive"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_activities_upcoming", "community_id", "status", "starts_at", "id"),
        Index("ix_activities_org", "org_id", "starts_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    place: Mapped[str] = mapped_column(String(200), default="")
    cover_upload_id: Mapped[int | None] = mapped_column(ForeignKey("uploads.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    signup_opens_at: Mapped[datetime]
    signup_closes_at: Mapped[datetime]
    capacity: Mapped[int] = mapped_column(Integer)
    seats_taken: Mapped[int] = mapped_column(Integer, default=0)
    signup_counter: Mapped[int] = mapped_column(Integer, default=0,
                                                doc="arrival numbers handed out so far")
    max_party_size: Mapped[int] = mapped_column(SmallInteger, default=1)
    audience_mask: Mapped[int] = mapped_column(Integer, default=0,
                                               doc="one bit per AUDIENCE_TAGS entry")
    min_age: Mapped[int | None] = mapped_column(SmallInteger)
    max_age: Mapped[int | None] = mapped_column(SmallInteger)
    checkin_required: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[ActivityStatus] = mapped_column(
        str_enum(ActivityStatus, "activity_status"), default=ActivityStatus.PUBLISHED)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    cancelled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    roles: Mapped[list[VolunteerRole]] = relationship(
        back_populates="activity", lazy="raise", order_by="VolunteerRole.id",
        cascade="all, delete-orphan")
    cover: Mapped[Upload | None] = relationship(lazy="raise")

    @property
    def seats_left(self) -> int:
        """Participant seats still free."""
        return max(0, self.capacity - self.seats_taken)

    @property
    def audience(self) -> list[str]:
        """The audience tags, in AUDIENCE_TAGS order."""
        return [tag for tag in AUDIENCE_TAGS if self.audience_mask & audience_bit(tag)]


def audience_bit(tag: str) -> int:
    """The bit of an audience tag in `Activity.audience_mask`."""
    return 1 << AUDIENCE_TAGS.index(tag)


class VolunteerRole(Base):
    """A volunteer duty at an activity with its own seats and the hours it earns."""

    __tablename__ = "volunteer_roles"
    __table_args__ = (
        UniqueConstraint("activity_id", "code"),
        CheckConstraint("seats_taken >= 0 AND seats_taken <= capacity", name="seats_within"),
        CheckConstraint("credited_minutes >= 0", name="minutes_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(60))
    capacity: Mapped[int] = mapped_column(Integer)
    seats_taken: Mapped[int] = mapped_column(Integer, default=0)
    credited_minutes: Mapped[int] = mapped_column(Integer)
    credit_mode: Mapped[CreditMode] = mapped_column(
        str_enum(CreditMode, "credit_mode"), default=CreditMode.MEASURED)

    activity: Mapped[Activity] = relationship(back_populates="roles", lazy="raise")

    @property
    def hours(self) -> float:
        """The credited hours (the cap in `measured` mode)."""
        return round(self.credited_minutes / 60, 2)

    @property
    def seats_left(self) -> int:
        """Volunteer places still free."""
        return max(0, self.capacity - self.seats_taken)


class Signup(Base):
    """One resident's place at an activity: a party of participants or one volunteer."""

    __tablename__ = "activity_signups"
    __table_args__ = (
        UniqueConstraint("activity_id", "user_id"),
        CheckConstraint("party_size >= 1", name="party_size_positive"),
        Index("ix_activity_signups_queue", "activity_id", "role", "status", "queue_no"),
        Index("ix_activity_signups_user", "user_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    role: Mapped[str] = mapped_column(String(32), default=PARTICIPANT,
                                      doc="participant, or a volunteer role code")
    volunteer_role_id: Mapped[int | None] = mapped_column(ForeignKey("volunteer_roles.id"))
    party_size: Mapped[int] = mapped_column(SmallInteger, default=1)
    member_ids: Mapped[list] = mapped_column(JSON, default=list,
                                             doc="household members in the party")
    status: Mapped[SignupStatus] = mapped_column(str_enum(SignupStatus, "signup_status"))
    queue_no: Mapped[int] = mapped_column(Integer, doc="arrival number within the activity")
    cancel_source: Mapped[str | None] = mapped_column(String(20))
    confirmed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    checked_in_at: Mapped[datetime | None]
    checked_out_at: Mapped[datetime | None]
    credited_minutes: Mapped[int | None] = mapped_column(Integer)
    reminded_day_at: Mapped[datetime | None]
    reminded_hour_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    activity: Mapped[Activity] = relationship(lazy="raise")
    user: Mapped[User] = relationship(lazy="raise")
    volunteer_role: Mapped[VolunteerRole | None] = relationship(lazy="raise")


class ActivityEvent(Base):
    """The timeline of an activity and its signups: every move, with who, when, from and to."""

    __tablename__ = "activity_events"
    __table_args__ = (
        Index("ix_activity_events_activity", "activity_id", "created_at", "id"),
        Index("ix_activity_events_signup", "signup_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id"))
    signup_id: Mapped[int | None] = mapped_column(ForeignKey("activity_signups.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CheckinScan(Base):
    """One upload of a scanner's scan; its nonce makes a re-upload answer the same."""

    __tablename__ = "activity_checkin_scans"
    __table_args__ = (UniqueConstraint("activity_id", "nonce"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id"))
    signup_id: Mapped[int] = mapped_column(ForeignKey("activity_signups.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(10), doc="check_in | check_out")
    nonce: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(30))
    scanned_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
