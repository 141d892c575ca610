"""In-app notifications to an org's staff (notify_org): everyone once, however often it runs."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Notification
from app.services.notifications import notify_org
from tests import factories as f


def _notified() -> list[tuple[int, str]]:
    with db.engine.connect() as conn:  # what was committed
        return sorted(conn.execute(select(Notification.user_id, Notification.title)).all())


def test_every_staff_member_is_notified_once_and_a_rerun_adds_nothing(app):
    office = f.org(f.community(), "community_office")
    staff = sorted(f.staff(office).id for _ in range(3))
    outsider = f.staff(f.org(f.community(), "community_office")).id

    assert notify_org(org_id=office.id, kind="ticket", title="工单 #1：新工单", body="",
                      dedupe_key="ticket-event:1") == 3
    assert notify_org(org_id=office.id, kind="ticket", title="工单 #1：新工单", body="",
                      dedupe_key="ticket-event:1") == 0  # a retried job

    assert _notified() == [(user_id, "工单 #1：新工单") for user_id in staff]
    assert outsider not in {user_id for user_id, _ in _notified()}


def test_a_member_who_joined_later_is_notified_on_a_rerun_the_others_are_not(app):
    office = f.org(f.community(), "community_office")
    first = f.staff(office).id
    notify_org(org_id=office.id, kind="ticket", title="新工单", body="", dedupe_key="e:2")
    newcomer = f.staff(office).id

    assert notify_org(org_id=office.id, kind="ticket", title="新工单", body="",
                      dedupe_key="e:2") == 1
    assert _notified() == [(first, "新工单"), (newcomer, "新工单")]
