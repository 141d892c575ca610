"""Every capacity guarantee the modules promise, proved with hundreds of concurrent requests
through gunicorn (two worker processes) and checked afterwards in the database: slots, seats,
portions, reward stock, idempotent creation, and one resident tapping twice.

Each test builds its rows with the suite's factories in this process, signs real JWTs, fires at
`live` and accepts only the answers the API documents (never a 5xx).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Booking, BookingEvent, IdempotencyRecord
from app.models.activities import Activity, Signup
from app.models.canteen import MenuItem, Order, OrderEvent, OrderItem
from app.models.reports import Report
from app.models.timebank import (
    EntryKind,
    EntrySource,
    LedgerEntry,
    Redemption,
    Reward,
    TimebankAccount,
)
from app.services import canteen, timebank
from tests import activities_fixtures as act
from tests import booking_fixtures as bk
from tests import canteen_fixtures as cf
from tests import factories as f
from tests import reports_fixtures as rp
from tests.concurrency.conftest import Call, outcomes

pytestmark = [pytest.mark.concurrency, pytest.mark.postgres, pytest.mark.redis]

API = "/api/v1"
HOLDING = ("pending", "confirmed", "checked_in", "completed", "no_show")


def auth(user, key: str | None = None) -> dict:
    """A resident's Authorization header, with an Idempotency-Key when given."""
    return f.headers(user) | ({"Idempotency-Key": key} if key else {})


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def created_ids(answers) -> list[int]:
    return [a.body["id"] for a in answers if a.status == 201]


# ---- 1. a service slot -------------------------------------------------------------------

def slot_service(place, **kw):
    return bk.make_service(place.comm, place.office, code="tight", name="紧俏服务", **kw)


def booking_call(user, service, start, key: str) -> Call:
    return Call("POST", f"{API}/bookings", auth(user, key),
                {"service_id": service.id, "start": start.isoformat()})


def holding(service, start) -> list[Booking]:
    """The bookings that hold a place of the slot, per the bookings table."""
    db.session.expire_all()
    return list(db.session.scalars(select(Booking).where(
        Booking.service_id == service.id, Booking.starts_at == start,
        Booking.status.in_(HOLDING))))


def test_200_residents_racing_for_a_slot_of_5_get_5_bookings_and_195_slot_full(live):
    place = bk.build_place()
    service, start = slot_service(place, capacity=5), bk.local(1, 10)
    people = act.residents(place.comm, 200)
    answers = live.fire([booking_call(p, service, start, f"book-{p.id}") for p in people])
    assert outcomes(answers) == Counter({"201": 5, "409 slot_full": 195})
    held = holding(service, start)
    assert sorted(b.id for b in held) == sorted(created_ids(answers))
    assert len({b.for_user_id for b in held}) == 5
    assert bk.slot_row(service, start).booked == 5 == len(held)
    assert count(Booking) == 5 == count(BookingEvent)
    assert count(IdempotencyRecord) == 5  # a refused request leaves no key behind


# ---- 2. activity seats -------------------------------------------------------------------

def signup_call(user, activity_id: int, party_size: int = 1, key: str | None = None) -> Call:
    return Call("POST", f"{API}/activities/{activity_id}/signups", auth(user, key),
                {"party_size": party_size})


def test_200_signups_for_40_seats_fill_them_exactly_and_queue_the_rest_in_arrival_order(live):
    place = act.build_place()
    activity_id = act.publish(place, capacity=40, max_party_size=3).id
    people = act.residents(place.comm, 200)
    size_of = {p.id: (1, 2, 3, 1)[i % 4] for i, p in enumerate(people)}
    answers = live.fire([signup_call(p, activity_id, size_of[p.id]) for p in people])
    assert outcomes(answers) == Counter({"201": 200})
    db.session.expire_all()
    rows = list(db.session.scalars(select(Signup).where(Signup.activity_id == activity_id)
                                   .order_by(Signup.queue_no)))
    assert [s.queue_no for s in rows] == list(range(1, 201))  # arrival numbers, no gaps
    confirmed = [s for s in rows if str(s.status) == "confirmed"]
    waiting = [s for s in rows if str(s.status) == "waitlisted"]
    assert len(confirmed) + len(waiting) == 200
    assert sum(s.party_size for s in confirmed) == 40 == act.seated(activity_id)
    assert db.session.get(Activity, activity_id).seats_taken == 40
    # The waiting list is 1..k in arrival order, as each resident was told.
    told = {a.body["id"]: a.body["waitlist_position"] for a in answers}
    assert [told[s.id] for s in waiting] == list(range(1, len(waiting) + 1))
    assert all(told[s.id] is None for s in confirmed)
    # Each arrival was seated exactly when its whole party still fitted.
    taken = 0
    for s in rows:
        fits = taken + s.party_size <= 40
        assert (str(s.status), s.party_size) == ("confirmed" if fits else "waitlisted",
                                                 size_of[s.user_id])
        taken += s.party_size if fits else 0


