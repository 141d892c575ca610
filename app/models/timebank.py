"""The volunteer time bank (时间银行): an append-only ledger, accounts, rewards, redemptions.

The ledger is the truth; `TimebankAccount.balance` is the sum of a resident's entries, kept in
the same transaction as every entry by a conditional UPDATE (`balance >= :cost` for debits), so
concurrent redemptions serialise on the account row and the CHECK keeps it from going negative.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.accounts import User
from app.models.base import Base, str_enum, utcnow


class EntryKind(enum.StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"
    REVERSAL = "reversal"


class EntrySource(enum.StrEnum):
    VOLUNTEER = "volunteer"
    AWARD = "award"
    REDEMPTION = "redemption"


class RedemptionStatus(enum.StrEnum):
    REQUESTED = "requested"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"


class TimebankAccount(Base):
    """A resident's balance: the sum of their ledger entries, guarded by a CHECK."""

    __tablename__ = "timebank_accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_nonnegative"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"), index=True)
    balance: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerEntry(Base):
    """One movement of points; never updated or deleted (a mistake gets a reversal)."""

    __tablename__ = "timebank_entries"
    __table_args__ = (
        CheckConstraint("(kind = 'credit' AND points > 0) OR (kind = 'debit' AND points < 0) "
                        "OR (kind = 'reversal' AND points <> 0)", name="sign_matches_kind"),
        CheckConstraint("balance_after >= 0", name="balance_after_nonnegative"),
        Index("ix_timebank_entries_user", "user_id", "created_at", "id"),
        Index("ix_timebank_entries_board", "community_id", "source", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("timebank_accounts.user_id"))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    kind: Mapped[EntryKind] = mapped_column(str_enum(EntryKind, "entry_kind"))
    source: Mapped[EntrySource] = mapped_column(str_enum(EntrySource, "entry_source"))
    points: Mapped[int] = mapped_column(Integer, doc="signed: + adds to the balance")
    minutes: Mapped[int] = mapped_column(Integer, default=0, doc="volunteer minutes, signed")
    balance_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200), default="")
    signup_id: Mapped[int | None] = mapped_column(ForeignKey("activity_signups.id"))
    redemption_id: Mapped[int | None] = mapped_column(ForeignKey("timebank_redemptions.id"))
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("timebank_entries.id"))
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@event.listens_for(LedgerEntry, "before_update")
@event.listens_for(LedgerEntry, "before_delete")
def _ledger_is_append_only(_mapper, _connection, target: LedgerEntry) -> None:
    raise RuntimeError(f"ledger entry {target.id} is append-only; write a reversal instead")


class Reward(Base):
    """Something points buy (a haircut, a canteen meal voucher, a service), with its stock."""

    __tablename__ = "timebank_rewards"
    __table_args__ = (
        UniqueConstraint("community_id", "code"),
        CheckConstraint("stock >= 0", name="stock_nonnegative"),
        CheckConstraint("cost > 0", name="cost_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(Text, default="")
    provider: Mapped[str] = mapped_column(String(100), default="")
    cost: Mapped[int] = mapped_column(Integer, doc="points")
    stock: Mapped[int] = mapped_column(Integer, doc="how many are left")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Redemption(Base):
    """A resident's exchange of points for a reward; staff fulfil or cancel it."""

    __tablename__ = "timebank_redemptions"
    __table_args__ = (
        Index("ix_timebank_redemptions_user", "user_id", "created_at", "id"),
        Index("ix_timebank_redemptions_queue", "community_id", "status", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reward_id: Mapped[int] = mapped_column(ForeignKey("timebank_rewards.id"))
    cost: Mapped[int] = mapped_column(Integer)
    status: Mapped[RedemptionStatus] = mapped_column(
        str_enum(RedemptionStatus, "redemption_status"), default=RedemptionStatus.REQUESTED)
    handled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    fulfilled_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    reward: Mapped[Reward] = relationship(lazy="raise")
    user: Mapped[User] = relationship(lazy="raise", foreign_keys=[user_id])
    events: Mapped[list[RedemptionEvent]] = relationship(
        lazy="raise", order_by="(RedemptionEvent.created_at, RedemptionEvent.id)")


class RedemptionEvent(Base):
    """The timeline of a redemption."""

    __tablename__ = "redemption_events"
    __table_args__ = (Index("ix_redemption_events_redemption", "redemption_id",
                            "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    redemption_id: Mapped[int] = mapped_column(ForeignKey("timebank_redemptions.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
