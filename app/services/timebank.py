"""The volunteer time bank (时间银行): ledger, balances, rewards, redemptions, leaderboard.

Every movement of points is a `LedgerEntry` (credit, debit or reversal) written together with a
conditional UPDATE of the resident's `TimebankAccount` row (`balance + :points >= 0`), so the
balance is always the sum of the ledger and never negative, also when redemptions race on
PostgreSQL. Reward stock is guarded the same way (`stock >= 1`). Lock order is always reward →
account, so two kinds of transaction never wait on each other in a circle.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from app.errors import APIError, Conflict, InvalidTransition, NotFound, ValidationFailed
from app.extensions import db
from app.inserts import insert_or_skip
from app.models import Community, User
from app.models.timebank import (
    EntryKind,
    EntrySource,
    LedgerEntry,
    Redemption,
    RedemptionEvent,
    RedemptionStatus,
    Reward,
    TimebankAccount,
)
from app.pagination import keyset_page
from app.services import outbox
from app.services.demo import OPENID_PREFIX, seed_step

RS = RedemptionStatus
REDEMPTION_ALLOWED: dict[RedemptionStatus, dict[str, RedemptionStatus]] = {
    RS.REQUESTED: {"fulfil": RS.FULFILLED, "cancel": RS.CANCELLED},
    RS.FULFILLED: {},
    RS.CANCELLED: {},
}
REDEMPTION_STATUS_LABELS = {"requested": "待兑换", "fulfilled": "已兑换", "cancelled": "已取消"}
EARNING_SOURCES = (EntrySource.VOLUNTEER, EntrySource.AWARD)
DEFAULT_POINTS_PER_HOUR = 10
RECENT_ENTRIES = 20
PERIODS = ("week", "month", "year", "all")


def now() -> datetime:
    """The current UTC time (one place to freeze in tests)."""
    return datetime.now(UTC)


def points_per_hour() -> int:
    """How many points one volunteer hour earns (TIMEBANK_POINTS_PER_HOUR)."""
    return int(current_app.config.get("TIMEBANK_POINTS_PER_HOUR", DEFAULT_POINTS_PER_HOUR))


def points_for_minutes(minutes: int) -> int:
    """Points earned by `minutes` of volunteering (whole points, rounded down)."""
    return max(0, minutes) * points_per_hour() // 60


# --- the ledger -----------------------------------------------------------------------------


def _ensure_account(user_id: int, community_id: int | None) -> None:
    """Create the resident's account row if missing (safe when two requests race)."""
    values = {"user_id": user_id, "community_id": community_id, "balance": 0,
              "updated_at": now()}
    stmt = insert_or_skip(TimebankAccount).values(**values)
    db.session.execute(stmt)


