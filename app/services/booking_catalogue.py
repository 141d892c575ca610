"""The demo's bookable services (seeded with `flask seed-demo`), with hours and holidays."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Community,
    ExceptionKind,
    Org,
    Service,
    ServiceException,
    ServiceHours,
    ServiceLocation,
)
from app.services.demo import seed_step

WEEKDAYS, EVERY_DAY = range(5), range(7)
MORNING_AFTERNOON = ((8 * 60, 12 * 60), (13 * 60, 17 * 60))

# code: (name, provider org, location, place, duration, interval, capacity, weekly hours,
#        extra rules); minutes from local midnight, 1440 = 24:00.
SERVICES = {
    "home_care": ("上门助老服务", "zpq-care", ServiceLocation.HOME, "", 60, 60, 2,
                  (range(6), MORNING_AFTERNOON),
                  {"min_age": 60, "urgent_visits": True,
                   "description": "护理员上门：助洁、助浴、陪诊、代配药等，每个时段 2 名护理员"}),
    "day_care": ("居家养老服务中心", "zpq-care", ServiceLocation.CENTRE,
                 "总浦桥社区居家养老服务中心", 240, 240, 20, (WEEKDAYS, MORNING_AFTERNOON),
                 {"min_age": 60, "requires_confirmation": True, "min_notice_minutes": 12 * 60,
                  "description": "日间照料半天：午餐、康复活动、健康监测"}),
    "childcare": ("托育中心", "zpq-office", ServiceLocation.CENTRE, "总浦桥社区托育点", 180, 180,
                  12, (WEEKDAYS, ((8 * 60 + 30, 11 * 60 + 30), (13 * 60 + 30, 16 * 60 + 30))),
                  {"max_age": 2, "requires_confirmation": True,
                   "description": "3 岁以下婴幼儿半日托育，需家长陪同办理"}),
    "study_room": ("共享书屋", "zpq-office", ServiceLocation.CENTRE, "邻里中心二楼共享书屋", 120,
                   120, 16, (EVERY_DAY, ((9 * 60, 21 * 60),)),
                   {"min_notice_minutes": 30, "cancel_deadline_minutes": 30,
                    "reminder_minutes_before": 60,
                    "description": "2 小时一段的自习座位，共 16 个"}),
    "egov_station": ("政务e站", "zpq-office", ServiceLocation.CENTRE, "邻里中心一楼 24 小时政务e站",
                     15, 15, 1, (EVERY_DAY, ((0, 24 * 60),)),
                     {"cancel_deadline_minutes": 60, "reminder_minutes_before": 60,
                      "description": "24 小时自助政务服务终端，每 15 分钟 1 人"}),
}
# (service code, date, kind, opens, closes, note)
EXCEPTIONS = (
    ("day_care", date(2027, 1, 1), ExceptionKind.CLOSED, None, None, "元旦休息"),
    ("childcare", date(2027, 1, 1), ExceptionKind.CLOSED, None, None, "元旦休息"),
    ("home_care", date(2027, 1, 1), ExceptionKind.CLOSED, 13 * 60, 17 * 60, "元旦下午休息"),
    ("study_room", date(2026, 12, 31), ExceptionKind.OPEN, 21 * 60, 23 * 60, "跨年夜延长开放"),
)


@seed_step
def seed_booking_services(community: Community) -> dict:
    """The five demo services with their hours and holidays; existing ones are left as they are."""
    orgs = {o.code: o.id for o in db.session.scalars(select(Org).where(
        Org.community_id == community.id))}
    existing = {s.code: s for s in db.session.scalars(select(Service).where(
        Service.community_id == community.id))}
    for order, (code, spec) in enumerate(SERVICES.items()):
        if code not in existing and spec[1] in orgs:
            existing[code] = _new_service(community, code, spec, orgs[spec[1]], order)
    db.session.flush()
    _ensure_exceptions(existing)
    total = db.session.scalar(select(func.count()).select_from(Service).where(
        Service.community_id == community.id))
    return {"booking_services": total}


def _new_service(community: Community, code: str, spec: tuple, org_id: int,
                 order: int) -> Service:
    """A service row with its weekly hours."""
    name, _, location, place, duration, interval, capacity, (days, ranges), extra = spec
    service = Service(community_id=community.id, provider_org_id=org_id, code=code, name=name,
                      location=location, place=place, duration_minutes=duration,
                      slot_interval_minutes=interval, capacity=capacity, sort_order=order,
                      **extra)
    service.hours = [ServiceHours(weekday=day, opens_minute=opens, closes_minute=closes)
                     for day in days for opens, closes in ranges]
    db.session.add(service)
    return service


def _ensure_exceptions(services: dict[str, Service]) -> None:
    """The demo's holidays and extra hours, each once."""
    have = {(row.service_id, row.day, str(row.kind)) for row in db.session.scalars(
        select(ServiceException).where(ServiceException.service_id.in_(
            [s.id for s in services.values()])))}
    for code, day, kind, opens, closes, note in EXCEPTIONS:
        service = services.get(code)
        if service is not None and (service.id, day, str(kind)) not in have:
            db.session.add(ServiceException(service_id=service.id, day=day, kind=kind,
                                            opens_minute=opens, closes_minute=closes,
                                            note=note))
