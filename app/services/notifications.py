"""Messages to people: an in-app notification always, a WeChat subscribe message when asked."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app, g
from sqlalchemy import func, select, update
from sqlalchemy.orm import make_transient_to_detached

from app.errors import APIError, RateLimited, UpstreamError, ValidationFailed
from app.extensions import db
from app.inserts import insert_or_skip, row_of
from app.models import Membership, Notification, NotificationPreference, User, utcnow
from app.pagination import keyset_page

log = logging.getLogger(__name__)

# What a resident can switch WeChat messages on or off for, by the prefix of a kind.
GROUPS = {
    "report": "随手拍进展",
    "booking": "预约服务",
    "activity": "活动报名",
    "timebank": "时间银行",
    "order": "食堂订单",
    "alarm": "安全守护",
}
ALWAYS_ON = {"alarm"}  # safety messages cannot be switched off
GROUP_OF_PREFIX = {"report": "report", "booking": "booking", "activity": "activity",
                   "signup": "activity", "timebank": "timebank", "redemption": "timebank",
                   "order": "order", "canteen": "order", "alarm": "alarm"}


def group_of(kind: str) -> str:
    """The preference group of a notification kind (report_update → report)."""
    return GROUP_OF_PREFIX.get(kind.split("_", 1)[0], "other")


def wechat_wanted(user_id: int, kind: str) -> bool:
    """Whether the user lets this kind reach them as a WeChat subscribe message."""
    group = group_of(kind)
    if group in ALWAYS_ON:
        return True
    choice = db.session.scalar(select(NotificationPreference.wechat).where(
        NotificationPreference.user_id == user_id, NotificationPreference.group == group))
    return choice is not False


def preferences(user_id: int) -> list[dict]:
    """Every group with the user's choice (on unless switched off)."""
    chosen = dict(db.session.execute(select(
        NotificationPreference.group, NotificationPreference.wechat).where(
        NotificationPreference.user_id == user_id)).all())
    return [{"group": g, "label": label, "wechat": g in ALWAYS_ON or chosen.get(g, True),
             "can_disable": g not in ALWAYS_ON} for g, label in GROUPS.items()]


def set_preferences(user_id: int, choices: dict[str, bool]) -> list[dict]:
    """Save the user's choices; unknown groups and switching off safety messages are 422."""
    unknown = sorted(set(choices) - set(GROUPS))
    if unknown:
        raise ValidationFailed("未知的通知类型", code="unknown_group",
                               details={"fields": {g: ["未知的通知类型"] for g in unknown}})
    if any(g in ALWAYS_ON and not on for g, on in choices.items()):
        raise ValidationFailed("安全守护通知不能关闭", code="cannot_disable",
                               details={"fields": {"alarm": ["安全守护通知不能关闭"]}})
    for group, on in choices.items():
        row = db.session.scalar(select(NotificationPreference).where(
            NotificationPreference.user_id == user_id, NotificationPreference.group == group))
        if row is None:
            db.session.add(NotificationPreference(user_id=user_id, group=group, wechat=on))
        else:
            row.wechat = on
    db.session.commit()
    return preferences(user_id)


def inbox(*, user_id: int, cursor: str | None, limit: int,
          unread_only: bool = False) -> tuple[list[Notification], str | None]:
    """The user's notifications, newest first."""
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return keyset_page(stmt, columns=[Notification.created_at, Notification.id], cursor=cursor,
                       limit=limit)


def unread_count(user_id: int) -> int:
    """How many of the user's notifications are unread."""
    return db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None))) or 0


def mark_read(*, user_id: int, ids: list[int] | None = None, everything: bool = False) -> int:
    """Mark the user's own notifications read; ids of others are ignored. Returns how many."""
    stmt = update(Notification).where(Notification.user_id == user_id,
                                      Notification.read_at.is_(None))
    if not everything:
        stmt = stmt.where(Notification.id.in_(ids or []))
    changed = db.session.execute(stmt.values(read_at=utcnow())).rowcount
    db.session.commit()
    return changed


def template_id(kind: str) -> str | None:
    """The subscribe-message template of a kind of notification.

    Real ids come from the mini-program's WeChat console through the WX_TEMPLATES setting
    (JSON: {"report_update": "<id>", ...}); in development every kind has a mock id.
    """
    configured = current_app.config.get("WX_TEMPLATES") or {}
    return configured.get(kind) or f"tmpl-{kind.replace('_', '-')}"


RETRYING = "retrying"  # WeChat could not take the message yet; a rerun of the job sends it
_DEFERRED = "linli_deferred_wx_sends"


class SubscribeSendDeferred(RuntimeError):
    """Subscribe messages WeChat could not take now (down, slow, rate-limited): retry the job."""


