"""The caller's profile and household claims."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.me.schemas import (
    HouseholdClaimCreateSchema,
    HouseholdClaimSchema,
    MeSchema,
    ProfileUpdateSchema,
)
from app.idempotency import idempotent
from app.security import PLATFORM_OPERATOR, RESIDENT, current_user_id, role_required
from app.services import accounts

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="The signed-in user")
ANY_SIGNED_IN = (RESIDENT, "staff", "manager", "grid_worker", "courier", "admin")
# Their own profile: also a platform operator's login, which has no org and no community.
ANY_LOGIN = (*ANY_SIGNED_IN, PLATFORM_OPERATOR)


@blp.route("")
class Me(MethodView):
    @role_required(*ANY_LOGIN)
    @blp.response(200, MeSchema)
    def get(self):
        """The user, their households (with approval state) and org memberships."""
        return accounts.load_profile(current_user_id())

    @role_required(*ANY_LOGIN)
    @blp.arguments(ProfileUpdateSchema)
    @blp.response(200, MeSchema)
    def patch(self, body):
        """Change my display name or birth year (age decides some services' eligibility)."""
        return accounts.update_profile(user_id=current_user_id(), **body)


@blp.route("/households")
class MyHouseholds(MethodView):
    @role_required(RESIDENT)
    @idempotent()
    @blp.arguments(HouseholdClaimCreateSchema)
    @blp.response(201, HouseholdClaimSchema)
    def post(self, body):
        """Claim a room; the community office approves or rejects the claim."""
        return accounts.claim_household(user_id=current_user_id(), **body)
