"""The wheel canteen (云享车轮食堂): menus and orders for residents, the kitchen's side
(dishes, menus, counter orders, transitions, feed, prep sheet, insights) and the couriers'."""

from __future__ import annotations

import json

from flask import Response, current_app, jsonify
from flask.views import MethodView
from flask_jwt_extended import get_jwt
from flask_smorest import Blueprint

from app.blueprints.canteen.schemas import (
    CANTEEN_FEED_STREAM_SCHEMA,
    CanteenCancelSchema,
    CanteenCounterOrderCreateSchema,
    CanteenDietArgsSchema,
    CanteenDietInsightsSchema,
    CanteenDinerListSchema,
    CanteenDishCreateSchema,
    CanteenDishListArgsSchema,
    CanteenDishListSchema,
    CanteenDishSchema,
    CanteenDishUpdateSchema,
    CanteenFeedArgsSchema,
    CanteenFeedEventSchema,
    CanteenFeedPageSchema,
    CanteenFeedStreamArgsSchema,
    CanteenFeedStreamHeadersSchema,
    CanteenLocationSchema,
    CanteenMenuArgsSchema,
    CanteenMenuCreateSchema,
    CanteenMenuLineSchema,
    CanteenMenuListSchema,
    CanteenMenuSchema,
    CanteenOrderCreateSchema,
    CanteenOrderPageSchema,
    CanteenOrderSchema,
    CanteenPositionSchema,
    CanteenPrepSheetArgsSchema,
    CanteenPrepSheetSchema,
    CanteenStaffInsightsArgsSchema,
    CanteenStaffInsightsSchema,
    CanteenStaffOrderListArgsSchema,
    CanteenStaffOrderSchema,
    CanteenSubsidyRuleListSchema,
    CanteenTransitionSchema,
)
from app.blueprints.common import rate_limited
from app.idempotency import idempotent
from app.pagination import PageArgsSchema
from app.security import RESIDENT, STAFF_KIND, current_user_id, role_required, staff_org_ids
from app.services import (  # noqa: F401 - canteen_demo registers its seed step
    canteen,
    canteen_demo,
    canteen_feed,
    canteen_insights,
    canteen_orders,
    canteen_prep,
)
from app.services.community import resolve_community_id

blp = Blueprint("canteen", __name__, url_prefix="/api/v1/canteen",
                description="The wheel canteen (云享车轮食堂)")
CANTEEN = ("canteen",)
KITCHEN_ROLES = ("staff", "manager", "admin")
COURIER = "courier"
CANTEEN_ROLES = (*KITCHEN_ROLES, COURIER)
STREAM_DEFAULTS = {"CANTEEN_FEED_POLL_SECONDS": 0.5, "CANTEEN_STREAM_HEARTBEAT_SECONDS": 15,
                   "CANTEEN_STREAM_MAX_SECONDS": 300}


def kitchen_orgs() -> set[int]:
    """The canteens where the caller works in the kitchen or office."""
    return staff_org_ids(roles=KITCHEN_ROLES, org_types=CANTEEN)


def courier_orgs() -> set[int]:
    """The canteens the caller delivers for."""
    return staff_org_ids(roles={COURIER}, org_types=CANTEEN)


def is_resident() -> bool:
    """Whether the caller signed in through WeChat (not as staff)."""
    return get_jwt().get("kind") != STAFF_KIND


def caller_community_id() -> int:
    """The community whose menus the caller sees."""
    if is_resident():
        return resolve_community_id(user_id=current_user_id(), requested=None)
    return canteen.staff_community_id(kitchen_orgs() | courier_orgs())


# --- menus, dishes, prices ------------------------------------------------------------------


@blp.route("/menus")
class Menus(MethodView):
    @role_required(RESIDENT, *CANTEEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenMenuArgsSchema, location="query")
    @blp.response(200, CanteenMenuListSchema)
    def get(self, args):
        """A day's menus (today by default) with portions left live and subsidised prices."""
        day, menus = canteen.list_menus(community_id=caller_community_id(), day=args["date"])
        return {"date": day, "items": menus, "next_cursor": None}

    @role_required(*KITCHEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenMenuCreateSchema)
    @blp.response(201, CanteenMenuSchema)
    def post(self, body):
        """Publish a meal's menu: dishes with portions, cut-off and delivery window (local)."""
        times = canteen.MenuTimes(cutoff=body.pop("cutoff"),
                                  cutoff_day_before=body.pop("cutoff_day_before"),
                                  delivery_start=body.pop("delivery_start"),
                                  delivery_end=body.pop("delivery_end"))
        menu = canteen.create_menu(org_ids=kitchen_orgs(), actor_id=current_user_id(),
                                   day=body.pop("date"), times=times, **body)
        canteen.decorate_menus([menu], canteen.active_rules(menu.community_id))
        return menu


