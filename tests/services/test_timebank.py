"""The time bank as the service layer sees it: ledger, balance, redemptions, leaderboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app.errors import APIError
from app.extensions import db
from app.models.timebank import LedgerEntry, Redemption, RedemptionEvent, Reward, TimebankAccount
from app.services import timebank
from tests.activities_fixtures import (
    balance_of,
    build_place,
    count,
    fresh,
    give_points,
    ledger_sum,
    messages_to,
    notifications_for,
    residents,
    reward,
    run_together,
)


@pytest.fixture
def place(app):
    return build_place()


def refused(call) -> APIError:
    """The domain error a call raises (and the session rolled back, as the API would)."""
    with pytest.raises(APIError) as caught:
        call()
    db.session.rollback()
    return caught.value


def redeem(user, prize):
    return timebank.redeem(user_id=user.id, reward_id=prize.id)


def offices(place) -> set[int]:
    return {place.comm.id}


# ---- the ledger ----------------------------------------------------------------------------

def test_the_balance_is_the_sum_of_the_ledger(place):
    give_points(place.li, 30)
    give_points(place.li, 15)
    assert balance_of(place.li) == 45 == ledger_sum(place.li)
    entries = db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()
    assert [e.balance_after for e in entries] == [30, 45]


def test_a_debit_may_not_take_the_balance_below_zero(place):
    give_points(place.li, 10)
    error = refused(lambda: timebank.post_entry(
        user_id=place.li.id, community_id=place.comm.id, kind="debit", source="redemption",
        points=-11, dedupe_key="too-much"))
    assert (error.status, error.code) == (409, "insufficient_points")
    assert balance_of(place.li) == 10 and count(LedgerEntry) == 1


def test_the_ledger_is_append_only(place):
    entry = give_points(place.li, 10)
    entry.points = 1000
    with pytest.raises(RuntimeError, match="append-only"):
        db.session.commit()
    db.session.rollback()
    db.session.delete(fresh(LedgerEntry, entry.id))
    with pytest.raises(RuntimeError, match="append-only"):
        db.session.commit()
    db.session.rollback()
    assert fresh(LedgerEntry, entry.id).points == 10


def test_the_database_refuses_a_negative_balance_whatever_the_code_does(place):
    give_points(place.li, 5)
    account = db.session.get(TimebankAccount, place.li.id)
    account.balance = -1
    with pytest.raises(Exception, match="(?i)check|constraint"):
        db.session.commit()
    db.session.rollback()


def test_staff_award_points_to_residents_of_their_community_only(place):
    entry = timebank.award(staff_id=place.clerk.id, community_ids=offices(place),
                           user_id=place.li.id, points=8, reason="义务修理自行车",
                           dedupe_key="award:1")
    assert (str(entry.kind), str(entry.source), entry.points) == ("credit", "award", 8)
    error = refused(lambda: timebank.award(staff_id=place.clerk.id, community_ids=offices(place),
                                           user_id=place.other_resident.id, points=8,
                                           reason="x", dedupe_key="award:2"))
    assert (error.status, error.code) == (404, "resident_not_found")
    assert count(LedgerEntry) == 1


# ---- redemptions ---------------------------------------------------------------------------

def test_a_redemption_takes_points_and_stock_together(place):
    prize = reward(place.comm, cost=20, stock=2)
    give_points(place.li, 50)
    done = redeem(place.li, prize)
    assert (str(done.status), done.cost, done.reward.name) == ("requested", 20, "理发一次")
    assert balance_of(place.li) == 30 == ledger_sum(place.li)
    assert fresh(Reward, prize.id).stock == 1
    debit = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "debit"))
    assert (debit.points, debit.redemption_id, debit.balance_after) == (-20, done.id, 30)
    assert [(e.action, e.to_status) for e in done.events] == [("request", "requested")]


def test_too_few_points_is_409_and_nothing_is_written(place):
    prize = reward(place.comm, cost=20, stock=2)
    give_points(place.li, 19)
    error = refused(lambda: redeem(place.li, prize))
    assert (error.status, error.code) == (409, "insufficient_points")
    assert count(Redemption) == 0 and count(RedemptionEvent) == 0
    assert fresh(Reward, prize.id).stock == 2 and balance_of(place.li) == 19
    assert count(LedgerEntry) == 1


def test_a_resident_without_any_points_gets_insufficient_points(place):
    prize = reward(place.comm, cost=1)
    assert refused(lambda: redeem(place.grandma, prize)).code == "insufficient_points"
    assert count(Redemption) == 0 and fresh(Reward, prize.id).stock == 5


def test_out_of_stock_is_409_and_nothing_is_written(place):
    prize = reward(place.comm, cost=5, stock=0)
    give_points(place.li, 50)
    error = refused(lambda: redeem(place.li, prize))
    assert (error.status, error.code) == (409, "out_of_stock")
    assert count(Redemption) == 0 and balance_of(place.li) == 50


def test_rewards_of_another_community_or_withdrawn_ones_are_not_found(place):
    elsewhere = reward(place.other_comm, code="far")
    withdrawn = reward(place.comm, code="old", active=False)
    give_points(place.li, 50)
    for prize in (elsewhere, withdrawn):
        error = refused(lambda p=prize: redeem(place.li, p))
        assert (error.status, error.code) == (404, "reward_not_found")
    assert count(Redemption) == 0


def test_staff_fulfil_once(place):
    prize = reward(place.comm)
    give_points(place.li, 50)
    done = redeem(place.li, prize)
    fulfilled = timebank.fulfil(redemption_id=done.id, staff_id=place.care_staff.id,
                                community_ids=offices(place), note="已理发")
    assert str(fulfilled.status) == "fulfilled" and fulfilled.fulfilled_at is not None
    error = refused(lambda: timebank.cancel_redemption(
        redemption_id=done.id, staff_id=place.clerk.id, community_ids=offices(place),
        reason="x"))
    assert (error.status, error.code) == (409, "invalid_transition")
    assert balance_of(place.li) == 30


def test_a_cancel_writes_a_reversal_returns_the_stock_and_tells_the_resident(place):
    prize = reward(place.comm, cost=20, stock=1)
    give_points(place.li, 20)
    done = redeem(place.li, prize)
    cancelled = timebank.cancel_redemption(redemption_id=done.id, staff_id=place.clerk.id,
                                           community_ids=offices(place), reason="理发师休假")
    assert str(cancelled.status) == "cancelled"
    assert [e.action for e in cancelled.events] == ["request", "cancel"]
    debit, reversal = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.redemption_id == done.id).order_by(LedgerEntry.id)).all()
    assert (str(reversal.kind), reversal.points, reversal.reverses_id) == ("reversal", 20, debit.id)
    assert balance_of(place.li) == 20 == ledger_sum(place.li)
    assert fresh(Reward, prize.id).stock == 1
    (note,) = notifications_for(place.li, "redemption_cancelled")
    assert "20 积分已退回" in note.body
    assert messages_to(place.li)[0]["data"]["thing1"]["value"] == "理发一次"


def test_staff_of_another_community_cannot_handle_the_redemption(place):
    prize = reward(place.comm)
    give_points(place.li, 50)
    done = redeem(place.li, prize)
    error = refused(lambda: timebank.fulfil(redemption_id=done.id, staff_id=place.other_clerk.id,
                                            community_ids={place.other_comm.id}))
    assert (error.status, error.code) == (404, "redemption_not_found")
    assert str(fresh(Redemption, done.id).status) == "requested"


def test_restocking_adds_to_what_is_left(place):
    prize = reward(place.comm, stock=1)
    updated = timebank.update_reward(reward_id=prize.id, community_ids=offices(place),
                                     add_stock=4, cost=25)
    assert (updated.stock, updated.cost) == (5, 25)
    error = refused(lambda: timebank.update_reward(reward_id=prize.id,
                                                   community_ids=offices(place), add_stock=-6))
    assert error.code == "stock_below_zero" and fresh(Reward, prize.id).stock == 5


# ---- leaderboard ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "shown"), [
    ("王秀英", "王**"), ("老王", "王**"), ("王阿姨", "王**"), ("欧阳娜娜", "欧**"), ("", "居民**"),
])
def test_names_are_shortened(name, shown):
    assert timebank.shorten_name(name) == shown


def test_the_leaderboard_ranks_this_months_earnings_with_shortened_names(place, monkeypatch):
    tz = ZoneInfo("Asia/Shanghai")
    last_month = datetime.now(tz).replace(day=1, hour=12) - timedelta(days=3)
    monkeypatch.setattr(timebank, "now", lambda: last_month.astimezone(UTC))
    give_points(place.grandson, 500)  # earned last month: not in this month's board
    monkeypatch.undo()
    give_points(place.grandma, 30)
    give_points(place.li, 30)
    give_points(place.pending_daughter, 10)
    give_points(place.other_resident, 99)  # another community
    prize = reward(place.comm, cost=25)
    redeem(place.grandma, prize)  # spending does not lower what was earned
    board = timebank.leaderboard(community_id=place.comm.id, period="month")
    assert [(r["rank"], r["name"], r["points"]) for r in board["items"]] == [
        (1, "王**", 30), (1, "李**", 30), (3, "王**", 10)]
    everything = timebank.leaderboard(community_id=place.comm.id, period="all")
    assert everything["items"][0]["points"] == 500 and everything["since"] is None


# ---- concurrency (PostgreSQL) --------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.concurrency
def test_fifty_concurrent_redemptions_of_ten_in_stock_yield_exactly_ten(app, place):
    prize = reward(place.comm, cost=10, stock=10)
    people = residents(place.comm, 50)
    for person in people:
        give_points(person, 10)

    prize_id = prize.id

    def attempt(user_id: int):
        return lambda: timebank.redeem(user_id=user_id, reward_id=prize_id).id

    results, refusals, crashes = run_together(app, [attempt(p.id) for p in people])
    assert crashes == []
    assert sum(r is not None for r in results) == 10
    assert [e.code for e in refusals if e is not None] == ["out_of_stock"] * 40
    assert fresh(Reward, prize.id).stock == 0 and count(Redemption) == 10
    assert sum(balance_of(p) for p in people) == 400
    assert all(balance_of(p) == ledger_sum(p) for p in people)


@pytest.mark.postgres
@pytest.mark.concurrency
def test_concurrent_redemptions_never_take_a_balance_below_zero(app, place):
    prize = reward(place.comm, cost=10, stock=100)
    give_points(place.li, 35)
    user_id, prize_id = place.li.id, prize.id
    results, refusals, crashes = run_together(app, [
        lambda: timebank.redeem(user_id=user_id, reward_id=prize_id).id for _ in range(20)])
    assert crashes == []
    assert sum(r is not None for r in results) == 3
    assert [e.code for e in refusals if e is not None] == ["insufficient_points"] * 17
    assert balance_of(place.li) == 5 == ledger_sum(place.li)
    assert fresh(Reward, prize.id).stock == 97 and count(Redemption) == 3