@contextmanager
def retry_job_on_deferred_sends() -> Iterator[None]:
    """Run a job so that transiently failed subscribe messages fail it afterwards.

    Every in-app notification is kept at once; the job then raises SubscribeSendDeferred so RQ
    retries it with backoff, and the rerun sends only the messages still marked `retrying`.
    """
    outer, deferred = g.get(_DEFERRED), []  # in-process, a job runs the jobs it enqueues
    setattr(g, _DEFERRED, deferred)
    try:
        yield
    finally:
        if outer is None:
            g.pop(_DEFERRED, None)
        else:
            setattr(g, _DEFERRED, outer)
    if deferred:
        raise SubscribeSendDeferred(
            f"{len(deferred)} subscribe message(s) not accepted by WeChat yet "
            f"({', '.join(sorted(set(deferred)))}); retrying")


def notify_user(*, user_id: int, kind: str, title: str, body: str, dedupe_key: str,
                data: dict | None = None, wx_data: dict | None = None,
                page: str | None = None) -> Notification | None:
    """Keep an in-app notification (once per dedupe_key) and send its subscribe message."""
    note = _note(user_id, kind, title, body, data, dedupe_key)
    if not _keep(note):
        # Already kept: a retried job must not message twice, unless WeChat failed last time.
        note = _awaiting_resend(note.dedupe_key) if wx_data is not None else None
        if note is None:
            return None
    if wx_data is not None and not wechat_wanted(user_id, kind):
        note.wx_status = "off"  # the resident switched this kind off
    elif wx_data is not None:
        _send_subscribe(note, kind, wx_data, page)
    db.session.commit()
    return note


def _note(user_id: int, kind: str, title: str, body: str, data: dict | None,
          dedupe_key: str) -> Notification:
    """A new in-app notification, its texts cut to their columns, its key made to fit - every
    column set, so once written it joins the session with nothing left to load (_keep)."""
    return Notification(user_id=user_id, kind=kind, title=title[:100], body=body[:500],
                        data=data or {}, dedupe_key=fitted_key(dedupe_key), wx_status=None,
                        wx_error=None, read_at=None, created_at=utcnow())


def _keep(note: Notification) -> bool:
    """Write the note unless one with its dedupe_key is kept (False): one INSERT ... ON CONFLICT
    DO NOTHING - no savepoint to catch the duplicate in. A new note joins the session as
    written, so what is set on it later is an UPDATE at the commit."""
    db.session.flush()  # what the caller added first (e.g. the user) is in before it
    new_id = db.session.connection().execute(
        insert_or_skip(Notification).returning(Notification.id),
        row_of(note)).scalar()
    if new_id is None:
        return False
    note.id = new_id
    make_transient_to_detached(note)
    db.session.add(note)
    return True


DEDUPE_KEY_LENGTH = 120  # Notification.dedupe_key's column


def fitted_key(dedupe_key: str) -> str:
    """The key as stored: itself when it fits the column, else its head and a digest of the
    whole, so that two long keys differing only past the cut stay two keys."""
    if len(dedupe_key) <= DEDUPE_KEY_LENGTH:
        return dedupe_key
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:24]
    return f"{dedupe_key[:DEDUPE_KEY_LENGTH - len(digest) - 1]}~{digest}"


def _awaiting_resend(dedupe_key: str) -> Notification | None:
    """The kept notification whose subscribe message is still to be sent, locked for the send."""
    return db.session.scalar(select(Notification).where(
        Notification.dedupe_key == dedupe_key, Notification.wx_status == RETRYING)
        .with_for_update())


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
        if _transient(exc) and g.get(_DEFERRED) is not None:
            note.wx_status = RETRYING
            getattr(g, _DEFERRED).append(exc.code)
        return
    note.wx_error = None
    note.wx_status = "sent" if result.sent else (
        "not_subscribed" if result.errcode == 43101 else "failed")
    if not result.sent:
        note.wx_error = f"{result.errcode}: {result.errmsg}"[:200]


def _transient(exc: APIError) -> bool:
    """WeChat was unreachable, timed out, answered 5xx, was busy (-1) or rate-limited (45011)."""
    if isinstance(exc, RateLimited):
        return True
    return isinstance(exc, UpstreamError) and exc.details.get("errcode") in (None, -1)


def org_staff_ids(org_id: int) -> list[int]:
    """Users holding any role in the org."""
    return list(db.session.scalars(
        select(Membership.user_id).where(Membership.org_id == org_id).distinct()
        .order_by(Membership.user_id)))


def notify_org(*, org_id: int, kind: str, title: str, body: str, dedupe_key: str,
               data: dict | None = None) -> int:
    """An in-app notification to every staff member of the org; returns how many were new.

    One INSERT ... ON CONFLICT DO NOTHING and one commit, however many there are (a community
    office with its grid workers has dozens: a transaction each was most of the worker's time
    per report). The staff notified by an earlier run are skipped by their dedupe key; a run at
    the same time waits on the key for the other's commit, then skips them too.
    """
    rows = [row_of(_note(user_id, kind, title, body, data, f"{dedupe_key}:u{user_id}"))
            for user_id in org_staff_ids(org_id)]
    added = 0
    if rows:  # one statement: the staff already notified (a rerun) are skipped by their key
        added = len(db.session.connection().execute(
            insert_or_skip(Notification).returning(Notification.id), rows).all())
    db.session.commit()
    return added
