"""Roles, the role_required decorator, and helpers for the current user and orgs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from copy import deepcopy
from datetime import UTC, datetime
from functools import wraps

from flask import Flask
from flask_jwt_extended import get_jwt, get_jwt_identity, verify_jwt_in_request
from redis.exceptions import RedisError

from app.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized, error_response
from app.extensions import db, jwt, redis_store

log = logging.getLogger(__name__)

RESIDENT = "resident"
STAFF_KIND = "staff"
# The people who run the deployment: a flag on the login (users.is_platform_operator), not a
# role in an org, because every org belongs to one community (see is_platform_operator).
PLATFORM_OPERATOR = "platform_operator"
BLOCKLIST_PREFIX = "linli:jwt:revoked:"


def role_required(*roles: str, org_types: Iterable[str] | None = None) -> Callable:
    """Allow a route only to callers holding one of `roles`.

    `resident` means a token from WeChat login; `platform_operator` a staff login flagged as
    one (see is_platform_operator); any other name is a staff role held in an org (optionally
    of one of `org_types`). Token problems are 401, role problems 403.
    """
    allowed = set(roles)
    staff_roles = allowed - {RESIDENT, PLATFORM_OPERATOR}
    types = set(org_types or ())

    def decorator(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args, **kwargs):
            verify_jwt_in_request()
            claims = get_jwt()
            if RESIDENT in allowed and claims.get("kind") == RESIDENT:
                return fn(*args, **kwargs)
            if PLATFORM_OPERATOR in allowed and is_platform_operator(claims):
                return fn(*args, **kwargs)
            # staff_orgs(roles=set()) means "any role": a resident-only route must not use it.
            if not staff_roles or not staff_orgs(roles=staff_roles, org_types=types):
                raise Forbidden("没有权限执行此操作", code="forbidden_role")
            return fn(*args, **kwargs)

        document_security(wrapper, sorted(allowed))
        wrapper._linli_access = "roles: " + ", ".join(sorted(allowed))
        return wrapper

    return decorator


def access(rule: str) -> Callable:
    """Declare who may call a route that is not behind role_required, and why.

    e.g. @access("public: health probe"), @access("screen token"), @access("Open311 api_key").
    A test walks the URL map and fails on any route without a declaration.
    """

    def decorator(fn: Callable) -> Callable:
        fn._linli_access = rule
        return fn

    return decorator


def document_security(view: Callable, roles: list[str]) -> None:
    """Declare bearer auth and the allowed roles in the view's OpenAPI doc (flask-smorest)."""
    doc = deepcopy(getattr(view, "_apidoc", {}))
    manual = doc.setdefault("manual_doc", {})
    manual["security"] = [{"bearerAuth": []}]
    manual.setdefault("description", "")
    manual["description"] = (manual["description"] + f"\n\nRoles: {', '.join(roles)}.").strip()
    view._apidoc = doc


def is_platform_operator(claims: dict) -> bool:
    """Whether a staff token's holder is a platform operator, confirmed in the database.

    The token says so (`platform_operator` claim), but the flag is re-read on every call: the
    role reaches every community's data, so a revoked or disabled operator loses it at once
    rather than when the token expires. Only the few platform routes pay the lookup.
    """
    from app.models import User

    if claims.get("kind") != STAFF_KIND or claims.get(PLATFORM_OPERATOR) is not True:
        return False
    user = db.session.get(User, current_user_id())
    return bool(user and user.is_active and user.is_platform_operator)


def token_community_id() -> int | None:
    """The community the caller's token names: final when it names one (an account's community,
    once set, never changes); None when the account had none as the token was issued - since
    changed perhaps, so read the account then."""
    return get_jwt().get("community_id")


def current_user_id() -> int:
    """The id of the authenticated user (identity is the user id as a string)."""
    return int(get_jwt_identity())


def current_user():
    """Load the authenticated user; 401 if the account is gone or disabled."""
    from app.models import User

    user = db.session.get(User, current_user_id())
    if user is None or not user.is_active:
        raise Unauthorized("账号不存在或已停用", code="account_inactive")
    return user


def staff_orgs(*, roles: Iterable[str] | None = None,
               org_types: Iterable[str] | None = None) -> list[dict]:
    """The caller's org memberships from the token, filtered by role and org type."""
    claims = get_jwt()
    if claims.get("kind") != STAFF_KIND:
        return []
    roles, org_types = set(roles or ()), set(org_types or ())
    return [
        m for m in claims.get("orgs", [])
        if (not roles or m["role"] in roles) and (not org_types or m["type"] in org_types)
    ]


def staff_org_ids(**filters) -> set[int]:
    """Ids of the caller's orgs (see staff_orgs for filters)."""
    return {m["id"] for m in staff_orgs(**filters)}


def require_community(obj, community_id: int | None):
    """404 unless obj belongs to the caller's community (never leak other tenants' rows)."""
    if obj is None or (community_id is not None and obj.community_id != community_id):
        raise NotFound()
    return obj


def revoke_token(claims: dict) -> None:
    """Put a token's jti on the Redis blocklist for the rest of its lifetime (503 if Redis is down).

    A logout that cannot be recorded is refused rather than reported as done.
    """
    ttl = int(claims["exp"] - datetime.now(UTC).timestamp())
    if ttl <= 0:
        return
    try:
        redis_store.client.set(BLOCKLIST_PREFIX + claims["jti"], b"1", ex=ttl)
    except RedisError as exc:
        raise ServiceUnavailable("暂时无法退出登录，请稍后再试", code="logout_unavailable") from exc


def is_revoked(payload: dict) -> bool:
    """Whether a token is on the blocklist, deciding deliberately when Redis is down.

    Access tokens fail open (they live 30 minutes; residents keep working through an outage);
    refresh tokens fail closed with a 503, so a revoked 30-day token can mint nothing meanwhile.
    """
    try:
        return redis_store.client.exists(BLOCKLIST_PREFIX + payload["jti"]) == 1
    except RedisError as exc:
        if payload.get("type") == "refresh":
            raise ServiceUnavailable("暂时无法续期登录，请稍后再试",
                                     code="token_check_unavailable") from exc
        log.warning("token blocklist unavailable (Redis: %s); accepting access token", exc)
        return False


def register_jwt_handlers(app: Flask) -> None:
    """Every flask-jwt-extended failure becomes a 401 in the house error shape."""

    @jwt.token_in_blocklist_loader
    def _is_revoked(_header, payload):
        return is_revoked(payload)

    @jwt.unauthorized_loader
    def _missing(reason):
        return error_response(401, "token_missing", "请先登录", {"reason": reason})

    @jwt.invalid_token_loader
    def _invalid(reason):
        return error_response(401, "token_invalid", "登录凭证无效，请重新登录", {"reason": reason})

    @jwt.expired_token_loader
    def _expired(_header, _payload):
        return error_response(401, "token_expired", "登录已过期，请重新登录")

    @jwt.revoked_token_loader
    def _revoked(_header, _payload):
        return error_response(401, "token_revoked", "登录已退出，请重新登录")

    @jwt.needs_fresh_token_loader
    def _not_fresh(_header, _payload):
        return error_response(401, "token_not_fresh", "请重新登录后再试")

    @jwt.user_lookup_error_loader
    def _lookup(_header, _payload):
        return error_response(401, "account_inactive", "账号不存在或已停用")

    @jwt.token_verification_failed_loader
    def _claims_failed(_header, _payload):
        return error_response(401, "token_invalid", "登录凭证无效，请重新登录")
