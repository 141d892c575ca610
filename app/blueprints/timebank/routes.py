"""The time bank (时间银行): balance, rewards, redemptions, leaderboard; staff side too."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from flask_jwt_extended import get_jwt
from flask_smorest import Blueprint

from app.blueprints.me.routes import ANY_SIGNED_IN
from app.blueprints.timebank.schemas import (
    CancelRedemptionSchema,
    EntryPageSchema,
    LeaderboardArgsSchema,
    LeaderboardSchema,
    RedemptionCreateSchema,
    RedemptionFulfilSchema,
    RedemptionPageSchema,
    RedemptionSchema,
    RewardCreateSchema,
    RewardPageSchema,
    RewardPatchSchema,
    RewardSchema,
    StaffRedemptionArgsSchema,
    StaffRedemptionPageSchema,
    StaffRedemptionSchema,
    TimebankAccountSchema,
    TimebankAwardSchema,
    TimebankEntrySchema,
)
from app.idempotency import HEADER, idempotent
from app.pagination import PageArgsSchema
from app.security import RESIDENT, current_user_id, role_required, staff_orgs
from app.services import timebank

blp = Blueprint("timebank", __name__, url_prefix="/api/v1",
                description="The volunteer time bank (时间银行)")
STAFF_ROLES = ("staff", "manager", "admin")
HANDLER_ORGS = ("community_office", "service_provider")
OFFICE = ("community_office",)


def handler_communities() -> set[int]:
    """Communities whose redemptions the caller handles (office or service provider)."""
    return {m["community_id"] for m in staff_orgs(roles=STAFF_ROLES, org_types=HANDLER_ORGS)}


def office_communities() -> set[int]:
    """Communities whose rewards and awards the caller manages (community office)."""
    return {m["community_id"] for m in staff_orgs(roles=STAFF_ROLES, org_types=OFFICE)}


# --- residents ------------------------------------------------------------------------------


@blp.route("/timebank/me")
class MyAccount(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, TimebankAccountSchema)
    def get(self):
        """My balance, lifetime points and hours, and recent entries."""
        return timebank.account_summary(user_id=current_user_id())


@blp.route("/timebank/entries")
class MyEntries(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, EntryPageSchema)
    def get(self, args):
        """My ledger, newest first."""
        items, cursor = timebank.list_entries(user_id=current_user_id(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/timebank/rewards")
class Rewards(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, RewardPageSchema)
    def get(self, args):
        """What points buy in my community, with stock."""
        items, cursor = timebank.list_rewards(user_id=current_user_id(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/timebank/redemptions")
class Redemptions(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, RedemptionPageSchema)
    def get(self, args):
        """My redemptions, newest first."""
        items, cursor = timebank.my_redemptions(user_id=current_user_id(), **args)
        return {"items": items, "next_cursor": cursor}

    @role_required(RESIDENT)
    @idempotent(required=True)
    @blp.arguments(RedemptionCreateSchema)
    @blp.response(201, RedemptionSchema)
    def post(self, body):
        """Spend points on a reward (Idempotency-Key required)."""
        return timebank.redeem(user_id=current_user_id(), reward_id=body["reward_id"])


@blp.route("/timebank/leaderboard")
class Leaderboard(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.arguments(LeaderboardArgsSchema, location="query")
    @blp.response(200, LeaderboardSchema)
    def get(self, args):
        """Who earned most this week / month / year in my community; names shortened (王**)."""
        return timebank.leaderboard(community_id=get_jwt().get("community_id"), **args)


# --- staff ----------------------------------------------------------------------------------


@blp.route("/staff/timebank/redemptions")
class StaffRedemptions(MethodView):
    @role_required(*STAFF_ROLES, org_types=HANDLER_ORGS)
    @blp.arguments(StaffRedemptionArgsSchema, location="query")
    @blp.response(200, StaffRedemptionPageSchema)
    def get(self, args):
        """Redemptions of my communities, oldest first."""
        items, cursor = timebank.list_for_staff(community_ids=handler_communities(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/staff/timebank/redemptions/<int:redemption_id>/fulfil")
class FulfilRedemption(MethodView):
    @role_required(*STAFF_ROLES, org_types=HANDLER_ORGS)
    @blp.arguments(RedemptionFulfilSchema)
    @blp.response(200, StaffRedemptionSchema)
    def post(self, body, redemption_id):
        """The reward was handed over."""
        return timebank.fulfil(redemption_id=redemption_id, staff_id=current_user_id(),
                               community_ids=handler_communities(), note=body["note"])


@blp.route("/staff/timebank/redemptions/<int:redemption_id>/cancel")
class CancelRedemption(MethodView):
    @role_required(*STAFF_ROLES, org_types=HANDLER_ORGS)
    @blp.arguments(CancelRedemptionSchema)
    @blp.response(200, StaffRedemptionSchema)
    def post(self, body, redemption_id):
        """Cancel: the points come back (a reversal) and the stock returns."""
        return timebank.cancel_redemption(redemption_id=redemption_id, staff_id=current_user_id(),
                                          community_ids=handler_communities(),
                                          reason=body["reason"])


@blp.route("/staff/timebank/rewards")
class StaffRewards(MethodView):
    @role_required(*STAFF_ROLES, org_types=OFFICE)
    @idempotent()
    @blp.arguments(RewardCreateSchema)
    @blp.response(201, RewardSchema)
    def post(self, body):
        """Offer a new reward."""
        return timebank.create_reward(community_ids=office_communities(), **body)


@blp.route("/staff/timebank/rewards/<int:reward_id>")
class StaffReward(MethodView):
    @role_required(*STAFF_ROLES, org_types=OFFICE)
    @blp.arguments(RewardPatchSchema)
    @blp.response(200, RewardSchema)
    def patch(self, body, reward_id):
        """Edit a reward; `add_stock` restocks without racing redemptions."""
        return timebank.update_reward(reward_id=reward_id, community_ids=office_communities(),
                                      **body)


@blp.route("/staff/timebank/awards")
class Awards(MethodView):
    @role_required(*STAFF_ROLES, org_types=OFFICE)
    @idempotent(required=True)
    @blp.arguments(TimebankAwardSchema)
    @blp.response(201, TimebankEntrySchema)
    def post(self, body):
        """Credit points to a resident for other good deeds (Idempotency-Key required)."""
        return timebank.award(staff_id=current_user_id(), community_ids=office_communities(),
                              dedupe_key=f"award:{current_user_id()}:{request.headers[HEADER]}",
                              **body)
