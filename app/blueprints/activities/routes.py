"""Activities (活动报名): residents browse and sign up; staff publish, check in and count hours."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.activities.schemas import (
    ActivityCreateSchema,
    ActivityListArgsSchema,
    ActivityPageSchema,
    ActivityPatchSchema,
    ActivitySchema,
    AttendanceSchema,
    CancelActivitySchema,
    QrArgsSchema,
    QrSchema,
    RosterArgsSchema,
    ScanResultSchema,
    ScanSchema,
    SignupCreateSchema,
    SignupPageSchema,
    SignupSchema,
    StaffActivityPageSchema,
    StaffActivitySchema,
    StaffSignupPageSchema,
)
from app.errors import Forbidden
from app.idempotency import idempotent
from app.pagination import PageArgsSchema
from app.security import RESIDENT, current_user_id, role_required, staff_orgs
from app.services import activities

blp = Blueprint("activities", __name__, url_prefix="/api/v1",
                description="Activities (活动报名): signups, waiting list, check-in, hours")
STAFF_ROLES = ("staff", "manager", "admin")
STAFF_ORGS = ("community_office", "service_provider", "owners_committee", "property_company")


def caller_scope() -> activities.StaffScope:
    """The caller's activity orgs: any role in the community office, managers elsewhere."""
    orgs = [m for m in staff_orgs(roles=STAFF_ROLES, org_types=STAFF_ORGS)
            if m["type"] == "community_office" or m["role"] in ("manager", "admin")]
    if not orgs:
        raise Forbidden("只有居委会工作人员或单位负责人可以管理活动", code="forbidden_role")
    return activities.StaffScope(user_id=current_user_id(), orgs=orgs)


# --- residents ------------------------------------------------------------------------------