@blp.route("/menus/<int:menu_id>/items")
class MenuItems(MethodView):
    @role_required(*KITCHEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenMenuLineSchema)
    @blp.response(200, CanteenMenuSchema)
    def post(self, body, menu_id):
        """Add a dish to a menu or change its total portions (never below those ordered)."""
        menu = canteen.set_portions(org_ids=kitchen_orgs(), menu_id=menu_id, **body)
        canteen.decorate_menus([menu], canteen.active_rules(menu.community_id))
        return menu


@blp.route("/dishes")
class Dishes(MethodView):
    @role_required(*KITCHEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenDishListArgsSchema, location="query")
    @blp.response(200, CanteenDishListSchema)
    def get(self, args):
        """The canteen's dishes."""
        return {"items": canteen.list_dishes(org_ids=kitchen_orgs(), **args),
                "next_cursor": None}

    @role_required(*KITCHEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenDishCreateSchema)
    @blp.response(201, CanteenDishSchema)
    def post(self, body):
        """Add a dish: price in fen, portion size, nutrition tags, allergens, calories."""
        return canteen.create_dish(org_ids=kitchen_orgs(), actor_id=current_user_id(), **body)


@blp.route("/dishes/<int:dish_id>")
class DishDetail(MethodView):
    @role_required(*KITCHEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenDishUpdateSchema)
    @blp.response(200, CanteenDishSchema)
    def patch(self, body, dish_id):
        """Change a dish (is_active=false takes it off future menus)."""
        return canteen.update_dish(org_ids=kitchen_orgs(), dish_id=dish_id,
                                   actor_id=current_user_id(), **body)


@blp.route("/subsidy-rules")
class SubsidyRules(MethodView):
    @role_required(RESIDENT, *CANTEEN_ROLES, org_types=CANTEEN)
    @blp.response(200, CanteenSubsidyRuleListSchema)
    def get(self):
        """The subsidy bands by age (the highest band a diner reaches applies)."""
        rules = canteen.active_rules(caller_community_id())
        return {"items": sorted(rules, key=lambda r: r.min_age), "next_cursor": None}


@blp.route("/diners")
class Diners(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, CanteenDinerListSchema)
    def get(self):
        """Who I may order for: me and the approved members of my households."""
        return {"items": canteen.diners_for(current_user_id()), "next_cursor": None}


# --- orders ---------------------------------------------------------------------------------


