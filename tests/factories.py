"""Test factories: build rows directly, and tokens the way the login endpoints issue them."""

from __future__ import annotations

import itertools

from app.extensions import db
from app.models import (
    Building,
    ClaimStatus,
    Community,
    Grid,
    Household,
    HouseholdMember,
    Membership,
    MicroGrid,
    Org,
    OrgType,
    Relation,
    Role,
    User,
)
from app.security import RESIDENT, STAFF_KIND
from app.services.accounts import issue_tokens

_seq = itertools.count(1)


def community(**kw) -> Community:
    """A community (Asia/Shanghai) centred on 总浦桥."""
    n = next(_seq)
    obj = Community(code=kw.pop("code", f"c{n}"), name=kw.pop("name", f"测试社区{n}"),
                    timezone="Asia/Shanghai", center_lat=31.1915, center_lng=121.4450, **kw)
    db.session.add(obj)
    db.session.commit()
    return obj


def building(comm: Community, *, units: int = 2, rooms: tuple[str, ...] = ("101", "102", "201"),
             **kw) -> Building:
    """A building with a micro-grid and households for every unit × room."""
    n = next(_seq)
    grid = Grid(community_id=comm.id, code=f"g{n}", name=f"第{n}网格")
    db.session.add(grid)
    db.session.flush()
    mg = MicroGrid(community_id=comm.id, grid_id=grid.id, code=f"mg{n}", name=f"微网格{n}")
    db.session.add(mg)
    db.session.flush()
    obj = Building(community_id=comm.id, micro_grid_id=mg.id, number=kw.pop("number", str(n)),
                   name=kw.pop("name", f"{n}号楼"), units=units, lat=31.1916, lng=121.4451, **kw)
    db.session.add(obj)
    db.session.flush()
    for unit in range(1, units + 1):
        for room in rooms:
            db.session.add(Household(community_id=comm.id, building_id=obj.id,
                                     unit=str(unit), room=room))
    db.session.commit()
    return obj


def resident(comm: Community | None = None, *, household: Household | None = None,
             relation: str = "owner", status: str = "approved", **kw) -> User:
    """A WeChat user, optionally with a claim on a household."""
    n = next(_seq)
    user = User(wx_appid="wx-dev-appid", openid=kw.pop("openid", f"test-openid-{n}"),
                display_name=kw.pop("display_name", f"居民{n}"),
                community_id=comm.id if comm else None, **kw)
    db.session.add(user)
    db.session.flush()
    if household is not None:
        db.session.add(HouseholdMember(community_id=household.community_id,
                                       household_id=household.id, user_id=user.id,
                                       relation=Relation(relation), status=ClaimStatus(status)))
    db.session.commit()
    return user


def org(comm: Community, type_: str = "property_company", **kw) -> Org:
    """An org of the given type in the community."""
    n = next(_seq)
    obj = Org(community_id=comm.id, code=kw.pop("code", f"org{n}"),
              name=kw.pop("name", f"组织{n}"), type=OrgType(type_), **kw)
    db.session.add(obj)
    db.session.commit()
    return obj


def staff(of: Org, role: str = "staff", *, password: str = "correct-horse-1",
          **kw) -> User:
    """A staff login with one role in `of`."""
    from werkzeug.security import generate_password_hash

    n = next(_seq)
    user = User(username=kw.pop("username", f"staff{n}"), display_name=f"员工{n}",
                password_hash=generate_password_hash(password, method="pbkdf2:sha256:1000"),
                community_id=of.community_id, **kw)
    db.session.add(user)
    db.session.flush()
    db.session.add(Membership(user_id=user.id, org_id=of.id, role=Role(role)))
    db.session.commit()
    return user


def platform_operator(**kw) -> User:
    """A platform operator's login: no org, no community."""
    from werkzeug.security import generate_password_hash

    n = next(_seq)
    password_hash = generate_password_hash("correct-horse-1", method="pbkdf2:sha256:1000")
    user = User(username=kw.pop("username", f"operator{n}"), display_name=f"运维{n}",
                password_hash=password_hash, is_platform_operator=True, **kw)
    db.session.add(user)
    db.session.commit()
    return user


def headers(user: User, kind: str | None = None) -> dict:
    """Authorization headers with a fresh access token for `user`."""
    kind = kind or (STAFF_KIND if user.username else RESIDENT)
    return {"Authorization": f"Bearer {issue_tokens(user, kind)['access_token']}"}


def household_of(bld: Building, unit: str = "1", room: str = "101") -> Household:
    """The household at unit/room of a factory building."""
    from sqlalchemy import select

    return db.session.scalar(select(Household).where(
        Household.building_id == bld.id, Household.unit == unit, Household.room == room))
