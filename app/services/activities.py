"""Community activities (活动报名): publish, sign up, waiting list, check-in, volunteer hours.

Seats: every signup, cancellation, promotion and edit first locks the activity row
(`SELECT ... FOR NO KEY UPDATE`), so they run one at a time per activity and hand out arrival
numbers (`queue_no`) in the order they got the lock; the seat counters move only through
conditional UPDATEs (`seats_taken + n <= capacity`), with CHECK constraints as a backstop.
The waiting list is served first come first served, whole parties only: a party that no longer
fits is skipped but keeps its place.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import qrcode
from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, selectinload

from app.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from app.extensions import db
from app.models import ClaimStatus, Community, HouseholdMember, Org, User
from app.models.activities import (
    PARTICIPANT,
    Activity,
    ActivityEvent,
    ActivityStatus,
    CheckinScan,
    CreditMode,
    Signup,
    SignupStatus,
    VolunteerRole,
    audience_bit,
)
from app.pagination import keyset_page
from app.services import outbox, timebank
from app.services.demo import OFFICE_ORG, seed_step

AS, SS = ActivityStatus, SignupStatus
ACTIVITY_ALLOWED: dict[ActivityStatus, dict[str, ActivityStatus]] = {
    AS.PUBLISHED: {"cancel": AS.CANCELLED},
    AS.CANCELLED: {},
}
SIGNUP_ALLOWED: dict[SignupStatus, dict[str, SignupStatus]] = {
    SS.CONFIRMED: {"cancel": SS.CANCELLED, "check_in": SS.CHECKED_IN,
                   "activity_cancel": SS.CANCELLED},
    SS.WAITLISTED: {"promote": SS.CONFIRMED, "cancel": SS.CANCELLED,
                    "activity_cancel": SS.CANCELLED},
    # A volunteer's check-out is a step on the timeline; the state stays checked_in.
    SS.CHECKED_IN: {"check_out": SS.CHECKED_IN},
    SS.CANCELLED: {"sign_up": SS.CONFIRMED, "join_waitlist": SS.WAITLISTED},
}
SEATED = (SS.CONFIRMED, SS.CHECKED_IN)
SIGNUP_STATUS_LABELS = {"confirmed": "报名成功", "waitlisted": "候补中", "cancelled": "已取消",
                        "checked_in": "已签到"}
ACTIVITY_STATUS_LABELS = {"published": "报名中", "cancelled": "已取消"}
CHECKIN_OPENS_BEFORE = timedelta(hours=2)
DEFAULT_CHECKIN_GRACE_MINUTES = 120
SCAN_CLOCK_SKEW = timedelta(minutes=5)
TOKEN_SALT = "linli.activity-checkin.v1"  # noqa: S105 - a namespace, not a secret
TIME_FIELDS = ("starts_at", "ends_at", "signup_opens_at", "signup_closes_at")
PLAIN_FIELDS = ("title", "description", "place", "max_party_size", "min_age", "max_age",
                "checkin_required")


def now() -> datetime:
    """The current UTC time (one place to freeze in tests)."""
    return datetime.now(UTC)


def _bad(field: str, code: str, message: str, **details) -> ValidationFailed:
    return ValidationFailed(message, code=code, details={"fields": {field: [message]}, **details})


def community_tz(community_id: int) -> ZoneInfo:
    """The time zone business rules of the community are evaluated in."""
    name = db.session.scalar(select(Community.timezone).where(Community.id == community_id))
    return ZoneInfo(name or current_app.config.get("DEFAULT_TIMEZONE", "Asia/Shanghai"))


def local_text(moment: datetime, tz: ZoneInfo) -> str:
    """A moment as residents read it: 2025-05-31 14:00 in the community's time zone."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


# --- timelines and transitions --------------------------------------------------------------


def record_event(activity_id: int, action: str, *, signup: Signup | None = None,
                 actor_id: int | None = None, from_status: str | None = None,
                 to_status: str | None = None, note: str = "",
                 data: dict | None = None) -> ActivityEvent:
    """Append a row to the activity's (and signup's) timeline, in the caller's transaction."""
    event = ActivityEvent(activity_id=activity_id, signup_id=signup.id if signup else None,
                          actor_id=actor_id, action=action, from_status=from_status,
                          to_status=to_status, note=note or "", data=data or {},
                          created_at=now())
    db.session.add(event)
    db.session.flush()
    return event


def move_signup(signup: Signup, action: str, *, actor_id: int | None, note: str = "",
                data: dict | None = None) -> ActivityEvent:
    """Apply `action` to the signup if SIGNUP_ALLOWED permits it, with its timeline row."""
    target = SIGNUP_ALLOWED[signup.status].get(action)
    if target is None:
        raise InvalidTransition(details={"status": str(signup.status), "action": action,
                                         "allowed": sorted(SIGNUP_ALLOWED[signup.status])})
    before, signup.status = signup.status, target
    stamp = now()
    if target == SS.CONFIRMED:
        signup.confirmed_at = stamp
    if target == SS.CANCELLED:
        signup.cancelled_at = stamp
    return record_event(signup.activity_id, action, signup=signup, actor_id=actor_id,
                        from_status=str(before), to_status=str(target), note=note, data=data)


def move_activity(activity: Activity, action: str, *, actor_id: int | None,
                  note: str = "") -> ActivityEvent:
    """Apply `action` to the activity if ACTIVITY_ALLOWED permits it, with its timeline row."""
    target = ACTIVITY_ALLOWED[activity.status].get(action)
    if target is None:
        raise InvalidTransition(details={"status": str(activity.status), "action": action,
                                         "allowed": sorted(ACTIVITY_ALLOWED[activity.status])})
    before, activity.status = activity.status, target
    return record_event(activity.id, action, actor_id=actor_id, from_status=str(before),
                        to_status=str(target), note=note)


# --- staff scope ----------------------------------------------------------------------------


