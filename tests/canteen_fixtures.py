"""Shared set-up of the canteen tests: a community with its canteen, staff, couriers, residents
(an 85-year-old, a 92-year-old and their son in one household), dishes, subsidy bands and a
lunch menu, plus a frozen clock in Asia/Shanghai.

The clock replaces `app.services.canteen.now`, which every canteen module reads through the
module, so cut-offs and "today" are deterministic. Test modules import it as `clock_fixture`
and ask for the fixture `clock`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Notification
from app.models.canteen import Dish, Meal, MenuItem, Order, OrderEvent, SubsidyRule
from app.services import canteen, canteen_orders
from app.services.canteen import MenuTimes
from tests import factories as f

SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = date(2025, 6, 11)  # a Wednesday
MORNING = datetime(2025, 6, 11, 8, 0, tzinfo=SHANGHAI)  # before lunch's 09:30 cut-off


class Clock:
    """A settable stand-in for canteen.now (aware UTC)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at.astimezone(UTC)

    def set(self, *, hour: int, minute: int = 0, day: date = TODAY) -> None:
        """Move to a local wall-clock time (Asia/Shanghai)."""
        self.at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)

    def advance(self, **delta) -> None:
        self.at = self.at + timedelta(**delta)


@pytest.fixture(name="clock")
def clock_fixture(monkeypatch) -> Clock:
    """Freeze the canteen's clock at 08:00 on TODAY in Shanghai."""
    frozen = Clock(MORNING)
    monkeypatch.setattr(canteen, "now", frozen)
    return frozen


# name, price (fen), tags, calories
DISHES = (
    ("红烧肉", 1500, [], 520),
    ("清蒸鲈鱼", 1800, ["low_salt", "high_protein", "soft"], 260),
    ("清炒时蔬", 500, ["vegetarian", "low_salt"], 90),
    ("米饭", 100, ["vegetarian"], 230),
)


def build_place(*, portions: dict[str, int] | None = None) -> SimpleNamespace:
    """Everything the canteen tests need (the clock must already be frozen)."""
    other_comm = f.community(code="elsewhere")
    other_canteen = f.org(other_comm, "canteen", code="other-canteen", name="别处食堂")
    comm = f.community(code="zpq", name="总浦桥社区")
    bld = f.building(comm, number="3")
    bld2 = f.building(comm, number="12")
    kitchen = f.org(comm, "canteen", code="zpq-canteen", name="云享车轮食堂")
    property_co = f.org(comm, "property_company", code="prop", name="物业")
    home, other_home = f.household_of(bld, "1", "101"), f.household_of(bld2, "2", "201")
    place = SimpleNamespace(
        comm=comm, bld=bld, bld2=bld2, kitchen=kitchen, home=home, other_home=other_home,
        other_comm=other_comm, other_canteen=other_canteen,
        cook=f.staff(kitchen, "staff"), manager=f.staff(kitchen, "manager"),
        courier=f.staff(kitchen, "courier"), courier2=f.staff(kitchen, "courier"),
        clerk=f.staff(property_co, "staff"), other_cook=f.staff(other_canteen, "staff"),
        elder=f.resident(comm, household=home, display_name="王秀英", birth_year=1940,
                         phone="13800000001"),
        elder90=f.resident(comm, household=home, relation="spouse", display_name="李建国",
                           birth_year=1933),
        son=f.resident(comm, household=home, relation="child", display_name="李伟",
                       birth_year=1975),
        pending=f.resident(comm, household=home, relation="relative", status="pending"),
        neighbour=f.resident(comm, household=other_home, display_name="张阿姨",
                             birth_year=1950),
        outsider=f.resident(other_comm),
    )
    db.session.add_all([SubsidyRule(community_id=comm.id, name="80周岁以上老人助餐补贴",
                                    min_age=80, percent_off=20),
                        SubsidyRule(community_id=comm.id, name="90周岁以上老人助餐补贴",
                                    min_age=90, percent_off=30)])
    db.session.commit()
    place.dishes = {name: add_dish(kitchen, name, price, tags, kcal)
                    for name, price, tags, kcal in DISHES}
    place.menu = make_menu(place, TODAY, "lunch", portions)
    return place


def add_dish(org, name: str, price: int, tags: list[str], kcal: int | None) -> Dish:
    """A dish of the canteen."""
    dish = Dish(community_id=org.community_id, org_id=org.id, name=name, price_fen=price,
                tags=tags, allergens=[], calories=kcal)
    db.session.add(dish)
    db.session.commit()
    return dish


def make_menu(place, day: date, meal: str, portions: dict[str, int] | None = None,
              times: MenuTimes | None = None):
    """A menu of the place's canteen (every dish, 30 portions unless told) via the service."""
    portions = portions or {}
    items = [{"dish_id": dish.id, "portions": portions.get(name, 30)}
             for name, dish in place.dishes.items()]
    return canteen.create_menu(org_ids={place.kitchen.id}, actor_id=place.manager.id, day=day,
                               meal=meal, items=items, times=times)


