"""People and organisations: users, household membership, orgs and staff roles."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, str_enum, utcnow
from app.models.community import Household


class OrgType(enum.StrEnum):
    PROPERTY_COMPANY = "property_company"
    OWNERS_COMMITTEE = "owners_committee"
    COMMUNITY_OFFICE = "community_office"
    CANTEEN = "canteen"
    SERVICE_PROVIDER = "service_provider"


class Role(enum.StrEnum):
    STAFF = "staff"
    MANAGER = "manager"
    GRID_WORKER = "grid_worker"
    COURIER = "courier"
    ADMIN = "admin"


class ClaimStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Relation(enum.StrEnum):
    OWNER = "owner"
    TENANT = "tenant"
    SPOUSE = "spouse"
    CHILD = "child"
    PARENT = "parent"
    GRANDPARENT = "grandparent"
    GRANDCHILD = "grandchild"
    RELATIVE = "relative"
    CARER = "carer"


class User(Base):
    """Anyone who signs in: residents (WeChat) and staff (username/password) alike.

    `is_platform_operator` marks the people who run the deployment itself (failed background
    jobs of every community): a platform role, held by the login, not by a membership of an org,
    since every org belongs to one community.
    """

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("wx_appid", "openid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"), index=True)
    wx_appid: Mapped[str | None] = mapped_column(String(64))
    openid: Mapped[str | None] = mapped_column(String(128))
    unionid: Mapped[str | None] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(256))
    display_name: Mapped[str] = mapped_column(String(64), default="")
    phone: Mapped[str | None] = mapped_column(String(20))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_platform_operator: Mapped[bool] = mapped_column(Boolean, default=False,
                                                       server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    household_links: Mapped[list[HouseholdMember]] = relationship(
        back_populates="user", lazy="raise", foreign_keys="HouseholdMember.user_id"
    )
    memberships: Mapped[list[Membership]] = relationship(back_populates="user", lazy="raise")


class HouseholdMember(Base):
    """A user's claim on a household; the community office approves or rejects it."""

    __tablename__ = "household_members"
    __table_args__ = (UniqueConstraint("household_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    relation: Mapped[Relation] = mapped_column(str_enum(Relation, "relation"))
    status: Mapped[ClaimStatus] = mapped_column(
        str_enum(ClaimStatus, "claim_status"), default=ClaimStatus.PENDING
    )
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(
        back_populates="household_links", lazy="raise", foreign_keys=[user_id]
    )
    household: Mapped[Household] = relationship(lazy="raise")


class Org(Base):
    """An organisation that acts in the community: property company, office, canteen..."""

    __tablename__ = "orgs"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    type: Mapped[OrgType] = mapped_column(str_enum(OrgType, "org_type"))
    webhook_url: Mapped[str | None] = mapped_column(String(300))
    webhook_secret: Mapped[str | None] = mapped_column(String(128))


class Membership(Base):
    """A user's role in an org."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "org_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships", lazy="raise")
    org: Mapped[Org] = relationship(lazy="raise")
