"""Demo rows of the wheel canteen: its dish list, subsidy bands for 80+ and 90+, a courier
login, and menus for today and the next 7 days (breakfast, lunch and dinner)."""

from __future__ import annotations

import os
import random
import secrets
from datetime import timedelta

from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import Community, Membership, Org, OrgType, Role, User
from app.models.canteen import Dish, Meal, Menu, MenuItem, SubsidyRule
from app.services.canteen import MenuTimes, local_today
from app.services.demo import PASSWORD_ENV, UNCHANGED, seed_step

MENU_DAYS = 8  # today and the next 7 days
COURIER = ("courier", "送餐员小陈")

# name, price (fen), portion, tags, allergens, kcal, course
DISHES = (
    ("小米南瓜粥", 300, "一碗 约300克", ["low_salt", "low_sugar", "soft", "vegetarian"], [], 150,
     "breakfast"),
    ("白粥配酱菜", 200, "一碗 约300克", ["soft", "vegetarian"], [], 130, "breakfast"),
    ("菜肉大馄饨", 800, "10只", ["high_protein"], ["小麦", "鸡蛋"], 420, "breakfast"),
    ("鲜肉小笼包", 700, "6只", [], ["小麦", "大豆"], 380, "breakfast"),
    ("蒸鸡蛋羹", 300, "一碗", ["soft", "low_salt", "high_protein"], ["鸡蛋"], 120, "breakfast"),
    ("无糖豆浆", 200, "一杯 约300毫升", ["low_sugar", "vegetarian", "high_protein"], ["大豆"], 90,
     "breakfast"),
    ("青菜香菇包", 250, "2只", ["vegetarian"], ["小麦"], 220, "breakfast"),
    ("葱油拌面", 600, "一碗 约250克", ["vegetarian"], ["小麦", "大豆"], 520, "breakfast"),
    ("红烧肉", 1500, "约150克", [], ["大豆"], 520, "main"),
    ("清蒸鲈鱼", 1800, "半条 约200克", ["low_salt", "high_protein", "soft"], ["鱼"], 260, "main"),
    ("番茄炒蛋", 800, "约200克", ["vegetarian", "soft", "high_protein"], ["鸡蛋"], 220, "main"),
    ("肉末豆腐", 900, "约200克", ["soft", "high_protein"], ["大豆"], 280, "main"),
    ("白切鸡", 1400, "约180克", ["high_protein", "low_sugar"], [], 300, "main"),
    ("糖醋小排", 1600, "约180克", [], ["小麦", "大豆"], 480, "main"),
    ("冬瓜虾仁", 1300, "约200克", ["low_salt", "soft", "high_protein"], ["虾"], 150, "main"),
    ("清真土豆牛肉", 1500, "约200克", ["halal", "high_protein"], [], 330, "main"),
    ("西葫芦炒蛋", 700, "约200克", ["vegetarian", "soft"], ["鸡蛋"], 180, "main"),
    ("清炒时蔬", 500, "约200克", ["vegetarian", "low_salt", "low_sugar"], [], 90, "side"),
    ("香菇青菜", 500, "约200克", ["vegetarian", "low_salt"], ["大豆"], 80, "side"),
    ("蒸南瓜", 400, "约200克", ["vegetarian", "low_salt", "soft"], [], 120, "side"),
    ("荠菜豆腐羹", 600, "一碗", ["low_salt", "soft", "vegetarian"], ["大豆"], 110, "soup"),
    ("紫菜蛋花汤", 300, "一碗", ["low_salt", "soft"], ["鸡蛋"], 60, "soup"),
    ("腌笃鲜", 1200, "一碗", [], [], 320, "soup"),
    ("米饭", 100, "一碗 约200克", ["vegetarian"], [], 230, "staple"),
    ("杂粮饭", 200, "一碗 约200克", ["vegetarian", "low_sugar"], [], 210, "staple"),
)
SUBSIDY_RULES = (("80周岁以上老人助餐补贴", 80, 20), ("90周岁以上老人助餐补贴", 90, 30))
# How many dishes of each course a meal offers, and the portions of each.
MEAL_PLAN = {
    Meal.BREAKFAST: {"breakfast": (5, 40)},
    Meal.LUNCH: {"main": (4, 40), "side": (2, 50), "soup": (1, 60), "staple": (2, 150)},
    Meal.DINNER: {"main": (3, 30), "side": (2, 40), "soup": (1, 50), "staple": (2, 120)},
}


