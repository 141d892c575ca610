"""智+健康 and the kitchen's numbers: a diner's last 30 days (tag shares, calories, favourites,
gentle hints from HINT_RULES) and, for staff, popularity, sell-outs, online vs counter share
and tomorrow's demand per dish.

The hints are data: each rule is a list of (metric, operator, value) conditions over the
metrics of `diet_metrics`, all of which must hold; no rule has code of its own.

The demand forecast for a day D, per meal and dish, uses the same weekday of the previous
FORECAST_WEEKS weeks on which the dish was on that meal's menu (portions sold, 0 if none):
forecast = average + trend × (weeks from the average's centre to D), where the trend is the
least-squares slope of those values per week (0 with a single week). 10, 12, 14, 16 portions
four, three, two and one week ago give 13 + 2 × 2.5 = 18.
"""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select

from app.errors import NotFound
from app.extensions import db
from app.models import ClaimStatus, HouseholdMember, User
from app.models.canteen import Dish, Menu, MenuItem, Order, OrderChannel, OrderItem, OrderStatus
from app.services.canteen import (
    NUTRITION_TAGS,
    age_on,
    approved_households,
    local_today,
    staff_community_id,
)

DIET_WINDOW_DAYS = 30
FAVOURITES = 3
FORECAST_WEEKS = 4
SELL_OUT_LIMIT = 50
MEAL_ORDER = ("breakfast", "lunch", "dinner")
OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class HintRule:
    """A gentle hint shown when every condition (metric, operator, value) holds."""

    code: str
    when: tuple[tuple[str, str, float], ...]
    message: str


HINT_RULES: tuple[HintRule, ...] = (
    HintRule("mostly_not_low_salt", (("meals", ">=", 4), ("share.low_salt", "<", 0.5)),
             "这个月大部分餐食不是低盐的，可以多选标有“低盐”的菜品，对血压更友好。"),
    HintRule("low_salt_well_done", (("meals", ">=", 4), ("share.low_salt", ">=", 0.7)),
             "这个月低盐菜品选得很好，请继续保持。"),
    HintRule("calories_high", (("meals", ">=", 4), ("avg_calories", ">", 750)),
             "每餐平均热量偏高，可以搭配一份清炒时蔬，少选油炸和红烧的菜。"),
    HintRule("calories_low", (("meals", ">=", 4), ("avg_calories", "<", 400)),
             "每餐平均热量偏低，注意吃饱吃好，可以加一份鸡蛋或豆制品。"),
    HintRule("more_protein", (("meals", ">=", 4), ("age", ">=", 75),
                              ("share.high_protein", "<", 0.2)),
             "上了年纪更要防止肌肉流失，可以多选鱼、虾、蛋、豆腐等高蛋白菜品。"),
    HintRule("more_vegetables", (("meals", ">=", 4), ("share.vegetarian", "<", 0.2)),
             "蔬菜吃得偏少，每餐可以加一道素菜。"),
)


def live(stmt):
    """Only orders that count (not cancelled)."""
    return stmt.where(Order.status != OrderStatus.CANCELLED)


# --- a diner's insights ---------------------------------------------------------------------


def diet_insights(*, user_id: int, member_id: int | None = None,
                  today: date | None = None) -> dict:
    """The last 30 days of the caller (or an approved member of their household)."""
    diner = _visible_diner(user_id, member_id)
    community_id = diner.community_id or db.session.scalar(
        select(HouseholdMember.community_id).where(HouseholdMember.user_id == diner.id)
        .limit(1))
    end = today or (local_today(community_id) if community_id else date.today())
    start = end - timedelta(days=DIET_WINDOW_DAYS - 1)
    metrics, portions_by_dish, dishes = diet_metrics(diner, start, end)
    return {
        "diner": {"user_id": diner.id, "display_name": diner.display_name,
                  "age": metrics["age"]},
        "start": start, "end": end, "meals": metrics["meals"], "portions": metrics["portions"],
        "avg_calories": metrics["avg_calories"],
        "tag_shares": [{"tag": tag, "label": label, "share": metrics[f"share.{tag}"]}
                       for tag, label in NUTRITION_TAGS.items()],
        "favourites": _favourites(portions_by_dish, dishes),
        "hints": [{"code": rule.code, "message": rule.message}
                  for rule in HINT_RULES if rule_applies(rule, metrics)],
    }


def _visible_diner(user_id: int, member_id: int | None) -> User:
    """The caller, or an approved member of one of their approved households (404 else)."""
    if member_id is None or member_id == user_id:
        return db.session.get(User, user_id)
    member = db.session.scalar(
        select(User).join(HouseholdMember, HouseholdMember.user_id == User.id).where(
            User.id == member_id, HouseholdMember.status == ClaimStatus.APPROVED,
            HouseholdMember.household_id.in_(approved_households(user_id))).limit(1))
    if member is None:
        raise NotFound("找不到该家庭成员", code="member_not_found")
    return member