class StaffScope:
    """The activities a staff member runs: their orgs' own, and their community office's."""

    def __init__(self, *, user_id: int, orgs: list[dict]) -> None:
        self.user_id = user_id
        self.orgs = orgs
        self.org_ids = {m["id"] for m in orgs}
        self.office_community_ids = {m["community_id"] for m in orgs
                                     if m["type"] == "community_office"}

    def covers(self, activity: Activity | None) -> bool:
        """Whether the staff member may manage the activity."""
        return activity is not None and (activity.org_id in self.org_ids
                                         or activity.community_id in self.office_community_ids)

    def clause(self):
        """A WHERE clause selecting the activities in scope."""
        return or_(Activity.org_id.in_(self.org_ids),
                   Activity.community_id.in_(self.office_community_ids))

    def owning_org(self, org_id: int | None) -> dict:
        """The org a new activity belongs to: the given one, else the office, else the first."""
        if org_id is not None:
            match = next((m for m in self.orgs if m["id"] == org_id), None)
            if match is None:
                raise _bad("org_id", "org_not_yours", "只能以您所在的单位发布活动")
            return match
        offices = [m for m in self.orgs if m["type"] == "community_office"]
        if not (offices or self.orgs):
            raise Forbidden("没有可发布活动的单位", code="forbidden_role")
        return (offices or self.orgs)[0]


def _locked_activity(activity_id: int) -> Activity | None:
    """The activity row, locked until commit: signups, cancellations and edits queue here."""
    return db.session.scalar(
        select(Activity).where(Activity.id == activity_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True))


def _staff_activity(activity_id: int, scope: StaffScope, *, lock: bool = False) -> Activity:
    """An activity the staff member manages (locked if asked); 404 otherwise."""
    activity = _locked_activity(activity_id) if lock else db.session.get(Activity, activity_id)
    if not scope.covers(activity):
        raise NotFound("找不到该活动", code="activity_not_found")
    return activity


# --- creating and editing (staff) -----------------------------------------------------------


def _aware(value: datetime | None, tz: ZoneInfo) -> datetime | None:
    """A datetime with an offset; one without is read in the community's time zone."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)


def _schedule(tz: ZoneInfo, values: dict) -> dict:
    """Start, end and signup window, made aware, defaulted and checked against each other."""
    times = {name: _aware(values.get(name), tz) for name in TIME_FIELDS}
    times["signup_opens_at"] = times["signup_opens_at"] or now()
    times["signup_closes_at"] = times["signup_closes_at"] or times["starts_at"]
    if times["ends_at"] <= times["starts_at"]:
        raise _bad("ends_at", "ends_before_start", "结束时间须晚于开始时间")
    if times["signup_closes_at"] <= times["signup_opens_at"]:
        raise _bad("signup_closes_at", "signup_window_invalid", "报名截止时间须晚于报名开始时间")
    if times["signup_closes_at"] > times["ends_at"]:
        raise _bad("signup_closes_at", "signup_closes_after_end", "报名截止时间不能晚于活动结束")
    return times


def _check_ages(min_age: int | None, max_age: int | None) -> None:
    if min_age is not None and max_age is not None and min_age > max_age:
        raise _bad("max_age", "age_range_invalid", "最大年龄不能小于最小年龄")


def _audience_mask(tags: list[str] | None) -> int:
    """The bit mask of the audience tags (`all` when none are given)."""
    mask = 0
    for tag in tags or ["all"]:
        mask |= audience_bit(tag)
    return mask


def _cover_id(owner_id: int, upload_id: int | None) -> int | None:
    """The cover photo: one of the staff member's own uploads (422 `photo_not_found`)."""
    from app.services import uploads

    if upload_id is None:
        return None
    try:
        return uploads.attachable(owner_id, [upload_id])[0].id
    except ValidationFailed as exc:
        raise _bad("cover_upload_id", exc.code, exc.message) from exc


def _check_roles(specs: list[dict]) -> list[dict]:
    """Volunteer role specs with unique codes."""
    codes = [spec["code"] for spec in specs]
    if len(set(codes)) != len(codes):
        raise _bad("volunteer_roles", "duplicate_role_code", "志愿岗位编号不能重复")
    return specs


def _role_values(spec: dict) -> dict:
    return {"name": spec["name"].strip(), "capacity": spec["capacity"],
            "credited_minutes": round(spec["hours"] * 60),
            "credit_mode": CreditMode(spec.get("credit_mode") or CreditMode.MEASURED)}


def create_activity(*, scope: StaffScope, title: str, starts_at: datetime, ends_at: datetime,
                    capacity: int, org_id: int | None = None, description: str = "",
                    place: str = "", signup_opens_at: datetime | None = None,
                    signup_closes_at: datetime | None = None, max_party_size: int = 1,
                    audience: list[str] | None = None, min_age: int | None = None,
                    max_age: int | None = None, volunteer_roles: list[dict] | None = None,
                    checkin_required: bool = True,
                    cover_upload_id: int | None = None) -> Activity:
    """Publish an activity of one of the staff member's orgs."""
    org = scope.owning_org(org_id)
    tz = community_tz(org["community_id"])
    if _aware(starts_at, tz) <= now():
        raise _bad("starts_at", "starts_in_past", "开始时间须晚于现在")
    times = _schedule(tz, {"starts_at": starts_at, "ends_at": ends_at,
                           "signup_opens_at": signup_opens_at,
                           "signup_closes_at": signup_closes_at})
    _check_ages(min_age, max_age)
    activity = Activity(
        community_id=org["community_id"], org_id=org["id"], created_by_id=scope.user_id,
        title=title.strip(), description=description, place=place, capacity=capacity,
        max_party_size=max_party_size, audience_mask=_audience_mask(audience), min_age=min_age,
        max_age=max_age, checkin_required=checkin_required, status=AS.PUBLISHED,
        cover_upload_id=_cover_id(scope.user_id, cover_upload_id), **times)
    activity.roles = [VolunteerRole(code=spec["code"], **_role_values(spec))
                      for spec in _check_roles(volunteer_roles or [])]
    db.session.add(activity)
    db.session.flush()
    record_event(activity.id, "create", actor_id=scope.user_id, to_status=str(AS.PUBLISHED))
    db.session.commit()
    return load_activity(activity.id)