def dish_id(place, name: str) -> int:
    return place.dishes[name].id


def lines(place, **qty_by_name) -> list[dict]:
    """Order lines from dish names: lines(place, 红烧肉=1, 米饭=2)."""
    return [{"dish_id": dish_id(place, name), "qty": qty} for name, qty in qty_by_name.items()]


def order(place, user=None, *, fulfilment: str = "pickup", menu=None, items=None, **kw) -> Order:
    """Place an order through the service (by the elder, one 红烧肉 and one 米饭 by default)."""
    items = lines(place, 红烧肉=1, 米饭=1) if items is None else items
    return canteen_orders.place_order(
        user_id=(user or place.elder).id, menu_id=(menu or place.menu).id, items=items,
        fulfilment=fulfilment, **kw)


def left(place, name: str, menu=None) -> int:
    """Portions left of a dish on the menu, fresh from the database."""
    return db.session.scalar(select(MenuItem.portions_left).where(
        MenuItem.menu_id == (menu or place.menu).id,
        MenuItem.dish_id == dish_id(place, name)))


def count(model, *where) -> int:
    """Rows of a table (matching `where`)."""
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def events_of(order_id: int) -> list[OrderEvent]:
    """An order's events, oldest first."""
    db.session.expire_all()
    return list(db.session.scalars(select(OrderEvent).where(OrderEvent.order_id == order_id)
                                   .order_by(OrderEvent.id)))


def fresh(order_id: int) -> Order:
    """The order row as the database has it now."""
    db.session.expire_all()
    return db.session.get(Order, order_id)


def notifications_for(user) -> list[Notification]:
    """A user's in-app notifications, oldest first."""
    return list(db.session.scalars(select(Notification).where(
        Notification.user_id == user.id).order_by(Notification.id)))


def walk(place, order_id: int, *actions: str, actor=None, **kw) -> Order:
    """Kitchen staff move an order through `actions`."""
    actor = actor or place.cook
    result = None
    for action in actions:
        result = canteen_orders.transition(
            order_id=order_id, actor_id=actor.id, kitchen_org_ids={place.kitchen.id},
            courier_org_ids=set(), action=action, **kw)
    return result


# ---- history, written directly (menus in the past cannot be published through the API) ----


def past_menu(place, day: date, meal: str, portions: dict[str, int]):
    """A menu of a past (or any) day with the named dishes, bypassing the service's checks."""
    from app.models.canteen import Menu

    menu = db.session.scalar(select(Menu).where(Menu.org_id == place.kitchen.id,
                                                Menu.date == day, Menu.meal == meal))
    if menu is None:
        cutoff, start, end = MenuTimes().resolve(day, Meal(meal), SHANGHAI)
        menu = Menu(community_id=place.comm.id, org_id=place.kitchen.id, date=day, meal=meal,
                    cutoff_at=cutoff, delivery_start=start, delivery_end=end)
        db.session.add(menu)
        db.session.flush()
    for name, total in portions.items():
        db.session.add(MenuItem(menu_id=menu.id, dish_id=dish_id(place, name),
                                portions_total=total, portions_left=total))
    db.session.commit()
    return menu


def past_order(place, menu, diner, qty_by_name: dict[str, int], *, channel: str = "online",
               status: str = "picked_up") -> Order:
    """An order row on `menu` for `diner` (None: a walk-in), priced at standard prices."""
    from app.models.canteen import OrderItem

    items = {i.dish_id: i for i in db.session.scalars(
        select(MenuItem).where(MenuItem.menu_id == menu.id))}
    rows = [OrderItem(menu_item_id=items[dish_id(place, name)].id,
                      dish_id=dish_id(place, name), dish_name=name, qty=qty,
                      standard_price_fen=place.dishes[name].price_fen,
                      unit_price_fen=place.dishes[name].price_fen)
            for name, qty in qty_by_name.items()]
    total = sum(r.unit_price_fen * r.qty for r in rows)
    placed = Order(community_id=place.comm.id, org_id=place.kitchen.id, menu_id=menu.id,
                   menu_date=menu.date, meal=menu.meal, channel=channel, fulfilment="dine_in",
                   status=status, placed_by_id=diner.id if diner else place.cook.id,
                   diner_id=diner.id if diner else None,
                   diner_name=diner.display_name if diner else "堂食顾客",
                   standard_total_fen=total, total_fen=total, items=rows,
                   created_at=menu.cutoff_at - timedelta(hours=1),
                   updated_at=menu.cutoff_at - timedelta(hours=1))
    db.session.add(placed)
    db.session.commit()
    return placed
