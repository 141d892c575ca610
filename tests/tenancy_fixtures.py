"""Two complete tenants, each with one resource of every kind, made through the services.

Used by the authorization matrix (tests/test_authorization_matrix.py) and the fuzzer
(tests/fuzz/). Each `Side` is a community with two households, two property companies, the
office, a canteen and a care provider, their staff, a resident and a neighbour in different
households, and one of each resource: a report with its ticket, a booking, an activity signup,
a canteen order, a notification, an upload, a household claim, a time-bank redemption and an
alarm. `Side.ids` maps the URL parameter names of the API (`report_id`, `order_id`...) to this
side's resource ids.

The second property company (`prop2`) is created after the report was routed, so it holds no
ticket of its own: its staff are "another property company of the same community".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import Alarm, Household, Membership, Notification, Org, Role, User
from app.models.booking import ServiceLocation
from app.models.timebank import EntryKind, EntrySource, Reward
from app.security import STAFF_KIND
from app.services import (
    accounts,
    activities,
    alarms,
    booking,
    booking_staff,
    canteen,
    canteen_orders,
    notices,
    reports,
    timebank,
    uploads,
)
from app.services.accounts import token_claims
from app.services.alarm_rules import ensure_alarm_rules
from app.services.notifications import notify_user
from app.services.report_catalogue import ensure_categories, ensure_routing_rules
from tests import factories as f
from tests.alarms_fixtures import make_elder, make_gateway, make_kit
from tests.booking_fixtures import local, make_service
from tests.canteen_fixtures import add_dish
from tests.reports_fixtures import jpeg_bytes

THIS_YEAR = datetime.now(UTC).year
# Callers of a side, by the name the tests use.
CALLERS = ("resident", "neighbour", "property", "prop2", "office", "canteen", "care")
# The URL parameter names a side has a resource for (the keys of Side.ids).
RESOURCE_PARAMS = frozenset({
    "report_id", "ticket_id", "upload_id", "service_id", "exception_id", "booking_id",
    "activity_id", "signup_id", "dish_id", "menu_id", "order_id", "reward_id", "redemption_id",
    "elder_id", "device_id", "alarm_id", "claim_id", "building_id", "notice_id"})


@dataclass
class Side:
    """One tenant: its community, orgs, callers and one resource of every kind."""

    name: str
    comm: object
    bld: object
    home: Household
    home2: Household
    orgs: dict[str, Org] = field(default_factory=dict)
    people: dict[str, User] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    free_upload_id: int | None = None
    notification_id: int | None = None

    def headers(self, caller: str) -> dict:
        """Authorization headers for one of the side's callers."""
        return f.headers(self.people[caller])


@dataclass
class World:
    """Two tenants, A and B."""

    a: Side
    b: Side


def build_world() -> World:
    """Both tenants with all their resources (B's ids differ from A's for every kind)."""
    ensure_categories()
    ensure_alarm_rules()
    db.session.commit()
    return World(a=build_side("a"), b=build_side("b"))


def build_side(name: str) -> Side:
    """A community, its orgs and people, then one resource of every kind."""
    comm = f.community(code=f"tenant-{name}", name=f"{name.upper()}社区")
    bld = f.building(comm, number=f"{name}1")
    side = Side(name=name, comm=comm, bld=bld, home=f.household_of(bld, "1", "101"),
                home2=f.household_of(bld, "1", "102"))
    add_orgs_and_people(side)
    ensure_routing_rules(comm)
    db.session.commit()
    for make in (make_report, add_second_property_company, make_booking, make_activity_signup,
                 make_order, make_redemption, make_alarm, make_claim, make_notice,
                 make_notification):
        make(side)
    assert set(side.ids) == RESOURCE_PARAMS, set(side.ids) ^ RESOURCE_PARAMS
    return side


def add_orgs_and_people(side: Side) -> None:
    """The orgs (one property company for now), their staff, a resident and a neighbour."""
    n, comm = side.name, side.comm
    for key, org_type in (("property", "property_company"), ("office", "community_office"),
                          ("canteen", "canteen"), ("care", "service_provider")):
        side.orgs[key] = f.org(comm, org_type, code=f"{n}-{key}", name=f"{n}{key}")
    side.people["property"] = f.staff(side.orgs["property"], "manager")
    side.people["office"] = staff_with_roles(side.orgs["office"], "manager", "admin")
    side.people["canteen"] = staff_with_roles(side.orgs["canteen"], "manager", "courier")
    side.people["care"] = f.staff(side.orgs["care"], "manager")
    side.people["resident"] = f.resident(comm, household=side.home, display_name=f"{n}居民",
                                         birth_year=THIS_YEAR - 82, phone="13800000001")
    side.people["neighbour"] = f.resident(comm, household=side.home2, display_name=f"{n}邻居",
                                          birth_year=THIS_YEAR - 70)


def staff_with_roles(org: Org, first: str, *more: str) -> User:
    """A staff login holding several roles in one org."""
    user = f.staff(org, first)
    db.session.add_all([Membership(user_id=user.id, org_id=org.id, role=Role(r)) for r in more])
    db.session.commit()
    return user


def add_second_property_company(side: Side) -> None:
    """Another property company of the same community (after routing: it has no ticket)."""
    side.orgs["prop2"] = f.org(side.comm, "property_company", code=f"{side.name}-prop2",
                               name=f"{side.name}第二物业")
    side.people["prop2"] = f.staff(side.orgs["prop2"], "manager")


def orgs_claim(user: User) -> list[dict]:
    """The org memberships a staff token of `user` carries."""
    return token_claims(user, STAFF_KIND)["orgs"]


