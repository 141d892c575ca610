"""Shared set-up of the activity and time-bank tests: a community, its office, families, rewards.

Activities are published through `app.services.activities.create_activity` and signups go through
the service (or the API), so seats, the waiting list and the outbox behave exactly as in use.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from app.errors import APIError
from app.extensions import db
from app.models import Notification, OutboxMessage, User
from app.models.activities import Activity, ActivityEvent, Signup
from app.models.timebank import EntryKind, EntrySource, LedgerEntry, Reward, TimebankAccount
from app.security import STAFF_KIND
from app.services import activities, timebank
from app.services.accounts import token_claims
from miniprogram_mock.wechat_server import shared_mock_app
from tests import factories as f

SHANGHAI = ZoneInfo("Asia/Shanghai")
THIS_YEAR = datetime.now(SHANGHAI).year


def build_place() -> SimpleNamespace:
    """Two communities; the first with an office, a care provider, a property company and families.

    The Wang family (unit 1-101): grandma (70), her grandson (8) and a daughter whose claim is
    still pending. The Li family (1-102): a father of 45. The other community comes first, so a
    lookup that forgets the community would pick the wrong rows.
    """
    other_comm = f.community(code="elsewhere", name="别处社区")
    other_office = f.org(other_comm, "community_office", code="other-office", name="别处居委")
    comm = f.community(code="zpq", name="总浦桥社区")
    bld = f.building(comm, number="1")
    wang_home, li_home = f.household_of(bld, "1", "101"), f.household_of(bld, "1", "102")
    office = f.org(comm, "community_office", code="office", name="社区居委会")
    care = f.org(comm, "service_provider", code="care", name="助老服务中心")
    prop = f.org(comm, "property_company", code="prop", name="绿城物业")
    return SimpleNamespace(
        comm=comm, other_comm=other_comm, office=office, care=care, prop=prop,
        clerk=f.staff(office, "staff"), care_manager=f.staff(care, "manager"),
        care_staff=f.staff(care, "staff"), prop_staff=f.staff(prop, "staff"),
        other_clerk=f.staff(other_office, "staff"),
        grandma=f.resident(comm, household=wang_home, display_name="王秀英",
                           birth_year=THIS_YEAR - 70),
        grandson=f.resident(comm, household=wang_home, relation="grandchild",
                            display_name="王小明", birth_year=THIS_YEAR - 8),
        pending_daughter=f.resident(comm, household=wang_home, relation="child", status="pending",
                                    display_name="王丽", birth_year=THIS_YEAR - 40),
        li=f.resident(comm, household=li_home, display_name="李建国", birth_year=THIS_YEAR - 45),
        other_resident=f.resident(other_comm, display_name="赵敏", birth_year=THIS_YEAR - 30),
    )


def scope_of(staff: User) -> activities.StaffScope:
    """The staff member's activity scope, from the org roles their token would carry."""
    return activities.StaffScope(user_id=staff.id, orgs=token_claims(staff, STAFF_KIND)["orgs"])


def later(**delta) -> datetime:
    """A moment `delta` from now (aware UTC)."""
    return datetime.now(UTC) + timedelta(**delta)


def publish(place, *, by=None, starts_in=timedelta(days=2), hours: float = 2,
            capacity: int = 10, **fields) -> Activity:
    """Publish an activity through the service; open for signup now until it starts."""
    starts_at = datetime.now(UTC) + starts_in
    values = {"title": "端午香囊手工课", "place": "邻里中心二楼", "starts_at": starts_at,
              "ends_at": starts_at + timedelta(hours=hours), "capacity": capacity,
              "max_party_size": 3} | fields
    return activities.create_activity(scope=scope_of(by or place.clerk), **values)


def residents(comm, n: int, *, prefix: str = "居民") -> list[User]:
    """`n` adult residents of the community (each their own household-less account)."""
    users = [User(wx_appid="wx-dev-appid", openid=f"bulk-{comm.id}-{prefix}-{i}",
                  display_name=f"{prefix}{i}", community_id=comm.id, birth_year=THIS_YEAR - 40)
             for i in range(n)]
    db.session.add_all(users)
    db.session.commit()
    return users


