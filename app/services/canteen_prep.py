"""The kitchen's prep sheet: portions to cook per dish and the delivery list by building."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.errors import NotFound
from app.extensions import db
from app.models import Building, Household
from app.models.canteen import Fulfilment, Menu, MenuItem, Order, OrderItem, OrderStatus
from app.services.canteen import MEAL_LABELS

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
STATUS_LABELS = {
    "placed": "待接单", "accepted": "已接单", "preparing": "制作中", "ready": "已备好",
    "picked_up": "已取餐", "out_for_delivery": "配送中", "delivered": "已送达",
    "delivery_failed": "配送失败", "cancelled": "已取消",
}


def prep_sheet(*, org_ids: set[int], day: date, meal: str) -> dict:
    """What to cook for one meal (per dish, by fulfilment) and where to take it."""
    menu = db.session.scalar(
        select(Menu).where(Menu.org_id.in_(org_ids), Menu.date == day, Menu.meal == meal)
        .options(selectinload(Menu.items).selectinload(MenuItem.dish)))
    if menu is None:
        raise NotFound("该餐次没有菜单", code="menu_not_found")
    counts = _portions_by_fulfilment(menu.id)
    dishes = [_dish_row(item, counts.get(item.dish_id, {})) for item in menu.items]
    deliveries = _delivery_groups(menu.id)
    return {"menu_id": menu.id, "date": menu.date, "meal": str(menu.meal),
            "cutoff_at": menu.cutoff_at, "dishes": dishes, "deliveries": deliveries,
            "portions": sum(d["to_cook"] for d in dishes),
            "delivery_orders": sum(len(g["orders"]) for g in deliveries)}


def _portions_by_fulfilment(menu_id: int) -> dict[int, dict[str, int]]:
    """{dish_id: {fulfilment: portions}} of the menu's live orders."""
    rows = db.session.execute(
        select(OrderItem.dish_id, Order.fulfilment, func.sum(OrderItem.qty))
        .join(Order, Order.id == OrderItem.order_id)
        .where(Order.menu_id == menu_id, Order.status != OrderStatus.CANCELLED)
        .group_by(OrderItem.dish_id, Order.fulfilment)).all()
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for dish_id, fulfilment, portions in rows:
        counts[dish_id][str(fulfilment)] = int(portions)
    return counts


def _dish_row(item: MenuItem, counts: dict[str, int]) -> dict:
    """One dish of the sheet."""
    by_way = {str(f): counts.get(str(f), 0) for f in Fulfilment}
    return {"dish_id": item.dish_id, "name": item.dish.name, "to_cook": sum(by_way.values()),
            **by_way, "portions_total": item.portions_total,
            "portions_left": item.portions_left}


def _delivery_groups(menu_id: int) -> list[dict]:
    """Live delivery orders grouped by building (buildings in number order)."""
    orders = db.session.scalars(
        select(Order).where(Order.menu_id == menu_id, Order.fulfilment == Fulfilment.DELIVERY,
                            Order.status != OrderStatus.CANCELLED)
        .options(selectinload(Order.items), selectinload(Order.diner),
                 selectinload(Order.household).selectinload(Household.building))
        .order_by(Order.id))
    groups: dict[int, dict] = {}
    for order in orders:
        building = order.household.building
        group = groups.setdefault(building.id, _group(building))
        group["orders"].append({
            "order_id": order.id, "status": str(order.status), "address": order.address,
            "unit": order.household.unit, "room": order.household.room,
            "diner_name": order.diner_name, "phone": order.diner.phone if order.diner else None,
            "items": [{"dish_id": i.dish_id, "name": i.dish_name, "qty": i.qty}
                      for i in order.items],
            "note": order.note})
    for group in groups.values():
        group["orders"].sort(key=lambda o: (_natural(o["unit"]), _natural(o["room"])))
    return sorted(groups.values(), key=lambda g: _natural(g["number"]))


def _group(building: Building) -> dict:
    """An empty delivery group for a building."""
    return {"building_id": building.id, "number": building.number, "name": building.name,
            "orders": []}


def _natural(value: str) -> tuple:
    """Sort key putting 2 before 10."""
    return (0, int(value), value) if value.isdigit() else (1, 0, value)


def _cell(value) -> str:
    """A CSV cell; text a spreadsheet would run as a formula is quoted with an apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def prep_sheet_csv(sheet: dict) -> str:
    """The sheet as CSV (UTF-8 with a BOM so that Excel shows the Chinese): dishes, then the
    delivery list."""
    out = io.StringIO()
    writer = csv.writer(out)
    rows = [["备餐单", sheet["date"].isoformat(), MEAL_LABELS[sheet["meal"]]], [],
            ["菜品", "应备份数", "堂食", "自取", "配送", "总份数", "剩余份数"]]
    rows += [[d["name"], d["to_cook"], d["dine_in"], d["pickup"], d["delivery"],
              d["portions_total"], d["portions_left"]] for d in sheet["dishes"]]
    rows += [[], ["楼栋", "地址", "订单号", "用餐人", "电话", "菜品", "备注", "状态"]]
    for group in sheet["deliveries"]:
        rows += [[group["name"], o["address"], o["order_id"], o["diner_name"], o["phone"],
                  "、".join(f"{i['name']}×{i['qty']}" for i in o["items"]), o["note"],
                  STATUS_LABELS[o["status"]]] for o in group["orders"]]
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return "\ufeff" + out.getvalue()
