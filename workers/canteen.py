"""Canteen jobs: tell residents their meal is ready / on its way / delivered; forget couriers'
positions after the day."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from flask import current_app

from app.extensions import db
from app.models.canteen import Order, OrderChannel, OrderEvent
from app.services import canteen, canteen_orders, notifications
from app.services.canteen import MEAL_LABELS, community_zone
from app.services.canteen_prep import STATUS_LABELS
from workers.jobs import job

# (title, body) per state the resident hears about; {meal} and {code} are filled in.
NOTICES = {
    "ready": {
        "pickup": ("{meal}已备好", "请凭取餐码 {code} 到食堂窗口取餐"),
        "dine_in": ("{meal}已备好", "请到食堂窗口取餐"),
        "delivery": ("{meal}已备好", "马上为您配送"),
    },
    "out_for_delivery": ("{meal}正在配送", "送餐员已出发，可在订单里查看送餐员位置"),
    "delivered": ("{meal}已送达", "请趁热用餐，祝您用餐愉快"),
}


def notice(order: Order, status: str) -> tuple[str, str]:
    """The title and body telling a resident about `status`."""
    text = NOTICES[status]
    title, body = text[str(order.fulfilment)] if isinstance(text, dict) else text
    fill = {"meal": MEAL_LABELS[str(order.meal)], "code": order.pickup_code or ""}
    return title.format(**fill), body.format(**fill)


def recipients(order: Order) -> list[int]:
    """The diner and, for an online order, whoever placed it (once each)."""
    people = [order.diner_id]
    if order.channel == OrderChannel.ONLINE:
        people.append(order.placed_by_id)
    return [uid for uid in dict.fromkeys(people) if uid]


@job("notify_canteen_order")
def notify_canteen_order(order_id: int, event_id: int) -> int:
    """Notify the diner (and the family member who ordered) of a step; safe to retry."""
    order, event = db.session.get(Order, order_id), db.session.get(OrderEvent, event_id)
    if order is None or event is None or event.to_status not in NOTICES:
        return 0
    title, body = notice(order, event.to_status)
    when = event.created_at.astimezone(community_zone(order.community_id))
    sent = 0
    for user_id in recipients(order):
        sent += bool(notifications.notify_user(
            user_id=user_id, kind="canteen_order", title=title, body=body,
            dedupe_key=f"canteen-event:{event.id}:u{user_id}",
            data={"order_id": order.id, "event_id": event.id, "status": event.to_status},
            wx_data={"thing1": f"{order.menu_date:%m月%d日}{MEAL_LABELS[str(order.meal)]}",
                     "phrase2": STATUS_LABELS[event.to_status],
                     "time3": when.strftime("%Y-%m-%d %H:%M"), "thing4": body[:20]},
            page=f"pages/canteen/order?id={order.id}"))
    return sent


@job("purge_courier_positions")
def purge_courier_positions() -> int:
    """Forget couriers' positions from before today (in the deployment's time zone)."""
    zone = ZoneInfo(current_app.config.get("DEFAULT_TIMEZONE", "Asia/Shanghai"))
    midnight = datetime.combine(canteen.now().astimezone(zone).date(), time(0), tzinfo=zone)
    return canteen_orders.purge_positions(before=midnight)