def sign_up(activity: Activity, user: User, party_size: int = 1, **kw) -> Signup:
    """Sign up through the service."""
    return activities.sign_up(activity_id=activity.id, user_id=user.id, party_size=party_size,
                              **kw)


def fresh(model, row_id):
    """A row, fresh from the database."""
    db.session.expire_all()
    return db.session.get(model, row_id)


def count(model, *where) -> int:
    """Rows in a table (matching `where`)."""
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def statuses(activity_id: int) -> dict[int, str]:
    """Signup status by user id."""
    db.session.expire_all()
    return {s.user_id: str(s.status) for s in db.session.scalars(
        select(Signup).where(Signup.activity_id == activity_id))}


def seated(activity_id: int, role: str = "participant") -> int:
    """Seats held by confirmed and checked-in signups of a pool, counted from the rows."""
    return db.session.scalar(select(func.coalesce(func.sum(Signup.party_size), 0)).where(
        Signup.activity_id == activity_id, Signup.role == role,
        Signup.status.in_(("confirmed", "checked_in")))) or 0


def events_of(signup_id: int) -> list[ActivityEvent]:
    """A signup's timeline rows, oldest first."""
    db.session.expire_all()
    return list(db.session.scalars(select(ActivityEvent).where(
        ActivityEvent.signup_id == signup_id).order_by(ActivityEvent.id)))


def notifications_for(user: User, kind: str | None = None) -> list[Notification]:
    """In-app notifications a user has, oldest first."""
    stmt = select(Notification).where(Notification.user_id == user.id)
    if kind is not None:
        stmt = stmt.where(Notification.kind == kind)
    return list(db.session.scalars(stmt.order_by(Notification.id)))


def messages_to(user: User) -> list[dict]:
    """Subscribe messages the mock WeChat server received for the user."""
    return shared_mock_app().extensions["mock_wechat"].messages(touser=user.openid)


def outbox_rows(job: str) -> list[OutboxMessage]:
    """Outbox rows of one job."""
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.job == job)))


# --- time bank ------------------------------------------------------------------------------


def reward(comm, *, code: str = "haircut", name: str = "理发一次", cost: int = 20,
           stock: int = 5, active: bool = True) -> Reward:
    """A reward of the community."""
    row = Reward(community_id=comm.id, code=code, name=name, cost=cost, stock=stock,
                 is_active=active, provider="助老服务中心")
    db.session.add(row)
    db.session.commit()
    return row


def give_points(user: User, points: int, *, key: str | None = None) -> LedgerEntry:
    """Credit `points` to a resident as an award."""
    key = key or f"test-award:{user.id}:{points}:{count(LedgerEntry)}"
    entry = timebank.post_entry(user_id=user.id, community_id=user.community_id,
                                kind=EntryKind.CREDIT, source=EntrySource.AWARD, points=points,
                                dedupe_key=key, reason="测试积分")
    db.session.commit()
    return entry


def balance_of(user: User) -> int:
    """The account balance (0 when the resident has no account yet)."""
    db.session.expire_all()
    return db.session.scalar(select(TimebankAccount.balance).where(
        TimebankAccount.user_id == user.id)) or 0


def ledger_sum(user: User) -> int:
    """The sum of the resident's ledger: what the balance must always equal."""
    return db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
        LedgerEntry.user_id == user.id)) or 0


# --- concurrency ----------------------------------------------------------------------------


def run_together(app, calls: list) -> tuple[list, list[APIError], list[Exception]]:
    """Run each call in its own thread and app context, all released at once by a barrier.

    Returns (results, domain errors, unexpected exceptions), each list in call order.
    """
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    refused: list = [None] * len(calls)
    crashed: list[Exception] = []

    def run(i: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                results[i] = calls[i]()
            except APIError as exc:
                refused[i] = exc
            except Exception as exc:  # noqa: BLE001 - reported to the test, never swallowed
                crashed.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, refused, crashed
