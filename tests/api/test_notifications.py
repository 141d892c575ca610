"""The in-app inbox and message preferences."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Notification, NotificationPreference
from app.services import notifications
from miniprogram_mock.wechat_server import shared_mock_app
from tests import factories as f


@pytest.fixture
def people(app):
    comm = f.community()
    return {"me": f.resident(comm, openid="mock-openid-me"), "other": f.resident(comm)}


def send(user, kind="report_update", n=1, wx=True):
    for i in range(n):
        notifications.notify_user(
            user_id=user.id, kind=kind, title=f"第{i}条", body="您反映的问题已受理",
            dedupe_key=f"t:{user.id}:{kind}:{i}",
            wx_data={"thing1": "垃圾乱堆放", "phrase2": "已受理"} if wx else None)


def inbox(client, user, **params):
    return client.get("/api/v1/notifications", query_string=params, headers=f.headers(user))


def wechat_messages(openid):
    return shared_mock_app().extensions["mock_wechat"].messages(touser=openid)


def test_inbox_is_newest_first_paginated_with_unread_count(client, people):
    send(people["me"], n=5)
    send(people["other"], n=2)
    first = inbox(client, people["me"], limit=3).get_json()
    assert [n["title"] for n in first["items"]] == ["第4条", "第3条", "第2条"]
    assert first["unread_count"] == 5
    rest = inbox(client, people["me"], limit=3, cursor=first["next_cursor"]).get_json()
    assert [n["title"] for n in rest["items"]] == ["第1条", "第0条"]
    assert rest["next_cursor"] is None


def test_mark_read_by_ids_ignores_someone_elses(client, people):
    send(people["me"], n=3)
    send(people["other"], n=1)
    mine = [n["id"] for n in inbox(client, people["me"]).get_json()["items"]]
    theirs = db.session.scalar(select(Notification.id).where(
        Notification.user_id == people["other"].id))
    r = client.post("/api/v1/notifications/read", json={"ids": [mine[0], theirs]},
                    headers=f.headers(people["me"]))
    assert r.status_code == 200 and r.get_json() == {"marked": 1, "unread_count": 2}
    assert db.session.get(Notification, theirs).read_at is None
    r = client.post("/api/v1/notifications/read", json={"all": True},
                    headers=f.headers(people["me"]))
    assert r.get_json() == {"marked": 2, "unread_count": 0}
    unread = inbox(client, people["me"], unread=True).get_json()
    assert unread["items"] == []


def test_mark_read_needs_ids_or_all(client, people):
    r = client.post("/api/v1/notifications/read", json={}, headers=f.headers(people["me"]))
    assert r.status_code == 422 and "ids" in r.get_json()["error"]["details"]["fields"]


def test_preferences_default_on_and_switching_off_stops_wechat_but_keeps_inbox(client, people):
    me = people["me"]
    r = client.get("/api/v1/me/notification-preferences", headers=f.headers(me))
    prefs = {p["group"]: p for p in r.get_json()["items"]}
    assert prefs["report"]["wechat"] is True and prefs["alarm"]["can_disable"] is False

    r = client.put("/api/v1/me/notification-preferences", json={"wechat": {"report": False}},
                   headers=f.headers(me))
    assert {p["group"]: p["wechat"] for p in r.get_json()["items"]}["report"] is False
    send(me, kind="report_update")
    assert wechat_messages("mock-openid-me") == []
    assert inbox(client, me).get_json()["unread_count"] == 1
    assert db.session.scalar(select(Notification.wx_status)) == "off"

    client.put("/api/v1/me/notification-preferences", json={"wechat": {"report": True}},
               headers=f.headers(me))
    send(me, kind="report_resolved")
    assert len(wechat_messages("mock-openid-me")) == 1


@pytest.mark.parametrize("body, code", [
    ({"wechat": {"spam": True}}, "unknown_group"),
    ({"wechat": {"alarm": False}}, "cannot_disable"),
    ({"wechat": {"report": "yes please"}}, "validation_error"),
])
def test_bad_preferences_write_nothing(client, people, body, code):
    r = client.put("/api/v1/me/notification-preferences", json=body,
                   headers=f.headers(people["me"]))
    assert r.status_code == 422 and r.get_json()["error"]["code"] == code
    assert db.session.scalar(select(func.count()).select_from(NotificationPreference)) == 0


def test_long_subscribe_fields_are_trimmed_to_wechat_limits(people):
    notifications.notify_user(
        user_id=people["me"].id, kind="report_update", title="t", body="b", dedupe_key="long",
        wx_data={"thing1": "这是一段超过二十个字的很长很长很长很长很长的描述文字",
                 "phrase2": "已经处理完毕了"})
    [message] = wechat_messages("mock-openid-me")
    assert len(message["data"]["thing1"]["value"]) <= 20
    assert len(message["data"]["phrase2"]["value"]) <= 5


def test_same_dedupe_key_sends_once(people):
    send(people["me"])
    send(people["me"])
    assert len(wechat_messages("mock-openid-me")) == 1
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1