def post_entry(*, user_id: int, community_id: int | None, kind: EntryKind,
               source: EntrySource, points: int, dedupe_key: str, reason: str = "",
               minutes: int = 0, signup_id: int | None = None,
               redemption_id: int | None = None, reverses_id: int | None = None,
               actor_id: int | None = None) -> LedgerEntry:
    """Append one entry and move the balance with it, in the caller's transaction.

    409 `insufficient_points` when a negative entry would take the balance below zero.
    """
    _ensure_account(user_id, community_id)
    balance = db.session.execute(
        update(TimebankAccount)
        .where(TimebankAccount.user_id == user_id, TimebankAccount.balance + points >= 0)
        .values(balance=TimebankAccount.balance + points, updated_at=now())
        .returning(TimebankAccount.balance)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if balance is None:
        raise Conflict("积分不足", code="insufficient_points", details={"needed": -points})
    entry = LedgerEntry(user_id=user_id, community_id=community_id, kind=kind, source=source,
                        points=points, minutes=minutes, balance_after=balance, reason=reason[:200],
                        signup_id=signup_id, redemption_id=redemption_id,
                        reverses_id=reverses_id, dedupe_key=dedupe_key[:120],
                        created_by_id=actor_id, created_at=now())
    db.session.add(entry)
    db.session.flush()
    return entry


def credit_volunteer_minutes(*, user_id: int, community_id: int, minutes: int, signup_id: int,
                             reason: str, actor_id: int | None) -> LedgerEntry | None:
    """Credit a volunteer's minutes at an activity (once per signup); None when worth 0 points."""
    points = points_for_minutes(minutes)
    if points <= 0:
        return None
    return post_entry(user_id=user_id, community_id=community_id, kind=EntryKind.CREDIT,
                      source=EntrySource.VOLUNTEER, points=points, minutes=minutes,
                      signup_id=signup_id, reason=reason, actor_id=actor_id,
                      dedupe_key=f"signup:{signup_id}:credit")


def award(*, staff_id: int, community_ids: set[int], user_id: int, points: int,
          reason: str, dedupe_key: str) -> LedgerEntry:
    """Staff credit points for other good deeds to a resident of their community."""
    user = db.session.get(User, user_id)
    if user is None or user.community_id not in community_ids or user.username is not None:
        raise NotFound("找不到该居民", code="resident_not_found")
    entry = post_entry(user_id=user.id, community_id=user.community_id, kind=EntryKind.CREDIT,
                       source=EntrySource.AWARD, points=points, reason=reason.strip(),
                       actor_id=staff_id, dedupe_key=dedupe_key)
    db.session.commit()
    return entry


# --- what a resident sees -------------------------------------------------------------------


def account_summary(*, user_id: int) -> dict:
    """Balance, lifetime points and hours earned, and the most recent entries."""
    balance = db.session.scalar(select(TimebankAccount.balance).where(
        TimebankAccount.user_id == user_id)) or 0
    earned, minutes = db.session.execute(
        select(func.coalesce(func.sum(LedgerEntry.points), 0),
               func.coalesce(func.sum(LedgerEntry.minutes), 0))
        .where(LedgerEntry.user_id == user_id, LedgerEntry.source.in_(EARNING_SOURCES))).one()
    entries, cursor = list_entries(user_id=user_id, cursor=None, limit=RECENT_ENTRIES)
    return {"balance": balance, "earned_total": earned, "hours_total": round(minutes / 60, 2),
            "points_per_hour": points_per_hour(), "entries": entries, "next_cursor": cursor}


def list_entries(*, user_id: int, cursor: str | None, limit: int):
    """The resident's ledger, newest first."""
    stmt = select(LedgerEntry).where(LedgerEntry.user_id == user_id)
    return keyset_page(stmt, columns=[LedgerEntry.created_at, LedgerEntry.id], cursor=cursor,
                       limit=limit)


def _community_of(user_id: int) -> int | None:
    return db.session.scalar(select(User.community_id).where(User.id == user_id))


def list_rewards(*, user_id: int, cursor: str | None, limit: int):
    """Active rewards of the resident's community, in display order, with stock."""
    stmt = select(Reward).where(Reward.community_id == _community_of(user_id),
                                Reward.is_active.is_(True))
    return keyset_page(stmt, columns=[Reward.sort_order, Reward.id], cursor=cursor,
                       limit=limit, descending=False)


def my_redemptions(*, user_id: int, cursor: str | None, limit: int):
    """The resident's redemptions, newest first."""
    stmt = select(Redemption).where(Redemption.user_id == user_id).options(
        selectinload(Redemption.reward), selectinload(Redemption.events))
    return keyset_page(stmt, columns=[Redemption.created_at, Redemption.id], cursor=cursor,
                       limit=limit)


# --- redemptions ----------------------------------------------------------------------------


def record_event(redemption: Redemption, action: str, *, actor_id: int | None,
                 from_status: str | None, to_status: str | None,
                 note: str = "") -> RedemptionEvent:
    """Append a row to the redemption's timeline (in the caller's transaction)."""
    event = RedemptionEvent(redemption_id=redemption.id, actor_id=actor_id, action=action,
                            from_status=from_status, to_status=to_status, note=note or "",
                            created_at=now())
    db.session.add(event)
    return event


def move_redemption(redemption: Redemption, action: str, *, actor_id: int | None,
                    note: str = "") -> RedemptionEvent:
    """Apply `action` if REDEMPTION_ALLOWED permits it, with its timeline row."""
    target = REDEMPTION_ALLOWED[redemption.status].get(action)
    if target is None:
        raise InvalidTransition(details={"status": str(redemption.status), "action": action,
                                         "allowed": sorted(REDEMPTION_ALLOWED[redemption.status])})
    before, redemption.status = redemption.status, target
    redemption.handled_by_id = actor_id
    stamp = now()
    if target == RS.FULFILLED:
        redemption.fulfilled_at = stamp
    if target == RS.CANCELLED:
        redemption.cancelled_at = stamp
    return record_event(redemption, action, actor_id=actor_id, from_status=str(before),
                        to_status=str(target), note=note)


def redeem(*, user_id: int, reward_id: int) -> Redemption:
    """Spend points on a reward: stock and balance both guarded in the database."""
    community_id = _community_of(user_id)
    reward = db.session.get(Reward, reward_id)
    if reward is None or reward.community_id != community_id or not reward.is_active:
        raise NotFound("找不到该兑换项目", code="reward_not_found")
    cost = reward.cost
    try:
        _take_stock(reward.id)
        redemption = Redemption(community_id=reward.community_id, user_id=user_id,
                                reward_id=reward.id, cost=cost, status=RS.REQUESTED,
                                created_at=now())
        db.session.add(redemption)
        db.session.flush()
        post_entry(user_id=user_id, community_id=community_id, kind=EntryKind.DEBIT,
                   source=EntrySource.REDEMPTION, points=-cost, redemption_id=redemption.id,
                   reason=f"兑换：{reward.name}", actor_id=user_id,
                   dedupe_key=f"redemption:{redemption.id}:debit")
    except APIError:
        db.session.rollback()  # the stock taken before a failed debit goes back
        raise
    record_event(redemption, "request", actor_id=user_id, from_status=None,
                 to_status=str(RS.REQUESTED))
    db.session.commit()
    return load_redemption(redemption.id)


def _take_stock(reward_id: int) -> None:
    """One off the reward's stock, or 409 `out_of_stock`."""
    taken = db.session.execute(
        update(Reward).where(Reward.id == reward_id, Reward.stock >= 1,
                             Reward.is_active.is_(True))
        .values(stock=Reward.stock - 1).execution_options(synchronize_session=False))
    if taken.rowcount != 1:
        raise Conflict("该项目已兑完", code="out_of_stock")


def load_redemption(redemption_id: int) -> Redemption:
    """A redemption with its reward and timeline."""
    redemption = db.session.scalar(select(Redemption).where(Redemption.id == redemption_id)
                                   .options(selectinload(Redemption.reward),
                                            selectinload(Redemption.events),
                                            selectinload(Redemption.user))
                                   .execution_options(populate_existing=True))
    if redemption is None:
        raise NotFound("找不到该兑换记录", code="redemption_not_found")
    return redemption


def list_for_staff(*, community_ids: set[int], status: str | None, cursor: str | None,
                   limit: int):
    """Redemptions of the staff member's communities, oldest first (a work queue)."""
    stmt = select(Redemption).where(Redemption.community_id.in_(community_ids)).options(
        selectinload(Redemption.reward), selectinload(Redemption.events),
        selectinload(Redemption.user))
    if status:
        stmt = stmt.where(Redemption.status == RedemptionStatus(status))
    return keyset_page(stmt, columns=[Redemption.created_at, Redemption.id], cursor=cursor,
                       limit=limit, descending=False)


def _locked_redemption(redemption_id: int, community_ids: set[int]) -> Redemption:
    """The redemption row, locked; 404 outside the staff member's communities."""
    redemption = db.session.scalar(select(Redemption).where(Redemption.id == redemption_id)
                                   .with_for_update())
    if redemption is None or redemption.community_id not in community_ids:
        raise NotFound("找不到该兑换记录", code="redemption_not_found")
    return redemption


def fulfil(*, redemption_id: int, staff_id: int, community_ids: set[int],
           note: str = "") -> Redemption:
    """The reward was handed over."""
    redemption = _locked_redemption(redemption_id, community_ids)
    move_redemption(redemption, "fulfil", actor_id=staff_id, note=note)
    db.session.commit()
    return load_redemption(redemption.id)


def cancel_redemption(*, redemption_id: int, staff_id: int, community_ids: set[int],
                      reason: str) -> Redemption:
    """Cancel: the points come back as a reversal and the stock returns; the resident is told."""
    redemption = _locked_redemption(redemption_id, community_ids)
    move_redemption(redemption, "cancel", actor_id=staff_id, note=reason)
    redemption.cancel_reason = reason
    db.session.execute(update(Reward).where(Reward.id == redemption.reward_id)
                       .values(stock=Reward.stock + 1)
                       .execution_options(synchronize_session=False))
    debit = db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.dedupe_key == f"redemption:{redemption.id}:debit"))
    post_entry(user_id=redemption.user_id, community_id=redemption.community_id,
               kind=EntryKind.REVERSAL, source=EntrySource.REDEMPTION, points=redemption.cost,
               redemption_id=redemption.id, reverses_id=debit.id if debit else None,
               reason=f"兑换取消退回：{reason}"[:200], actor_id=staff_id,
               dedupe_key=f"redemption:{redemption.id}:reversal")
    outbox.add_job("notify_redemption_cancelled", redemption_id=redemption.id)
    outbox.commit()
    return load_redemption(redemption.id)


