"""Shared setup of the report tests: a community with its orgs and people, photos, shortcuts.

A test module makes its fixture with `build_place()`:

    @pytest.fixture
    def place(app):
        return build_place()
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass

from PIL import Image
from sqlalchemy import func, select

from app.extensions import db
from app.models import Building, Community, Notification, Org, OutboxMessage, User
from app.models.reports import Report, ReportEvent, ReportPhoto, Ticket
from app.services.report_catalogue import ensure_categories, ensure_routing_rules
from tests import factories as f

ORG_TYPES = ("property_company", "owners_committee", "community_office", "canteen",
             "service_provider")
ORG_NAMES = {"property_company": "绿城物业", "owners_committee": "业主委员会",
             "community_office": "社区居委会", "canteen": "邻里食堂",
             "service_provider": "家政服务"}
# A point inside the factory community (its centre is 31.1915, 121.4450; radius 1.5 km).
HERE = (31.1920, 121.4460)
METRES_PER_DEGREE_LAT = 111_000

_colours = itertools.count(1)


@dataclass
class Place:
    """One community with buildings, the five orgs, residents and staff."""

    comm: Community
    bld: Building
    bld2: Building
    orgs: dict[str, Org]
    resident: User
    neighbour: User
    property_staff: User
    office_staff: User

    @property
    def property_company(self) -> Org:
        return self.orgs["property_company"]

    @property
    def office(self) -> Org:
        return self.orgs["community_office"]


def build_place() -> Place:
    """The community, its catalogue and routing rules, two residents and two staff logins."""
    comm = f.community()
    bld, bld2 = f.building(comm, number="3"), f.building(comm, number="5")
    orgs = {t: f.org(comm, t, code=f"{t}-{comm.id}", name=ORG_NAMES[t]) for t in ORG_TYPES}
    ensure_categories()
    ensure_routing_rules(comm)
    db.session.commit()
    return Place(
        comm=comm, bld=bld, bld2=bld2, orgs=orgs,
        resident=f.resident(comm, household=f.household_of(bld, room="101")),
        neighbour=f.resident(comm, household=f.household_of(bld, room="102")),
        property_staff=f.staff(orgs["property_company"]),
        office_staff=f.staff(orgs["community_office"]),
    )


# ---- photos ---------------------------------------------------------------------------------

def jpeg_bytes() -> bytes:
    """A small JPEG of a colour no other call has used (so uploads are not deduplicated)."""
    n = next(_colours)
    image = Image.new("RGB", (120, 90), (n * 37 % 256, n * 91 % 256, n * 13 % 256))
    image.paste((255, 255, 255), (0, 0, 10 + n % 50, 10))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def upload_photo(client, user: User) -> dict:
    """Upload a fresh JPEG as `user` through POST /api/v1/uploads; returns the response body."""
    r = client.post("/api/v1/uploads", data={"file": (io.BytesIO(jpeg_bytes()), "photo.jpg")},
                    headers=f.headers(user), content_type="multipart/form-data")
    assert r.status_code == 201, r.get_json()
    return r.get_json()


# ---- reports through the API --------------------------------------------------------------

PHOTO_REQUIRED = {"illegal_parking", "fire_lane_blocked", "garbage"}


def report_body(place: Place, category: str = "broken_facility", **kw) -> dict:
    """A valid report body in building 3 (no photos; see `submit` for categories needing one)."""
    body = {"category": category, "description": "3号楼门口的路灯坏了，晚上很黑",
            "building_id": place.bld.id, "location_text": "3号楼门口"}
    if category == "elevator_fault":
        body["extra"] = {"trapped": "否"}  # its required field
    body.update(kw)
    return body


def submit(client, place: Place, user: User | None = None, category: str = "broken_facility",
           headers: dict | None = None, **kw):
    """POST /api/v1/reports as `user` (default the resident), with a photo when one is needed."""
    user = user or place.resident
    if category in PHOTO_REQUIRED and "photo_ids" not in kw:
        kw["photo_ids"] = [upload_photo(client, user)["id"]]
    return client.post("/api/v1/reports", json=report_body(place, category, **kw),
                       headers={**f.headers(user), **(headers or {})})


def filed(client, place: Place, user: User | None = None, category: str = "broken_facility",
          **kw) -> dict:
    """Submit a report that must be accepted; returns its body."""
    r = submit(client, place, user, category, **kw)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


# ---- the staff side ------------------------------------------------------------------------

def ticket_for(report_id: int, org: Org) -> Ticket:
    """The report's ticket for `org` (fresh from the database)."""
    db.session.expire_all()
    return db.session.scalar(select(Ticket).where(Ticket.report_id == report_id,
                                                  Ticket.org_id == org.id))


def staff_move(client, staff: User, ticket_id: int, action: str, note: str = ""):
    """POST a transition on the ticket API as `staff`."""
    return client.post(f"/api/v1/tickets/{ticket_id}/transitions",
                       json={"action": action, "note": note}, headers=f.headers(staff))


def resolve(client, place: Place, report_id: int, note: str = "已清理完毕") -> None:
    """The property company accepts, starts and resolves its ticket for the report."""
    ticket = ticket_for(report_id, place.property_company)
    for action in ("accept", "start", "resolve"):
        r = staff_move(client, place.property_staff, ticket.id, action,
                       note if action == "resolve" else "")
        assert r.status_code == 200, r.get_json()


# ---- counting rows ------------------------------------------------------------------------

def count(model) -> int:
    """Rows of `model` in the database."""
    return db.session.scalar(select(func.count()).select_from(model))


def written() -> dict[str, int]:
    """How many rows the report flow has written, by table."""
    return {m.__tablename__: count(m)
            for m in (Report, ReportPhoto, ReportEvent, Ticket, OutboxMessage, Notification)}


def notifications_of(user: User) -> list[Notification]:
    """The user's in-app notifications, oldest first."""
    return list(db.session.scalars(select(Notification).where(
        Notification.user_id == user.id).order_by(Notification.id)))


def metres_north(point: tuple[float, float], metres: float) -> tuple[float, float]:
    """The point `metres` north of `point`."""
    return point[0] + metres / METRES_PER_DEGREE_LAT, point[1]