# ---- 3. canteen portions -----------------------------------------------------------------

def live_menu(monkeypatch, portions: dict[str, int]):
    """The canteen place, with tomorrow's lunch (cut-off 09:30 tomorrow) on the real clock."""
    with monkeypatch.context() as frozen:  # build_place publishes a menu of cf.TODAY
        frozen.setattr(canteen, "now", cf.Clock(cf.MORNING))
        place = cf.build_place()
    tomorrow = (datetime.now(cf.SHANGHAI) + timedelta(days=1)).date()
    place.menu = cf.make_menu(place, tomorrow, "lunch", portions)
    return place


def order_call(place, user, key: str, **qty_by_name: int) -> Call:
    return Call("POST", f"{API}/canteen/orders", auth(user, key),
                {"menu_id": place.menu.id, "items": cf.lines(place, **qty_by_name),
                 "fulfilment": "pickup"})


def sold(place) -> dict[str, int]:
    """Portions in order lines of the menu, by dish name."""
    names = {d.id: name for name, d in place.dishes.items()}
    return {names[dish]: qty for dish, qty in db.session.execute(
        select(OrderItem.dish_id, func.sum(OrderItem.qty))
        .join(MenuItem, MenuItem.id == OrderItem.menu_item_id)
        .where(MenuItem.menu_id == place.menu.id).group_by(OrderItem.dish_id))}


def test_200_orders_racing_for_40_portions_never_sell_more_than_there_are(live, monkeypatch):
    totals = {"红烧肉": 40, "清蒸鲈鱼": 25, "清炒时蔬": 30, "米饭": 1000}
    place = live_menu(monkeypatch, totals)
    people = act.residents(place.comm, 200)
    wanted = [{"红烧肉": 1 + i % 3} | ({"米饭": 1} if i % 2 else {})
              | ({"清蒸鲈鱼": 1} if i % 5 == 0 else {}) for i in range(200)]
    answers = live.fire([order_call(place, p, f"lunch-{p.id}", **wanted[i])
                         for i, p in enumerate(people)])
    kinds = outcomes(answers)
    assert set(kinds) == {"201", "409 sold_out"}, kinds
    db.session.expire_all()
    left = {name: cf.left(place, name) for name in totals}
    sold_now = sold(place)
    for name, total in totals.items():
        assert left[name] >= 0 and sold_now.get(name, 0) + left[name] == total, name
    assert sold_now["红烧肉"] >= 38  # a refused order wanted 1..3: at most 2 can be left over
    # Portions are all or none: every order holds exactly the lines it asked for.
    placed = {a.body["id"]: wanted[i] for i, a in enumerate(answers) if a.status == 201}
    assert count(Order) == len(placed) == kinds["201"] == count(OrderEvent)
    names, lines = {d.id: name for name, d in place.dishes.items()}, Counter()
    for order_id, dish_id, qty in db.session.execute(
            select(OrderItem.order_id, OrderItem.dish_id, OrderItem.qty)):
        lines[order_id] += 1
        assert qty == placed[order_id][names[dish_id]]
    assert all(lines[o] == len(placed[o]) for o in placed)


# ---- 4. reward stock and balances --------------------------------------------------------

def redeem_call(user, reward_id: int, key: str) -> Call:
    return Call("POST", f"{API}/timebank/redemptions", auth(user, key), {"reward_id": reward_id})


def credit(people, points: int) -> None:
    """Award `points` to each resident through the ledger, in one transaction."""
    for person in people:
        timebank.post_entry(user_id=person.id, community_id=person.community_id,
                            kind=EntryKind.CREDIT, source=EntrySource.AWARD, points=points,
                            dedupe_key=f"seed:{person.id}", reason="测试积分")
    db.session.commit()


def balances() -> dict[int, int]:
    db.session.expire_all()
    return dict(db.session.execute(
        select(TimebankAccount.user_id, TimebankAccount.balance)).all())


def ledger_sums() -> dict[int, int]:
    return dict(db.session.execute(select(LedgerEntry.user_id, func.sum(LedgerEntry.points))
                                   .group_by(LedgerEntry.user_id)).all())