@blp.route("/activities")
class Activities(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(ActivityListArgsSchema, location="query")
    @blp.response(200, ActivityPageSchema)
    def get(self, args):
        """Upcoming activities of my community, with seats left and my own signup."""
        items, cursor = activities.list_upcoming(user_id=current_user_id(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/activities/<int:activity_id>")
class ActivityDetail(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, ActivitySchema)
    def get(self, activity_id):
        """One activity with its volunteer roles and my own signup."""
        return activities.get_activity(activity_id=activity_id, user_id=current_user_id())


@blp.route("/activities/<int:activity_id>/signups")
class ActivitySignups(MethodView):
    @role_required(RESIDENT)
    @idempotent()
    @blp.arguments(SignupCreateSchema)
    @blp.response(201, SignupSchema)
    def post(self, body, activity_id):
        """Sign up: `confirmed` while seats remain (counting the party), else `waitlisted`."""
        return activities.sign_up(activity_id=activity_id, user_id=current_user_id(), **body)


@blp.route("/activities/<int:activity_id>/signups/<int:signup_id>/cancel")
class CancelSignup(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, SignupSchema)
    def post(self, activity_id, signup_id):
        """Cancel my signup (until signup closes); the waiting list moves up."""
        return activities.cancel_signup(activity_id=activity_id, signup_id=signup_id,
                                        user_id=current_user_id())


@blp.route("/activities/signups/mine")
class MySignups(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, SignupPageSchema)
    def get(self, args):
        """My signups, newest first, with waiting-list positions."""
        items, cursor = activities.my_signups(user_id=current_user_id(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/activities/signups/<int:signup_id>/qr")
class SignupQr(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(QrArgsSchema, location="query")
    @blp.response(200, QrSchema)
    @blp.doc(responses={"200": {"description": "OK", "content": {  # JSON, or ?format=png
        "application/json": {"schema": QrSchema},
        "image/png": {"schema": {"type": "string", "format": "binary"}}}}})
    def get(self, args, signup_id):
        """My check-in code: the signed token and its QR code (`?format=png` for the image)."""
        qr = activities.signup_qr(signup_id=signup_id, user_id=current_user_id())
        if args["format"] == "png":
            return Response(qr["png"], mimetype="image/png",
                            headers={"Cache-Control": "private, no-store"})
        return qr


# --- staff ----------------------------------------------------------------------------------


@blp.route("/staff/activities")
class StaffActivities(MethodView):
    @role_required(*STAFF_ROLES, org_types=STAFF_ORGS)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, StaffActivityPageSchema)
    def get(self, args):
        """The activities my orgs run, latest first."""
        items, cursor = activities.list_for_staff(scope=caller_scope(), **args)
        return {"items": items, "next_cursor": cursor}

    @role_required(*STAFF_ROLES, org_types=STAFF_ORGS)
    @idempotent()
    @blp.arguments(ActivityCreateSchema)
    @blp.response(201, StaffActivitySchema)
    def post(self, body):
        """Publish an activity."""
        return activities.create_activity(scope=caller_scope(), **body)


@blp.route("/staff/activities/<int:activity_id>")
class StaffActivityDetail(MethodView):
    @role_required(*STAFF_ROLES, org_types=STAFF_ORGS)
    @blp.response(200, StaffActivitySchema)
    def get(self, activity_id):
        """One of my orgs' activities with seat counts."""
        return activities.staff_activity(scope=caller_scope(), activity_id=activity_id)

    @role_required(*STAFF_ROLES, org_types=STAFF_ORGS)
    @blp.arguments(ActivityPatchSchema)
    @blp.response(200, StaffActivitySchema)
    def patch(self, body, activity_id):
        """Edit an activity; more seats promote from the waiting list."""
        return activities.update_activity(scope=caller_scope(), activity_id=activity_id,
                                          changes=body)


@blp.route("/staff/activities/<int:activity_id>/cancel")
class StaffCancelActivity(MethodView):
    @role_required(*STAFF_ROLES, org_types=STAFF_ORGS)
    @blp.arguments(CancelActivitySchema)
    @blp.response(200, StaffActivitySchema)
    def post(self, body, activity_id):
        """Cancel the activity; everyone signed up is notified."""
        return activities.cancel_activity(scope=caller_scope(), activity_id=activity_id,
                                          reason=body["reason"])


@blp.route("/staff/activities/<int:activity_id>/signups")
class StaffRoster(MethodView):
    @role_required(*STAFF_ROLES, org_types=STAFF_ORGS)
    @blp.arguments(RosterArgsSchema, location="query")
    @blp.response(200, StaffSignupPageSchema)
    def get(self, args, activity_id):
        """The signups in arrival order (for marking attendance by hand)."""
        items, cursor = activities.roster(scope=caller_scope(), activity_id=activity_id, **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/staff/activities/<int:activity_id>/checkins")
class StaffCheckins(MethodView):
    @role_required(*STAFF_ROLES, org_types=STAFF_ORGS)
    @blp.arguments(ScanSchema)
    @blp.response(200, ScanResultSchema)
    def post(self, body, activity_id):
        """A scanned check-in code; the same nonce again answers the same."""
        return activities.scan(scope=caller_scope(), activity_id=activity_id, kind="check_in",
                               **body)


@blp.route("/staff/activities/<int:activity_id>/checkouts")
class StaffCheckouts(MethodView):
    @role_required(*STAFF_ROLES, org_types=STAFF_ORGS)
    @blp.arguments(ScanSchema)
    @blp.response(200, ScanResultSchema)
    def post(self, body, activity_id):
        """A volunteer's check-out scan: their hours go to the time bank."""
        return activities.scan(scope=caller_scope(), activity_id=activity_id, kind="check_out",
                               **body)


@blp.route("/staff/activities/<int:activity_id>/signups/<int:signup_id>/attendance")
class StaffAttendance(MethodView):
    @role_required(*STAFF_ROLES, org_types=STAFF_ORGS)
    @blp.arguments(AttendanceSchema)
    @blp.response(200, ScanResultSchema)
    def post(self, body, activity_id, signup_id):
        """Check a resident without a phone in or out by hand."""
        return activities.mark_attendance(scope=caller_scope(), activity_id=activity_id,
                                          signup_id=signup_id, **body)