def diet_metrics(diner: User, start: date, end: date) -> tuple[dict, dict[int, int], dict]:
    """(metrics for the hint rules, portions per dish, dishes by id) of a diner's period."""
    in_period = (Order.diner_id == diner.id, Order.menu_date.between(start, end))
    meals = db.session.scalar(live(select(func.count(Order.id)).where(*in_period)))
    portions_by_dish = dict(db.session.execute(live(
        select(OrderItem.dish_id, func.sum(OrderItem.qty))
        .join(Order, Order.id == OrderItem.order_id).where(*in_period)
        .group_by(OrderItem.dish_id))).all())
    dishes = {d.id: d for d in db.session.scalars(
        select(Dish).where(Dish.id.in_(list(portions_by_dish))))}
    portions = sum(portions_by_dish.values())
    calories = sum((dishes[d].calories or 0) * int(q) for d, q in portions_by_dish.items())
    metrics = {"meals": meals, "portions": portions, "age": age_on(diner.birth_year, end),
               "avg_calories": round(calories / meals) if meals else None}
    for tag in NUTRITION_TAGS:
        tagged = sum(int(q) for d, q in portions_by_dish.items() if tag in dishes[d].tags)
        metrics[f"share.{tag}"] = round(tagged / portions, 3) if portions else None
    return metrics, portions_by_dish, dishes


def rule_applies(rule: HintRule, metrics: dict) -> bool:
    """Whether every condition of the rule holds (a metric without a value never holds)."""
    return all(metrics.get(metric) is not None and OPERATORS[op](metrics[metric], value)
               for metric, op, value in rule.when)


def _favourites(portions_by_dish: dict[int, int], dishes: dict) -> list[dict]:
    """The most ordered dishes, most portions first."""
    ranked = sorted(portions_by_dish.items(), key=lambda kv: (-kv[1], dishes[kv[0]].name))
    return [{"dish_id": d, "name": dishes[d].name, "portions": int(q)}
            for d, q in ranked[:FAVOURITES]]


# --- the kitchen's insights -----------------------------------------------------------------


def staff_insights(*, org_ids: set[int], days: int = 28, today: date | None = None) -> dict:
    """Popularity, sell-outs and channel shares over `days`, and tomorrow's forecast."""
    today = today or local_today(staff_community_id(org_ids))
    start = today - timedelta(days=days - 1)
    return {"start": start, "end": today,
            "popularity": popularity(org_ids, start, today),
            "sell_outs": sell_outs(org_ids, start, today),
            "channels": channel_shares(org_ids, start, today),
            "forecast_date": today + timedelta(days=1),
            "forecast": forecast_demand(org_ids, today + timedelta(days=1))}


def _orders_between(org_ids: set[int], start: date, end: date) -> tuple:
    """WHERE clauses: the canteens' orders for meals between two days."""
    return Order.org_id.in_(org_ids), Order.menu_date.between(start, end)


def popularity(org_ids: set[int], start: date, end: date) -> list[dict]:
    """Dishes by portions sold, with how many orders had them and their share."""
    rows = db.session.execute(live(
        select(OrderItem.dish_id, func.max(OrderItem.dish_name), func.sum(OrderItem.qty),
               func.count(OrderItem.order_id))
        .join(Order, Order.id == OrderItem.order_id).where(*_orders_between(org_ids, start, end))
        .group_by(OrderItem.dish_id))).all()
    total = sum(int(r[2]) for r in rows) or 1
    ranked = sorted(rows, key=lambda r: (-int(r[2]), r[1]))
    return [{"rank": i + 1, "dish_id": dish_id, "name": name, "portions": int(portions),
             "orders": int(orders), "share": round(int(portions) / total, 3)}
            for i, (dish_id, name, portions, orders) in enumerate(ranked)]


def sell_outs(org_ids: set[int], start: date, end: date) -> list[dict]:
    """Dishes that sold out, newest first, with how long before the cut-off they did."""
    rows = db.session.execute(
        select(Menu.date, Menu.meal, Menu.cutoff_at, MenuItem.dish_id, Dish.name,
               MenuItem.sold_out_at, MenuItem.portions_total)
        .join(MenuItem, MenuItem.menu_id == Menu.id).join(Dish, Dish.id == MenuItem.dish_id)
        .where(Menu.org_id.in_(org_ids), Menu.date.between(start, end),
               MenuItem.sold_out_at.is_not(None))
        .order_by(MenuItem.sold_out_at.desc()).limit(SELL_OUT_LIMIT)).all()
    return [{"date": day, "meal": str(meal), "dish_id": dish_id, "name": name,
             "sold_out_at": sold_out_at, "portions_total": total,
             "minutes_before_cutoff": round((cutoff_at - sold_out_at).total_seconds() / 60)}
            for day, meal, cutoff_at, dish_id, name, sold_out_at, total in rows]