@seed_step
def seed_canteen(community: Community) -> dict:
    """Demo step: dishes, subsidy bands, a courier and 8 days of menus (totals)."""
    canteen = db.session.scalar(select(Org).where(Org.community_id == community.id,
                                                  Org.type == OrgType.CANTEEN).limit(1))
    if canteen is None:
        return {}
    dishes = ensure_dishes(canteen)
    ensure_subsidy_rules(community)
    ensure_menus(canteen, dishes)
    logins = ensure_courier(canteen)
    count = lambda model, *where: db.session.scalar(  # noqa: E731
        select(func.count()).select_from(model).where(*where))
    return {"canteen_dishes": count(Dish, Dish.org_id == canteen.id),
            "canteen_menus": count(Menu, Menu.org_id == canteen.id),
            "canteen_subsidy_rules": count(SubsidyRule,
                                           SubsidyRule.community_id == community.id),
            "logins": logins}


def ensure_dishes(canteen: Org) -> dict[str, list[Dish]]:
    """The demo dish list (missing ones added), grouped by course."""
    existing = {d.name: d for d in db.session.scalars(
        select(Dish).where(Dish.org_id == canteen.id))}
    courses: dict[str, list[Dish]] = {}
    for name, price, portion, tags, allergens, kcal, course in DISHES:
        if name not in existing:
            existing[name] = Dish(community_id=canteen.community_id, org_id=canteen.id,
                                  name=name, price_fen=price, portion_size=portion, tags=tags,
                                  allergens=allergens, calories=kcal)
            db.session.add(existing[name])
        courses.setdefault(course, []).append(existing[name])
    db.session.flush()
    return courses


def ensure_subsidy_rules(community: Community) -> None:
    """The 80+ and 90+ bands, unless the community already has bands."""
    if db.session.scalar(select(SubsidyRule.id).where(
            SubsidyRule.community_id == community.id).limit(1)):
        return
    db.session.add_all(SubsidyRule(community_id=community.id, name=name, min_age=age,
                                   percent_off=percent) for name, age, percent in SUBSIDY_RULES)
    db.session.flush()


def ensure_menus(canteen: Org, courses: dict[str, list[Dish]]) -> None:
    """Menus for today and the next 7 days; days and meals that have one are left alone."""
    today = local_today(canteen.community_id)
    days = [today + timedelta(days=i) for i in range(MENU_DAYS)]
    have = set(db.session.execute(select(Menu.date, Menu.meal).where(
        Menu.org_id == canteen.id, Menu.date.in_(days))).all())
    for day in days:
        for meal in Meal:
            if (day, meal) not in have:
                db.session.add(_menu(canteen, day, meal, courses))
    db.session.flush()


def _menu(canteen: Org, day, meal: Meal, courses: dict[str, list[Dish]]) -> Menu:
    """One meal's menu, dishes drawn from a RNG seeded by the day and meal."""
    from app.services.canteen import community_zone

    rng = random.Random(f"{day.isoformat()}-{meal}")
    cutoff_at, start, end = MenuTimes().resolve(day, meal, community_zone(canteen.community_id))
    menu = Menu(community_id=canteen.community_id, org_id=canteen.id, date=day, meal=meal,
                cutoff_at=cutoff_at, delivery_start=start, delivery_end=end)
    for course, (how_many, portions) in MEAL_PLAN[meal].items():
        for dish in rng.sample(courses[course], min(how_many, len(courses[course]))):
            menu.items.append(MenuItem(dish_id=dish.id, portions_total=portions,
                                       portions_left=portions))
    return menu


def ensure_courier(canteen: Org) -> list[dict]:
    """A courier login of the canteen (its password reported only when created)."""
    username, name = COURIER
    user = db.session.scalar(select(User).where(User.username == username))
    password = UNCHANGED
    if user is None:
        password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(12)
        user = User(username=username, display_name=name, community_id=canteen.community_id,
                    password_hash=generate_password_hash(password))
        db.session.add(user)
        db.session.flush()
    if db.session.scalar(select(Membership.id).where(
            Membership.user_id == user.id, Membership.org_id == canteen.id,
            Membership.role == Role.COURIER)) is None:
        db.session.add(Membership(user_id=user.id, org_id=canteen.id, role=Role.COURIER))
    return [{"username": username, "org": canteen.code, "roles": [str(Role.COURIER)],
             "password": password}]
