"""Sign-in, tokens, staff accounts, the caller's profile and household claims."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from werkzeug.security import check_password_hash, generate_password_hash

from app import ratelimit
from app.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from app.extensions import db
from app.models import (
    Building,
    ClaimStatus,
    Household,
    HouseholdMember,
    Membership,
    Org,
    Relation,
    Role,
    User,
)
from app.security import PLATFORM_OPERATOR, RESIDENT, STAFF_KIND, revoke_token

# Checked against when the username is unknown, so both failures cost the same time.
_DUMMY_HASH = generate_password_hash("linli-dummy-password")


def issue_tokens(user: User, kind: str) -> dict:
    """Create the access/refresh token pair for `user` signed in as `kind`."""
    claims = token_claims(user, kind)
    return {
        "access_token": create_access_token(identity=str(user.id), additional_claims=claims),
        "refresh_token": create_refresh_token(identity=str(user.id), additional_claims=claims),
        "token_type": "Bearer",
        "expires_in": int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
    }


def token_claims(user: User, kind: str) -> dict:
    """The claims a token carries: the kind of sign-in, and for staff their org roles (and
    `platform_operator: true` for a platform operator)."""
    claims: dict = {"kind": kind, "community_id": user.community_id}
    if kind == STAFF_KIND:
        rows = db.session.execute(
            select(Membership.role, Org.id, Org.code, Org.type, Org.community_id)
            .join(Org, Org.id == Membership.org_id)
            .where(Membership.user_id == user.id)
            .order_by(Org.id)
        ).all()
        claims["orgs"] = [
            {"id": r.id, "code": r.code, "type": str(r.type), "role": str(r.role),
             "community_id": r.community_id}
            for r in rows
        ]
        claims["roles"] = sorted({str(r.role) for r in rows})
        if user.is_platform_operator:
            claims[PLATFORM_OPERATOR] = True
    return claims


def login_with_wechat(*, code: str) -> tuple[User, dict]:
    """Exchange a wx.login code for our tokens, creating the user on first sign-in."""
    from app.wechat import get_client

    session = get_client().code2session(code)
    appid = current_app.config["WX_APPID"]
    user = db.session.scalar(
        select(User).where(User.wx_appid == appid, User.openid == session["openid"])
    )
    if user is None:
        user = User(wx_appid=appid, openid=session["openid"], unionid=session.get("unionid"),
                    display_name="微信用户")
        db.session.add(user)
        try:
            db.session.commit()
        except IntegrityError:  # two first logins at once: the other one created it
            db.session.rollback()
            user = db.session.scalar(
                select(User).where(User.wx_appid == appid, User.openid == session["openid"])
            )
    if not user.is_active:
        raise Unauthorized("账号已停用", code="account_inactive")
    return user, issue_tokens(user, RESIDENT)


def staff_login(*, username: str, password: str, ip: str) -> tuple[User, dict]:
    """Check a staff password, rate-limiting failures per username and per IP."""
    cfg = current_app.config
    user_key, ip_key = f"login:user:{username.lower()}", f"login:ip:{ip}"
    ratelimit.ensure_below(user_key, cfg["LOGIN_MAX_FAILURES"], "登录失败次数过多，请稍后再试")
    ratelimit.ensure_below(ip_key, cfg["LOGIN_MAX_FAILURES"] * 4, "登录失败次数过多，请稍后再试")
    user = db.session.scalar(select(User).where(User.username == username))
    valid = check_password_hash(user.password_hash if user and user.password_hash
                                else _DUMMY_HASH, password)
    if not (user and user.password_hash and valid and user.is_active):
        window = cfg["LOGIN_FAILURE_WINDOW_SECONDS"]
        ratelimit.hit(user_key, window)
        ratelimit.hit(ip_key, window)
        raise Unauthorized("用户名或密码错误", code="invalid_credentials")
    ratelimit.clear(user_key)
    return user, issue_tokens(user, STAFF_KIND)


def refresh_access_token(*, user_id: int, claims: dict) -> dict:
    """A new access token for the holder of a valid refresh token (roles re-read)."""
    user = db.session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("账号不存在或已停用", code="account_inactive")
    fresh = token_claims(user, claims.get("kind", RESIDENT))
    return {
        "access_token": create_access_token(identity=str(user.id), additional_claims=fresh),
        "token_type": "Bearer",
        "expires_in": int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
    }


def logout(*, access_claims: dict, refresh_token: str | None) -> None:
    """Revoke the access token and, when given and the caller's own, the refresh token."""
    if refresh_token:
        try:
            refresh_claims = decode_token(refresh_token)
        except Exception as exc:
            raise ValidationFailed("refresh_token 无效", code="invalid_refresh_token") from exc
        if refresh_claims.get("type") != "refresh" or refresh_claims["sub"] != access_claims["sub"]:
            raise ValidationFailed("refresh_token 无效", code="invalid_refresh_token")
        revoke_token(refresh_claims)
    revoke_token(access_claims)


