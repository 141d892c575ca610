"""The wheel canteen (云享车轮食堂): dishes, daily menus, subsidised prices and who may eat.

Orders live in canteen_orders.py, the kitchen's feed in canteen_feed.py and the diet and
demand insights in canteen_insights.py. Business times (cut-offs, "today") are evaluated in
the community's time zone; money is integer fen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.errors import Conflict, NotFound, ValidationFailed
from app.extensions import db
from app.models import (
    ClaimStatus,
    Community,
    Household,
    HouseholdMember,
    Org,
    OrgType,
    User,
)
from app.models.canteen import Dish, Meal, Menu, MenuItem, SubsidyRule

NUTRITION_TAGS = {
    "low_salt": "低盐", "low_sugar": "低糖", "soft": "软烂易嚼", "vegetarian": "素食",
    "halal": "清真", "high_protein": "高蛋白",
}
MEAL_LABELS = {"breakfast": "早餐", "lunch": "午餐", "dinner": "晚餐"}
# Local times of a meal when the menu does not say: order cut-off, delivery start, delivery end.
MEAL_TIMES = {
    Meal.BREAKFAST: (time(6, 30), time(7, 0), time(8, 30)),
    Meal.LUNCH: (time(9, 30), time(11, 0), time(12, 30)),
    Meal.DINNER: (time(15, 0), time(17, 0), time(18, 30)),
}
MAX_PORTIONS_PER_MENU_ITEM = 2000
MENU_DAYS_AHEAD = 14


def now() -> datetime:
    """The current UTC time (one place to freeze in tests)."""
    return datetime.now(UTC)


def bad(field: str, code: str, message: str, **details) -> ValidationFailed:
    """A 422 naming the field at fault."""
    return ValidationFailed(message, code=code, details={"fields": {field: [message]}, **details})


# --- time in the community's zone -----------------------------------------------------------


def community_zone(community_id: int) -> ZoneInfo:
    """The community's time zone (Asia/Shanghai unless configured otherwise)."""
    community = db.session.get(Community, community_id)
    return ZoneInfo(community.timezone if community else "Asia/Shanghai")


def local_today(community_id: int) -> date:
    """Today's date in the community."""
    return now().astimezone(community_zone(community_id)).date()


