"""Snapshot reports (随手拍): categories, reports, photos, followers, tickets, timeline, routing."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql import text

from app.models.accounts import Org, User
from app.models.base import Base, str_enum, utcnow
from app.models.community import Building


class ReportStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    ROUTED = "routed"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


# The ends of a report: it moves no further, and its closed_at is set.
FINAL_REPORT_STATES = (ReportStatus.CLOSED, ReportStatus.REJECTED, ReportStatus.DUPLICATE)
# The reports their resident still follows - every other state: the home screen shows the
# newest of them, and ix_reports_reporter_open holds only these (migration 0014 writes the same
# list, in this order: SQLite matches a partial index's WHERE with the query's term by term).
FOLLOWED_REPORT_STATES = (ReportStatus.SUBMITTED, ReportStatus.ROUTED, ReportStatus.ACCEPTED,
                          ReportStatus.IN_PROGRESS, ReportStatus.REOPENED, ReportStatus.RESOLVED)
_FOLLOWED = text("status IN ({})".format(
    ", ".join("'" + state.value + "'" for state in FOLLOWED_REPORT_STATES)))


class TicketStatus(enum.StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    CLOSED = "closed"
    REJECTED = "rejected"
    TRANSFERRED = "transferred"
    DUPLICATE = "duplicate"


class ReportCategory(Base):
    """A kind of problem residents can report, with its SLA."""

    __tablename__ = "report_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(40), doc="Chinese name shown in the app")
    name_en: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(String(200), default="")
    sla_hours: Mapped[int] = mapped_column(Integer, default=48)
    photo_required: Mapped[bool] = mapped_column(Boolean, default=False)
    is_private: Mapped[bool] = mapped_column(Boolean, default=False,
                                             doc="never on the big screen or in public lists")
    extra_fields: Mapped[list] = mapped_column(JSON, default=list)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class Report(Base):
    """A resident's report of a problem, as they see it."""

    __tablename__ = "reports"
    __table_args__ = (
        Index("ix_reports_reporter_created", "reporter_id", "created_at", "id"),
        # home: a resident's newest followed reports, read in order - however many closed ones
        # or open ones they have, three index entries
        Index("ix_reports_reporter_open", "reporter_id", "created_at", "id",
              postgresql_where=_FOLLOWED, sqlite_where=_FOLLOWED),
        Index("ix_reports_open_category", "community_id", "category_id", "status"),
        CheckConstraint("rating IS NULL OR (rating BETWEEN 1 AND 5)", name="rating_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    category_id: Mapped[int] = mapped_column(ForeignKey("report_categories.id"))
    description: Mapped[str] = mapped_column(Text)
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    location_text: Mapped[str] = mapped_column(String(200), default="")
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[ReportStatus] = mapped_column(
        str_enum(ReportStatus, "report_status"), default=ReportStatus.SUBMITTED)
    source: Mapped[str] = mapped_column(String(20), default="miniprogram")
    source_org_id: Mapped[int | None] = mapped_column(ForeignKey("orgs.id"))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    rejected_reason: Mapped[str | None] = mapped_column(String(500))
    fixed: Mapped[bool | None] = mapped_column(Boolean)
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    feedback_comment: Mapped[str | None] = mapped_column(String(500))
    feedback_at: Mapped[datetime | None]
    last_urged_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    category: Mapped[ReportCategory] = relationship(lazy="raise")
    building: Mapped[Building | None] = relationship(lazy="raise")
    reporter: Mapped[User | None] = relationship(lazy="raise")
    photos: Mapped[list[ReportPhoto]] = relationship(
        lazy="raise", order_by="ReportPhoto.position", cascade="all, delete-orphan")
    tickets: Mapped[list[Ticket]] = relationship(
        back_populates="report", lazy="raise", order_by="Ticket.id")
    events: Mapped[list[ReportEvent]] = relationship(
        lazy="raise", order_by="(ReportEvent.created_at, ReportEvent.id)",
        foreign_keys="ReportEvent.report_id")


class ReportPhoto(Base):
    """A photo attached to a report (kind `report`) or to a ticket step (kind `after`)."""

    __tablename__ = "report_photos"
    __table_args__ = (UniqueConstraint("report_id", "upload_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"),
                                           index=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("report_events.id"))
    kind: Mapped[str] = mapped_column(String(10), default="report")
    position: Mapped[int] = mapped_column(SmallInteger, default=0)

    upload = relationship("Upload", lazy="raise")


class ReportFollower(Base):
    """Someone else who wants the updates of a report instead of filing a duplicate."""

    __tablename__ = "report_followers"
    __table_args__ = (UniqueConstraint("report_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"),
                                           index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ticket(Base):
    """One org's piece of work on a report (unique per report and org)."""

    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("report_id", "org_id"),
        Index("ix_tickets_org_created", "org_id", "created_at", "id"),
        Index("ix_tickets_org_expected", "org_id", "expected_at", "id"),
        Index("ix_tickets_status_expected", "status", "expected_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"))
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    category_id: Mapped[int] = mapped_column(ForeignKey("report_categories.id"))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"))
    micro_grid_id: Mapped[int | None] = mapped_column(ForeignKey("micro_grids.id"), index=True)
    grid_worker_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[TicketStatus] = mapped_column(
        str_enum(TicketStatus, "ticket_status"), default=TicketStatus.NEW)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    accept_by: Mapped[datetime]
    expected_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated_at: Mapped[datetime | None]
    transferred_to_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    report: Mapped[Report] = relationship(back_populates="tickets", lazy="raise")
    org: Mapped[Org] = relationship(lazy="raise")
    category: Mapped[ReportCategory] = relationship(lazy="raise")
    assignee: Mapped[User | None] = relationship(lazy="raise", foreign_keys=[assignee_id])


class ReportEvent(Base):
    """The timeline of a report and its tickets: every move, comment and chase-up."""

    __tablename__ = "report_events"
    __table_args__ = (Index("ix_report_events_report", "report_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    org_id: Mapped[int | None] = mapped_column(ForeignKey("orgs.id"))
    action: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    org: Mapped[Org | None] = relationship(lazy="raise")
    actor: Mapped[User | None] = relationship(lazy="raise")


class RoutingRule(Base):
    """Ordered routing: the first rule matching category (and area) names the target orgs."""

    __tablename__ = "routing_rules"
    __table_args__ = (Index("ix_routing_rules_order", "community_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    position: Mapped[int] = mapped_column(Integer)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("report_categories.id"))
    micro_grid_id: Mapped[int | None] = mapped_column(ForeignKey("micro_grids.id"))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"))
    copy_grid_worker: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(String(200), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    targets: Mapped[list[RoutingTarget]] = relationship(lazy="raise",
                                                        cascade="all, delete-orphan")


class RoutingTarget(Base):
    """One target of a rule: an org, or an org type resolved within the community."""

    __tablename__ = "routing_targets"
    __table_args__ = (CheckConstraint("(org_id IS NULL) <> (org_type IS NULL)",
                                      name="org_or_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("routing_rules.id", ondelete="CASCADE"),
                                         index=True)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("orgs.id"))
    org_type: Mapped[str | None] = mapped_column(String(32))