def update_activity(*, scope: StaffScope, activity_id: int, changes: dict) -> Activity:
    """Edit an activity; more seats promote from the waiting list, fewer than taken is 409."""
    activity = _staff_activity(activity_id, scope, lock=True)
    if activity.status != AS.PUBLISHED:
        raise Conflict("活动已取消，不能修改", code="activity_cancelled")
    before_start = activity.starts_at
    times = _schedule(community_tz(activity.community_id),
                      {name: changes.get(name, getattr(activity, name)) for name in TIME_FIELDS})
    _check_ages(changes.get("min_age", activity.min_age), changes.get("max_age", activity.max_age))
    _apply_capacity(activity, changes.get("capacity"))
    for name in PLAIN_FIELDS:
        if name in changes:
            setattr(activity, name, changes[name])
    for name, value in times.items():
        setattr(activity, name, value)
    if "audience" in changes:
        activity.audience_mask = _audience_mask(changes["audience"])
    if "cover_upload_id" in changes:
        activity.cover_upload_id = _cover_id(scope.user_id, changes["cover_upload_id"])
    if "volunteer_roles" in changes:
        _replace_roles(activity, _check_roles(changes["volunteer_roles"]))
    if activity.starts_at != before_start:
        _reset_reminders(activity.id)
    record_event(activity.id, "update", actor_id=scope.user_id, data={"fields": sorted(changes)})
    promote_all(activity)
    outbox.commit()
    return load_activity(activity.id)


def _apply_capacity(activity: Activity, capacity: int | None) -> None:
    """Set the participant capacity; 409 when it would drop below the seats already taken."""
    if capacity is None:
        return
    if capacity < activity.seats_taken:
        raise Conflict(f"已有 {activity.seats_taken} 人报名，名额不能少于此数",
                       code="capacity_below_taken", details={"seats_taken": activity.seats_taken})
    activity.capacity = capacity


def _replace_roles(activity: Activity, specs: list[dict]) -> None:
    """Make the volunteer roles match `specs` (by code); a role with signups stays."""
    roles = {role.code: role for role in db.session.scalars(select(VolunteerRole).where(
        VolunteerRole.activity_id == activity.id).execution_options(populate_existing=True))}
    for spec in specs:
        role = roles.pop(spec["code"], None)
        values = _role_values(spec)
        if role is None:
            db.session.add(VolunteerRole(activity_id=activity.id, code=spec["code"], **values))
        elif values["capacity"] < role.seats_taken:
            raise Conflict(f"岗位“{role.name}”已有 {role.seats_taken} 人报名，名额不能少于此数",
                           code="capacity_below_taken", details={"role": role.code})
        else:
            for name, value in values.items():
                setattr(role, name, value)
    for role in roles.values():
        if db.session.scalar(select(Signup.id).where(Signup.volunteer_role_id == role.id)
                             .limit(1)):
            raise Conflict(f"岗位“{role.name}”已有人报名，不能删除", code="role_in_use",
                           details={"role": role.code})
        db.session.delete(role)
    db.session.flush()


def _reset_reminders(activity_id: int) -> None:
    """A new start time: the reminders are sent again for it."""
    db.session.execute(update(Signup).where(Signup.activity_id == activity_id)
                       .values(reminded_day_at=None, reminded_hour_at=None)
                       .execution_options(synchronize_session=False))


def cancel_activity(*, scope: StaffScope, activity_id: int, reason: str) -> Activity:
    """Cancel the activity and every open signup; everyone signed up is notified."""
    activity = _staff_activity(activity_id, scope, lock=True)
    move_activity(activity, "cancel", actor_id=scope.user_id, note=reason)
    activity.cancel_reason, activity.cancelled_at = reason, now()
    open_signups = db.session.scalars(select(Signup).where(
        Signup.activity_id == activity.id,
        Signup.status.in_((SS.CONFIRMED, SS.WAITLISTED))).order_by(Signup.queue_no))
    for signup in open_signups:
        move_signup(signup, "activity_cancel", actor_id=scope.user_id, note=reason)
        signup.cancel_source = "activity"
    _recount_seats(activity.id)
    outbox.add_job("notify_activity_cancelled", activity_id=activity.id)
    outbox.commit()
    return load_activity(activity.id)


def _recount_seats(activity_id: int) -> None:
    """Set the seat counters to what the checked-in signups still hold."""
    db.session.flush()
    held = dict(db.session.execute(
        select(Signup.role, func.sum(Signup.party_size))
        .where(Signup.activity_id == activity_id, Signup.status == SS.CHECKED_IN)
        .group_by(Signup.role)).all())
    db.session.execute(update(Activity).where(Activity.id == activity_id)
                       .values(seats_taken=held.get(PARTICIPANT, 0))
                       .execution_options(synchronize_session=False))
    for role_id, code in db.session.execute(select(VolunteerRole.id, VolunteerRole.code).where(
            VolunteerRole.activity_id == activity_id)).all():
        db.session.execute(update(VolunteerRole).where(VolunteerRole.id == role_id)
                           .values(seats_taken=held.get(code, 0))
                           .execution_options(synchronize_session=False))


# --- reading --------------------------------------------------------------------------------


def load_activity(activity_id: int) -> Activity:
    """An activity with its roles and cover, fresh from the database."""
    activity = db.session.scalar(
        select(Activity).where(Activity.id == activity_id)
        .options(selectinload(Activity.roles), selectinload(Activity.cover))
        .execution_options(populate_existing=True))
    if activity is None:
        raise NotFound("找不到该活动", code="activity_not_found")
    return activity


def _resident(user_id: int) -> User:
    return db.session.get(User, user_id)


def _resident_activity(activity_id: int, user: User) -> Activity:
    """An activity of the resident's community; 404 for any other (never leak tenants)."""
    activity = db.session.scalar(
        select(Activity).where(Activity.id == activity_id)
        .options(selectinload(Activity.roles), selectinload(Activity.cover)))
    if activity is None or user is None or activity.community_id != user.community_id:
        raise NotFound("找不到该活动", code="activity_not_found")
    return activity


