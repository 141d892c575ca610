"""Canteen orders: placing them (portions taken in the database, all items or none), counter
orders, the order state machine with its timeline, cancellation and the courier's position.

Portions are never read-modified-written in Python: every item of an order is taken with
`UPDATE canteen_menu_items SET portions_left = portions_left - :q WHERE id = :id AND
portions_left >= :q` in one transaction (in menu-item id order, so concurrent orders cannot
deadlock); if any of them matches no row, the whole transaction is rolled back and the caller
gets 409 `sold_out` naming the dish. CHECK (portions_left >= 0) is the backstop.
"""

from __future__ import annotations

import math
import secrets
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from app import ratelimit
from app.errors import Conflict, Forbidden, InvalidTransition, NotFound, RateLimited
from app.extensions import db
from app.inserts import NewId, insert_chain
from app.models import ClaimStatus, Household, HouseholdMember, Membership, Role, User
from app.models.canteen import (
    CourierPosition,
    Fulfilment,
    Menu,
    MenuItem,
    Order,
    OrderChannel,
    OrderEvent,
    OrderItem,
    OrderStatus,
)
from app.pagination import keyset_page
from app.services import canteen, outbox
from app.services.canteen import (
    active_rules,
    age_on,
    approved_households,
    bad,
    load_menu,
    rule_for_age,
    subsidised_price,
)
from app.services.canteen_feed import current_txid

OS = OrderStatus
ORDER_ALLOWED: dict[OrderStatus, dict[str, OrderStatus]] = {
    OS.PLACED: {"accept": OS.ACCEPTED, "cancel": OS.CANCELLED},
    OS.ACCEPTED: {"start": OS.PREPARING, "cancel": OS.CANCELLED},
    OS.PREPARING: {"ready": OS.READY},
    OS.READY: {"pick_up": OS.PICKED_UP, "dispatch": OS.OUT_FOR_DELIVERY},
    OS.OUT_FOR_DELIVERY: {"deliver": OS.DELIVERED, "fail": OS.DELIVERY_FAILED},
    OS.PICKED_UP: {},
    OS.DELIVERED: {},
    OS.DELIVERY_FAILED: {},
    OS.CANCELLED: {},
}
# Actions that only fit some ways of getting the meal (any other action fits every way).
ACTION_FULFILMENTS = {
    "pick_up": {Fulfilment.DINE_IN, Fulfilment.PICKUP},
    "dispatch": {Fulfilment.DELIVERY},
}
STAFF_ACTIONS = ("accept", "start", "ready", "pick_up", "dispatch", "deliver", "fail", "cancel")
COURIER_ACTIONS = ("dispatch", "deliver", "fail")
NOTE_REQUIRED = ("fail", "cancel")
RESIDENT_CANCELLABLE = {OS.PLACED}
NOTIFY_STATUSES = {OS.READY, OS.OUT_FOR_DELIVERY, OS.DELIVERED}
STATUS_TIMESTAMPS = {
    OS.ACCEPTED: "accepted_at", OS.READY: "ready_at", OS.PICKED_UP: "finished_at",
    OS.DELIVERED: "finished_at", OS.DELIVERY_FAILED: "finished_at",
    OS.CANCELLED: "cancelled_at",
}
LIVE_STATUSES = tuple(s for s in OS if s != OS.CANCELLED)
MAX_QTY_PER_DISH = 5
MAX_PORTIONS_PER_ORDER = 10
PICKUP_CODE_ATTEMPTS = 8
LOCATION_INTERVAL = timedelta(seconds=5)
DEFAULT_COURIER_SPEED_MPS = 3.0  # an e-bike in the lanes of an old estate, stops included
HANDOVER_SECONDS = 60


# --- placing orders -------------------------------------------------------------------------