@blp.route("/orders")
class Orders(MethodView):
    @role_required(RESIDENT)
    @idempotent(required=True)
    @blp.arguments(CanteenOrderCreateSchema)
    @blp.response(201, CanteenOrderSchema)
    @rate_limited(blp, "too many orders from the resident in the window")
    def post(self, body):
        """Order a meal (Idempotency-Key required); portions are taken all or none."""
        return canteen_orders.place_order(user_id=current_user_id(), **body)

    @role_required(*CANTEEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenStaffOrderListArgsSchema, location="query")
    @blp.response(200, CanteenOrderPageSchema)
    def get(self, args):
        """The canteen's orders, newest first (couriers: `mine` = the ones I carry)."""
        mine = args.pop("mine")
        items, cursor = canteen_orders.list_orders(
            org_ids=kitchen_orgs() | courier_orgs(), day=args.pop("date"),
            courier_id=current_user_id() if mine else None, **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/orders/mine")
class MyOrders(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, CanteenOrderPageSchema)
    def get(self, args):
        """Orders I placed or that are for me, newest first."""
        items, cursor = canteen_orders.my_orders(user_id=current_user_id(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/orders/<int:order_id>")
class OrderDetail(MethodView):
    @role_required(RESIDENT, *CANTEEN_ROLES, org_types=CANTEEN)
    @blp.response(200, CanteenStaffOrderSchema)
    def get(self, order_id):
        """Status, timeline and, while out for delivery, the courier's position and ETA."""
        if is_resident():
            order = canteen_orders.order_for_resident(order_id=order_id,
                                                      user_id=current_user_id())
            return jsonify(CanteenOrderSchema().dump(order))  # without the staff-only fields
        return canteen_orders.order_for_staff(order_id=order_id,
                                              org_ids=kitchen_orgs() | courier_orgs())


@blp.route("/orders/<int:order_id>/cancel")
class CancelOrder(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(CanteenCancelSchema)
    @blp.response(200, CanteenOrderSchema)
    def post(self, body, order_id):
        """Cancel before the kitchen accepts and before the cut-off; portions return."""
        return canteen_orders.cancel_by_resident(order_id=order_id, user_id=current_user_id(),
                                                 **body)


@blp.route("/orders/<int:order_id>/transitions")
class OrderTransitions(MethodView):
    @role_required(*CANTEEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenTransitionSchema)
    @blp.response(200, CanteenStaffOrderSchema)
    def post(self, body, order_id):
        """accept, start, ready, pick_up, dispatch (to a courier), deliver, fail, cancel."""
        return canteen_orders.transition(order_id=order_id, actor_id=current_user_id(),
                                         kitchen_org_ids=kitchen_orgs(),
                                         courier_org_ids=courier_orgs(), **body)


@blp.route("/counter-orders")
class CounterOrders(MethodView):
    @role_required(*KITCHEN_ROLES, org_types=CANTEEN)
    @idempotent()
    @blp.arguments(CanteenCounterOrderCreateSchema)
    @blp.response(201, CanteenStaffOrderSchema)
    def post(self, body):
        """Record a walk-in order at the counter (open until the meal's service ends)."""
        return canteen_orders.place_counter_order(actor_id=current_user_id(),
                                                  org_ids=kitchen_orgs(), **body)


@blp.route("/deliveries/<int:order_id>/location")
class DeliveryLocation(MethodView):
    @role_required(COURIER, org_types=CANTEEN)
    @blp.arguments(CanteenLocationSchema)
    @blp.response(201, CanteenPositionSchema)
    @rate_limited(blp, "a position of this order less than 5 seconds ago")
    def post(self, body, order_id):
        """A courier's position on an order they carry; at most one every 5 seconds."""
        return canteen_orders.record_location(order_id=order_id, courier_id=current_user_id(),
                                              org_ids=courier_orgs(), **body)


# --- the kitchen's feed ---------------------------------------------------------------------


@blp.route("/feed")
class Feed(MethodView):
    @role_required(*CANTEEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenFeedArgsSchema, location="query")
    @blp.response(200, CanteenFeedPageSchema)
    def get(self, args):
        """Order events after the cursor, oldest first (commit-safe: none is ever skipped)."""
        items, cursor = canteen_feed.read_feed(org_ids=kitchen_orgs() | courier_orgs(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/feed/stream")
class FeedStream(MethodView):
    @role_required(*CANTEEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenFeedStreamArgsSchema, location="query")
    @blp.arguments(CanteenFeedStreamHeadersSchema, location="headers")
    @blp.response(200, CANTEEN_FEED_STREAM_SCHEMA, content_type="text/event-stream")
    def get(self, args, headers):
        """The feed as Server-Sent Events (`order`), resuming after Last-Event-ID (or
        ?cursor=); a `: keep-alive` comment when nothing happened for a while."""
        org_ids = kitchen_orgs() | courier_orgs()
        cursor = headers["last_event_id"] or args["cursor"] or None
        canteen_feed.check_cursor(org_ids=org_ids, cursor=cursor)
        settings = {k: current_app.config.get(k, v) for k, v in STREAM_DEFAULTS.items()}
        batches = canteen_feed.follow(
            org_ids=org_ids, cursor=cursor,
            poll_seconds=settings["CANTEEN_FEED_POLL_SECONDS"],
            heartbeat_seconds=settings["CANTEEN_STREAM_HEARTBEAT_SECONDS"],
            max_seconds=settings["CANTEEN_STREAM_MAX_SECONDS"])
        app = current_app._get_current_object()
        return Response(sse_lines(app, batches), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def sse_lines(app, batches):
    """Server-Sent Events: one `order` event per feed event, a comment as keep-alive.

    Each poll runs in an app context of its own (its own database session, removed at once):
    the request has ended when streaming starts, and no context is held across a yield, so
    whichever thread iterates the body may resume it.
    """
    yield "retry: 1000\n\n"
    schema = CanteenFeedEventSchema()
    while True:
        with app.app_context():
            batch = next(batches, None)
            if batch is None:
                return
            text = "".join(
                f"id: {event.cursor}\nevent: order\n"
                f"data: {json.dumps(schema.dump(event), ensure_ascii=False)}\n\n"
                for event in batch) or ": keep-alive\n\n"
        yield text


@blp.route("/prep-sheet")
class PrepSheet(MethodView):
    @role_required(*CANTEEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenPrepSheetArgsSchema, location="query")
    @blp.response(200, CanteenPrepSheetSchema)
    def get(self, args):
        """Portions to cook per dish and the delivery list by building (also ?format=csv)."""
        org_ids = kitchen_orgs() | courier_orgs()
        day = args["date"] or canteen.local_today(canteen.staff_community_id(org_ids))
        sheet = canteen_prep.prep_sheet(org_ids=org_ids, day=day, meal=args["meal"])
        if args["format"] == "csv":
            name = f"prep-{day.isoformat()}-{args['meal']}.csv"
            return Response(canteen_prep.prep_sheet_csv(sheet), mimetype="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
        return sheet


# --- insights -------------------------------------------------------------------------------


@blp.route("/insights/me")
class MyInsights(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(CanteenDietArgsSchema, location="query")
    @blp.response(200, CanteenDietInsightsSchema)
    def get(self, args):
        """My (or a household member's) last 30 days: tags, calories, favourites, hints."""
        return canteen_insights.diet_insights(user_id=current_user_id(), **args)


@blp.route("/insights")
class StaffInsights(MethodView):
    @role_required(*KITCHEN_ROLES, org_types=CANTEEN)
    @blp.arguments(CanteenStaffInsightsArgsSchema, location="query")
    @blp.response(200, CanteenStaffInsightsSchema)
    def get(self, args):
        """Popularity, sell-outs, online vs counter per day and tomorrow's demand forecast."""
        return canteen_insights.staff_insights(org_ids=kitchen_orgs(), **args)