def list_upcoming(*, user_id: int, start: datetime | None = None,
                  audience: str | None = None, cursor: str | None = None,
                  limit: int = 20) -> tuple[list[Activity], str | None]:
    """Published activities of the resident's community not yet over, soonest first."""
    user = _resident(user_id)
    start = _aware(start, community_tz(user.community_id)) if user.community_id else now()
    stmt = select(Activity).where(
        Activity.community_id == user.community_id, Activity.status == AS.PUBLISHED,
        Activity.ends_at > (start or now())).options(
        selectinload(Activity.roles), selectinload(Activity.cover))
    if audience:
        wanted = audience_bit(audience) | audience_bit("all")
        stmt = stmt.where(Activity.audience_mask.op("&")(wanted) != 0)
    items, next_cursor = keyset_page(stmt, columns=[Activity.starts_at, Activity.id],
                                     cursor=cursor, limit=limit, descending=False)
    annotate_for_resident(items, user_id)
    return items, next_cursor


def get_activity(*, activity_id: int, user_id: int) -> Activity:
    """An activity of the resident's community, with their own signup."""
    activity = _resident_activity(activity_id, _resident(user_id))
    annotate_for_resident([activity], user_id)
    return activity


def annotate_for_resident(activities: list[Activity], user_id: int) -> None:
    """Attach the caller's signup and the waiting-list length to each activity (2-3 queries)."""
    ids = [a.id for a in activities]
    if not ids:
        return
    mine = {s.activity_id: s for s in db.session.scalars(select(Signup).where(
        Signup.user_id == user_id, Signup.activity_id.in_(ids)))}
    attach_positions(list(mine.values()))
    waiting = dict(db.session.execute(
        select(Signup.activity_id, func.count(Signup.id))
        .where(Signup.activity_id.in_(ids), Signup.role == PARTICIPANT,
               Signup.status == SS.WAITLISTED).group_by(Signup.activity_id)).all())
    for activity in activities:
        activity.my_signup = mine.get(activity.id)
        activity.waitlist_count = waiting.get(activity.id, 0)


def attach_positions(signups: list[Signup]) -> None:
    """Set `waitlist_position` (1 = next in line) on each signup; None unless waitlisted."""
    waiting = [s.id for s in signups if s.status == SS.WAITLISTED]
    positions: dict[int, int] = {}
    if waiting:
        ahead = aliased(Signup)
        positions = dict(db.session.execute(
            select(Signup.id, func.count(ahead.id))
            .join(ahead, and_(ahead.activity_id == Signup.activity_id, ahead.role == Signup.role,
                              ahead.status == SS.WAITLISTED, ahead.queue_no <= Signup.queue_no))
            .where(Signup.id.in_(waiting)).group_by(Signup.id)).all())
    for signup in signups:
        signup.waitlist_position = positions.get(signup.id)


def load_signup(signup_id: int) -> Signup:
    """A signup with its activity and volunteer role, and its waiting-list position."""
    signup = db.session.scalar(
        select(Signup).where(Signup.id == signup_id)
        .options(selectinload(Signup.activity), selectinload(Signup.volunteer_role),
                 selectinload(Signup.user))
        .execution_options(populate_existing=True))
    if signup is None:
        raise NotFound("找不到该报名", code="signup_not_found")
    attach_positions([signup])
    return signup


def my_signups(*, user_id: int, cursor: str | None, limit: int):
    """The resident's signups, newest first."""
    stmt = select(Signup).where(Signup.user_id == user_id).options(
        selectinload(Signup.activity), selectinload(Signup.volunteer_role))
    items, next_cursor = keyset_page(stmt, columns=[Signup.created_at, Signup.id],
                                     cursor=cursor, limit=limit)
    attach_positions(items)
    return items, next_cursor


# --- signing up -----------------------------------------------------------------------------


def _check_signup_window(activity: Activity) -> None:
    """409 unless the activity is published and its signup window is open now."""
    if activity.status != AS.PUBLISHED:
        raise Conflict("活动已取消", code="activity_cancelled")
    stamp = now()
    if stamp < activity.signup_opens_at:
        raise Conflict("报名尚未开始", code="signup_not_open",
                       details={"signup_opens_at": activity.signup_opens_at.isoformat()})
    if stamp >= activity.signup_closes_at:
        raise Conflict("报名已截止", code="signup_closed")


def _volunteer_role(activity: Activity, role: str) -> VolunteerRole | None:
    """None for participants; the volunteer role by code; 422 `unknown_role`."""
    if role == PARTICIPANT:
        return None
    match = next((r for r in activity.roles if r.code == role), None)
    if match is None:
        raise _bad("role", "unknown_role", "没有这个志愿岗位")
    return match


def _check_party(activity: Activity, user: User, role: VolunteerRole | None, party_size: int,
                 member_ids: list[int]) -> None:
    """Party size within the limit, members from the household, every person of age."""
    member_ids = list(dict.fromkeys(member_ids))
    if role is not None and (party_size != 1 or member_ids):
        raise _bad("party_size", "volunteer_party_size", "志愿者须本人单独报名")
    if party_size > activity.max_party_size:
        raise _bad("party_size", "party_too_large", f"每户最多 {activity.max_party_size} 人同行")
    if user.id in member_ids or len(member_ids) + 1 > party_size:
        raise _bad("member_ids", "members_exceed_party", "同行成员与报名人数不符")
    members = household_members(user.id, member_ids)
    if role is None and (activity.min_age is not None or activity.max_age is not None):
        if len(members) + 1 != party_size:
            raise _bad("member_ids", "members_required", "本活动有年龄要求，请选择每位同行的家人")
        for person in [user, *members]:
            _check_age(activity, person)


def household_members(user_id: int, member_ids: list[int]) -> list[User]:
    """The given users, each an approved member of a household the caller belongs to; else 422."""
    if not member_ids:
        return []
    my_households = select(HouseholdMember.household_id).where(
        HouseholdMember.user_id == user_id, HouseholdMember.status == ClaimStatus.APPROVED)
    found = {u.id: u for u in db.session.scalars(
        select(User).join(HouseholdMember, HouseholdMember.user_id == User.id).where(
            User.id.in_(member_ids), HouseholdMember.status == ClaimStatus.APPROVED,
            HouseholdMember.household_id.in_(my_households)))}
    missing = [i for i in member_ids if i not in found]
    if missing:
        raise _bad("member_ids", "member_not_in_household", "同行成员须是您家中已认证的成员",
                   member_ids=missing)
    return [found[i] for i in member_ids]