# --- rewards (staff) ------------------------------------------------------------------------


def _bad(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, details={"fields": {field: [message]}})


def create_reward(*, community_ids: set[int], community_id: int | None = None, code: str,
                  name: str, cost: int, stock: int, description: str = "",
                  provider: str = "", sort_order: int = 0) -> Reward:
    """A new reward in one of the staff member's communities."""
    community_id = _one_community(community_ids, community_id)
    if db.session.scalar(select(Reward.id).where(Reward.community_id == community_id,
                                                 Reward.code == code)):
        raise _bad("code", "reward_code_taken", "该编号已被使用")
    reward = Reward(community_id=community_id, code=code, name=name.strip(), cost=cost,
                    stock=stock, description=description, provider=provider,
                    sort_order=sort_order)
    db.session.add(reward)
    db.session.commit()
    return reward


def _one_community(community_ids: set[int], wanted: int | None) -> int:
    """The community a staff action applies to: the given one if theirs, else their only one."""
    if wanted is not None:
        if wanted not in community_ids:
            raise _bad("community_id", "community_not_yours", "不是您所在的社区")
        return wanted
    if len(community_ids) != 1:
        raise _bad("community_id", "community_required", "请指定社区")
    return next(iter(community_ids))


def update_reward(*, reward_id: int, community_ids: set[int], add_stock: int | None = None,
                  **changes) -> Reward:
    """Edit a reward; `add_stock` restocks (or, negative, removes) without losing a race."""
    reward = db.session.get(Reward, reward_id)
    if reward is None or reward.community_id not in community_ids:
        raise NotFound("找不到该兑换项目", code="reward_not_found")
    for name, value in changes.items():
        if value is not None:
            setattr(reward, name, value)
    if add_stock:
        moved = db.session.execute(
            update(Reward).where(Reward.id == reward.id, Reward.stock + add_stock >= 0)
            .values(stock=Reward.stock + add_stock)
            .execution_options(synchronize_session=False))
        if moved.rowcount != 1:
            db.session.rollback()
            raise _bad("add_stock", "stock_below_zero", "库存不能少于零")
    db.session.commit()
    db.session.refresh(reward)
    return reward


