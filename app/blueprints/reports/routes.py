"""Snapshot reports (随手拍), resident side, and the category catalogue."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.common import rate_limited
from app.blueprints.me.routes import ANY_SIGNED_IN
from app.blueprints.reports.schemas import (
    CategoryListSchema,
    FeedbackSchema,
    MyReportsArgsSchema,
    NearbyArgsSchema,
    NearbyListSchema,
    ReportCreateSchema,
    ReportPageSchema,
    ReportSchema,
    UrgeResultSchema,
)
from app.idempotency import idempotent
from app.security import RESIDENT, current_user_id, role_required, token_community_id
from app.services import report_catalogue, reports  # noqa: F401 - catalogue registers its seed step

blp = Blueprint("reports", __name__, url_prefix="/api/v1",
                description="Snapshot reports (随手拍): resident side")


@blp.route("/report-categories")
class Categories(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.response(200, CategoryListSchema)
    def get(self):
        """The categories a resident can report, in display order."""
        return {"items": reports.list_categories(), "next_cursor": None}


@blp.route("/reports")
class Reports(MethodView):
    @role_required(RESIDENT)
    @idempotent()
    @blp.arguments(ReportCreateSchema())  # an instance: not one per call
    @blp.response(201, ReportSchema)
    @rate_limited(blp, "too many reports from the resident this hour")
    def post(self, body):
        """Report a problem; it is routed to the right org in the background."""
        return reports.submit_report(reporter_id=current_user_id(),
                                     home_id=token_community_id(), **body)


@blp.route("/reports/mine")
class MyReports(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(MyReportsArgsSchema, location="query")
    @blp.response(200, ReportPageSchema)
    def get(self, args):
        """My reports, newest first."""
        items, cursor = reports.my_reports(user_id=current_user_id(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/reports/nearby")
class NearbyReports(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(NearbyArgsSchema, location="query")
    @blp.response(200, NearbyListSchema)
    def get(self, args):
        """Open reports of the category within ~100 m or in the same building."""
        return {"items": reports.nearby_reports(user_id=current_user_id(),
                                                home_id=token_community_id(), **args),
                "next_cursor": None}


@blp.route("/reports/<int:report_id>")
class ReportDetail(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, ReportSchema)
    def get(self, report_id):
        """A report with its photos, handlers and public timeline."""
        return reports.report_for_resident(report_id=report_id, user_id=current_user_id())


@blp.route("/reports/<int:report_id>/follow")
class FollowReport(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, ReportSchema)
    def post(self, report_id):
        """Follow someone else's report instead of filing a duplicate."""
        return reports.follow(report_id=report_id, user_id=current_user_id())


@blp.route("/reports/<int:report_id>/urge")
class UrgeReport(MethodView):
    @role_required(RESIDENT)
    @blp.response(201, UrgeResultSchema)
    @rate_limited(blp, "the report was chased up less than 30 minutes ago")
    def post(self, report_id):
        """Chase up the handler (催办); at most once every 30 minutes."""
        return reports.urge(report_id=report_id, user_id=current_user_id())


@blp.route("/reports/<int:report_id>/feedback")
class ReportFeedback(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(FeedbackSchema)
    @blp.response(200, ReportSchema)
    def post(self, body, report_id):
        """Confirm the fix (closes the report) or say it is not fixed (reopens it)."""
        return reports.feedback(report_id=report_id, user_id=current_user_id(), **body)
