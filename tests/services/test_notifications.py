"""In-app notifications (notify_org to an org's staff, notify_user): each once, however often
the job runs; keys longer than their column stay distinct."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Notification
from app.services.notifications import DEDUPE_KEY_LENGTH, notify_org, notify_user
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


def test_long_dedupe_keys_that_differ_past_the_column_stay_distinct(app):
    office = f.org(f.community(), "community_office")
    staff = sorted(f.staff(office).id for _ in range(3))
    head = "activity-reminder:" + "x" * DEDUPE_KEY_LENGTH  # longer than the column already
    resident = f.resident().id

    assert notify_org(org_id=office.id, kind="ticket", title="A", body="",
                      dedupe_key=head + ":1") == 3  # per-member suffixes all past the cut
    assert notify_org(org_id=office.id, kind="ticket", title="B", body="",
                      dedupe_key=head + ":2") == 3
    assert notify_org(org_id=office.id, kind="ticket", title="A", body="",
                      dedupe_key=head + ":1") == 0  # a retried job still adds nothing
    assert notify_user(user_id=resident, kind="report_update", title="C", body="",
                       dedupe_key=head + ":1") is not None
    assert notify_user(user_id=resident, kind="report_update", title="D", body="",
                       dedupe_key=head + ":2") is not None
    assert notify_user(user_id=resident, kind="report_update", title="D", body="",
                       dedupe_key=head + ":2") is None

    assert _notified() == sorted([(u, t) for u in staff for t in "AB"]
                                 + [(resident, "C"), (resident, "D")])
    with db.engine.connect() as conn:
        keys = conn.scalars(select(Notification.dedupe_key)).all()
    assert max(map(len, keys)) <= DEDUPE_KEY_LENGTH


def test_a_users_notification_is_one_insert_and_a_rerun_changes_nothing(app):
    from tests.sql_fixtures import statements

    resident = f.resident().id
    db.session.commit()
    with statements() as first:
        note = notify_user(user_id=resident, kind="report_update", title="已受理", body="",
                           dedupe_key="report-event:7:u1", data={"report_id": 7})
    assert [s.split()[0] for s in first] == ["INSERT"]  # no savepoint around it
    assert note.id and note.title == "已受理" and note.data == {"report_id": 7}
    with statements() as again:
        assert notify_user(user_id=resident, kind="report_update", title="已受理", body="",
                           dedupe_key="report-event:7:u1") is None
    assert [s.split()[0] for s in again] == ["INSERT"]  # skipped by its key, no error
    assert _notified() == [(resident, "已受理")]


def test_what_is_set_on_a_new_users_notification_is_written(app, monkeypatch):
    from app.services import notifications

    resident = f.resident()
    db.session.commit()
    # the subscribe message's outcome is set on the note after its INSERT
    monkeypatch.setattr(notifications, "template_id", lambda kind: None)
    note = notify_user(user_id=resident.id, kind="report_update", title="已处理", body="",
                       dedupe_key="report-event:8:u1", wx_data={"thing1": "x"})
    assert note.wx_status == "skipped"
    with db.engine.connect() as conn:
        assert conn.scalar(select(Notification.wx_status).where(
            Notification.id == note.id)) == "skipped"
