"""The BFF: one request per mini-program screen, with ETag / If-None-Match."""

from __future__ import annotations

import hashlib
import json

from flask import Response, jsonify, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.bff.schemas import HomeSchema
from app.blueprints.canteen.schemas import CanteenOrderSchema
from app.blueprints.reports.schemas import ReportSchema
from app.security import RESIDENT, current_user_id, role_required
from app.services import bff, canteen_orders, reports

blp = Blueprint("bff", __name__, url_prefix="/api/v1/bff",
                description="Screens of the mini-program, one request each")


def conditional(body: dict) -> Response:
    """A JSON response with a strong ETag; 304 when the client already has this body."""
    raw = json.dumps(body, ensure_ascii=False, sort_keys=True, default=str)
    response = jsonify(body)
    response.set_etag(hashlib.sha256(raw.encode()).hexdigest()[:32])
    response.headers["Cache-Control"] = "private, no-cache"
    return response.make_conditional(request)


@blp.route("/home")
class Home(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, HomeSchema)
    @blp.alt_response(304, description="unchanged since If-None-Match")
    def get(self):
        """The home screen: me, unread count, open reports, bookings, activities, canteen."""
        return conditional(HomeSchema().dump(bff.home(current_user_id())))


@blp.route("/reports/<int:report_id>")
class ReportScreen(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, ReportSchema)
    @blp.alt_response(304, description="unchanged since If-None-Match")
    def get(self, report_id):
        """A report's detail screen: photos with thumbnails, Chinese timeline, handlers."""
        report = reports.report_for_resident(report_id=report_id, user_id=current_user_id())
        return conditional(ReportSchema().dump(report))


@blp.route("/orders/<int:order_id>")
class OrderScreen(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, CanteenOrderSchema)
    @blp.alt_response(304, description="unchanged since If-None-Match")
    def get(self, order_id):
        """An order's screen: items, price, Chinese timeline, the courier's position and ETA."""
        order = canteen_orders.order_for_resident(order_id=order_id, user_id=current_user_id())
        return conditional(CanteenOrderSchema().dump(order))