def clean_lines(items: list[dict]) -> dict[int, int]:
    """{dish_id: qty}, repeats merged; 422 for a quantity outside 1..cap or too many portions."""
    if not items:
        raise bad("items", "items_required", "请至少选择一道菜")
    lines: dict[int, int] = {}
    for item in items:
        lines[item["dish_id"]] = lines.get(item["dish_id"], 0) + item["qty"]
    for qty in lines.values():
        if not 1 <= qty <= MAX_QTY_PER_DISH:
            raise bad("items", "invalid_qty", f"每道菜可订 1 到 {MAX_QTY_PER_DISH} 份")
    if sum(lines.values()) > MAX_PORTIONS_PER_ORDER:
        raise bad("items", "too_many_portions", f"每单最多 {MAX_PORTIONS_PER_ORDER} 份")
    return lines


def place_order(*, user_id: int, menu_id: int, items: list[dict], fulfilment: str,
                for_member_id: int | None = None, address: dict | None = None,
                note: str = "") -> Order:
    """A resident's order for themselves or a household member (the diner), priced for
    the diner's age band; 409 `order_closed` after the cut-off, 409 `sold_out` if any dish
    cannot be had in full (then nothing is taken); 429 `rate_limited` past the resident's
    ORDER_RATE_LIMIT orders in the window (checked after validation, before any portion)."""
    user = db.session.get(User, user_id)
    menu = _menu_for_resident(menu_id, user)
    if canteen.now() >= menu.cutoff_at:
        raise Conflict("已过订餐截止时间", code="order_closed",
                       details={"cutoff_at": menu.cutoff_at.isoformat()})
    lines = clean_lines(items)
    diner = _diner(user, for_member_id)
    fulfilment = Fulfilment(fulfilment)
    household = (_delivery_household(menu, diner, user, address)
                 if fulfilment == Fulfilment.DELIVERY else None)
    take_order_rate_limit(user.id)
    order = Order(channel=OrderChannel.ONLINE, fulfilment=fulfilment, placed_by_id=user.id,
                  diner_id=diner.id, diner_name=diner.display_name,
                  diner_age=age_on(diner.birth_year, menu.date),
                  household=household, address=household.label if household else "",
                  note=(note or "").strip())
    return _create_order(menu, lines, order, actor_id=user.id)


def take_order_rate_limit(user_id: int) -> None:
    """Count one online order of the resident; 429 (nothing taken) past the window's limit."""
    config = current_app.config  # ORDER_RATE_LIMIT / _WINDOW_SECONDS: defaults in app/config.py
    ratelimit.take(f"orders:{user_id}", config["ORDER_RATE_LIMIT"],
                   config["ORDER_RATE_WINDOW_SECONDS"], "下单太频繁，请稍后再试")


def place_counter_order(*, actor_id: int, org_ids: set[int], menu_id: int,
                        items: list[dict], fulfilment: str = "dine_in",
                        diner_id: int | None = None, diner_age: int | None = None,
                        note: str = "") -> Order:
    """A walk-in order recorded by canteen staff (open until the meal's service ends); the
    subsidy follows the diner's registered age, or the age staff checked on their card."""
    menu = load_menu(menu_id)
    if menu.org_id not in org_ids:
        raise NotFound("找不到该菜单", code="menu_not_found")
    if canteen.now() >= menu.delivery_end:
        raise Conflict("本餐已结束供应", code="order_closed")
    lines = clean_lines(items)
    diner = _counter_diner(menu, diner_id)
    age = diner_age if diner_age is not None else (
        age_on(diner.birth_year, menu.date) if diner else None)
    order = Order(channel=OrderChannel.COUNTER, fulfilment=Fulfilment(fulfilment),
                  placed_by_id=actor_id, diner_id=diner.id if diner else None,
                  diner_name=diner.display_name if diner else "堂食顾客", diner_age=age,
                  household=None, note=(note or "").strip())
    return _create_order(menu, lines, order, actor_id=actor_id)


def _resident_community(user: User) -> int | None:
    """The community a resident orders in: their own, else their approved household's."""
    if user.community_id is not None:
        return user.community_id
    return db.session.scalar(select(HouseholdMember.community_id).where(
        HouseholdMember.user_id == user.id, HouseholdMember.status == ClaimStatus.APPROVED)
        .limit(1))