def _check_age(activity: Activity, person: User) -> None:
    """422 when the person's age (by birth year, in the activity's year) is outside the limits."""
    if person.birth_year is None:
        raise _bad("member_ids", "birth_year_unknown", f"{person.display_name}的出生年份未登记，"
                   "无法确认年龄", user_id=person.id)
    year = activity.starts_at.astimezone(community_tz(activity.community_id)).year
    age = year - person.birth_year
    if (activity.min_age is not None and age < activity.min_age) or (
            activity.max_age is not None and age > activity.max_age):
        raise _bad("member_ids", "age_not_allowed", f"{person.display_name}的年龄不符合活动要求"
                   f"（{_age_range(activity)}）", user_id=person.id)


def _age_range(activity: Activity) -> str:
    low, high = activity.min_age, activity.max_age
    if low is not None and high is not None:
        return f"{low}-{high} 岁"
    return f"{low} 岁以上" if low is not None else f"{high} 岁以下"


def sign_up(*, activity_id: int, user_id: int, party_size: int = 1, role: str = PARTICIPANT,
            member_ids: list[int] | None = None) -> Signup:
    """Confirmed while seats remain (counting the party), otherwise on the waiting list."""
    user = _resident(user_id)
    activity = _resident_activity(activity_id, user)
    _check_signup_window(activity)
    volunteer_role = _volunteer_role(activity, role)
    member_ids = list(dict.fromkeys(member_ids or []))
    _check_party(activity, user, volunteer_role, party_size, member_ids)
    _check_signup_window(_locked_activity(activity.id))  # it may have been cancelled meanwhile
    signup = db.session.scalar(select(Signup).where(
        Signup.activity_id == activity.id, Signup.user_id == user_id)
        .execution_options(populate_existing=True))
    if signup is not None and signup.status != SS.CANCELLED:
        raise Conflict("您已报名该活动", code="already_signed_up",
                       details={"signup_id": signup.id})
    seated = _take_seats(activity.id, volunteer_role, party_size)
    signup = _place(signup, activity, user_id, role, volunteer_role, party_size, member_ids)
    action = "sign_up" if seated else "join_waitlist"
    if signup.id is None:
        _save_new_signup(signup, SS.CONFIRMED if seated else SS.WAITLISTED)
        record_event(activity.id, action, signup=signup, actor_id=user_id,
                     to_status=str(signup.status))
    else:
        move_signup(signup, action, actor_id=user_id)
    db.session.commit()
    return load_signup(signup.id)


def _place(signup: Signup | None, activity: Activity, user_id: int, role: str,
           volunteer_role: VolunteerRole | None, party_size: int,
           member_ids: list[int]) -> Signup:
    """A new signup row, or the resident's cancelled one reused, at the end of the queue."""
    signup = signup or Signup(activity_id=activity.id, user_id=user_id,
                              community_id=activity.community_id, created_at=now())
    signup.role, signup.volunteer_role_id = role, volunteer_role.id if volunteer_role else None
    signup.party_size, signup.member_ids = party_size, member_ids
    signup.queue_no = _next_queue_no(activity.id)
    signup.cancel_source = signup.cancelled_at = None
    signup.reminded_day_at = signup.reminded_hour_at = None
    return signup


def _save_new_signup(signup: Signup, status: SignupStatus) -> None:
    """Insert the signup; the unique (activity, user) constraint is the backstop for doubles."""
    signup.status = status
    signup.confirmed_at = now() if status == SS.CONFIRMED else None
    try:
        with db.session.begin_nested():
            db.session.add(signup)
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict("您已报名该活动", code="already_signed_up") from exc


def _next_queue_no(activity_id: int) -> int:
    """The next arrival number of the activity (under its row lock)."""
    return db.session.execute(
        update(Activity).where(Activity.id == activity_id)
        .values(signup_counter=Activity.signup_counter + 1)
        .returning(Activity.signup_counter)
        .execution_options(synchronize_session=False)).scalar_one()


def _pool(activity_id: int, role: VolunteerRole | None):
    """The counter row a signup's seats live on: the activity, or its volunteer role."""
    return (VolunteerRole, role.id) if role is not None else (Activity, activity_id)


def _take_seats(activity_id: int, role: VolunteerRole | None, seats: int) -> bool:
    """Take `seats` if they are free: a conditional UPDATE, so it can never overbook."""
    model, row_id = _pool(activity_id, role)
    taken = db.session.execute(
        update(model).where(model.id == row_id, model.seats_taken + seats <= model.capacity)
        .values(seats_taken=model.seats_taken + seats)
        .execution_options(synchronize_session=False))
    return taken.rowcount == 1


def _free_seats(activity_id: int, role: VolunteerRole | None, seats: int) -> None:
    """Give `seats` back to the pool."""
    model, row_id = _pool(activity_id, role)
    db.session.execute(
        update(model).where(model.id == row_id, model.seats_taken >= seats)
        .values(seats_taken=model.seats_taken - seats)
        .execution_options(synchronize_session=False))


def _seats_free(activity_id: int, role: VolunteerRole | None) -> int:
    """Free seats of the pool, read inside the transaction holding the activity lock."""
    model, row_id = _pool(activity_id, role)
    capacity, taken = db.session.execute(
        select(model.capacity, model.seats_taken).where(model.id == row_id)).one()
    return capacity - taken


def cancel_signup(*, activity_id: int, signup_id: int, user_id: int) -> Signup:
    """The resident cancels until signup closes; freed seats go to the waiting list."""
    signup = db.session.get(Signup, signup_id)
    if signup is None or signup.user_id != user_id or signup.activity_id != activity_id:
        raise NotFound("找不到该报名", code="signup_not_found")
    activity = _locked_activity(activity_id)
    db.session.refresh(signup)
    if activity.status != AS.PUBLISHED:
        raise Conflict("活动已取消", code="activity_cancelled")
    if now() >= activity.signup_closes_at:
        raise Conflict("报名已截止，如需取消请联系工作人员", code="signup_closed")
    was_seated = signup.status in SEATED
    move_signup(signup, "cancel", actor_id=user_id)
    signup.cancel_source = "resident"
    if was_seated:
        role = db.session.get(VolunteerRole, signup.volunteer_role_id) \
            if signup.volunteer_role_id else None
        _free_seats(activity.id, role, signup.party_size)
        promote_waitlist(activity.id, role)
    outbox.commit()
    return load_signup(signup.id)


