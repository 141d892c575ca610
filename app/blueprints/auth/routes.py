"""Sign-in: WeChat login, staff login, refresh, logout, phone number."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from flask_jwt_extended import get_jwt, get_jwt_identity, jwt_required
from flask_smorest import Blueprint

from app.blueprints.auth.schemas import (
    AccessTokenSchema,
    LogoutSchema,
    PhoneCodeSchema,
    StaffLoginSchema,
    TokenPairSchema,
    WxLoginSchema,
)
from app.blueprints.common import rate_limited
from app.blueprints.me.schemas import UserSchema
from app.security import RESIDENT, access, current_user_id, document_security, role_required
from app.services import accounts

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Sign-in and tokens")


@blp.route("/wx-login")
class WxLogin(MethodView):
    @access("public: exchanges a WeChat login code")
    @blp.arguments(WxLoginSchema)
    @blp.response(200, TokenPairSchema)
    def post(self, body):
        """Sign in from the mini-program with a wx.login() code."""
        user, tokens = accounts.login_with_wechat(code=body["code"])
        return {**tokens, "user": user}


@blp.route("/staff-login")
class StaffLogin(MethodView):
    @access("public: staff password, rate-limited")
    @blp.arguments(StaffLoginSchema)
    @blp.response(200, TokenPairSchema)
    @rate_limited(blp, "too many failed sign-ins for the username or the address")
    def post(self, body):
        """Sign in as staff with username and password (failures are rate-limited)."""
        user, tokens = accounts.staff_login(
            username=body["username"], password=body["password"], ip=request.remote_addr or "-"
        )
        return {**tokens, "user": user}


@blp.route("/refresh")
class Refresh(MethodView):
    @access("refresh token")
    @jwt_required(refresh=True)
    @blp.response(200, AccessTokenSchema)
    def post(self):
        """Exchange the refresh token (as the bearer token) for a new access token."""
        return accounts.refresh_access_token(user_id=int(get_jwt_identity()), claims=get_jwt())


document_security(Refresh.post, ["refresh token"])


@blp.route("/logout")
class Logout(MethodView):
    @access("any valid access token")
    @jwt_required()
    @blp.arguments(LogoutSchema)
    @blp.response(204)
    def post(self, body):
        """Revoke the access token in the header and the refresh token in the body."""
        accounts.logout(access_claims=get_jwt(), refresh_token=body["refresh_token"])


document_security(Logout.post, ["any signed-in user"])


@blp.route("/phone")
class Phone(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(PhoneCodeSchema)
    @blp.response(200, UserSchema)
    def post(self, body):
        """Store the phone number from the getPhoneNumber button's code."""
        return accounts.save_phone(user_id=current_user_id(), code=body["code"])