def make_report(side: Side) -> None:
    """A resident's report with a photo, routed to the property company (one ticket)."""
    resident = side.people["resident"]
    photo = uploads.create_upload(owner_id=resident.id, data=jpeg_bytes())
    side.free_upload_id = uploads.create_upload(owner_id=resident.id, data=jpeg_bytes()).id
    report = reports.submit_report(reporter_id=resident.id, category="lighting",
                                   description="楼道灯不亮，晚上看不见台阶", photo_ids=[photo.id],
                                   location_text="1单元楼道", extra={}, building_id=side.bld.id)
    db.session.expire_all()
    loaded = reports.load_report(report.id)
    side.ids.update(report_id=report.id, ticket_id=loaded.tickets[0].id, upload_id=photo.id)


def make_booking(side: Side) -> None:
    """A care service with a closed day, and the resident's booking of it tomorrow."""
    service = make_service(side.comm, side.orgs["care"], code=f"{side.name}-care",
                           name="助老服务", location=ServiceLocation.CENTRE)
    scope = booking_staff.StaffScope(user_id=side.people["care"].id,
                                     orgs=orgs_claim(side.people["care"]))
    closed = booking_staff.add_exception(scope=scope, service_id=service.id,
                                         day=local(5).date(), kind="closed", note="设备检修")
    booked = booking.create_booking(user_id=side.people["resident"].id, service_id=service.id,
                                    start=local(1, 10))
    side.ids.update(service_id=service.id, exception_id=closed.id, booking_id=booked.id)


def make_activity_signup(side: Side) -> None:
    """An office activity the day after tomorrow and the resident's signup."""
    office = side.people["office"]
    starts = datetime.now(UTC) + timedelta(days=2)
    activity = activities.create_activity(
        scope=activities.StaffScope(user_id=office.id, orgs=orgs_claim(office)),
        title="端午香囊手工课", starts_at=starts, ends_at=starts + timedelta(hours=2),
        capacity=10, max_party_size=2, place="邻里中心")
    signup = activities.sign_up(activity_id=activity.id, user_id=side.people["resident"].id)
    side.ids.update(activity_id=activity.id, signup_id=signup.id)


def make_order(side: Side) -> None:
    """A dish, tomorrow's lunch menu and the resident's order for pickup."""
    kitchen = side.orgs["canteen"]
    dish = add_dish(kitchen, "红烧肉", 1500, [], 520)
    menu = canteen.create_menu(org_ids={kitchen.id}, actor_id=side.people["canteen"].id,
                               day=local(1).date(), meal="lunch",
                               items=[{"dish_id": dish.id, "portions": 20}])
    placed = canteen_orders.place_order(user_id=side.people["resident"].id, menu_id=menu.id,
                                        items=[{"dish_id": dish.id, "qty": 1}],
                                        fulfilment="pickup")
    side.ids.update(dish_id=dish.id, menu_id=menu.id, order_id=placed.id)


def make_redemption(side: Side) -> None:
    """A reward of the community and the resident's redemption of it."""
    resident = side.people["resident"]
    reward = Reward(community_id=side.comm.id, code=f"{side.name}-haircut", name="理发一次",
                    cost=10, stock=5, provider="助老服务中心")
    db.session.add(reward)
    timebank.post_entry(user_id=resident.id, community_id=side.comm.id, kind=EntryKind.CREDIT,
                        source=EntrySource.AWARD, points=50, dedupe_key=f"{side.name}-award",
                        reason="志愿服务")
    db.session.commit()
    redemption = timebank.redeem(user_id=resident.id, reward_id=reward.id)
    side.ids.update(reward_id=reward.id, redemption_id=redemption.id)


def make_alarm(side: Side) -> None:
    """A watched elder of the resident's home with an SOS button, and the alarm it raised."""
    elder = make_elder(side.comm, side.home, f"{side.name}王阿婆", at=alarms.now(),
                       contacts=[("居民", "13800000001", "女儿", side.people["resident"])])
    kit = make_kit(elder, {"sos_button": f"SOS-{side.name}"}, at=alarms.now())
    gateway = make_gateway(side.comm, f"gw-{side.name}", f"secret-of-{side.name}-0123456789")
    db.session.commit()
    alarms.ingest(gateway_id=gateway.id, events=[{
        "event_id": f"{side.name}-sos-1", "serial": f"SOS-{side.name}", "kind": "sos_button",
        "type": "pressed", "at": alarms.now().isoformat(), "payload": {}}])
    alarm = db.session.scalar(select(Alarm).where(Alarm.community_id == side.comm.id))
    side.ids.update(elder_id=elder.id, device_id=kit["sos_button"].id, alarm_id=alarm.id)


def make_claim(side: Side) -> None:
    """A newcomer's pending claim on the second home."""
    newcomer = f.resident(side.comm, display_name=f"{side.name}新住户")
    claim = accounts.claim_household(user_id=newcomer.id, building_id=side.bld.id, unit="1",
                                     room="102", relation="tenant")
    side.people["newcomer"] = newcomer
    side.ids.update(claim_id=claim.id, building_id=side.bld.id)


def make_notice(side: Side) -> None:
    """A notice the office published."""
    notice = notices.publish(community_id=side.comm.id, author_id=side.people["office"].id,
                             title="停水通知", body="周六上午9点至11点停水")
    side.ids.update(notice_id=notice.id)


def make_notification(side: Side) -> None:
    """An unread in-app notification of the resident."""
    note = notify_user(user_id=side.people["resident"].id, kind="report_update",
                       title="您的报事有进展", body="物业已受理", dedupe_key=f"{side.name}-note")
    db.session.commit()
    side.notification_id = note.id


def unread(notification_id: int) -> bool:
    """Whether a notification is still unread (fresh from the database)."""
    db.session.expire_all()
    return db.session.get(Notification, notification_id).read_at is None
