"""Diet insights (智+健康) for a diner and the kitchen's numbers: popularity, sell-outs,
online vs counter share, and the same-weekday demand forecast against a known answer."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from app.errors import NotFound
from app.extensions import db
from app.models.canteen import MenuItem
from app.services import canteen_insights
from app.services.canteen_insights import HintRule, same_weekday_forecast
from tests.canteen_fixtures import (
    SHANGHAI,
    TODAY,
    build_place,
    clock_fixture,  # noqa: F401 - the `clock` fixture
    make_menu,
    past_menu,
    past_order,
)

THURSDAY = TODAY + timedelta(days=1)  # the forecast's day: tomorrow of a Wednesday
ALL = {"红烧肉": 40, "清蒸鲈鱼": 40, "清炒时蔬": 40, "米饭": 200}


@pytest.fixture
def place(app, clock):
    return build_place()


def days_ago(n: int):
    return TODAY - timedelta(days=n)


# ---- a diner's last 30 days ----------------------------------------------------------------


def eat(place, diner, day, dishes, **kw):
    """One lunch on a day of its own."""
    return past_order(place, past_menu(place, day, "lunch", ALL), diner, dishes, **kw)


@pytest.fixture
def month(place):
    """The elder's month: four meals of 红烧肉+米饭, one of 鲈鱼+时蔬, and rows that do not
    count (a cancelled order, one 30 days ago, the son's own meal)."""
    for n in (2, 5, 9, 20):
        eat(place, place.elder, days_ago(n), {"红烧肉": 1, "米饭": 1})
    eat(place, place.elder, days_ago(29), {"清蒸鲈鱼": 1, "清炒时蔬": 1})
    eat(place, place.elder, days_ago(3), {"清蒸鲈鱼": 3}, status="cancelled")
    eat(place, place.elder, days_ago(30), {"清蒸鲈鱼": 3})
    eat(place, place.son, days_ago(4), {"清蒸鲈鱼": 2})
    return place


def test_a_diner_sees_tag_shares_calories_favourites_and_gentle_hints(month):
    seen = canteen_insights.diet_insights(user_id=month.elder.id)
    assert (seen["start"], seen["end"]) == (days_ago(29), TODAY)
    assert (seen["meals"], seen["portions"]) == (5, 10)
    shares = {s["tag"]: s["share"] for s in seen["tag_shares"]}
    assert shares == {"low_salt": 0.2, "low_sugar": 0.0, "soft": 0.1, "vegetarian": 0.5,
                      "halal": 0.0, "high_protein": 0.1}
    assert seen["avg_calories"] == (4 * (520 + 230) + 260 + 90) / 5  # 670 kcal a meal
    assert [(d["name"], d["portions"]) for d in seen["favourites"]] == [
        ("米饭", 4), ("红烧肉", 4), ("清炒时蔬", 1)]
    assert [h["code"] for h in seen["hints"]] == ["mostly_not_low_salt", "more_protein"]
    assert seen["hints"][0]["message"].startswith("这个月大部分餐食不是低盐的")


def test_a_family_member_sees_the_elders_insights_but_a_neighbour_cannot(month):
    for_son = canteen_insights.diet_insights(user_id=month.son.id, member_id=month.elder.id)
    assert (for_son["diner"]["display_name"], for_son["meals"]) == ("王秀英", 5)
    with pytest.raises(NotFound):
        canteen_insights.diet_insights(user_id=month.neighbour.id, member_id=month.elder.id)
    own = canteen_insights.diet_insights(user_id=month.son.id)
    assert (own["meals"], own["favourites"][0]["name"]) == (1, "清蒸鲈鱼")


def test_without_meals_there_are_no_shares_and_no_hints(place):
    seen = canteen_insights.diet_insights(user_id=place.neighbour.id)
    assert (seen["meals"], seen["avg_calories"], seen["hints"]) == (0, None, [])
    assert {s["share"] for s in seen["tag_shares"]} == {None}


def test_hints_are_data_a_new_rule_needs_no_code(month, monkeypatch):
    rule = HintRule("try_halal", (("meals", ">=", 5), ("share.halal", "<=", 0)),
                    "本周五有清真菜，欢迎品尝。")
    monkeypatch.setattr(canteen_insights, "HINT_RULES", (rule,))
    seen = canteen_insights.diet_insights(user_id=month.elder.id)
    assert seen["hints"] == [{"code": "try_halal", "message": "本周五有清真菜，欢迎品尝。"}]


# ---- the kitchen's numbers -----------------------------------------------------------------


def test_same_weekday_forecast_is_the_average_plus_the_trend_to_next_week():
    assert same_weekday_forecast({1: 16, 2: 14, 3: 12, 4: 10}) == {
        "average": 13.0, "trend_per_week": 2.0, "forecast": 18}
    assert same_weekday_forecast({1: 20, 2: 20, 3: 20, 4: 20})["forecast"] == 20
    assert same_weekday_forecast({1: 8, 2: 6})["forecast"] == 10
    assert same_weekday_forecast({3: 9})["forecast"] == 9
    assert same_weekday_forecast({1: 0, 2: 5, 3: 10, 4: 15})["forecast"] == 0  # never below 0
    assert same_weekday_forecast({}) is None


@pytest.fixture
def history(place):
    """Four weeks of a synthetic canteen whose forecast for Thursday is known:

    Thursday lunches, 1..4 weeks ago: 红烧肉 16, 14, 12, 10 (→ 18); 清蒸鲈鱼 20 each (→ 20);
    清炒时蔬 only the last two weeks, 8 and 6 (→ 10). 米饭 was on one Thursday dinner and
    sold nothing (→ 0). Other weekdays sell 50 of everything and must not matter; a cancelled
    order of 5 红烧肉 must not count.
    """
    thursdays = [THURSDAY - timedelta(weeks=w) for w in (1, 2, 3, 4)]
    for week, day in enumerate(thursdays, start=1):
        menu = past_menu(place, day, "lunch", {"红烧肉": 30, "清蒸鲈鱼": 30}
                         | ({"清炒时蔬": 30} if week <= 2 else {}))
        past_order(place, menu, place.elder, {"红烧肉": 18 - 2 * week, "清蒸鲈鱼": 20})
        if week <= 2:
            past_order(place, menu, None, {"清炒时蔬": 10 - 2 * week}, channel="counter")
    past_order(place, past_menu(place, thursdays[0], "lunch", {}), place.son, {"红烧肉": 5},
               status="cancelled")
    past_menu(place, thursdays[0], "dinner", {"米饭": 100})
    for day in (THURSDAY - timedelta(days=2), THURSDAY - timedelta(days=9)):  # Tuesdays
        menu = past_menu(place, day, "lunch", ALL)
        past_order(place, menu, place.neighbour, {"红烧肉": 50, "清蒸鲈鱼": 50, "清炒时蔬": 50})
    return place


def test_the_forecast_for_tomorrow_matches_the_known_answer(history):
    tomorrow = make_menu(history, THURSDAY, "lunch", {"红烧肉": 25, "清蒸鲈鱼": 25})
    assert tomorrow.date == THURSDAY
    rows = canteen_insights.staff_insights(org_ids={history.kitchen.id})["forecast"]
    got = {(r["meal"], r["name"]): (r["forecast"], r["planned_portions"]) for r in rows}
    assert got == {
        ("lunch", "红烧肉"): (18, 25), ("lunch", "清蒸鲈鱼"): (20, 25),
        ("lunch", "清炒时蔬"): (10, 30), ("lunch", "米饭"): (None, 30),
        ("dinner", "米饭"): (0, None)}
    pork = next(r for r in rows if r["name"] == "红烧肉")
    assert pork["history"] == [{"weeks_ago": 1, "portions": 16}, {"weeks_ago": 2, "portions": 14},
                               {"weeks_ago": 3, "portions": 12}, {"weeks_ago": 4, "portions": 10}]
    assert (pork["average"], pork["trend_per_week"]) == (13.0, 2.0)


def test_popularity_sell_outs_and_online_share_per_day(history):
    last_thursday = THURSDAY - timedelta(weeks=1)
    item = db.session.scalar(db.select(MenuItem).join(MenuItem.menu).where(
        MenuItem.dish_id == history.dishes["红烧肉"].id,
        MenuItem.menu.has(date=last_thursday, meal="lunch")))
    item.sold_out_at = datetime.combine(last_thursday, time(9, 10), tzinfo=SHANGHAI)
    db.session.commit()
    seen = canteen_insights.staff_insights(org_ids={history.kitchen.id}, days=28)
    assert (seen["start"], seen["end"], seen["forecast_date"]) == (
        TODAY - timedelta(days=27), TODAY, THURSDAY)
    top = seen["popularity"][0]
    assert (top["rank"], top["name"], top["portions"], top["orders"]) == (1, "清蒸鲈鱼", 180, 6)
    assert [(p["name"], p["portions"]) for p in seen["popularity"]] == [
        ("清蒸鲈鱼", 180), ("红烧肉", 152), ("清炒时蔬", 114)]  # the cancelled 5 do not count
    [sell_out] = seen["sell_outs"]
    assert (sell_out["name"], sell_out["date"], sell_out["minutes_before_cutoff"]) == (
        "红烧肉", last_thursday, 20)
    by_day = {d["date"]: d for d in seen["channels"]}
    assert len(by_day) == 28
    assert (by_day[last_thursday]["online"], by_day[last_thursday]["counter"],
            by_day[last_thursday]["online_share"]) == (1, 1, 0.5)
    assert by_day[TODAY]["online_share"] is None