def test_120_redemptions_of_a_reward_with_15_in_stock_give_exactly_15(live):
    place = act.build_place()
    prize_id = act.reward(place.comm, cost=10, stock=15).id
    people = act.residents(place.comm, 120)
    credit(people, 10)
    answers = live.fire([redeem_call(p, prize_id, f"swap-{p.id}") for p in people])
    assert outcomes(answers) == Counter({"201": 15, "409 out_of_stock": 105})
    now_have = balances()
    assert db.session.get(Reward, prize_id).stock == 0
    assert count(Redemption) == 15
    winners = set(db.session.scalars(select(Redemption.user_id)))
    assert {now_have[p.id] for p in people if p.id in winners} == {0}
    assert {now_have[p.id] for p in people if p.id not in winners} == {10}
    assert now_have == ledger_sums()


def test_one_residents_30_concurrent_redemptions_never_take_the_balance_below_zero(live):
    place = act.build_place()
    prize_id = act.reward(place.comm, cost=10, stock=100).id
    credit([place.li], 35)
    answers = live.fire([redeem_call(place.li, prize_id, f"greedy-{i}") for i in range(30)])
    assert outcomes(answers) == Counter({"201": 3, "409 insufficient_points": 27})
    assert balances()[place.li.id] == 5 == ledger_sums()[place.li.id]
    assert db.session.get(Reward, prize_id).stock == 97 and count(Redemption) == 3


# ---- 5. one Idempotency-Key sent many times at once --------------------------------------

def assert_created_once(answers, resource_id: int) -> None:
    """The documented answers to one key in flight: the first 201, replays of it, or 409."""
    kinds = outcomes(answers)
    assert set(kinds) <= {"201", "409 idempotency_in_flight"}, kinds
    assert set(created_ids(answers)) == {resource_id}
    assert [a.replayed for a in answers if a.status == 201].count(False) == 1
    [record] = db.session.scalars(select(IdempotencyRecord))
    assert record.status_code == 201


def test_one_report_sent_50_times_at_once_with_one_key_is_filed_once(live):
    place = rp.build_place()
    call = Call("POST", f"{API}/reports", auth(place.resident, "report-tap"),
                rp.report_body(place))
    answers = live.fire([call] * 50)
    [report_id] = db.session.scalars(select(Report.id))
    assert_created_once(answers, report_id)


def test_one_order_sent_50_times_at_once_with_one_key_is_placed_once(live, monkeypatch):
    place = live_menu(monkeypatch, {"红烧肉": 30, "米饭": 30})
    answers = live.fire([order_call(place, place.elder, "lunch-tap", 红烧肉=2, 米饭=1)] * 50)
    [order_id] = db.session.scalars(select(Order.id))
    assert_created_once(answers, order_id)
    db.session.expire_all()
    assert (cf.left(place, "红烧肉"), cf.left(place, "米饭")) == (28, 29)
    assert count(OrderEvent) == 1


# ---- 6. one resident tapping many times --------------------------------------------------

def test_one_residents_30_concurrent_signups_make_one_signup(live):
    place = act.build_place()
    activity_id = act.publish(place, capacity=10, max_party_size=3).id
    answers = live.fire([signup_call(place.li, activity_id, 2, f"join-{i}") for i in range(30)])
    assert outcomes(answers) == Counter({"201": 1, "409 already_signed_up": 29})
    assert count(Signup) == 1 and act.seated(activity_id) == 2
    assert db.session.get(Activity, activity_id).seats_taken == 2


def test_one_booking_sent_30_times_at_once_with_one_key_books_once(live):
    place = bk.build_place()
    service, start = slot_service(place, capacity=10), bk.local(1, 10)
    answers = live.fire([booking_call(place.resident, service, start, "book-tap")] * 30)
    [booking_id] = db.session.scalars(select(Booking.id))
    assert_created_once(answers, booking_id)
    assert bk.slot_row(service, start).booked == 1


def test_one_person_booked_into_one_slot_30_times_at_once_holds_one_place(live):
    place = bk.build_place()
    service, start = slot_service(place, capacity=10, max_open_per_resident=5), bk.local(1, 10)
    calls = [booking_call(place.resident, service, start, f"mine-{i}") for i in range(15)]
    for i in range(15):  # her mother taps "book for my daughter" at the same moment
        call = booking_call(place.elder, service, start, f"for-her-{i}")
        calls.insert(2 * i + 1, Call(call.method, call.path, call.headers,
                                     call.json | {"for_member_id": place.resident.id}))
    answers = live.fire(calls)
    assert outcomes(answers) == Counter({"201": 1, "409 already_booked": 29})
    [held] = holding(service, start)
    assert held.for_user_id == place.resident.id and held.id in created_ids(answers)
    assert bk.slot_row(service, start).booked == 1 and count(Booking) == 1
