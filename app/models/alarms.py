"""Safety alarms for elders living alone (安全守护): kits, gateways, device events, alarms."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
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

from app.models.base import Base, str_enum, utcnow
from app.models.community import Household


class DeviceKind(enum.StrEnum):
    SOS_BUTTON = "sos_button"
    DOOR_SENSOR = "door_sensor"
    GAS_ALARM = "gas_alarm"
    SMOKE_ALARM = "smoke_alarm"
    BED_BELT = "bed_belt"


class AlarmSeverity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    WELFARE = "welfare"


class AlarmStatus(enum.StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    ON_SITE = "on_site"
    RESOLVED = "resolved"


class AlarmCause(enum.StrEnum):
    FALSE_ALARM = "false_alarm"
    COOKING = "cooking"
    FALL = "fall"
    MEDICAL = "medical"
    FIRE = "fire"
    OTHER = "other"


class WatchedElder(Base):
    """An elder the community watches over, with the vital-sign ranges of their bed belt."""

    __tablename__ = "alarm_elders"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"),
                                                doc="their own Linli account, if any")
    name: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(20))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    lives_alone: Mapped[bool] = mapped_column(Boolean, default=True)
    at_home: Mapped[bool] = mapped_column(Boolean, default=True,
                                          doc="false while away (hospital, with family)")
    at_home_since: Mapped[datetime] = mapped_column(default=utcnow)
    heart_rate_min: Mapped[int] = mapped_column(SmallInteger, default=50)
    heart_rate_max: Mapped[int] = mapped_column(SmallInteger, default=110)
    breath_rate_min: Mapped[int] = mapped_column(SmallInteger, default=10)
    breath_rate_max: Mapped[int] = mapped_column(SmallInteger, default=28)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    household: Mapped[Household] = relationship(lazy="raise")
    contacts: Mapped[list[EmergencyContact]] = relationship(
        lazy="raise", order_by="EmergencyContact.position", cascade="all, delete-orphan")
    devices: Mapped[list[Device]] = relationship(lazy="raise", order_by="Device.id",
                                                 back_populates="elder")


class EmergencyContact(Base):
    """A family member to call, in order; one with a Linli account also gets WeChat messages."""

    __tablename__ = "alarm_contacts"
    __table_args__ = (UniqueConstraint("elder_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("alarm_elders.id", ondelete="CASCADE"),
                                          index=True)
    position: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(20))
    relation: Mapped[str] = mapped_column(String(20), default="")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)


class Gateway(Base):
    """A vendor gateway posting device events; it signs each request with its own secret."""

    __tablename__ = "alarm_gateways"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    secret: Mapped[str] = mapped_column(
        String(128), doc="HMAC-SHA256 key; shown once when created, never returned again")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Base):
    """A device of a home safety kit, with what the worker last learnt from its events."""

    __tablename__ = "alarm_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("alarm_elders.id"), index=True)
    kind: Mapped[DeviceKind] = mapped_column(str_enum(DeviceKind, "device_kind"))
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    installed_on: Mapped[date] = mapped_column(Date)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(doc="last event of any type")
    last_opened_at: Mapped[datetime | None] = mapped_column(doc="door sensors")
    out_of_bed_since: Mapped[datetime | None] = mapped_column(doc="bed belts; null in bed")
    bed_state_at: Mapped[datetime | None] = mapped_column(doc="time of the last bed reading")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    elder: Mapped[WatchedElder | None] = relationship(lazy="raise", back_populates="devices")


class DeviceEvent(Base):
    """One event a gateway delivered, stored before it is evaluated (idempotent by event_id)."""

    __tablename__ = "device_events"
    __table_args__ = (
        UniqueConstraint("gateway_id", "event_id"),
        Index("ix_device_events_device_at", "device_id", "at"),
        Index("ix_device_events_unprocessed", "processed_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    gateway_id: Mapped[int] = mapped_column(ForeignKey("alarm_gateways.id"))
    device_id: Mapped[int] = mapped_column(ForeignKey("alarm_devices.id"))
    event_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime]
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    alarm_id: Mapped[int | None] = mapped_column(ForeignKey("alarms.id"), index=True)


class AlarmRule(Base):
    """A rule that raises alarms: which events (or which periodic check), how severe, params."""

    __tablename__ = "alarm_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(40), doc="Chinese name shown to staff and family")
    severity: Mapped[AlarmSeverity] = mapped_column(str_enum(AlarmSeverity, "alarm_severity"))
    trigger: Mapped[str] = mapped_column(
        String(20), doc="event | door_idle | device_silent | out_of_bed")
    device_kind: Mapped[str | None] = mapped_column(String(20), doc="null: any kind")
    event_type: Mapped[str | None] = mapped_column(String(20))
    condition: Mapped[dict] = mapped_column(JSON, default=dict)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    ack_within_seconds: Mapped[int | None] = mapped_column(
        Integer, doc="escalate once when not acknowledged in time; null: never")
    position: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class Alarm(Base):
    """An alarm about an elder's home, from raised to resolved; repeats attach to it."""

    __tablename__ = "alarms"
    __table_args__ = (
        Index("ix_alarms_urgent", "community_id", "urgency", "raised_at", "id"),
        Index("ix_alarms_elder", "elder_id", "raised_at", "id"),
        Index("ix_alarms_ack_due", "status", "ack_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"))
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("alarm_elders.id"))
    device_id: Mapped[int] = mapped_column(ForeignKey("alarm_devices.id"), index=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alarm_rules.id"))
    kind: Mapped[str] = mapped_column(String(40), doc="the rule's code")
    severity: Mapped[AlarmSeverity] = mapped_column(str_enum(AlarmSeverity, "alarm_severity"))
    status: Mapped[AlarmStatus] = mapped_column(str_enum(AlarmStatus, "alarm_status"),
                                                default=AlarmStatus.RAISED)
    urgency: Mapped[int] = mapped_column(SmallInteger, doc="list order: lower is more urgent")
    occurred_at: Mapped[datetime] = mapped_column(doc="when the condition arose")
    raised_at: Mapped[datetime]
    ack_due_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    on_site_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cause: Mapped[AlarmCause | None] = mapped_column(str_enum(AlarmCause, "alarm_cause"))
    resolution_note: Mapped[str] = mapped_column(Text, default="")
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated_at: Mapped[datetime | None]
    event_count: Mapped[int] = mapped_column(Integer, default=1)
    last_event_at: Mapped[datetime]
    open_key: Mapped[str | None] = mapped_column(
        String(80), unique=True, doc="device:rule while open, null once resolved")
    episode_key: Mapped[str | None] = mapped_column(
        String(120), unique=True, doc="periodic rules: one alarm per episode")

    elder: Mapped[WatchedElder | None] = relationship(lazy="raise")
    household: Mapped[Household] = relationship(lazy="raise")
    device: Mapped[Device] = relationship(lazy="raise")
    rule: Mapped[AlarmRule] = relationship(lazy="raise")
    events: Mapped[list[AlarmEvent]] = relationship(
        lazy="raise", order_by="(AlarmEvent.created_at, AlarmEvent.id)")


class AlarmEvent(Base):
    """The timeline of an alarm: raised, repeats attached, notified, moved, escalated."""

    __tablename__ = "alarm_events"
    __table_args__ = (Index("ix_alarm_events_alarm", "alarm_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(20))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    device_event_id: Mapped[int | None] = mapped_column(ForeignKey("device_events.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlarmDuty(Base):
    """A community-office staff member on alarm duty (值班): notified first, sees full phones."""

    __tablename__ = "alarm_duty"
    __table_args__ = (UniqueConstraint("community_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    since: Mapped[datetime] = mapped_column(default=utcnow)