def promote_waitlist(activity_id: int, role: VolunteerRole | None) -> list[Signup]:
    """Confirm waiting parties in arrival order while they fit; a party too big is skipped."""
    free = _seats_free(activity_id, role)
    if free <= 0:
        return []
    waiting = db.session.scalars(
        select(Signup).where(Signup.activity_id == activity_id,
                             Signup.role == (role.code if role else PARTICIPANT),
                             Signup.status == SS.WAITLISTED, Signup.party_size <= free)
        .order_by(Signup.queue_no).execution_options(populate_existing=True)).all()
    promoted = []
    for signup in waiting:
        if signup.party_size > free:
            continue  # keeps its place for the next freed seats
        if not _take_seats(activity_id, role, signup.party_size):
            break
        free -= signup.party_size
        event = move_signup(signup, "promote", actor_id=None, note="候补转正")
        outbox.add_job("notify_signup_promoted", signup_id=signup.id, event_id=event.id)
        promoted.append(signup)
        if free == 0:
            break
    return promoted


def promote_all(activity: Activity) -> list[Signup]:
    """Promote into every pool of the activity (after capacities changed)."""
    db.session.flush()
    roles = db.session.scalars(select(VolunteerRole).where(
        VolunteerRole.activity_id == activity.id)).all()
    promoted = promote_waitlist(activity.id, None)
    for role in roles:
        promoted += promote_waitlist(activity.id, role)
    return promoted


# --- check-in tokens and QR codes -----------------------------------------------------------


def _serializer() -> URLSafeSerializer:
    secret = current_app.config.get("SECRET_KEY") or current_app.config["JWT_SECRET_KEY"]
    return URLSafeSerializer(secret, salt=TOKEN_SALT,
                             signer_kwargs={"digest_method": hashlib.sha256})


def token_expiry(activity: Activity) -> datetime:
    """When a check-in token stops working: the end of the activity plus a grace period."""
    grace = int(current_app.config.get("ACTIVITY_CHECKIN_GRACE_MINUTES",
                                       DEFAULT_CHECKIN_GRACE_MINUTES))
    return activity.ends_at + timedelta(minutes=grace)


def make_token(*, signup_id: int, activity_id: int, user_id: int, expires_at: datetime) -> str:
    """A signed (HMAC-SHA256 with the app secret) token naming the signup and activity."""
    return _serializer().dumps({"s": signup_id, "a": activity_id, "u": user_id,
                                "e": int(expires_at.timestamp())})


def read_token(token: str) -> dict:
    """The claims of a genuine token; 422 `checkin_token_invalid` for anything forged."""
    try:
        claims = _serializer().loads(token)
    except BadSignature as exc:
        raise _bad("token", "checkin_token_invalid", "无效的签到码") from exc
    if not isinstance(claims, dict) or not {"s", "a", "u", "e"} <= claims.keys():
        raise _bad("token", "checkin_token_invalid", "无效的签到码")
    return claims


def qr_png(text: str) -> bytes:
    """A PNG of the QR code for `text`."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=2)
    code.add_data(text)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def signup_qr(*, signup_id: int, user_id: int) -> dict:
    """The check-in token of the resident's confirmed signup, and its QR code as a PNG."""
    signup = db.session.get(Signup, signup_id)
    if signup is None or signup.user_id != user_id:
        raise NotFound("找不到该报名", code="signup_not_found")
    activity = db.session.get(Activity, signup.activity_id)
    if activity.status != AS.PUBLISHED:
        raise Conflict("活动已取消", code="activity_cancelled")
    if signup.status not in SEATED:
        raise Conflict("报名成功后才有签到码", code="signup_not_confirmed")
    expires_at = token_expiry(activity)
    token = make_token(signup_id=signup.id, activity_id=activity.id, user_id=user_id,
                       expires_at=expires_at)
    png = qr_png(token)
    return {"signup_id": signup.id, "activity_id": activity.id, "token": token,
            "expires_at": expires_at, "png": png,
            "png_data_url": "data:image/png;base64," + base64.b64encode(png).decode()}


# --- scans, attendance and hours (staff) ----------------------------------------------------


def _scan_time(scanned_at: datetime | None, tz: ZoneInfo) -> datetime:
    """When the scan happened (an offline scanner says so); never in the future."""
    stamp = now()
    scanned_at = _aware(scanned_at, tz) or stamp
    if scanned_at > stamp + SCAN_CLOCK_SKEW:
        raise _bad("scanned_at", "scanned_at_in_future", "扫码时间不能晚于现在")
    return scanned_at


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scan(*, scope: StaffScope, activity_id: int, token: str, nonce: str,
         scanned_at: datetime | None = None, kind: str = "check_in") -> dict:
    """A scanner's upload: check in (or out); the same nonce again answers the same."""
    activity = _staff_activity(activity_id, scope)
    replay = _replayed_scan(activity.id, nonce, token, kind)
    if replay is not None:
        return replay
    claims = read_token(token)
    if claims["a"] != activity.id:
        raise _bad("token", "checkin_token_wrong_activity", "这是其他活动的签到码")
    scanned_at = _scan_time(scanned_at, community_tz(activity.community_id))
    if scanned_at.timestamp() > claims["e"]:
        raise _bad("token", "checkin_token_expired", "签到码已过期")
    signup, result = _attend(activity.id, claims["s"], kind, scanned_at, scope.user_id,
                             data={"nonce": nonce})
    scan_row = CheckinScan(activity_id=activity.id, signup_id=signup.id, nonce=nonce,
                           staff_id=scope.user_id, kind=kind, token_hash=_token_hash(token),
                           result=result, scanned_at=scanned_at, received_at=now())
    try:
        with db.session.begin_nested():
            db.session.add(scan_row)
    except IntegrityError:  # the same upload raced itself: answer as the first one did
        db.session.rollback()
        return _replayed_scan(activity.id, nonce, token, kind)
    db.session.commit()
    return {"result": result, "signup": load_signup(signup.id), "scanned_at": scanned_at,
            "replayed": False}