def at_local(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time on a day."""
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


# --- subsidised prices ----------------------------------------------------------------------


def age_on(birth_year: int | None, day: date) -> int | None:
    """Age reached in the year of `day` (only the birth year is known)."""
    return None if birth_year is None else day.year - birth_year


def active_rules(community_id: int) -> list[SubsidyRule]:
    """The community's subsidy bands, oldest band first."""
    return list(db.session.scalars(
        select(SubsidyRule).where(SubsidyRule.community_id == community_id,
                                  SubsidyRule.is_active.is_(True))
        .order_by(SubsidyRule.min_age.desc())))


def rule_for_age(rules: list[SubsidyRule], age: int | None) -> SubsidyRule | None:
    """The band that applies to a diner of `age`: the highest min_age not above it."""
    if age is None:
        return None
    return next((r for r in sorted(rules, key=lambda r: -r.min_age) if age >= r.min_age), None)


def subsidised_price(price_fen: int, rule: SubsidyRule | None) -> int:
    """A portion's price under a band: percent off (rounded half up), then an amount off."""
    if rule is None:
        return price_fen
    discounted = (price_fen * (100 - rule.percent_off) + 50) // 100
    return max(0, discounted - rule.amount_off_fen)


def price_bands(price_fen: int, rules: list[SubsidyRule]) -> list[dict]:
    """The subsidised prices of a dish, youngest band first, as the menu shows them."""
    return [{"min_age": r.min_age, "name": r.name, "price": subsidised_price(price_fen, r)}
            for r in sorted(rules, key=lambda r: r.min_age)]


# --- staff scope ----------------------------------------------------------------------------


def pick_org(org_ids: set[int], org_id: int | None) -> Org:
    """The canteen the caller acts for: the one named, or their only one."""
    if org_id is None:
        if len(org_ids) != 1:
            raise bad("org_id", "org_required", "您在多个食堂任职，请指定食堂")
        org_id = next(iter(org_ids))
    org = db.session.get(Org, org_id) if org_id in org_ids else None
    if org is None or org.type != OrgType.CANTEEN:
        raise NotFound("找不到该食堂", code="canteen_not_found")
    return org


def staff_community_id(org_ids: set[int]) -> int:
    """The community of the caller's (first) canteen."""
    org = db.session.scalar(select(Org).where(Org.id.in_(org_ids)).order_by(Org.id).limit(1))
    if org is None:
        raise NotFound("找不到该食堂", code="canteen_not_found")
    return org.community_id


# --- dishes ---------------------------------------------------------------------------------


def list_dishes(*, org_ids: set[int], include_inactive: bool = False) -> list[Dish]:
    """The canteen's dishes by name."""
    stmt = select(Dish).where(Dish.org_id.in_(org_ids)).options(selectinload(Dish.photo))
    if not include_inactive:
        stmt = stmt.where(Dish.is_active.is_(True))
    return list(db.session.scalars(stmt.order_by(Dish.name, Dish.id)))


def create_dish(*, org_ids: set[int], actor_id: int, org_id: int | None = None,
                photo_id: int | None = None, **fields) -> Dish:
    """Add a dish to the canteen's list; 409 `dish_exists` for a name already used."""
    org = pick_org(org_ids, org_id)
    dish = Dish(org_id=org.id, community_id=org.community_id, **_dish_fields(fields))
    dish.photo_upload_id = _photo(actor_id, photo_id)
    db.session.add(dish)
    _commit_unique("dish_exists", "已有同名菜品")
    return load_dish(dish.id)


def update_dish(*, org_ids: set[int], dish_id: int, actor_id: int, **changes) -> Dish:
    """Change a dish's details (price changes apply to orders placed from now on)."""
    dish = db.session.get(Dish, dish_id)
    if dish is None or dish.org_id not in org_ids:
        raise NotFound("找不到该菜品", code="dish_not_found")
    if "photo_id" in changes:
        dish.photo_upload_id = _photo(actor_id, changes.pop("photo_id"))
    for name, value in _dish_fields(changes).items():
        setattr(dish, name, value)
    _commit_unique("dish_exists", "已有同名菜品")
    return load_dish(dish.id)


def _dish_fields(fields: dict) -> dict:
    """Trimmed names, tags and allergens without repeats."""
    cleaned = dict(fields)
    if "name" in cleaned:
        cleaned["name"] = cleaned["name"].strip()
        if not cleaned["name"]:
            raise bad("name", "name_required", "请填写菜名")
    for key in ("tags", "allergens"):
        if key in cleaned:
            cleaned[key] = list(dict.fromkeys(v.strip() for v in cleaned[key] if v.strip()))
    return cleaned


def _photo(actor_id: int, photo_id: int | None) -> int | None:
    """The caller's own upload as the dish photo (422 otherwise)."""
    from app.services import uploads

    if photo_id is None:
        return None
    return uploads.attachable(actor_id, [photo_id])[0].id


def _commit_unique(code: str, message: str) -> None:
    """Commit; a unique-constraint violation becomes a 409 with `code`."""
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(message, code=code) from exc


def load_dish(dish_id: int) -> Dish:
    """A dish with its photo."""
    return db.session.scalar(select(Dish).where(Dish.id == dish_id)
                             .options(selectinload(Dish.photo)))


# --- menus ----------------------------------------------------------------------------------


def _menu_options():
    """Load a menu's items, dishes and photos with it."""
    return (selectinload(Menu.items).selectinload(MenuItem.dish).selectinload(Dish.photo),)


def list_menus(*, community_id: int, day: date | None) -> tuple[date, list[Menu]]:
    """A day's menus in the community (today by default), each item with live portions left
    and its prices per subsidy band (`item.price_bands`)."""
    day = day or local_today(community_id)
    menus = list(db.session.scalars(
        select(Menu).where(Menu.community_id == community_id, Menu.date == day)
        .options(*_menu_options()).order_by(Menu.cutoff_at, Menu.id)))
    decorate_menus(menus, active_rules(community_id))
    return day, menus


def decorate_menus(menus: list[Menu], rules: list[SubsidyRule]) -> None:
    """Give each menu item its prices per subsidy band (`item.price_bands`)."""
    for menu in menus:
        for item in menu.items:
            item.price_bands = price_bands(item.dish.price_fen, rules)


def load_menu(menu_id: int) -> Menu:
    """A menu with its items and dishes; 404 when it does not exist."""
    menu = db.session.scalar(select(Menu).where(Menu.id == menu_id).options(*_menu_options()))
    if menu is None:
        raise NotFound("找不到该菜单", code="menu_not_found")
    return menu


@dataclass(frozen=True)
class MenuTimes:
    """A menu's cut-off and delivery window as local wall-clock times."""

    cutoff: time | None = None
    cutoff_day_before: bool = False
    delivery_start: time | None = None
    delivery_end: time | None = None

    def resolve(self, day: date, meal: Meal, zone: ZoneInfo) -> tuple[datetime, ...]:
        """(cutoff_at, delivery_start, delivery_end) in UTC, defaults from MEAL_TIMES."""
        cutoff, start, end = MEAL_TIMES[meal]
        cutoff_day = day - timedelta(days=1) if self.cutoff_day_before else day
        return (at_local(cutoff_day, self.cutoff or cutoff, zone),
                at_local(day, self.delivery_start or start, zone),
                at_local(day, self.delivery_end or end, zone))


def create_menu(*, org_ids: set[int], actor_id: int, day: date, meal: str,
                items: list[dict], times: MenuTimes | None = None,
                org_id: int | None = None) -> Menu:
    """Publish a meal's menu with the portions of each dish; 409 `menu_exists` if one is."""
    org = pick_org(org_ids, org_id)
    _check_menu_day(org.community_id, day)
    meal = Meal(meal)
    cutoff_at, start, end = (times or MenuTimes()).resolve(day, meal,
                                                           community_zone(org.community_id))
    if not cutoff_at <= start < end:
        raise bad("delivery_start", "invalid_times", "截止时间须早于送餐开始，开始须早于结束")
    dishes = _org_dishes(org.id, [i["dish_id"] for i in items])
    menu = Menu(community_id=org.community_id, org_id=org.id, date=day, meal=meal,
                cutoff_at=cutoff_at, delivery_start=start, delivery_end=end,
                created_by_id=actor_id)
    menu.items = [MenuItem(dish_id=dishes[i["dish_id"]].id, portions_total=i["portions"],
                           portions_left=i["portions"]) for i in items]
    db.session.add(menu)
    _commit_unique("menu_exists", "该餐次的菜单已发布")
    return load_menu(menu.id)


def _check_menu_day(community_id: int, day: date) -> None:
    """Menus are published for today up to MENU_DAYS_AHEAD days ahead."""
    today = local_today(community_id)
    if not today <= day <= today + timedelta(days=MENU_DAYS_AHEAD):
        raise bad("date", "invalid_date", f"只能发布今天起 {MENU_DAYS_AHEAD} 天内的菜单")


def _org_dishes(org_id: int, dish_ids: list[int]) -> dict[int, Dish]:
    """The canteen's active dishes by id; 422 for a repeat or one that is not theirs."""
    if len(set(dish_ids)) != len(dish_ids):
        raise bad("items", "duplicate_dish", "同一菜品只能出现一次")
    dishes = {d.id: d for d in db.session.scalars(select(Dish).where(
        Dish.id.in_(dish_ids), Dish.org_id == org_id, Dish.is_active.is_(True)))}
    missing = [i for i in dish_ids if i not in dishes]
    if missing:
        raise bad("items", "dish_not_found", "菜品不存在或已停售", dish_ids=missing)
    return dishes


def set_portions(*, org_ids: set[int], menu_id: int, dish_id: int, portions: int) -> Menu:
    """Put a dish on a menu or change its total portions; the left count moves by the same
    amount in one conditional UPDATE, so portions already ordered are never given away."""
    menu = db.session.get(Menu, menu_id)
    if menu is None or menu.org_id not in org_ids:
        raise NotFound("找不到该菜单", code="menu_not_found")
    _org_dishes(menu.org_id, [dish_id])
    item = db.session.scalar(select(MenuItem).where(MenuItem.menu_id == menu.id,
                                                    MenuItem.dish_id == dish_id))
    if item is None:
        db.session.add(MenuItem(menu_id=menu.id, dish_id=dish_id, portions_total=portions,
                                portions_left=portions))
        _commit_unique("menu_item_exists", "该菜品已在菜单上")
        return load_menu(menu.id)
    delta = portions - MenuItem.portions_total
    result = db.session.execute(
        update(MenuItem).where(MenuItem.id == item.id, MenuItem.portions_left + delta >= 0)
        .values(portions_total=portions, portions_left=MenuItem.portions_left + delta,
                sold_out_at=None)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.rollback()
        raise Conflict("已订出的份数多于新的总份数", code="portions_below_ordered")
    db.session.commit()
    db.session.expire_all()
    return load_menu(menu.id)


# --- who may eat, and where -----------------------------------------------------------------


def approved_households(user_id: int) -> list[int]:
    """The households the user is an approved member of."""
    return list(db.session.scalars(select(HouseholdMember.household_id).where(
        HouseholdMember.user_id == user_id, HouseholdMember.status == ClaimStatus.APPROVED)
        .order_by(HouseholdMember.id)))


def diners_for(user_id: int) -> list[dict]:
    """The people the user may order for: themselves and approved members of their
    approved households, with their age and subsidy band."""
    households = approved_households(user_id)
    rows = db.session.execute(
        select(HouseholdMember, User, Household)
        .join(User, User.id == HouseholdMember.user_id)
        .join(Household, Household.id == HouseholdMember.household_id)
        .where(HouseholdMember.household_id.in_(households),
               HouseholdMember.status == ClaimStatus.APPROVED)
        .options(selectinload(Household.building))
        .order_by(HouseholdMember.household_id, HouseholdMember.id)).all()
    me = db.session.get(User, user_id)
    people = {user_id: (me, None, None)}
    for claim, user, household in rows:
        if user.id not in people or people[user.id][2] is None:
            people[user.id] = (user, claim.relation, household)
    rules: dict[int | None, list[SubsidyRule]] = {None: []}
    return [_diner_entry(user, relation, household, user.id == user_id, rules)
            for user, relation, household in people.values()]


def _diner_entry(user: User, relation, household: Household | None, is_self: bool,
                 rules: dict[int | None, list[SubsidyRule]]) -> dict:
    """One person the caller may order for (`rules` caches the bands per community)."""
    community_id = user.community_id or (household.community_id if household else None)
    if community_id not in rules:
        rules[community_id] = active_rules(community_id)
    age = age_on(user.birth_year, local_today(community_id) if community_id else now().date())
    rule = rule_for_age(rules[community_id], age)
    return {"user_id": user.id, "display_name": user.display_name, "age": age,
            "is_self": is_self, "relation": str(relation) if relation else None,
            "household_id": household.id if household else None,
            "address": household.label if household else None,
            "subsidy": rule.name if rule else None}