# --- leaderboard ----------------------------------------------------------------------------


def shorten_name(name: str | None) -> str:
    """A name for public display: the surname and stars (王** for 王秀英, 老王 or 王阿姨)."""
    name = (name or "").strip()
    if name.startswith("老") and len(name) >= 2:
        name = name[1:]
    return f"{name[0]}**" if name else "居民**"


def period_start(period: str, tz: ZoneInfo, at: datetime | None = None) -> datetime | None:
    """The start (UTC) of the current week, month or year in the community's time zone."""
    local = (at or now()).astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        start = midnight - timedelta(days=midnight.weekday())
    elif period == "month":
        start = midnight.replace(day=1)
    elif period == "year":
        start = midnight.replace(month=1, day=1)
    else:
        return None
    return start.astimezone(UTC)


def leaderboard(*, community_id: int | None, period: str = "month", limit: int = 10) -> dict:
    """Residents ranked by points earned in the period; names shortened for privacy."""
    community = db.session.get(Community, community_id) if community_id else None
    if community is None:
        return {"period": period, "since": None, "items": []}
    start = period_start(period, ZoneInfo(community.timezone))
    earned = func.sum(LedgerEntry.points).label("points")
    stmt = (select(LedgerEntry.user_id, earned, func.sum(LedgerEntry.minutes).label("minutes"),
                   User.display_name)
            .join(User, User.id == LedgerEntry.user_id)
            .where(LedgerEntry.community_id == community.id,
                   LedgerEntry.source.in_(EARNING_SOURCES))
            .group_by(LedgerEntry.user_id, User.display_name))
    if start is not None:
        stmt = stmt.where(LedgerEntry.created_at >= start)
    stmt = stmt.having(earned > 0).order_by(earned.desc(), LedgerEntry.user_id).limit(limit)
    return {"period": period, "since": start, "items": _ranked(db.session.execute(stmt).all())}