def _replayed_scan(activity_id: int, nonce: str, token: str, kind: str) -> dict | None:
    """The stored answer to an earlier upload of this scan; 422 if the nonce was reused."""
    earlier = db.session.scalar(select(CheckinScan).where(
        CheckinScan.activity_id == activity_id, CheckinScan.nonce == nonce))
    if earlier is None:
        return None
    if earlier.token_hash != _token_hash(token) or earlier.kind != kind:
        raise _bad("nonce", "nonce_reused", "该扫码编号已用于另一次扫码")
    return {"result": earlier.result, "signup": load_signup(earlier.signup_id),
            "scanned_at": earlier.scanned_at, "replayed": True}


def _attend(activity_id: int, signup_id: int, kind: str, at: datetime, actor_id: int,
            data: dict) -> tuple[Signup, str]:
    """Check a signup in or out under the activity lock; returns it and the result word."""
    activity = _locked_activity(activity_id)
    if activity.status != AS.PUBLISHED:
        raise Conflict("活动已取消", code="activity_cancelled")
    signup = db.session.scalar(select(Signup).where(Signup.id == signup_id)
                               .execution_options(populate_existing=True))
    if signup is None or signup.activity_id != activity_id:
        raise _bad("token", "checkin_token_invalid", "无效的签到码")
    if kind == "check_in":
        return signup, _check_in(activity, signup, at, actor_id, data)
    return signup, _check_out(activity, signup, at, actor_id, data)


def _check_in(activity: Activity, signup: Signup, at: datetime, actor_id: int,
              data: dict) -> str:
    """`checked_in`, or `already_checked_in` for a second scan; 409 if not confirmed."""
    if signup.status == SS.CHECKED_IN:
        return "already_checked_in"
    if signup.status != SS.CONFIRMED:
        raise Conflict("该报名未确认，不能签到", code="signup_not_confirmed",
                       details={"status": str(signup.status)})
    if at < activity.starts_at - CHECKIN_OPENS_BEFORE:
        raise Conflict("活动开始前 2 小时才能签到", code="checkin_not_open")
    move_signup(signup, "check_in", actor_id=actor_id, data=data)
    signup.checked_in_at = at
    return "checked_in"


def _check_out(activity: Activity, signup: Signup, at: datetime, actor_id: int,
               data: dict) -> str:
    """A volunteer leaves: their hours go to the time bank as a credit, once."""
    if signup.volunteer_role_id is None:
        raise Conflict("参加者无需签退", code="checkout_not_needed")
    if signup.status != SS.CHECKED_IN:
        raise Conflict("尚未签到，不能签退", code="not_checked_in")
    if signup.checked_out_at is not None:
        return "already_checked_out"
    role = db.session.get(VolunteerRole, signup.volunteer_role_id)
    minutes = credited_minutes(role, signup.checked_in_at, at)
    move_signup(signup, "check_out", actor_id=actor_id, data={**data, "minutes": minutes})
    signup.checked_out_at, signup.credited_minutes = at, minutes
    timebank.credit_volunteer_minutes(
        user_id=signup.user_id, community_id=activity.community_id, minutes=minutes,
        signup_id=signup.id, reason=f"志愿服务：{activity.title}（{role.name}）",
        actor_id=actor_id)
    return "checked_out"


