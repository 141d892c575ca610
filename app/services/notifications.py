"""Messages to people: an in-app notification always, a WeChat subscribe message when asked."""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.errors import APIError
from app.extensions import db
from app.models import Membership, Notification, User

log = logging.getLogger(__name__)

def template_id(kind: str) -> str | None:
    """The subscribe-message template of a kind of notification.

    Real ids come from the mini-program's WeChat console through the WX_TEMPLATES setting
    (JSON: {"report_update": "<id>", ...}); in development every kind has a mock id.
    """
    configured = current_app.config.get("WX_TEMPLATES") or {}
    return configured.get(kind) or f"tmpl-{kind.replace('_', '-')}"


def notify_user(*, user_id: int, kind: str, title: str, body: str, dedupe_key: str,
                data: dict | None = None, wx_data: dict | None = None,
                page: str | None = None) -> Notification | None:
    """Keep an in-app notification (once per dedupe_key) and send its subscribe message."""
    note = Notification(user_id=user_id, kind=kind, title=title[:100], body=body[:500],
                        data=data or {}, dedupe_key=dedupe_key[:120])
    try:
        with db.session.begin_nested():
            db.session.add(note)
    except IntegrityError:
        return None  # already sent: a retried job must not message twice
    if wx_data is not None:
        _send_subscribe(note, kind, wx_data, page)
    db.session.commit()
    return note


def _send_subscribe(note: Notification, kind: str, wx_data: dict, page: str | None) -> None:
    """Send the WeChat subscribe message for `note`, recording the outcome on it."""
    from app.wechat import get_client

    user = db.session.get(User, note.user_id)
    template = template_id(kind)
    if user is None or not user.openid or not template:
        note.wx_status = "skipped"
        return
    try:
        result = get_client().send_subscribe_message(
            openid=user.openid, template_id=template, data=wx_data, page=page)
    except APIError as exc:
        note.wx_status, note.wx_error = "failed", f"{exc.code}: {exc.message}"[:200]
        log.warning("subscribe message %s to user %s failed: %s", kind, user.id, exc.code)
        return
    note.wx_status = "sent" if result.sent else (
        "not_subscribed" if result.errcode == 43101 else "failed")
    if not result.sent:
        note.wx_error = f"{result.errcode}: {result.errmsg}"[:200]


def org_staff_ids(org_id: int) -> list[int]:
    """Users holding any role in the org."""
    return list(db.session.scalars(
        select(Membership.user_id).where(Membership.org_id == org_id).distinct()
        .order_by(Membership.user_id)))


def notify_org(*, org_id: int, kind: str, title: str, body: str, dedupe_key: str,
               data: dict | None = None) -> int:
    """An in-app notification to every staff member of the org; returns how many were new."""
    sent = 0
    for user_id in org_staff_ids(org_id):
        if notify_user(user_id=user_id, kind=kind, title=title, body=body, data=data,
                       dedupe_key=f"{dedupe_key}:u{user_id}"):
            sent += 1
    return sent
