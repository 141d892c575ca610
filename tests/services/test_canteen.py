"""The canteen services: menus, prices by age band, orders that never oversell, the order
state machine, cancellations, counter orders, courier positions, the prep sheet, jobs, demo."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.errors import (
    APIError,
    Conflict,
    Forbidden,
    InvalidTransition,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from app.extensions import db
from app.models import Membership, Role, User
from app.models.canteen import CourierPosition, Menu, MenuItem, Order, OrderEvent, OrderItem
from app.services import canteen, canteen_orders, canteen_prep
from app.services.canteen import MenuTimes
from miniprogram_mock.wechat_server import shared_mock_app
from tests.canteen_fixtures import (
    SHANGHAI,
    TODAY,
    build_place,
    clock_fixture,  # noqa: F401 - the `clock` fixture
    count,
    dish_id,
    events_of,
    fresh,
    left,
    lines,
    make_menu,
    notifications_for,
    order,
    walk,
)
from workers import canteen as canteen_jobs


@pytest.fixture
def place(app, clock):
    return build_place()


def raises(exc_type, code: str, fn, *args, **kwargs) -> APIError:
    """Call fn and assert it raises exc_type with the stable `code`."""
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.code
    db.session.rollback()
    return info.value


def nothing_written(place, *, portions: int = 30) -> None:
    """No order, item or event rows, and every dish still has all its portions."""
    assert count(Order) == count(OrderItem) == count(OrderEvent) == 0
    assert all(left(place, name) == portions for name in place.dishes)


# ---- menus, dishes and prices --------------------------------------------------------------


def test_a_menu_keeps_its_times_as_utc_instants_of_shanghai_wall_clock_times(place):
    menu = place.menu
    assert menu.cutoff_at == datetime(2025, 6, 11, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai
    assert menu.delivery_start.astimezone(SHANGHAI).time() == time(11, 0)
    assert menu.delivery_end.astimezone(SHANGHAI).time() == time(12, 30)
    breakfast = make_menu(place, TODAY + timedelta(days=1), "breakfast",
                          times=MenuTimes(cutoff=time(19, 0), cutoff_day_before=True))
    assert breakfast.cutoff_at.astimezone(SHANGHAI) == datetime(2025, 6, 11, 19, 0,
                                                                tzinfo=SHANGHAI)


def test_a_meal_has_one_menu_and_a_repeat_writes_nothing(place):
    raises(Conflict, "menu_exists", make_menu, place, TODAY, "lunch")
    assert count(Menu) == 1


def test_a_menu_refuses_other_canteens_dishes_and_days_out_of_range(place):
    foreign = canteen.create_dish(org_ids={place.other_canteen.id}, actor_id=place.other_cook.id,
                                  name="别处的菜", price_fen=800)
    raises(ValidationFailed, "dish_not_found", canteen.create_menu, org_ids={place.kitchen.id},
           actor_id=place.manager.id, day=TODAY, meal="dinner",
           items=[{"dish_id": foreign.id, "portions": 10}])
    raises(ValidationFailed, "invalid_date", make_menu, place, TODAY - timedelta(days=1), "dinner")
    raises(ValidationFailed, "invalid_times", make_menu, place, TODAY, "dinner",
           times=MenuTimes(delivery_start=time(19, 0), delivery_end=time(18, 0)))
    assert count(Menu) == 1


def test_dishes_have_unique_names_per_canteen(place):
    dish = canteen.create_dish(org_ids={place.kitchen.id}, actor_id=place.cook.id,
                               name=" 糖醋小排 ", price_fen=1600, tags=["high_protein"],
                               allergens=["小麦", "小麦"], calories=480)
    assert (dish.name, dish.allergens) == ("糖醋小排", ["小麦"])
    raises(Conflict, "dish_exists", canteen.create_dish, org_ids={place.kitchen.id},
           actor_id=place.cook.id, name="糖醋小排", price_fen=1500)
    changed = canteen.update_dish(org_ids={place.kitchen.id}, dish_id=dish.id,
                                  actor_id=place.cook.id, price_fen=1700, is_active=False)
    assert (changed.price_fen, changed.is_active) == (1700, False)
    raises(NotFound, "dish_not_found", canteen.update_dish, org_ids={place.other_canteen.id},
           dish_id=dish.id, actor_id=place.other_cook.id, price_fen=1)


def test_the_menu_shows_live_portions_and_a_price_per_subsidy_band(place):
    order(place, items=lines(place, 红烧肉=3))
    day, menus = canteen.list_menus(community_id=place.comm.id, day=None)
    assert day == TODAY and [m.id for m in menus] == [place.menu.id]
    pork = next(i for i in menus[0].items if i.dish_id == dish_id(place, "红烧肉"))
    assert pork.portions_left == 27
    assert pork.price_bands == [
        {"min_age": 80, "name": "80周岁以上老人助餐补贴", "price": 1200},
        {"min_age": 90, "name": "90周岁以上老人助餐补贴", "price": 1050},
    ]


@pytest.mark.parametrize(("price", "percent", "amount", "expected"), [
    (1500, 20, 0, 1200), (1500, 30, 0, 1050), (105, 50, 0, 53), (500, 0, 200, 300),
    (100, 10, 200, 0)])
def test_subsidised_price_is_percent_off_rounded_half_up_then_amount_off(price, percent,
                                                                          amount, expected):
    rule = type("Rule", (), {"percent_off": percent, "amount_off_fen": amount})()
    assert canteen.subsidised_price(price, rule) == expected


def test_portions_can_be_raised_but_never_below_those_ordered(place):
    order(place, items=lines(place, 红烧肉=5))
    menu = canteen.set_portions(org_ids={place.kitchen.id}, menu_id=place.menu.id,
                                dish_id=dish_id(place, "红烧肉"), portions=40)
    pork = next(i for i in menu.items if i.dish_id == dish_id(place, "红烧肉"))
    assert (pork.portions_total, pork.portions_left) == (40, 35)
    raises(Conflict, "portions_below_ordered", canteen.set_portions,
           org_ids={place.kitchen.id}, menu_id=place.menu.id,
           dish_id=dish_id(place, "红烧肉"), portions=4)
    assert left(place, "红烧肉") == 35


def test_the_database_refuses_a_negative_portion_count(place):
    with pytest.raises(IntegrityError):
        db.session.execute(update(MenuItem).where(MenuItem.menu_id == place.menu.id)
                           .values(portions_left=-1))
        db.session.flush()
    db.session.rollback()
    assert left(place, "红烧肉") == 30


def test_diners_are_me_and_the_approved_members_of_my_household(place):
    diners = canteen.diners_for(place.son.id)
    assert [(d["display_name"], d["age"], d["subsidy"]) for d in diners] == [
        ("李伟", 50, None), ("王秀英", 85, "80周岁以上老人助餐补贴"),
        ("李建国", 92, "90周岁以上老人助餐补贴")]
    assert diners[0]["is_self"] and diners[0]["address"] == "3号楼1单元101"


# ---- placing orders ------------------------------------------------------------------------


def test_an_order_takes_its_portions_and_is_priced_for_the_diners_age(place):
    placed = order(place, items=lines(place, 红烧肉=2, 米饭=1))
    assert (placed.status, placed.channel, placed.diner_id) == ("placed", "online", place.elder.id)
    assert (placed.standard_total_fen, placed.total_fen) == (3100, 2480)  # 80+: 20 % off
    assert placed.subsidy_rule.min_age == 80
    assert (left(place, "红烧肉"), left(place, "米饭")) == (28, 29)
    [event] = events_of(placed.id)
    assert (event.action, event.to_status, event.actor_id) == ("place", "placed", place.elder.id)


def test_a_family_member_orders_for_an_elder_at_the_elders_price(place):
    placed = order(place, place.son, for_member_id=place.elder90.id)
    assert (placed.placed_by_id, placed.diner_id, placed.diner_age) == (
        place.son.id, place.elder90.id, 92)
    assert placed.total_fen == 1050 + 70  # 90+: 30 % off
    own = order(place, place.son)
    assert own.total_fen == own.standard_total_fen == 1600


@pytest.mark.parametrize("who", ["pending", "neighbour", "outsider"])
def test_no_one_orders_for_someone_outside_their_household(place, who):
    err = raises(ValidationFailed, "not_household_member", order, place, place.son,
                 for_member_id=getattr(place, who).id)
    assert "for_member_id" in err.details["fields"]
    nothing_written(place)


def test_ordering_closes_at_the_cutoff_in_shanghai_time(place, clock):
    clock.set(hour=9, minute=29)
    assert order(place).status == "placed"
    clock.set(hour=9, minute=30)
    before = count(Order)
    err = raises(Conflict, "order_closed", order, place)
    assert err.message == "已过订餐截止时间"
    assert count(Order) == before and left(place, "红烧肉") == 29


@pytest.mark.parametrize(("items", "code"), [
    ([{"name": "红烧肉", "qty": 0}], "invalid_qty"),
    ([{"name": "红烧肉", "qty": 6}], "invalid_qty"),
    ([{"name": "红烧肉", "qty": 3}, {"name": "红烧肉", "qty": 3}], "invalid_qty"),
    ([{"name": "红烧肉", "qty": 5}, {"name": "米饭", "qty": 5}, {"name": "清炒时蔬", "qty": 1}],
     "too_many_portions"),
    ([], "items_required"),
])
def test_bad_quantities_are_refused_and_nothing_is_taken(place, items, code):
    wanted = [{"dish_id": dish_id(place, i["name"]), "qty": i["qty"]} for i in items]
    raises(ValidationFailed, code, order, place, items=wanted)
    nothing_written(place)


def test_a_dish_not_on_that_menu_is_refused(place):
    extra = canteen.create_dish(org_ids={place.kitchen.id}, actor_id=place.cook.id,
                                name="糖醋小排", price_fen=1600)
    err = raises(ValidationFailed, "dish_not_on_menu", order, place,
                 items=[{"dish_id": extra.id, "qty": 1}, *lines(place, 红烧肉=1)])
    assert err.details["dish_ids"] == [extra.id]
    nothing_written(place)


def test_all_items_or_none_a_short_dish_names_itself_and_nothing_is_taken(app, clock):
    place = build_place(portions={"清蒸鲈鱼": 1})
    err = raises(Conflict, "sold_out", order, place, items=lines(place, 红烧肉=2, 清蒸鲈鱼=2))
    assert err.details == {"dish_id": dish_id(place, "清蒸鲈鱼"), "dish": "清蒸鲈鱼",
                           "portions_left": 1, "requested": 2}
    assert err.message == "“清蒸鲈鱼”只剩 1 份"
    assert (left(place, "红烧肉"), left(place, "清蒸鲈鱼")) == (30, 1)
    assert count(Order) == count(OrderEvent) == 0
    order(place, items=lines(place, 清蒸鲈鱼=1))
    err = raises(Conflict, "sold_out", order, place, items=lines(place, 清蒸鲈鱼=1))
    assert err.message == "“清蒸鲈鱼”已售罄"


def test_selling_the_last_portion_records_the_sell_out_time(place, clock):
    item_of = lambda: db.session.scalar(select(MenuItem).where(  # noqa: E731
        MenuItem.menu_id == place.menu.id, MenuItem.dish_id == dish_id(place, "米饭")))
    canteen.set_portions(org_ids={place.kitchen.id}, menu_id=place.menu.id,
                         dish_id=dish_id(place, "米饭"), portions=2)
    order(place, items=lines(place, 米饭=1))
    assert item_of().sold_out_at is None
    clock.advance(minutes=7)
    last = order(place, items=lines(place, 米饭=1))
    db.session.expire_all()
    assert item_of().sold_out_at == clock()
    canteen_orders.cancel_by_resident(order_id=last.id, user_id=place.elder.id)
    db.session.expire_all()
    assert (item_of().portions_left, item_of().sold_out_at) == (1, None)


def test_delivery_goes_to_the_diners_home_or_another_household_of_the_community(place):
    home = order(place, place.son, fulfilment="delivery", for_member_id=place.elder.id)
    assert (home.household_id, home.address, home.pickup_code) == (
        place.home.id, "3号楼1单元101", None)
    there = order(place, fulfilment="delivery", address={"household_id": place.other_home.id})
    assert there.address == "12号楼2单元201"


def test_delivery_outside_the_community_or_without_an_address_is_refused(place):
    from tests import factories as f

    far = f.household_of(f.building(place.other_comm, number="9"))
    raises(ValidationFailed, "address_outside_community", order, place, fulfilment="delivery",
           address={"household_id": far.id})
    homeless = f.resident(place.comm)
    raises(ValidationFailed, "address_required", order, place, homeless, fulfilment="delivery")
    nothing_written(place)


def test_pickup_orders_get_a_four_digit_code_unique_within_the_menu(place, monkeypatch):
    codes = iter([1234, 1234, 5678])
    monkeypatch.setattr(canteen_orders.secrets, "randbelow", lambda n: next(codes))
    first, second = order(place), order(place, place.son)
    assert (first.pickup_code, second.pickup_code) == ("2234", "6678")
    assert order(place, fulfilment="dine_in").pickup_code is None
    assert count(Order) == 3 and left(place, "红烧肉") == 27


def test_a_menu_of_another_community_is_not_found(place):
    raises(NotFound, "menu_not_found", order, place, place.outsider)
    nothing_written(place)


# ---- cancelling ----------------------------------------------------------------------------


def test_cancelling_returns_the_portions_at_once(place):
    placed = order(place, items=lines(place, 红烧肉=3, 米饭=2))
    cancelled = canteen_orders.cancel_by_resident(order_id=placed.id, user_id=place.elder.id,
                                                  note="临时有事")
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    assert (left(place, "红烧肉"), left(place, "米饭")) == (30, 30)
    assert [(e.action, e.from_status, e.to_status, e.note) for e in events_of(placed.id)] == [
        ("place", None, "placed", ""), ("cancel", "placed", "cancelled", "临时有事")]
    raises(InvalidTransition, "invalid_transition", canteen_orders.cancel_by_resident,
           order_id=placed.id, user_id=place.elder.id)
    assert left(place, "红烧肉") == 30


def test_the_family_member_who_ordered_may_cancel_but_a_neighbour_may_not(place):
    placed = order(place, place.son, for_member_id=place.elder.id)
    raises(NotFound, "order_not_found", canteen_orders.cancel_by_resident, order_id=placed.id,
           user_id=place.neighbour.id)
    assert fresh(placed.id).status == "placed"
    canteen_orders.cancel_by_resident(order_id=placed.id, user_id=place.son.id)
    assert fresh(placed.id).status == "cancelled"


def test_no_cancelling_after_the_kitchen_accepted_or_after_the_cutoff(place, clock):
    accepted = order(place)
    walk(place, accepted.id, "accept")
    err = raises(InvalidTransition, "invalid_transition", canteen_orders.cancel_by_resident,
                 order_id=accepted.id, user_id=place.elder.id)
    assert "已接单" in err.message
    late = order(place, place.son)
    clock.set(hour=10)
    raises(Conflict, "order_closed", canteen_orders.cancel_by_resident, order_id=late.id,
           user_id=place.son.id)
    assert fresh(late.id).status == "placed" and left(place, "红烧肉") == 28


# ---- the state machine ---------------------------------------------------------------------


def test_a_pickup_order_walks_the_table_with_a_timeline_row_per_step(place):
    placed = order(place)
    done = walk(place, placed.id, "accept", "start", "ready", "pick_up")
    assert done.status == "picked_up" and done.finished_at is not None
    assert [(e.action, e.from_status, e.to_status) for e in events_of(placed.id)] == [
        ("place", None, "placed"), ("accept", "placed", "accepted"),
        ("start", "accepted", "preparing"), ("ready", "preparing", "ready"),
        ("pick_up", "ready", "picked_up")]


@pytest.mark.parametrize(("fulfilment", "steps", "illegal"), [
    ("pickup", (), "ready"),
    ("pickup", ("accept", "start", "ready"), "dispatch"),
    ("delivery", ("accept", "start", "ready"), "pick_up"),
    ("dine_in", ("accept", "start", "ready", "pick_up"), "cancel"),
])
def test_moves_outside_the_table_are_409_and_change_nothing(place, fulfilment, steps, illegal):
    placed = order(place, fulfilment=fulfilment)
    walk(place, placed.id, *steps)
    status = fresh(placed.id).status
    err = raises(InvalidTransition, "invalid_transition", walk, place, placed.id, illegal,
                 note="理由")
    assert err.details["status"] == status
    assert fresh(placed.id).status == status and len(events_of(placed.id)) == len(steps) + 1


def test_the_kitchen_cancels_with_a_reason_and_the_portions_return(place):
    placed = order(place, items=lines(place, 红烧肉=2))
    walk(place, placed.id, "accept")
    raises(ValidationFailed, "note_required", walk, place, placed.id, "cancel")
    walk(place, placed.id, "cancel", note="燃气故障，今天停止供应")
    assert fresh(placed.id).status == "cancelled" and left(place, "红烧肉") == 30


def test_a_delivery_goes_to_a_courier_of_the_canteen_who_finishes_it(place):
    placed = order(place, fulfilment="delivery")
    walk(place, placed.id, "accept", "start", "ready")
    raises(ValidationFailed, "courier_required", walk, place, placed.id, "dispatch")
    raises(ValidationFailed, "courier_not_found", walk, place, placed.id, "dispatch",
           courier_id=place.clerk.id)
    walk(place, placed.id, "dispatch", courier_id=place.courier.id)
    assert fresh(placed.id).courier_id == place.courier.id
    as_courier = dict(kitchen_org_ids=set(), courier_org_ids={place.kitchen.id})
    raises(NotFound, "order_not_found", canteen_orders.transition, order_id=placed.id,
           actor_id=place.courier2.id, action="deliver", **as_courier)
    canteen_orders.transition(order_id=placed.id, actor_id=place.courier.id, action="deliver",
                              **as_courier)
    assert fresh(placed.id).status == "delivered"


def test_couriers_take_ready_deliveries_but_do_not_cook(place):
    placed = order(place, fulfilment="delivery")
    as_courier = dict(kitchen_org_ids=set(), courier_org_ids={place.kitchen.id})
    raises(Forbidden, "forbidden_action", canteen_orders.transition, order_id=placed.id,
           actor_id=place.courier.id, action="accept", **as_courier)
    walk(place, placed.id, "accept", "start", "ready")
    taken = canteen_orders.transition(order_id=placed.id, actor_id=place.courier2.id,
                                      action="dispatch", **as_courier)
    assert (taken.status, taken.courier_id) == ("out_for_delivery", place.courier2.id)
    raises(ValidationFailed, "note_required", canteen_orders.transition, order_id=placed.id,
           actor_id=place.courier2.id, action="fail", **as_courier)
    canteen_orders.transition(order_id=placed.id, actor_id=place.courier2.id, action="fail",
                              note="家中无人，电话未接", **as_courier)
    assert fresh(placed.id).status == "delivery_failed"


def test_another_canteens_staff_cannot_see_or_move_the_order(place):
    placed = order(place)
    raises(NotFound, "order_not_found", canteen_orders.transition, order_id=placed.id,
           actor_id=place.other_cook.id, kitchen_org_ids={place.other_canteen.id},
           courier_org_ids=set(), action="accept")
    raises(NotFound, "order_not_found", canteen_orders.order_for_staff, order_id=placed.id,
           org_ids={place.other_canteen.id})
    assert fresh(placed.id).status == "placed"


def test_the_resident_hears_at_ready_out_for_delivery_and_delivered_only(place):
    placed = order(place, place.son, fulfilment="delivery", for_member_id=place.elder.id)
    walk(place, placed.id, "accept", "start")
    assert notifications_for(place.elder) == []
    walk(place, placed.id, "ready")
    walk(place, placed.id, "dispatch", courier_id=place.courier.id)
    walk(place, placed.id, "deliver")
    for person in (place.elder, place.son):
        assert [n.title for n in notifications_for(person)] == [
            "午餐已备好", "午餐正在配送", "午餐已送达"]
    sent = shared_mock_app().extensions["mock_wechat"].messages(touser=place.elder.openid)
    assert [m["data"]["phrase2"]["value"] for m in sent] == ["已备好", "配送中", "已送达"]


def test_a_pickup_notice_tells_the_code_and_a_retried_job_sends_nothing_twice(place):
    placed = order(place)
    walk(place, placed.id, "accept", "start", "ready")
    [note] = notifications_for(place.elder)
    assert note.body == f"请凭取餐码 {placed.pickup_code} 到食堂窗口取餐"
    event = events_of(placed.id)[-1]
    assert canteen_jobs.notify_canteen_order(order_id=placed.id, event_id=event.id) == 0
    assert len(notifications_for(place.elder)) == 1


# ---- counter orders ------------------------------------------------------------------------


def test_counter_orders_stay_open_until_the_meal_ends_with_the_age_staff_checked(place, clock):
    clock.set(hour=12)
    walk_in = canteen_orders.place_counter_order(
        actor_id=place.cook.id, org_ids={place.kitchen.id}, menu_id=place.menu.id,
        items=lines(place, 红烧肉=1), diner_age=91)
    assert (walk_in.channel, walk_in.fulfilment, walk_in.diner_name) == (
        "counter", "dine_in", "堂食顾客")
    assert walk_in.total_fen == 1050 and left(place, "红烧肉") == 29
    known = canteen_orders.place_counter_order(
        actor_id=place.cook.id, org_ids={place.kitchen.id}, menu_id=place.menu.id,
        items=lines(place, 米饭=1), diner_id=place.elder.id, fulfilment="pickup")
    assert (known.diner_id, known.total_fen, len(known.pickup_code)) == (place.elder.id, 80, 4)
    raises(ValidationFailed, "diner_not_found", canteen_orders.place_counter_order,
           actor_id=place.cook.id, org_ids={place.kitchen.id}, menu_id=place.menu.id,
           items=lines(place, 米饭=1), diner_id=place.outsider.id)
    clock.set(hour=12, minute=30)
    raises(Conflict, "order_closed", canteen_orders.place_counter_order,
           actor_id=place.cook.id, org_ids={place.kitchen.id}, menu_id=place.menu.id,
           items=lines(place, 米饭=1))
    assert count(Order) == 2 and left(place, "米饭") == 29


# ---- courier positions ---------------------------------------------------------------------


def out_for_delivery(place) -> Order:
    placed = order(place, fulfilment="delivery")
    return walk(place, placed.id, "accept", "start", "ready", "dispatch",
                courier_id=place.courier.id)


def post_position(place, order_id, courier=None, lat=31.1900, lng=121.4450):
    return canteen_orders.record_location(order_id=order_id, courier_id=(courier or
                                          place.courier).id, org_ids={place.kitchen.id},
                                          lat=lat, lng=lng, accuracy=15)


def test_the_resident_sees_the_couriers_last_position_its_time_and_an_eta(place, clock):
    carried = out_for_delivery(place)
    assert canteen_orders.order_for_resident(order_id=carried.id,
                                             user_id=place.elder.id).courier_location is None
    post_position(place, carried.id)
    seen = canteen_orders.order_for_resident(order_id=carried.id, user_id=place.elder.id)
    where = seen.courier_location
    assert (where["lat"], where["lng"], where["recorded_at"]) == (31.19, 121.445, clock())
    assert 170 <= where["distance_m"] <= 190  # to building 3 at 31.1916, 121.4451
    # 3 m/s on an e-bike plus a minute to hand over
    assert abs((where["eta"] - clock()).total_seconds() - (where["distance_m"] / 3 + 60)) < 1


def test_positions_are_accepted_once_per_five_seconds_per_order(place, clock):
    carried = out_for_delivery(place)
    post_position(place, carried.id)
    clock.advance(seconds=3)
    err = raises(RateLimited, "rate_limited", post_position, place, carried.id, lat=31.1905)
    assert err.headers["Retry-After"] == "2"
    clock.advance(seconds=2)
    post_position(place, carried.id, lat=31.1910)
    assert count(CourierPosition) == 2 and fresh(carried.id).courier_lat == 31.1910


def test_a_courier_posts_only_for_orders_they_carry(place):
    carried = out_for_delivery(place)
    raises(NotFound, "order_not_found", post_position, place, carried.id, place.courier2)
    waiting = order(place, place.son, fulfilment="delivery")
    raises(NotFound, "order_not_found", post_position, place, waiting.id)
    walk(place, carried.id, "deliver")
    raises(NotFound, "order_not_found", post_position, place, carried.id)
    assert count(CourierPosition) == 0


def test_positions_are_kept_for_the_day_only(place, clock):
    carried = out_for_delivery(place)
    clock.set(hour=23, minute=59)
    post_position(place, carried.id)
    clock.set(hour=0, minute=1, day=TODAY + timedelta(days=1))
    post_position(place, carried.id, lat=31.1911)
    clock.set(hour=0, minute=5, day=TODAY + timedelta(days=1))
    assert canteen_jobs.purge_courier_positions() == 1
    assert [p.lat for p in db.session.scalars(select(CourierPosition))] == [31.1911]
    assert fresh(carried.id).courier_lat == 31.1911
    clock.set(hour=0, minute=5, day=TODAY + timedelta(days=2))
    canteen_jobs.purge_courier_positions()
    assert count(CourierPosition) == 0 and fresh(carried.id).courier_lat is None


# ---- the prep sheet ------------------------------------------------------------------------


def test_the_prep_sheet_counts_live_portions_and_lists_deliveries_by_building(place):
    order(place, items=lines(place, 红烧肉=2, 米饭=2), fulfilment="delivery")
    order(place, place.neighbour, items=lines(place, 红烧肉=1), fulfilment="delivery",
          note="=请敲门")
    order(place, place.son, items=lines(place, 清炒时蔬=1), fulfilment="dine_in")
    gone = order(place, place.elder90, items=lines(place, 红烧肉=4), fulfilment="pickup")
    canteen_orders.cancel_by_resident(order_id=gone.id, user_id=place.elder90.id)
    sheet = canteen_prep.prep_sheet(org_ids={place.kitchen.id}, day=TODAY, meal="lunch")
    pork = next(d for d in sheet["dishes"] if d["name"] == "红烧肉")
    assert (pork["to_cook"], pork["delivery"], pork["pickup"], pork["portions_left"]) == (
        3, 3, 0, 27)
    assert sheet["portions"] == 6 and sheet["delivery_orders"] == 2
    assert [(g["number"], [o["diner_name"] for o in g["orders"]])
            for g in sheet["deliveries"]] == [("3", ["王秀英"]), ("12", ["张阿姨"])]
    csv_text = canteen_prep.prep_sheet_csv(sheet)
    assert csv_text.startswith("\ufeff备餐单,2025-06-11,午餐")
    assert "红烧肉,3,0,0,3,30,27" in csv_text and "'=请敲门" in csv_text
    raises(NotFound, "menu_not_found", canteen_prep.prep_sheet, org_ids={place.kitchen.id},
           day=TODAY, meal="dinner")


# ---- the demo ------------------------------------------------------------------------------


def test_the_demo_has_dishes_subsidy_bands_a_courier_and_eight_days_of_menus(app, clock):
    from app.services.demo import seed_demo

    summary = seed_demo()
    counts = summary["counts"]
    assert counts["canteen_dishes"] >= 20 and counts["canteen_menus"] == 24
    assert counts["canteen_subsidy_rules"] == 2
    courier = next(x for x in summary["logins"] if x["username"] == "courier")
    assert courier["roles"] == ["courier"] and courier["password"] != "(unchanged)"
    menus = list(db.session.scalars(select(Menu).order_by(Menu.date, Menu.cutoff_at)))
    assert menus[0].date == TODAY and menus[-1].date == TODAY + timedelta(days=7)
    assert all(len(m.items) >= 5 for m in db.session.scalars(
        select(Menu).options(selectinload(Menu.items))))
    again = seed_demo()
    assert again["counts"]["canteen_menus"] == 24 and not any(again["created"].values())
    assert next(x for x in again["logins"] if x["username"] == "courier")["password"] == (
        "(unchanged)")
    assert db.session.scalar(select(Membership.role).join(User).where(
        User.username == "courier")) == Role.COURIER


# ---- concurrency (PostgreSQL) --------------------------------------------------------------


def run_together(app, jobs) -> list:
    """Run callables in threads released together, each in its own app context."""
    barrier, results = threading.Barrier(len(jobs)), [None] * len(jobs)

    def run(i, job):
        with app.app_context():
            barrier.wait()
            try:
                results[i] = job()
            except APIError as exc:
                results[i] = exc
            except Exception as exc:  # noqa: BLE001 - reported by the assertions
                results[i] = ("unexpected", repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.postgres
@pytest.mark.concurrency
def test_concurrent_cancellations_return_each_portion_exactly_once(app, clock):
    place = build_place(portions={"红烧肉": 100, "米饭": 100})
    people = [place.elder, place.son, place.elder90, place.neighbour]
    orders = [order(place, people[i % 4], items=lines(place, 红烧肉=1 + i % 3, 米饭=1))
              for i in range(40)]
    assert left(place, "红烧肉") == 100 - sum(1 + i % 3 for i in range(40))

    def cancel(o):
        return lambda: canteen_orders.cancel_by_resident(order_id=o.id,
                                                         user_id=o.placed_by_id).id

    results = run_together(app, [cancel(orders[i % 40]) for i in range(200)])
    assert not [r for r in results if isinstance(r, tuple)], results
    won = [r for r in results if isinstance(r, int)]
    assert sorted(won) == sorted(o.id for o in orders)
    assert {r.code for r in results if isinstance(r, APIError)} == {"invalid_transition"}
    assert (left(place, "红烧肉"), left(place, "米饭")) == (100, 100)
    assert count(OrderEvent, OrderEvent.action == "cancel") == 40


@pytest.mark.postgres
def test_the_feed_txid_is_the_writing_transactions_id(place):
    placed = order(place)
    [event] = events_of(placed.id)
    current = db.session.scalar(text("SELECT pg_current_xact_id()::text::bigint"))
    db.session.rollback()
    assert 0 < event.txid < current
