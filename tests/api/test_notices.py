"""Community notices: published by the office, read by residents; the home cache forgets them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Notice
from app.services import cache
from tests import factories as f


@pytest.fixture
def place(app):
    comm = f.community()
    office = f.org(comm, "community_office")
    return {"comm": comm, "clerk": f.staff(office, "staff"),
            "resident": f.resident(comm), "other_clerk": f.staff(
                f.org(f.community(), "community_office"), "staff")}


def publish(client, clerk, **body):
    return client.post("/api/v1/staff/notices", json={"title": "停水通知", **body},
                       headers=f.headers(clerk))


def current(client, user):
    return [n["title"] for n in client.get("/api/v1/notices",
                                           headers=f.headers(user)).get_json()["items"]]


def test_published_notices_pinned_first_until_expired_or_withdrawn(client, place):
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert publish(client, place["clerk"], title="旧公告").status_code == 201
    pinned = publish(client, place["clerk"], title="置顶", pinned=True).get_json()
    publish(client, place["clerk"], title="已过期", published_at=(
        datetime.now(UTC) - timedelta(days=2)).isoformat(), expires_at=past)
    publish(client, place["clerk"], title="明天发布", published_at=(
        datetime.now(UTC) + timedelta(days=1)).isoformat())
    assert current(client, place["resident"]) == ["置顶", "旧公告"]
    r = client.post(f"/api/v1/staff/notices/{pinned['id']}/withdraw",
                    headers=f.headers(place["clerk"]))
    assert r.status_code == 200
    assert current(client, place["resident"]) == ["旧公告"]


def test_bad_notices_write_nothing(client, place):
    assert publish(client, place["clerk"], title="").status_code == 422
    now = datetime.now(UTC)
    r = publish(client, place["clerk"], published_at=now.isoformat(),
                expires_at=(now - timedelta(hours=1)).isoformat())
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "invalid_expiry"
    r = publish(client, place["clerk"], expires_at="2030-01-01T00:00:00")  # no offset
    assert r.status_code == 422
    assert publish(client, place["resident"]).status_code == 403
    assert db.session.scalar(select(func.count()).select_from(Notice)) == 0


def test_another_communitys_office_cannot_withdraw(client, place):
    notice = publish(client, place["clerk"]).get_json()
    r = client.post(f"/api/v1/staff/notices/{notice['id']}/withdraw",
                    headers=f.headers(place["other_clerk"]))
    assert r.status_code == 404


def test_publishing_invalidates_the_cached_notices(client, place):
    import app.services.bff  # noqa: F401 - registers the watched tables

    key = f"notices:{place['comm'].id}"
    cache.cached(key, 60, lambda: ["stale"], depends_on=("notices",))
    assert cache.cached(key, 60, lambda: ["fresh"], depends_on=("notices",)) == ["stale"]
    publish(client, place["clerk"])
    assert cache.cached(key, 60, lambda: ["fresh"], depends_on=("notices",)) == ["fresh"]