def _ranked(rows) -> list[dict]:
    """Competition ranking (1, 2, 2, 4) of leaderboard rows."""
    items, rank = [], 0
    for index, row in enumerate(rows):
        if index == 0 or row.points != rows[index - 1].points:
            rank = index + 1
        items.append({"rank": rank, "name": shorten_name(row.display_name),
                      "points": int(row.points), "hours": round((row.minutes or 0) / 60, 1)})
    return items


# --- demo -----------------------------------------------------------------------------------

# code, name, description, provider, cost (points), stock
DEMO_REWARDS = (
    ("haircut", "理发一次", "社区理发室，凭券理发一次（限老年人）", "助老服务中心", 20, 30),
    ("canteen_meal", "食堂餐券", "云享车轮食堂午餐一份", "云享车轮食堂", 15, 50),
    ("home_repair", "上门小修", "更换灯泡、水龙头等小修一次", "总浦桥物业", 30, 10),
    ("blood_pressure", "上门测血压", "家庭医生上门测量血压、血糖", "社区卫生服务站", 10, 20),
)
# demo residents (by openid number) with volunteer points already earned, for the leaderboard
DEMO_AWARDS = ((3, 45), (11, 30), (27, 30), (42, 20), (58, 15), (77, 10))


@seed_step
def seed_timebank(community: Community) -> dict:
    """Demo step: the rewards on offer and a few residents' earned points (totals)."""
    have = set(db.session.scalars(select(Reward.code).where(Reward.community_id == community.id)))
    db.session.add_all(Reward(community_id=community.id, code=code, name=name, description=desc,
                              provider=provider, cost=cost, stock=stock, sort_order=i)
                       for i, (code, name, desc, provider, cost, stock) in enumerate(DEMO_REWARDS)
                       if code not in have)
    _seed_awards(community)
    db.session.flush()
    return {
        "timebank_rewards": db.session.scalar(select(func.count(Reward.id)).where(
            Reward.community_id == community.id)),
        "timebank_entries": db.session.scalar(select(func.count(LedgerEntry.id)).where(
            LedgerEntry.community_id == community.id)),
    }


def _seed_awards(community: Community) -> None:
    """Credit the demo residents in DEMO_AWARDS once (dedupe keys make reruns no-ops)."""
    openids = {f"{OPENID_PREFIX}{n}": points for n, points in DEMO_AWARDS}
    users = db.session.execute(select(User.id, User.openid, User.community_id).where(
        User.openid.in_(openids), User.community_id == community.id)).all()
    done = set(db.session.scalars(select(LedgerEntry.dedupe_key).where(
        LedgerEntry.dedupe_key.like("demo:award:%"))))
    for user_id, openid, community_id in users:
        key = f"demo:award:{openid}"
        if key not in done:
            post_entry(user_id=user_id, community_id=community_id, kind=EntryKind.CREDIT,
                       source=EntrySource.AWARD, points=openids[openid], dedupe_key=key,
                       reason="志愿服务积分（演示数据）")