def _menu_for_resident(menu_id: int, user: User) -> Menu:
    """A menu of the resident's community; 404 for any other."""
    menu = db.session.scalars(select(Menu).where(Menu.id == menu_id).options(
        joinedload(Menu.items).joinedload(MenuItem.dish, innerjoin=True))).unique().first()
    if menu is None or menu.community_id != _resident_community(user):
        raise NotFound("找不到该菜单", code="menu_not_found")
    return menu


def _diner(user: User, for_member_id: int | None) -> User:
    """The caller, or an approved member of one of the caller's approved households."""
    if for_member_id is None or for_member_id == user.id:
        return user
    member = db.session.scalar(
        select(User).join(HouseholdMember, HouseholdMember.user_id == User.id).where(
            User.id == for_member_id, HouseholdMember.status == ClaimStatus.APPROVED,
            HouseholdMember.household_id.in_(approved_households(user.id))).limit(1))
    if member is None:
        raise bad("for_member_id", "not_household_member", "只能为同一户已认证的家人订餐")
    return member


def _counter_diner(menu: Menu, diner_id: int | None) -> User | None:
    """A registered resident of the menu's community eating at the counter, if named."""
    if diner_id is None:
        return None
    diner = db.session.get(User, diner_id)
    if diner is None or diner.community_id != menu.community_id:
        raise bad("diner_id", "diner_not_found", "找不到该居民")
    return diner


def _delivery_household(menu: Menu, diner: User, user: User,
                        address: dict | None) -> Household:
    """Where to deliver: the household named, else the diner's (or the caller's) home;
    422 unless it is a household of the menu's community."""
    household_id = (address or {}).get("household_id")
    if household_id is None:
        homes = approved_households(diner.id) or approved_households(user.id)
        if not homes:
            raise bad("address", "address_required", "请选择送餐地址")
        household_id = homes[0]
    household = db.session.scalar(select(Household).where(Household.id == household_id)
                                  .options(selectinload(Household.building)))
    if household is None or household.community_id != menu.community_id:
        raise bad("address", "address_outside_community", "只能送到本社区的住户")
    return household


def _create_order(menu: Menu, lines: dict[int, int], order: Order, *, actor_id: int) -> Order:
    """Price the order, take its portions, save it with its `place` event, commit; answered
    as written (what load_order would read back: its items, its one event, menu, subsidy)."""
    menu_items = _menu_items_for(menu, lines)
    rule = rule_for_age(active_rules(menu.community_id), order.diner_age)
    order.community_id, order.org_id, order.menu_id = menu.community_id, menu.org_id, menu.id
    order.menu_date, order.meal, order.status = menu.date, menu.meal, OS.PLACED
    order.subsidy_rule_id = rule.id if rule else None
    order.created_at = order.updated_at = canteen.now()
    order.items = [
        OrderItem(menu_item_id=menu_items[dish_id].id, dish_id=dish_id,
                  dish_name=menu_items[dish_id].dish.name, qty=qty,
                  standard_price_fen=menu_items[dish_id].dish.price_fen,
                  unit_price_fen=subsidised_price(menu_items[dish_id].dish.price_fen, rule))
        for dish_id, qty in lines.items()]
    order.standard_total_fen = sum(i.standard_price_fen * i.qty for i in order.items)
    order.total_fen = sum(i.unit_price_fen * i.qty for i in order.items)
    txid = take_portions(menu_items, lines)
    event = new_event(order, "place", actor_id=actor_id, to_status=str(OS.PLACED),
                      data={"channel": str(order.channel), "fulfilment": str(order.fulfilment)},
                      txid=txid)
    _insert_order(order, event)
    outbox.commit(keep=[menu, *([rule] if rule else [])])
    for name, value in (("events", [event]), ("menu", menu), ("subsidy_rule", rule)):
        set_committed_value(order, name, value)
    order.courier_location = None  # nobody is delivering it yet
    return order