def save_phone(*, user_id: int, code: str) -> User:
    """Store the phone number WeChat returns for a getPhoneNumber code."""
    from app.wechat import get_client

    phone = get_client().get_phone_number(code)
    user = db.session.get(User, user_id)
    user.phone = phone
    db.session.commit()
    return user


def load_profile(user_id: int) -> User:
    """The user with households (and buildings) and org memberships loaded."""
    user = db.session.scalar(
        select(User).where(User.id == user_id).options(
            selectinload(User.household_links)
            .selectinload(HouseholdMember.household)
            .selectinload(Household.building),
            selectinload(User.memberships).selectinload(Membership.org),
        )
    )
    if user is None:
        raise Unauthorized("账号不存在或已停用", code="account_inactive")
    return user


def claim_household(*, user_id: int, building_id: int, unit: str, room: str,
                    relation: str) -> HouseholdMember:
    """File a pending claim on a room; the community office decides."""
    building = db.session.get(Building, building_id)
    if building is None:
        raise ValidationFailed("楼栋不存在", code="building_not_found",
                               details={"fields": {"building_id": ["楼栋不存在"]}})
    household = db.session.scalar(
        select(Household).where(Household.building_id == building_id,
                                Household.unit == unit, Household.room == room)
    )
    if household is None:
        raise ValidationFailed("该房间不存在", code="room_not_found",
                               details={"fields": {"room": ["该楼栋没有这个单元/房间"]}})
    existing = db.session.scalar(
        select(HouseholdMember).where(HouseholdMember.household_id == household.id,
                                      HouseholdMember.user_id == user_id)
    )
    if existing is not None and existing.status != ClaimStatus.REJECTED:
        raise Conflict("已经提交过该房屋的认证", code="claim_exists")
    if existing is not None:
        db.session.delete(existing)
        db.session.flush()
    claim = HouseholdMember(community_id=household.community_id, household_id=household.id,
                            user_id=user_id, relation=Relation(relation))
    db.session.add(claim)
    db.session.commit()
    return load_claim(claim.id)


def load_claim(claim_id: int) -> HouseholdMember:
    """A claim with its household and building loaded."""
    claim = db.session.scalar(
        select(HouseholdMember).where(HouseholdMember.id == claim_id).options(
            selectinload(HouseholdMember.household).selectinload(Household.building),
            selectinload(HouseholdMember.user),
        )
    )
    if claim is None:
        raise NotFound()
    return claim


def list_pending_claims(*, community_ids: set[int]) -> list[HouseholdMember]:
    """Claims waiting for the community office, oldest first."""
    return list(db.session.scalars(
        select(HouseholdMember)
        .where(HouseholdMember.status == ClaimStatus.PENDING,
               HouseholdMember.community_id.in_(community_ids))
        .options(selectinload(HouseholdMember.household).selectinload(Household.building),
                 selectinload(HouseholdMember.user))
        .order_by(HouseholdMember.created_at, HouseholdMember.id)
        .limit(200)
    ))