def credited_minutes(role: VolunteerRole, checked_in_at: datetime, checked_out_at: datetime
                     ) -> int:
    """The role's hours (fixed), or the measured time capped by them."""
    if role.credit_mode == CreditMode.FIXED:
        return role.credited_minutes
    measured = int(max(0, (checked_out_at - checked_in_at).total_seconds()) // 60)
    return min(measured, role.credited_minutes)


def mark_attendance(*, scope: StaffScope, activity_id: int, signup_id: int, action: str,
                    at: datetime | None = None, note: str = "") -> dict:
    """Staff check a resident without a phone in or out by hand."""
    activity = _staff_activity(activity_id, scope)
    at = _scan_time(at, community_tz(activity.community_id))
    signup, result = _attend(activity.id, signup_id, action, at, scope.user_id,
                             data={"by_hand": True, "note": note})
    db.session.commit()
    return {"result": result, "signup": load_signup(signup.id), "scanned_at": at,
            "replayed": False}


def list_for_staff(*, scope: StaffScope, cursor: str | None, limit: int):
    """The activities the staff member manages, latest start first."""
    stmt = select(Activity).where(scope.clause()).options(
        selectinload(Activity.roles), selectinload(Activity.cover))
    return keyset_page(stmt, columns=[Activity.starts_at, Activity.id], cursor=cursor,
                       limit=limit)


def staff_activity(*, scope: StaffScope, activity_id: int) -> Activity:
    """One managed activity with roles, cover and waiting-list length."""
    activity = _staff_activity(activity_id, scope)
    activity = load_activity(activity.id)
    annotate_for_resident([activity], scope.user_id)
    return activity


def roster(*, scope: StaffScope, activity_id: int, status: str | None, cursor: str | None,
           limit: int):
    """The signups of a managed activity in arrival order, with the residents' names."""
    _staff_activity(activity_id, scope)
    stmt = select(Signup).where(Signup.activity_id == activity_id).options(
        selectinload(Signup.user), selectinload(Signup.volunteer_role),
        selectinload(Signup.activity))
    if status:
        stmt = stmt.where(Signup.status == SignupStatus(status))
    items, next_cursor = keyset_page(stmt, columns=[Signup.queue_no, Signup.id], cursor=cursor,
                                     limit=limit, descending=False)
    attach_positions(items)
    return items, next_cursor


# --- notifications (called from jobs only) --------------------------------------------------


def wx_text(value: str | None) -> str:
    """A subscribe-message value that is never empty (the client trims it to WeChat's limit)."""
    return (value or "").strip() or "—"


def message_fields(activity: Activity, phrase: str, note: str | None = None) -> dict:
    """The subscribe-message data of an activity notice."""
    tz = community_tz(activity.community_id)
    return {"thing1": wx_text(activity.title), "phrase2": phrase[:5],
            "time3": local_text(activity.starts_at, tz), "thing4": wx_text(note or activity.place)}


REMINDERS = (("day", "reminded_day_at", timedelta(hours=24), "明天"),
             ("hour", "reminded_hour_at", timedelta(hours=1), "1小时后"))


def send_reminders(*, limit: int = 500) -> int:
    """Remind confirmed residents the day before and 1 h before; returns how many were sent."""
    sent = 0
    for kind, attr, window, label in REMINDERS:
        # (signup, activity) pairs: each reminder commits, which expires the loaded rows; the
        # activity row reloads itself, a lazy="raise" relationship would not.
        for signup, activity in _due_reminders(getattr(Signup, attr), window, limit):
            setattr(signup, attr, now())
            if kind == "day" and activity.starts_at - now() <= REMINDERS[1][2]:
                db.session.commit()  # inside the last hour the 1-hour reminder replaces it
                continue
            sent += _remind(signup, activity, kind, label)
    return sent


def _remind(signup: Signup, activity: Activity, kind: str, label: str) -> bool:
    """One reminder (in-app and subscribe message); False when it had been sent already."""
    from app.services.notifications import notify_user

    return bool(notify_user(
        user_id=signup.user_id, kind="activity_reminder",
        title=f"活动提醒：{activity.title}{label}开始", body=activity.place,
        dedupe_key=f"activity-remind:{kind}:{signup.id}:{int(activity.starts_at.timestamp())}",
        data={"activity_id": activity.id, "signup_id": signup.id},
        wx_data=message_fields(activity, "即将开始"),
        page=f"pages/activities/detail?id={activity.id}"))


def _due_reminders(column, window: timedelta, limit: int) -> list[tuple[Signup, Activity]]:
    """Confirmed signups of published activities starting within `window`, not yet reminded,
    each with its activity."""
    stamp = now()
    return list(db.session.execute(
        select(Signup, Activity).join(Activity, Activity.id == Signup.activity_id)
        .where(Signup.status == SS.CONFIRMED, column.is_(None),
               Activity.status == AS.PUBLISHED, Activity.starts_at > stamp,
               Activity.starts_at <= stamp + window)
        .order_by(Signup.id).limit(limit)).all())


# --- demo -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoActivity:
    """An upcoming demo activity: days from today, local start hour, length, seats, roles."""

    title: str
    description: str
    place: str
    in_days: int
    start_hour: float
    hours: float
    capacity: int
    max_party_size: int
    audience: tuple[str, ...]
    min_age: int | None = None
    roles: tuple[tuple[str, str, int, float], ...] = ()


DEMO_ACTIVITIES = (
    DemoActivity("端午香囊手工课", "和邻居一起缝香囊、包粽子，材料由居委会准备；欢迎祖孙同来。",
                 "邻里中心二楼活动室", 3, 14, 2, 20, 2, ("elderly", "family"),
                 roles=(("helper", "手工助教", 3, 2.0), ("photographer", "活动摄影", 1, 2.0))),
    DemoActivity("智能手机课堂：挂号与打车", "志愿者一对一教长者用手机预约挂号、叫出租车。",
                 "邻里中心一楼多功能厅", 5, 9.5, 1.5, 15, 1, ("elderly",), min_age=55,
                 roles=(("tutor", "一对一助教", 5, 1.5),)),
    DemoActivity("亲子绘本共读", "周末上午的亲子阅读时光，绘本由社区图书角提供。",
                 "社区图书角", 6, 10, 1, 12, 3, ("children", "family")),
    DemoActivity("楼道清洁日", "清理楼道堆物、张贴垃圾分类提示，志愿服务计入时间银行。",
                 "3号楼门口集合", 8, 8.5, 3, 0, 1, ("all",),
                 roles=(("cleaner", "清洁志愿者", 10, 3.0), ("guide", "垃圾分类引导员", 4, 2.0))),
)


@seed_step
def seed_activities(community: Community) -> dict:
    """Demo step: a few upcoming activities of the community office (totals)."""
    office = db.session.scalar(select(Org).where(Org.community_id == community.id,
                                                 Org.code == OFFICE_ORG))
    if office is not None:
        have = set(db.session.scalars(select(Activity.title).where(
            Activity.community_id == community.id)))
        today = now().astimezone(ZoneInfo(community.timezone)).replace(
            hour=0, minute=0, second=0, microsecond=0)
        for plan in DEMO_ACTIVITIES:
            if plan.title not in have:
                _add_demo_activity(community, office, today, plan)
    in_community = Activity.community_id == community.id
    return {
        "activities": db.session.scalar(select(func.count(Activity.id)).where(in_community)),
        "volunteer_roles": db.session.scalar(
            select(func.count(VolunteerRole.id)).join(Activity).where(in_community)),
    }


def _add_demo_activity(community: Community, office: Org, today: datetime,
                       plan: DemoActivity) -> None:
    """Create one demo activity, open for signup now, with its roles and timeline row."""
    starts_at = (today + timedelta(days=plan.in_days, hours=plan.start_hour)).astimezone(UTC)
    activity = Activity(
        community_id=community.id, org_id=office.id, title=plan.title,
        description=plan.description, place=plan.place, starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=plan.hours), signup_opens_at=now(),
        signup_closes_at=starts_at - timedelta(hours=2), capacity=plan.capacity,
        max_party_size=plan.max_party_size, audience_mask=_audience_mask(list(plan.audience)),
        min_age=plan.min_age, checkin_required=True, status=AS.PUBLISHED)
    activity.roles = [VolunteerRole(code=code, name=name, capacity=capacity,
                                    credited_minutes=round(hours * 60))
                      for code, name, capacity, hours in plan.roles]
    db.session.add(activity)
    db.session.flush()
    record_event(activity.id, "create", to_status=str(AS.PUBLISHED), note="演示数据")
