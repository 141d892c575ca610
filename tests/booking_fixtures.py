"""Shared set-up of the booking tests: a community with providers, a family, and services.

Times are built on the community's wall clock (Asia/Shanghai) relative to the real date, far
enough ahead that the minimum notice never interferes; tests that need another "now" freeze
`app.services.booking.now` with the `clock` fixture.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select

from app.extensions import db, redis_store
from app.models import (
    Booking,
    BookingEvent,
    ClaimStatus,
    HouseholdMember,
    Membership,
    MicroGrid,
    Notification,
    Org,
    OrgType,
    OutboxMessage,
    Relation,
    Role,
    Service,
    ServiceHours,
    ServiceLocation,
    Slot,
    User,
)
from app.services import booking as booking_service
from miniprogram_mock.wechat_server import shared_mock_app
from tests import factories as f

TZ = ZoneInfo("Asia/Shanghai")
RESIDENT_PHONE = "13912345678"
MASKED_PHONE = "139****5678"


def this_year() -> int:
    return datetime.now(TZ).year


def build_place() -> SimpleNamespace:
    """A community with a care provider, the office, a rival provider, a family and services.

    Rows are added directly and committed a few at a time: this runs before every test.
    """
    other_comm = f.community(code="elsewhere")
    comm = f.community(code="zpq", name="总浦桥社区")
    bld = f.building(comm, number="3")
    orgs = [Org(community_id=comm.id, code=code, name=name, type=OrgType(kind))
            for code, name, kind in (("care", "助老服务中心", "service_provider"),
                                     ("office", "社区居委会", "community_office"),
                                     ("rival", "别家服务社", "service_provider"))]
    far_org = Org(community_id=other_comm.id, code="far", name="外社区服务社",
                  type=OrgType.SERVICE_PROVIDER)
    db.session.add_all([*orgs, far_org])
    db.session.flush()
    care, office, rival = orgs
    staff = _staff(comm, [(care, "staff"), (care, "manager"), (office, "staff"),
                          (rival, "manager"), (office, "grid_worker")])
    db.session.get(MicroGrid, bld.micro_grid_id).grid_worker_id = staff[4].id
    home, next_door = f.household_of(bld, "1", "101"), f.household_of(bld, "1", "102")
    year = this_year()
    people = _residents(comm, [
        ("王女士", year - 41, home, "owner", "approved", RESIDENT_PHONE),
        ("王阿婆", year - 78, home, "parent", "approved", None),
        ("小宝", year - 1, home, "child", "approved", None),
        ("待认证亲戚", year - 70, home, "relative", "pending", None),
        ("李师傅", year - 66, next_door, "owner", "approved", None),
    ])
    outsider = User(wx_appid="wx-dev-appid", openid="outsider", display_name="外社区居民",
                    community_id=other_comm.id, birth_year=year - 70)
    db.session.add(outsider)
    db.session.commit()
    place = SimpleNamespace(
        comm=comm, other_comm=other_comm, bld=bld, home=home, care=care, office=office,
        rival=rival, carer=staff[0], care_manager=staff[1], office_clerk=staff[2],
        rival_staff=staff[3], grid_worker=staff[4], resident=people[0], elder=people[1],
        toddler=people[2], unclaimed=people[3], neighbour=people[4], outsider=outsider,
    )
    place.home_care = make_service(comm, care, code="home_care", name="上门助老服务",
                                   location=ServiceLocation.HOME, min_age=60,
                                   urgent_visits=True, commit=False)
    place.study = make_service(comm, office, code="study_room", name="共享书屋", capacity=3,
                               duration_minutes=120, slot_interval_minutes=120,
                               max_open_per_resident=2, commit=False)
    place.childcare = make_service(comm, office, code="childcare", name="托育中心", max_age=2,
                                   requires_confirmation=True, capacity=12, commit=False)
    place.rival_service = make_service(comm, rival, code="rival", name="别家服务", commit=False)
    place.far_service = make_service(other_comm, far_org, code="far", name="外社区服务")
    return place


def _staff(comm, roles) -> list[User]:
    """Staff logins (no password: tests sign tokens directly), one role each."""
    users = [User(username=f"staff-{org.code}-{role}", display_name=f"{org.name}{role}",
                  community_id=comm.id) for org, role in roles]
    db.session.add_all(users)
    db.session.flush()
    db.session.add_all([Membership(user_id=u.id, org_id=org.id, role=Role(role))
                        for u, (org, role) in zip(users, roles, strict=True)])
    return users


def _residents(comm, specs) -> list[User]:
    """WeChat residents with their household claims."""
    users = [User(wx_appid="wx-dev-appid", openid=f"booking-openid-{i}", display_name=name,
                  community_id=comm.id, birth_year=born, phone=phone)
             for i, (name, born, _, _, _, phone) in enumerate(specs)]
    db.session.add_all(users)
    db.session.flush()
    db.session.add_all([
        HouseholdMember(community_id=comm.id, household_id=home.id, user_id=u.id,
                        relation=Relation(relation), status=ClaimStatus(status))
        for u, (_, _, home, relation, status, _) in zip(users, specs, strict=True)])
    return users


def make_service(comm, org, *, hours=((8 * 60, 20 * 60),), days=range(7), commit=True,
                 **kw) -> Service:
    """A service open every day 08:00–20:00 with 60-minute slots, 2 places, 2 h notice."""
    values = {"code": "svc", "name": "服务", "location": ServiceLocation.CENTRE,
              "place": "邻里中心", "duration_minutes": 60, "slot_interval_minutes": 60,
              "capacity": 2, "min_notice_minutes": 120, "horizon_days": 14,
              "cancel_deadline_minutes": 120, "max_open_per_resident": 2,
              "reminder_minutes_before": 120} | kw
    service = Service(community_id=comm.id, provider_org_id=org.id, **values)
    service.hours = [ServiceHours(weekday=d, opens_minute=o, closes_minute=c)
                     for d in days for o, c in hours]
    db.session.add(service)
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return service


def local(days: int = 1, hour: int = 10, minute: int = 0) -> datetime:
    """A wall-clock time `days` from today in the community, as an aware datetime."""
    day = datetime.now(TZ).date() + timedelta(days=days)
    return datetime.combine(day, time(hour, minute), tzinfo=TZ)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def book(place, service=None, start=None, *, user=None, **kw) -> Booking:
    """Book through the service layer (jobs run in-process after commit)."""
    service = service or place.study
    start = start or local(1, 10)
    return booking_service.create_booking(user_id=(user or place.resident).id,
                                          service_id=service.id, start=start, **kw)


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def slot_row(service, start: datetime) -> Slot | None:
    db.session.expire_all()
    return db.session.scalar(select(Slot).where(Slot.service_id == service.id,
                                                Slot.starts_at == start.astimezone(UTC)))


def fresh(booking_id: int) -> Booking:
    db.session.expire_all()
    return db.session.get(Booking, booking_id)


def events_of(booking_id: int) -> list[BookingEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(BookingEvent).where(
        BookingEvent.booking_id == booking_id).order_by(BookingEvent.id)))


def notifications_for(user, kind: str | None = None) -> list[Notification]:
    stmt = select(Notification).where(Notification.user_id == user.id)
    if kind is not None:
        stmt = stmt.where(Notification.kind == kind)
    return list(db.session.scalars(stmt.order_by(Notification.id)))


def messages_to(user) -> list[dict]:
    return shared_mock_app().extensions["mock_wechat"].messages(touser=user.openid)


def outbox_rows(job: str) -> list[OutboxMessage]:
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.job == job)
                                   .order_by(OutboxMessage.id)))


def scheduled_reminders() -> dict[str, datetime]:
    """Reminder jobs waiting on RQ's scheduler: job id -> when they will be enqueued."""
    registry = ScheduledJobRegistry(queue=redis_store.queue("default"))
    return {job_id: registry.get_scheduled_time(job_id) for job_id in registry.get_job_ids()
            if job_id.startswith("booking-reminder-")}


def run_reminder(job_id: str) -> int:
    """Run a scheduled reminder job's function now, as the scheduler would when it is due."""
    from rq.job import Job

    rq_job = Job.fetch(job_id, connection=redis_store.client)
    return rq_job.func(*rq_job.args, **rq_job.kwargs)


class Clock:
    """A frozen `now` for the booking service (and the jobs that use it)."""

    def __init__(self, monkeypatch) -> None:
        self.value = datetime.now(UTC)
        monkeypatch.setattr(booking_service, "now", lambda: self.value)

    def set(self, moment: datetime) -> None:
        self.value = moment.astimezone(UTC)