def _menu_items_for(menu: Menu, lines: dict[int, int]) -> dict[int, MenuItem]:
    """The menu's items for the ordered dishes; 422 `dish_not_on_menu` for any other dish."""
    by_dish = {item.dish_id: item for item in menu.items}
    missing = [dish_id for dish_id in lines if dish_id not in by_dish]
    if missing:
        raise bad("items", "dish_not_on_menu", "所选菜品不在这份菜单上", dish_ids=missing)
    return {dish_id: by_dish[dish_id] for dish_id in lines}


def take_portions(menu_items: dict[int, MenuItem], lines: dict[int, int]) -> int:
    """Take every line's portions with a conditional UPDATE, all or none (see module doc);
    the loaded menu items get the counts the UPDATEs left (RETURNING), so they stay true after
    a commit that does not expire them. Returns the writing transaction's id (the feed's
    txid, from the same RETURNING; 0 off PostgreSQL)."""
    stamp, txid = canteen.now(), 0
    for dish_id in sorted(lines, key=lambda d: menu_items[d].id):
        item, qty = menu_items[dish_id], lines[dish_id]
        taken = db.session.execute(
            update(MenuItem)
            .where(MenuItem.id == item.id, MenuItem.portions_left >= qty)
            .values(portions_left=MenuItem.portions_left - qty,
                    sold_out_at=case((MenuItem.portions_left == qty, stamp),
                                     else_=MenuItem.sold_out_at))
            .returning(MenuItem.portions_left, MenuItem.sold_out_at,
                       current_txid().label("txid"))
            .execution_options(synchronize_session=False)).one_or_none()
        if taken is None:
            _sold_out(item, dish_id, qty)
        set_committed_value(item, "portions_left", taken.portions_left)
        set_committed_value(item, "sold_out_at", taken.sold_out_at)
        txid = taken.txid
    return txid


def _sold_out(item: MenuItem, dish_id: int, qty: int) -> None:
    """Undo every portion taken so far and raise 409 `sold_out` naming the dish."""
    name, item_id = item.dish.name, item.id
    db.session.rollback()
    left = db.session.scalar(select(MenuItem.portions_left).where(MenuItem.id == item_id))
    message = f"“{name}”已售罄" if not left else f"“{name}”只剩 {left} 份"
    raise Conflict(message, code="sold_out",
                   details={"dish_id": dish_id, "dish": name, "portions_left": left,
                            "requested": qty})


def _insert_order(order: Order, event: OrderEvent) -> None:
    """Insert the order, its items and its first event (one statement on PostgreSQL:
    app.inserts.insert_chain, no unit of work); a pick-up order gets a 4-digit code unique
    within its menu."""
    if order.fulfilment != Fulfilment.PICKUP:
        insert_chain(order, *order.items, event)
        return
    for _attempt in range(PICKUP_CODE_ATTEMPTS):
        order.pickup_code = str(1000 + secrets.randbelow(9000))
        try:
            with db.session.begin_nested():
                insert_chain(order, *order.items, event)
            return
        except IntegrityError as exc:
            if "pickup_code" not in str(exc.orig):
                raise
    db.session.rollback()
    raise Conflict("取餐码生成失败，请重试", code="pickup_code_busy")


def record_event(order: Order, action: str, *, actor_id: int | None,
                 from_status: str | None = None, to_status: str | None = None,
                 note: str = "", data: dict | None = None) -> OrderEvent:
    """Append a row to the order's timeline and the kitchen's feed (caller's transaction)."""
    event = new_event(order, action, actor_id=actor_id, from_status=from_status,
                      to_status=to_status, note=note, data=data, txid=current_txid())
    db.session.add(event)
    db.session.flush()
    return event


