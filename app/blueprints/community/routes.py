"""Buildings (for pickers) and the community office's household-claim decisions."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.community.schemas import (
    BuildingDetailSchema,
    BuildingListSchema,
    BuildingQuerySchema,
    ClaimDecisionSchema,
    StaffClaimListSchema,
    StaffClaimSchema,
)
from app.blueprints.me.routes import ANY_SIGNED_IN
from app.security import current_user_id, role_required, staff_orgs
from app.services import accounts, community

blp = Blueprint("community", __name__, url_prefix="/api/v1",
                description="Buildings, rooms and household approvals")
OFFICE = ("community_office",)
OFFICE_ROLES = ("staff", "manager", "admin")


@blp.route("/community/buildings")
class Buildings(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.arguments(BuildingQuerySchema, location="query")
    @blp.response(200, BuildingListSchema)
    def get(self, args):
        """Every building of the community (the caller's own unless `community_id` is given)."""
        community_id = community.resolve_community_id(
            user_id=current_user_id(), requested=args["community_id"])
        return {"items": community.list_buildings(community_id=community_id),
                "next_cursor": None}


@blp.route("/community/buildings/<int:building_id>")
class BuildingDetail(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.response(200, BuildingDetailSchema)
    def get(self, building_id):
        """A building with its micro-grid and each unit's rooms."""
        return community.building_detail(building_id=building_id)


def _office_community_ids() -> set[int]:
    return {m["community_id"] for m in staff_orgs(roles=OFFICE_ROLES, org_types=OFFICE)}


@blp.route("/staff/household-claims")
class HouseholdClaims(MethodView):
    @role_required(*OFFICE_ROLES, org_types=OFFICE)
    @blp.response(200, StaffClaimListSchema)
    def get(self):
        """Claims waiting for a decision, oldest first."""
        items = accounts.list_pending_claims(community_ids=_office_community_ids())
        return {"items": items, "next_cursor": None}


@blp.route("/staff/household-claims/<int:claim_id>/<any(approve, reject):decision>")
class HouseholdClaimDecision(MethodView):
    @role_required(*OFFICE_ROLES, org_types=OFFICE)
    @blp.arguments(ClaimDecisionSchema)
    @blp.response(200, StaffClaimSchema)
    def post(self, body, claim_id, decision):
        """Approve or reject a pending household claim."""
        return accounts.decide_claim(
            claim_id=claim_id, approve=decision == "approve", staff_id=current_user_id(),
            community_ids=_office_community_ids(), note=body["note"])
