"""Communities and their places: buildings, units and rooms for the mini-program's pickers."""

from __future__ import annotations

from itertools import groupby

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.errors import NotFound
from app.extensions import db
from app.models import Building, Community, Household, User


def resolve_community_id(*, user_id: int, requested: int | None) -> int:
    """The community a request is about: asked for, the user's own, or the deployment's first."""
    if requested is not None:
        if db.session.get(Community, requested) is None:
            raise NotFound("社区不存在", code="community_not_found")
        return requested
    user = db.session.get(User, user_id)
    if user is not None and user.community_id is not None:
        return user.community_id
    first = db.session.scalar(select(Community.id).order_by(Community.id).limit(1))
    if first is None:
        raise NotFound("尚未配置社区", code="community_not_found")
    return first


def list_buildings(*, community_id: int) -> list[Building]:
    """Every building of the community, by number."""
    return list(db.session.scalars(
        select(Building).where(Building.community_id == community_id)
        .order_by(Building.number, Building.id)
    ))


def building_detail(*, building_id: int) -> Building:
    """A building with its micro-grid and its units' rooms (as `unit_rooms`)."""
    building = db.session.scalar(
        select(Building).where(Building.id == building_id)
        .options(selectinload(Building.micro_grid), selectinload(Building.households))
    )
    if building is None:
        raise NotFound("楼栋不存在", code="building_not_found")
    rows = sorted(building.households, key=lambda h: (_natural(h.unit), _natural(h.room)))
    building.unit_rooms = [
        {"unit": unit, "rooms": [h.room for h in group]}
        for unit, group in groupby(rows, key=lambda h: h.unit)
    ]
    return building


def _natural(value: str) -> tuple:
    return (0, int(value), value) if value.isdigit() else (1, 0, value)


def household_in_community(household_id: int, community_id: int) -> Household:
    """The household, or 404 when it is not in the community."""
    household = db.session.get(Household, household_id)
    if household is None or household.community_id != community_id:
        raise NotFound("房屋不存在", code="household_not_found")
    return household