def new_event(order: Order, action: str, *, actor_id: int | None, txid,
              from_status: str | None = None, to_status: str | None = None,
              note: str = "", data: dict | None = None) -> OrderEvent:
    """A new row of the order's timeline and the kitchen's feed, not written yet; `txid` is the
    writing transaction's id (a value, or the SQL that gives it). A new order's id is taken
    from the order when both are written (NewId)."""
    return OrderEvent(org_id=order.org_id, order_id=order.id or NewId(order),
                      actor_id=actor_id, action=action, from_status=from_status,
                      to_status=to_status, note=note or "", data=data or {},
                      created_at=canteen.now(), txid=txid)


# --- the state machine ----------------------------------------------------------------------


def allowed_actions(order: Order) -> list[str]:
    """The actions ORDER_ALLOWED permits now that fit the order's fulfilment."""
    return [a for a in ORDER_ALLOWED[order.status]
            if order.fulfilment in ACTION_FULFILMENTS.get(a, set(Fulfilment))]


def check_allowed(order: Order, action: str) -> None:
    """409 `invalid_transition` unless the action is allowed now."""
    if action not in allowed_actions(order):
        raise InvalidTransition(details={"status": str(order.status), "action": action,
                                         "allowed": allowed_actions(order)})


def apply_action(order: Order, action: str, *, actor_id: int | None, note: str = "",
                 courier_id: int | None = None) -> OrderEvent:
    """Move the order by `action` (compare-and-set on its status, so two clerks or two
    cancellations cannot both win), with its timeline row; a cancellation returns the
    portions, and the resident hears about ready / out for delivery / delivered."""
    check_allowed(order, action)
    before, target, stamp = order.status, ORDER_ALLOWED[order.status][action], canteen.now()
    values = {"status": target, "updated_at": stamp}
    if target in STATUS_TIMESTAMPS:
        values[STATUS_TIMESTAMPS[target]] = stamp
    if courier_id is not None:
        values["courier_id"] = courier_id
    result = db.session.execute(
        update(Order).where(Order.id == order.id, Order.status == before).values(**values)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.rollback()
        raise InvalidTransition("订单状态已变化，请刷新后再试",
                                details={"action": action, "status": str(before)})
    for name, value in values.items():
        set_committed_value(order, name, value)
    if target == OS.CANCELLED:
        return_portions(order.id)
    event = record_event(order, action, actor_id=actor_id, from_status=str(before),
                         to_status=str(target), note=note)
    if target in NOTIFY_STATUSES:
        outbox.add_job("notify_canteen_order", order_id=order.id, event_id=event.id)
    return event


def return_portions(order_id: int) -> None:
    """Put a cancelled order's portions back on the menu (the dish is no longer sold out)."""
    lines = db.session.execute(select(OrderItem.menu_item_id, OrderItem.qty).where(
        OrderItem.order_id == order_id).order_by(OrderItem.menu_item_id)).all()
    for menu_item_id, qty in lines:
        db.session.execute(
            update(MenuItem).where(MenuItem.id == menu_item_id)
            .values(portions_left=MenuItem.portions_left + qty, sold_out_at=None)
            .execution_options(synchronize_session=False))


def cancel_by_resident(*, order_id: int, user_id: int, note: str = "") -> Order:
    """Cancel before the kitchen accepts and before the cut-off; portions return at once."""
    order = order_for_resident(order_id=order_id, user_id=user_id)
    if order.status not in RESIDENT_CANCELLABLE:
        raise InvalidTransition("食堂已接单，不能取消了，如有需要请联系食堂",
                                details={"status": str(order.status), "action": "cancel"})
    if canteen.now() >= order.menu.cutoff_at:
        raise Conflict("已过订餐截止时间，不能取消", code="order_closed")
    apply_action(order, "cancel", actor_id=user_id, note=(note or "").strip())
    outbox.commit()
    return load_order(order.id)


def transition(*, order_id: int, actor_id: int, kitchen_org_ids: set[int],
               courier_org_ids: set[int], action: str, courier_id: int | None = None,
               note: str = "") -> Order:
    """A kitchen or courier move. Couriers may only take a ready delivery (dispatch) and
    finish the ones they carry (404 for any other order)."""
    order = db.session.get(Order, order_id)
    if order is None or order.org_id not in kitchen_org_ids | courier_org_ids:
        raise NotFound("找不到该订单", code="order_not_found")
    note = (note or "").strip()
    if action in NOTE_REQUIRED and not note:
        raise bad("note", "note_required", "请填写原因")
    if order.org_id in kitchen_org_ids:
        check_allowed(order, action)
        courier_id = _kitchen_courier(order, action, courier_id, actor_id)
    else:
        courier_id = _courier_may(order, action, actor_id)
    apply_action(order, action, actor_id=actor_id, note=note, courier_id=courier_id)
    outbox.commit()
    return load_order(order.id)


def _is_courier(org_id: int, user_id: int | None) -> bool:
    """Whether the user delivers for the canteen."""
    return user_id is not None and db.session.scalar(select(Membership.id).where(
        Membership.org_id == org_id, Membership.user_id == user_id,
        Membership.role == Role.COURIER)) is not None


def _kitchen_courier(order: Order, action: str, courier_id: int | None,
                     actor_id: int) -> int | None:
    """The courier a kitchen dispatch hands the order to (a courier of the canteen)."""
    if action != "dispatch":
        return None
    courier_id = courier_id or (actor_id if _is_courier(order.org_id, actor_id) else None)
    if courier_id is None:
        raise bad("courier_id", "courier_required", "请指定送餐员")
    if not _is_courier(order.org_id, courier_id):
        raise bad("courier_id", "courier_not_found", "该送餐员不属于本食堂")
    return courier_id


def _courier_may(order: Order, action: str, actor_id: int) -> int | None:
    """A courier takes an order (dispatch) or finishes one they carry."""
    if action not in COURIER_ACTIONS:
        raise Forbidden("送餐员只能取餐配送和确认送达", code="forbidden_action")
    if action == "dispatch":
        return actor_id
    if order.courier_id != actor_id:
        raise NotFound("找不到该订单", code="order_not_found")
    return None


# --- reading orders -------------------------------------------------------------------------


def _order_options():
    """Load what an order's detail shows with it."""
    return (selectinload(Order.items), selectinload(Order.events), selectinload(Order.menu),
            selectinload(Order.household).selectinload(Household.building),
            selectinload(Order.subsidy_rule))


def load_order(order_id: int) -> Order:
    """An order with its items, timeline, menu and delivery address."""
    order = db.session.scalar(select(Order).where(Order.id == order_id)
                              .options(*_order_options()).execution_options(
                                  populate_existing=True))
    if order is None:
        raise NotFound("找不到该订单", code="order_not_found")
    order.courier_location = courier_location(order)
    return order


def order_for_resident(*, order_id: int, user_id: int) -> Order:
    """An order the caller placed or eats; 404 otherwise."""
    order = load_order(order_id)
    if user_id not in (order.placed_by_id, order.diner_id):
        raise NotFound("找不到该订单", code="order_not_found")
    return order


def order_for_staff(*, order_id: int, org_ids: set[int]) -> Order:
    """An order of the caller's canteen; 404 otherwise."""
    order = load_order(order_id)
    if order.org_id not in org_ids:
        raise NotFound("找不到该订单", code="order_not_found")
    return order


def my_orders(*, user_id: int, cursor: str | None, limit: int) -> tuple[list[Order], str | None]:
    """Orders the caller placed or eats, newest first."""
    stmt = select(Order).where(or_(Order.placed_by_id == user_id, Order.diner_id == user_id))
    stmt = stmt.options(selectinload(Order.items))
    return keyset_page(stmt, columns=[Order.created_at, Order.id], cursor=cursor, limit=limit)


def list_orders(*, org_ids: set[int], day: date | None = None, meal: str | None = None,
                status: str | None = None, courier_id: int | None = None,
                cursor: str | None = None, limit: int = 20) -> tuple[list[Order], str | None]:
    """The canteen's orders, newest first, by day, meal, status or courier."""
    stmt = select(Order).where(Order.org_id.in_(org_ids)).options(
        selectinload(Order.items),
        selectinload(Order.household).selectinload(Household.building))
    filters = {Order.menu_date: day, Order.meal: meal, Order.status: status,
               Order.courier_id: courier_id}
    for column, value in filters.items():
        if value is not None:
            stmt = stmt.where(column == value)
    return keyset_page(stmt, columns=[Order.created_at, Order.id], cursor=cursor, limit=limit)


def courier_location(order: Order) -> dict | None:
    """While out for delivery: the courier's last position, its time, distance and ETA."""
    if order.status != OS.OUT_FOR_DELIVERY or order.courier_at is None:
        return None
    location = {"lat": order.courier_lat, "lng": order.courier_lng,
                "accuracy": order.courier_accuracy, "recorded_at": order.courier_at,
                "distance_m": None, "eta": None}
    building = order.household.building if order.household_id else None
    if building is not None and building.lat is not None and building.lng is not None:
        metres = distance_m(order.courier_lat, order.courier_lng, building.lat, building.lng)
        speed = current_app.config.get("CANTEEN_COURIER_SPEED_MPS", DEFAULT_COURIER_SPEED_MPS)
        location["distance_m"] = round(metres)
        location["eta"] = order.courier_at + timedelta(seconds=metres / speed + HANDOVER_SECONDS)
    return location


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres."""
    rlat1, rlat2 = math.radians(lat1), math.radians(lat2)
    dlat, dlng = rlat2 - rlat1, math.radians(lng2 - lng1)
    a = math.sin(dlat / 2) ** 2 + math.cos(rlat1) * math.cos(rlat2) * math.sin(dlng / 2) ** 2
    return 6_371_000 * 2 * math.asin(math.sqrt(a))


# --- courier positions ----------------------------------------------------------------------


def record_location(*, order_id: int, courier_id: int, org_ids: set[int], lat: float,
                    lng: float, accuracy: float | None = None) -> CourierPosition:
    """Keep a courier's position on an order they carry; at most one every 5 seconds per
    order (429), enforced by a conditional UPDATE of the order's last position."""
    stamp = canteen.now()
    result = db.session.execute(
        update(Order).where(
            Order.id == order_id, Order.org_id.in_(org_ids), Order.courier_id == courier_id,
            Order.status == OS.OUT_FOR_DELIVERY,
            or_(Order.courier_at.is_(None), Order.courier_at <= stamp - LOCATION_INTERVAL))
        .values(courier_lat=lat, courier_lng=lng, courier_accuracy=accuracy, courier_at=stamp)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.rollback()
        _refuse_location(order_id, courier_id, org_ids, stamp)
    position = CourierPosition(order_id=order_id, courier_id=courier_id, lat=lat, lng=lng,
                               accuracy=accuracy, recorded_at=stamp)
    db.session.add(position)
    db.session.commit()
    return position


def _refuse_location(order_id: int, courier_id: int, org_ids: set[int],
                     stamp: datetime) -> None:
    """404 for an order the courier does not carry, else 429 until 5 s have passed."""
    order = db.session.get(Order, order_id)
    carried = (order is not None and order.org_id in org_ids and order.courier_id == courier_id
               and order.status == OS.OUT_FOR_DELIVERY)
    if not carried:
        raise NotFound("找不到该配送订单", code="order_not_found")
    wait = (order.courier_at + LOCATION_INTERVAL - stamp).total_seconds()
    raise RateLimited("位置上报太频繁", retry_after=math.ceil(max(wait, 1)))


def purge_positions(*, before: datetime) -> int:
    """Forget courier positions recorded before `before` (and orders' last positions)."""
    deleted = db.session.execute(delete(CourierPosition).where(
        CourierPosition.recorded_at < before)).rowcount
    db.session.execute(
        update(Order).where(Order.courier_at < before)
        .values(courier_lat=None, courier_lng=None, courier_accuracy=None, courier_at=None)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return deleted