def channel_shares(org_ids: set[int], start: date, end: date) -> list[dict]:
    """Per day: online and counter orders and the online share (days without orders too)."""
    rows = db.session.execute(live(
        select(Order.menu_date, Order.channel, func.count(Order.id))
        .where(*_orders_between(org_ids, start, end))
        .group_by(Order.menu_date, Order.channel))).all()
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    for day, channel, n in rows:
        counts[day][str(channel)] = int(n)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return [_channel_day(day, counts.get(day, {})) for day in days]


def _channel_day(day: date, counts: dict[str, int]) -> dict:
    """One day of the online vs counter split."""
    online, counter = counts.get(OrderChannel.ONLINE, 0), counts.get(OrderChannel.COUNTER, 0)
    total = online + counter
    return {"date": day, "online": online, "counter": counter,
            "online_share": round(online / total, 3) if total else None}


# --- the demand forecast --------------------------------------------------------------------


def same_weekday_forecast(portions_by_weeks_ago: dict[int, int]) -> dict | None:
    """Average plus least-squares trend extrapolated to next week (see module doc)."""
    if not portions_by_weeks_ago:
        return None
    xs = [-weeks for weeks in portions_by_weeks_ago]
    ys = list(portions_by_weeks_ago.values())
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
             if spread else 0.0)
    expected = mean_y + slope * (0 - mean_x)
    return {"average": round(mean_y, 2), "trend_per_week": round(slope, 2),
            "forecast": max(0, math.floor(expected + 0.5))}


def forecast_demand(org_ids: set[int], target: date) -> list[dict]:
    """Per meal and dish: portions expected on `target`, from the same weekday's history,
    next to the portions already planned on that day's menu."""
    history_days = [target - timedelta(weeks=w) for w in range(1, FORECAST_WEEKS + 1)]
    offered = _offered(org_ids, [*history_days, target])
    sold = dict(((day, str(meal), dish_id), int(q)) for day, meal, dish_id, q in
                db.session.execute(live(
                    select(Order.menu_date, Order.meal, OrderItem.dish_id, func.sum(OrderItem.qty))
                    .join(Order, Order.id == OrderItem.order_id)
                    .where(Order.org_id.in_(org_ids), Order.menu_date.in_(history_days))
                    .group_by(Order.menu_date, Order.meal, OrderItem.dish_id))).all())
    keys = sorted({(meal, dish_id) for (_day, meal, dish_id) in offered},
                  key=lambda k: (MEAL_ORDER.index(k[0]), k[1]))
    return [_forecast_row(key, target, history_days, offered, sold) for key in keys]



def _offered(org_ids: set[int], days: list[date]) -> dict[tuple, dict]:
    """{(day, meal, dish_id): {name, portions_total, sold_out}} of the days' menus."""
    rows = db.session.execute(
        select(Menu.date, Menu.meal, MenuItem.dish_id, Dish.name, MenuItem.portions_total,
               MenuItem.sold_out_at)
        .join(MenuItem, MenuItem.menu_id == Menu.id).join(Dish, Dish.id == MenuItem.dish_id)
        .where(Menu.org_id.in_(org_ids), Menu.date.in_(days))).all()
    return {(day, str(meal), dish_id): {"name": name, "portions_total": total,
                                        "sold_out": sold_out_at is not None}
            for day, meal, dish_id, name, total, sold_out_at in rows}


def _forecast_row(key: tuple[str, int], target: date, history_days: list[date],
                  offered: dict, sold: dict) -> dict:
    """One meal-and-dish line of the forecast."""
    meal, dish_id = key
    weeks = {w: sold.get((day, meal, dish_id), 0)
             for w, day in enumerate(history_days, start=1) if (day, meal, dish_id) in offered}
    planned = offered.get((target, meal, dish_id))
    name = (planned or next(offered[(d, meal, dish_id)] for d in history_days
                            if (d, meal, dish_id) in offered))["name"]
    result = same_weekday_forecast(weeks)
    return {"meal": meal, "dish_id": dish_id, "name": name,
            "history": [{"weeks_ago": w, "portions": q} for w, q in sorted(weeks.items())],
            "sold_out_weeks": sum(offered[(d, meal, dish_id)]["sold_out"]
                                  for d in history_days if (d, meal, dish_id) in offered),
            "forecast": result["forecast"] if result else None,
            "average": result["average"] if result else None,
            "trend_per_week": result["trend_per_week"] if result else None,
            "planned_portions": planned["portions_total"] if planned else None}