def decide_claim(*, claim_id: int, approve: bool, staff_id: int, community_ids: set[int],
                 note: str | None = None) -> HouseholdMember:
    """Approve or reject a pending claim; 404 outside the staff member's community."""
    claim = db.session.get(HouseholdMember, claim_id)
    if claim is None or claim.community_id not in community_ids:
        raise NotFound()
    if claim.status != ClaimStatus.PENDING:
        raise Conflict("该认证已处理", code="invalid_transition",
                       details={"status": str(claim.status)})
    claim.status = ClaimStatus.APPROVED if approve else ClaimStatus.REJECTED
    claim.decided_by_id, claim.decided_at, claim.decision_note = staff_id, datetime.now(UTC), note
    if approve:
        user = db.session.get(User, claim.user_id)
        user.community_id = user.community_id or claim.community_id
    db.session.commit()
    return load_claim(claim.id)


def _login_for(username: str, password: str, *, reset_password: bool,
               display_name: str | None, community_id: int | None) -> User:
    """The login `username`, added to the session when new (with `password`).

    Adding a role to someone's existing login must not silently replace the password they sign
    in with: the operator gives the current one (422 `password_mismatch` otherwise), or asks
    for `reset_password`. A password that is set is at least 8 characters (`weak_password`).
    """
    user = db.session.scalar(select(User).where(User.username == username))
    if user is not None and not reset_password:
        if not (user.password_hash and check_password_hash(user.password_hash, password)):
            raise ValidationFailed("该账号已存在，密码与现有密码不符（如需重设密码请加 "
                                   "--reset-password）", code="password_mismatch")
        return user
    if len(password) < 8:
        raise ValidationFailed("密码至少 8 位", code="weak_password")
    if user is None:
        user = User(username=username, display_name=display_name or username,
                    community_id=community_id)
        db.session.add(user)
    user.password_hash = generate_password_hash(password)
    return user


def create_staff(*, username: str, password: str, org_code: str, role: str,
                 display_name: str | None = None, reset_password: bool = False) -> User:
    """Create a staff login (or add a role to an existing one) in the org `org_code`.

    An existing login keeps its password: `password` must be its current one, unless
    `reset_password` replaces it (see _login_for).
    """
    org = db.session.scalar(select(Org).where(Org.code == org_code))
    if org is None:
        raise NotFound(f"没有编码为 {org_code} 的组织", code="org_not_found")
    user = _login_for(username, password, reset_password=reset_password,
                      display_name=display_name, community_id=org.community_id)
    db.session.flush()
    role = Role(role)
    exists = db.session.scalar(select(Membership).where(
        Membership.user_id == user.id, Membership.org_id == org.id, Membership.role == role))
    if exists is None:
        db.session.add(Membership(user_id=user.id, org_id=org.id, role=role))
    db.session.commit()
    return user


def make_platform_operator(*, username: str, password: str, display_name: str | None = None,
                           reset_password: bool = False) -> User:
    """Create a platform operator's login (no org, no community), or flag an existing login
    (whose password stays, as for create_staff)."""
    user = _login_for(username, password, reset_password=reset_password,
                      display_name=display_name, community_id=None)
    user.is_platform_operator = True
    db.session.commit()
    return user


def revoke_platform_operator(*, username: str) -> User:
    """Take the platform role away from a login (it keeps its org roles, if any)."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"没有用户名为 {username} 的账号", code="user_not_found")
    user.is_platform_operator = False
    db.session.commit()
    return user


def update_profile(*, user_id: int, **changes) -> User:
    """Change the caller's display name and birth year (used for age-based services)."""
    from datetime import date

    user = db.session.get(User, user_id)
    year = changes.get("birth_year")
    if year is not None and not 1900 <= year <= date.today().year:
        raise ValidationFailed("出生年份不正确", code="invalid_birth_year",
                               details={"fields": {"birth_year": ["出生年份不正确"]}})
    for name in ("display_name", "birth_year"):
        if name in changes:
            setattr(user, name, changes[name])
    db.session.commit()
    return load_profile(user_id)
