"""Schemas of the wheel canteen API: menus, dishes, orders, the feed, prep sheet, insights."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.blueprints.common import page_of, sse_event
from app.pagination import PageArgsSchema
from app.services import canteen
from app.services.canteen import MEAL_LABELS, NUTRITION_TAGS
from app.services.canteen_feed import FEED_MAX_LIMIT
from app.services.canteen_orders import (
    MAX_QTY_PER_DISH,
    RESIDENT_CANCELLABLE,
    STAFF_ACTIONS,
    allowed_actions,
)
from app.services.canteen_prep import STATUS_LABELS

MEALS = list(MEAL_LABELS)
FULFILMENTS = ["dine_in", "pickup", "delivery"]
EVENT_LABELS = {
    "place": "已下单", "accept": "食堂已接单", "start": "开始制作", "ready": "已备好",
    "pick_up": "已取餐", "dispatch": "送餐员已出发", "deliver": "已送达",
    "fail": "配送未成功", "cancel": "已取消",
}


def _photo_url(dish) -> str | None:
    from app.services.uploads import public_urls

    return public_urls(dish.photo)["url"] if dish.photo_upload_id else None


# --- menus and dishes -----------------------------------------------------------------------


class CanteenPriceBandSchema(Schema):
    min_age = fields.Integer()
    name = fields.String()
    price = fields.Integer(metadata={"description": "fen"})


class CanteenMenuItemSchema(Schema):
    dish_id = fields.Integer()
    name = fields.Function(lambda i: i.dish.name)
    price = fields.Function(lambda i: i.dish.price_fen, metadata={"description": "fen"})
    subsidised_prices = fields.List(fields.Nested(CanteenPriceBandSchema), attribute="price_bands")
    portions_left = fields.Integer()
    portions_total = fields.Integer()
    sold_out = fields.Function(lambda i: i.portions_left == 0)
    tags = fields.Function(lambda i: i.dish.tags)
    tag_labels = fields.Function(lambda i: [NUTRITION_TAGS.get(t, t) for t in i.dish.tags])
    allergens = fields.Function(lambda i: i.dish.allergens)
    calories = fields.Function(lambda i: i.dish.calories)
    portion_size = fields.Function(lambda i: i.dish.portion_size)
    photo_url = fields.Function(lambda i: _photo_url(i.dish))


class CanteenMenuSchema(Schema):
    id = fields.Integer()
    date = fields.Date()
    meal = fields.String()
    meal_label = fields.Function(lambda m: MEAL_LABELS[str(m.meal)])
    cutoff_at = fields.DateTime()
    delivery_start = fields.DateTime()
    delivery_end = fields.DateTime()
    is_open = fields.Function(lambda m: canteen.now() < m.cutoff_at)
    items = fields.List(fields.Nested(CanteenMenuItemSchema))


class CanteenMenuListSchema(Schema):
    date = fields.Date()
    items = fields.List(fields.Nested(CanteenMenuSchema))
    next_cursor = fields.String(allow_none=True)


class CanteenMenuArgsSchema(Schema):
    date = fields.Date(load_default=None, metadata={"description": "YYYY-MM-DD; today if omitted"})


class CanteenMenuLineSchema(Schema):
    dish_id = fields.Integer(required=True)
    portions = fields.Integer(required=True, validate=validate.Range(1, 2000))


class CanteenMenuCreateSchema(Schema):
    date = fields.Date(required=True)
    meal = fields.String(required=True, validate=validate.OneOf(MEALS))
    cutoff = fields.Time(load_default=None, metadata={"description": "local HH:MM"})
    cutoff_day_before = fields.Boolean(load_default=False)
    delivery_start = fields.Time(load_default=None)
    delivery_end = fields.Time(load_default=None)
    items = fields.List(fields.Nested(CanteenMenuLineSchema), required=True,
                        validate=validate.Length(1, 40))
    org_id = fields.Integer(load_default=None)


class CanteenDishSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String()
    price = fields.Integer(attribute="price_fen", metadata={"description": "fen"})
    portion_size = fields.String()
    tags = fields.List(fields.String())
    allergens = fields.List(fields.String())
    calories = fields.Integer(allow_none=True)
    is_active = fields.Boolean()
    photo_url = fields.Function(_photo_url)


class CanteenDishListSchema(Schema):
    items = fields.List(fields.Nested(CanteenDishSchema))
    next_cursor = fields.String(allow_none=True)


class CanteenDishListArgsSchema(Schema):
    include_inactive = fields.Boolean(load_default=False)


class CanteenDishUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(1, 60))
    description = fields.String(validate=validate.Length(max=300))
    price_fen = fields.Integer(data_key="price", validate=validate.Range(0, 100_000))
    portion_size = fields.String(validate=validate.Length(max=40))
    tags = fields.List(fields.String(validate=validate.OneOf(list(NUTRITION_TAGS))),
                       validate=validate.Length(max=len(NUTRITION_TAGS)))
    allergens = fields.List(fields.String(validate=validate.Length(1, 20)),
                            validate=validate.Length(max=10))
    calories = fields.Integer(allow_none=True, validate=validate.Range(0, 5000))
    photo_id = fields.Integer(allow_none=True)
    is_active = fields.Boolean()


class CanteenDishCreateSchema(CanteenDishUpdateSchema):
    name = fields.String(required=True, validate=validate.Length(1, 60))
    price_fen = fields.Integer(data_key="price", required=True,
                               validate=validate.Range(0, 100_000))
    org_id = fields.Integer(load_default=None)


class CanteenSubsidyRuleSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    min_age = fields.Integer()
    percent_off = fields.Integer()
    amount_off = fields.Integer(attribute="amount_off_fen", metadata={"description": "fen"})


class CanteenSubsidyRuleListSchema(Schema):
    items = fields.List(fields.Nested(CanteenSubsidyRuleSchema))
    next_cursor = fields.String(allow_none=True)


class CanteenDinerSchema(Schema):
    user_id = fields.Integer()
    display_name = fields.String()
    age = fields.Integer(allow_none=True)
    is_self = fields.Boolean()
    relation = fields.String(allow_none=True)
    household_id = fields.Integer(allow_none=True)
    address = fields.String(allow_none=True)
    subsidy = fields.String(allow_none=True)


class CanteenDinerListSchema(Schema):
    items = fields.List(fields.Nested(CanteenDinerSchema))
    next_cursor = fields.String(allow_none=True)


# --- orders ---------------------------------------------------------------------------------


class CanteenOrderLineSchema(Schema):
    dish_id = fields.Integer(required=True)
    qty = fields.Integer(required=True, metadata={"description": f"1..{MAX_QTY_PER_DISH}"})


class CanteenAddressSchema(Schema):
    household_id = fields.Integer(required=True)


class CanteenOrderCreateSchema(Schema):
    menu_id = fields.Integer(required=True)
    items = fields.List(fields.Nested(CanteenOrderLineSchema), required=True,
                        validate=validate.Length(max=20))
    fulfilment = fields.String(required=True, validate=validate.OneOf(FULFILMENTS))
    for_member_id = fields.Integer(load_default=None,
                                   metadata={"description": "user id of a household member"})
    address = fields.Nested(CanteenAddressSchema, load_default=None, allow_none=True)
    note = fields.String(load_default="", validate=validate.Length(max=200))


class CanteenCounterOrderCreateSchema(Schema):
    menu_id = fields.Integer(required=True)
    items = fields.List(fields.Nested(CanteenOrderLineSchema), required=True,
                        validate=validate.Length(max=20))
    fulfilment = fields.String(load_default="dine_in",
                               validate=validate.OneOf(["dine_in", "pickup"]))
    diner_id = fields.Integer(load_default=None)
    diner_age = fields.Integer(load_default=None, validate=validate.Range(0, 130))
    note = fields.String(load_default="", validate=validate.Length(max=200))


class CanteenOrderItemSchema(Schema):
    dish_id = fields.Integer()
    name = fields.String(attribute="dish_name")
    qty = fields.Integer()
    price = fields.Integer(attribute="unit_price_fen", metadata={"description": "fen"})
    standard_price = fields.Integer(attribute="standard_price_fen")


class CanteenTimelineEntrySchema(Schema):
    id = fields.Integer()
    action = fields.String()
    label = fields.Function(lambda e: EVENT_LABELS.get(e.action, e.action))
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    note = fields.String()
    created_at = fields.DateTime()


class CanteenCourierLocationSchema(Schema):
    lat = fields.Float()
    lng = fields.Float()
    accuracy = fields.Float(allow_none=True)
    recorded_at = fields.DateTime()
    distance_m = fields.Integer(allow_none=True)
    eta = fields.DateTime(allow_none=True)


class CanteenOrderSummarySchema(Schema):
    id = fields.Integer()
    status = fields.String()
    status_label = fields.Function(lambda o: STATUS_LABELS[str(o.status)])
    menu_id = fields.Integer()
    date = fields.Date(attribute="menu_date")
    meal = fields.String()
    channel = fields.String()
    fulfilment = fields.String()
    pickup_code = fields.String(allow_none=True)
    for_member_id = fields.Integer(attribute="diner_id", allow_none=True)
    diner_name = fields.String()
    address = fields.String()
    note = fields.String()
    items = fields.List(fields.Nested(CanteenOrderItemSchema))
    total = fields.Integer(attribute="total_fen", metadata={"description": "fen"})
    standard_total = fields.Integer(attribute="standard_total_fen")
    created_at = fields.DateTime()


CanteenOrderPageSchema = page_of(CanteenOrderSummarySchema, "CanteenOrderPageSchema")


class CanteenOrderSchema(CanteenOrderSummarySchema):
    subsidy = fields.Function(lambda o: o.subsidy_rule.name if o.subsidy_rule_id else None)
    cutoff_at = fields.Function(lambda o: o.menu.cutoff_at.isoformat())
    can_cancel = fields.Function(
        lambda o: o.status in RESIDENT_CANCELLABLE and canteen.now() < o.menu.cutoff_at)
    timeline = fields.List(fields.Nested(CanteenTimelineEntrySchema), attribute="events")
    courier_location = fields.Nested(CanteenCourierLocationSchema, allow_none=True)


class CanteenStaffOrderSchema(CanteenOrderSchema):
    placed_by_id = fields.Integer(allow_none=True)
    diner_age = fields.Integer(allow_none=True)
    courier_id = fields.Integer(allow_none=True)
    allowed_actions = fields.Function(allowed_actions)


class CanteenStaffOrderListArgsSchema(PageArgsSchema):
    date = fields.Date(load_default=None)
    meal = fields.String(load_default=None, validate=validate.OneOf(MEALS))
    status = fields.String(load_default=None, validate=validate.OneOf(list(STATUS_LABELS)))
    mine = fields.Boolean(load_default=False, metadata={"description": "couriers: orders I carry"})


class CanteenCancelSchema(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=200))


class CanteenTransitionSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(STAFF_ACTIONS))
    courier_id = fields.Integer(load_default=None)
    note = fields.String(load_default="", validate=validate.Length(max=200))


class CanteenLocationSchema(Schema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90))
    lng = fields.Float(required=True, validate=validate.Range(-180, 180))
    accuracy = fields.Float(load_default=None, validate=validate.Range(0, 10_000))


class CanteenPositionSchema(Schema):
    id = fields.Integer()
    order_id = fields.Integer()
    lat = fields.Float()
    lng = fields.Float()
    accuracy = fields.Float(allow_none=True)
    recorded_at = fields.DateTime()


# --- the feed -------------------------------------------------------------------------------


class CanteenFeedArgsSchema(Schema):
    cursor = fields.String(load_default=None, metadata={"description": "opaque, from a feed"})
    limit = fields.Integer(load_default=50, validate=validate.Range(1, FEED_MAX_LIMIT))


class CanteenFeedItemSchema(Schema):
    dish_id = fields.Integer()
    name = fields.String(attribute="dish_name")
    qty = fields.Integer()


class CanteenFeedOrderSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    date = fields.Date(attribute="menu_date")
    meal = fields.String()
    channel = fields.String()
    fulfilment = fields.String()
    pickup_code = fields.String(allow_none=True)
    diner_name = fields.String()
    address = fields.String()
    building = fields.Function(
        lambda o: o.household.building.number if o.household_id else None)
    note = fields.String()
    items = fields.List(fields.Nested(CanteenFeedItemSchema))


class CanteenFeedEventSchema(Schema):
    cursor = fields.String()
    event_id = fields.Integer(attribute="id")
    order_id = fields.Integer()
    action = fields.String()
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    note = fields.String()
    created_at = fields.DateTime()
    order = fields.Nested(CanteenFeedOrderSchema)


class CanteenFeedPageSchema(Schema):
    items = fields.List(fields.Nested(CanteenFeedEventSchema))
    next_cursor = fields.String(allow_none=True)


class CanteenFeedStreamArgsSchema(Schema):
    cursor = fields.String(load_default=None, metadata={
        "description": "resume after this feed cursor (from the feed, or an event's id); "
                       "Last-Event-ID wins when both are sent"})


class CanteenFeedStreamHeadersSchema(Schema):
    last_event_id = fields.String(
        data_key="Last-Event-ID", load_default=None,
        metadata={"description": "sent by EventSource on reconnecting: the id of the last "
                                 "event it received (a feed cursor)"})


# Each event of the stream: `order` - one feed event (a CanteenFeedEvent, as in the feed's
# items), its id the feed cursor after it.
CANTEEN_FEED_STREAM_SCHEMA = {"oneOf": [
    sse_event("order", "CanteenFeedEvent", id_pattern="^[A-Za-z0-9_-]+$")]}


# --- prep sheet and insights ----------------------------------------------------------------


class CanteenPrepSheetArgsSchema(Schema):
    date = fields.Date(load_default=None)
    meal = fields.String(required=True, validate=validate.OneOf(MEALS))
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))


class CanteenPrepDishSchema(Schema):
    dish_id = fields.Integer()
    name = fields.String()
    to_cook = fields.Integer()
    dine_in = fields.Integer()
    pickup = fields.Integer()
    delivery = fields.Integer()
    portions_total = fields.Integer()
    portions_left = fields.Integer()


class CanteenPrepDeliverySchema(Schema):
    order_id = fields.Integer()
    status = fields.String()
    address = fields.String()
    unit = fields.String()
    room = fields.String()
    diner_name = fields.String()
    phone = fields.String(allow_none=True)
    items = fields.List(fields.Dict())
    note = fields.String()


class CanteenPrepBuildingSchema(Schema):
    building_id = fields.Integer()
    number = fields.String()
    name = fields.String()
    orders = fields.List(fields.Nested(CanteenPrepDeliverySchema))


class CanteenPrepSheetSchema(Schema):
    menu_id = fields.Integer()
    date = fields.Date()
    meal = fields.String()
    cutoff_at = fields.DateTime()
    portions = fields.Integer()
    delivery_orders = fields.Integer()
    dishes = fields.List(fields.Nested(CanteenPrepDishSchema))
    deliveries = fields.List(fields.Nested(CanteenPrepBuildingSchema))


class CanteenDietArgsSchema(Schema):
    member_id = fields.Integer(load_default=None,
                               metadata={"description": "a household member's user id"})


class CanteenDietInsightsSchema(Schema):
    diner = fields.Dict()
    start = fields.Date()
    end = fields.Date()
    meals = fields.Integer()
    portions = fields.Integer()
    avg_calories = fields.Integer(allow_none=True)
    tag_shares = fields.List(fields.Dict())
    favourites = fields.List(fields.Dict())
    hints = fields.List(fields.Dict())


class CanteenStaffInsightsArgsSchema(Schema):
    days = fields.Integer(load_default=28, validate=validate.Range(1, 90))


class CanteenSellOutSchema(Schema):
    date = fields.Date()
    meal = fields.String()
    dish_id = fields.Integer()
    name = fields.String()
    sold_out_at = fields.DateTime()
    portions_total = fields.Integer()
    minutes_before_cutoff = fields.Integer()


class CanteenChannelDaySchema(Schema):
    date = fields.Date()
    online = fields.Integer()
    counter = fields.Integer()
    online_share = fields.Float(allow_none=True)


class CanteenForecastSchema(Schema):
    meal = fields.String()
    dish_id = fields.Integer()
    name = fields.String()
    history = fields.List(fields.Dict())
    sold_out_weeks = fields.Integer()
    forecast = fields.Integer(allow_none=True)
    average = fields.Float(allow_none=True)
    trend_per_week = fields.Float(allow_none=True)
    planned_portions = fields.Integer(allow_none=True)


class CanteenStaffInsightsSchema(Schema):
    start = fields.Date()
    end = fields.Date()
    popularity = fields.List(fields.Dict())
    sell_outs = fields.List(fields.Nested(CanteenSellOutSchema))
    channels = fields.List(fields.Nested(CanteenChannelDaySchema))
    forecast_date = fields.Date()
    forecast = fields.List(fields.Nested(CanteenForecastSchema))
