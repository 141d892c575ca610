"""Communities and their places: grids, micro-grids, buildings and households."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow


class Community(Base):
    """One residential community served by this deployment."""

    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    center_lat: Mapped[float | None] = mapped_column(Float)
    center_lng: Mapped[float | None] = mapped_column(Float)
    radius_m: Mapped[int] = mapped_column(Integer, default=1500)
    screen_token_hash: Mapped[str | None] = mapped_column(
        String(64), doc="sha256 of the big screen's token; the token itself is never stored")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Grid(Base):
    """A grid (网格): the community office's unit of area management."""

    __tablename__ = "grids"
    __table_args__ = (UniqueConstraint("community_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))


class MicroGrid(Base):
    """A micro-grid (微网格) with its grid worker."""

    __tablename__ = "micro_grids"
    __table_args__ = (UniqueConstraint("community_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    grid_worker_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)

    grid: Mapped[Grid] = relationship(lazy="raise")


class Building(Base):
    """A residential building (楼栋) with its units."""

    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("community_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    micro_grid_id: Mapped[int | None] = mapped_column(ForeignKey("micro_grids.id"), index=True)
    number: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    units: Mapped[int] = mapped_column(Integer, default=1)
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)

    micro_grid: Mapped[MicroGrid | None] = relationship(lazy="raise")
    households: Mapped[list[Household]] = relationship(
        back_populates="building", lazy="raise", order_by="(Household.unit, Household.room)"
    )


class Household(Base):
    """A dwelling: building + unit + room."""

    __tablename__ = "households"
    __table_args__ = (UniqueConstraint("building_id", "unit", "room"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"), index=True)
    unit: Mapped[str] = mapped_column(String(8))
    room: Mapped[str] = mapped_column(String(8))

    building: Mapped[Building] = relationship(back_populates="households", lazy="raise")

    @property
    def label(self) -> str:
        """The address as residents write it, e.g. 3号楼2单元301."""
        return f"{self.building.number}号楼{self.unit}单元{self.room}"
