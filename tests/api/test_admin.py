"""Admins see jobs that failed for good and can requeue them."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import OutboxMessage, OutboxStatus
from app.services import outbox
from tests import factories as f
from workers.jobs import job

ATTEMPTS: list[int] = []


@job("tests.admin_flaky")
def flaky(fail: bool = True) -> None:
    """Fails while ATTEMPTS is short of 1 entry."""
    ATTEMPTS.append(1)
    if len(ATTEMPTS) < 2:
        raise RuntimeError("receiver down")


@pytest.fixture
def admin(app):
    comm = f.community()
    return f.staff(f.org(comm, "community_office"), "admin")


def test_failed_job_is_listed_with_its_error_and_can_be_requeued(client, admin):
    ATTEMPTS.clear()
    outbox.add_job("tests.admin_flaky")
    outbox.commit()  # runs in-process and fails
    row = db.session.scalar(db.select(OutboxMessage))
    assert row.status == OutboxStatus.FAILED

    r = client.get("/api/v1/admin/jobs/failed", headers=f.headers(admin))
    assert r.status_code == 200
    [item] = r.get_json()["items"]
    assert item["id"] == row.id and item["job"] == "tests.admin_flaky"
    assert "receiver down" in item["last_error"]

    r = client.post(f"/api/v1/admin/jobs/failed/{row.id}/requeue", headers=f.headers(admin))
    assert r.status_code == 200
    db.session.expire_all()
    assert db.session.get(OutboxMessage, row.id).status == OutboxStatus.DONE
    assert client.get("/api/v1/admin/jobs/failed",
                      headers=f.headers(admin)).get_json()["items"] == []
    r = client.post(f"/api/v1/admin/jobs/failed/{row.id}/requeue", headers=f.headers(admin))
    assert r.status_code == 409


def test_only_admins(client, admin):
    clerk = f.staff(f.org(f.community()), "manager")
    assert client.get("/api/v1/admin/jobs/failed", headers=f.headers(clerk)).status_code == 403
    resident = f.resident()
    assert client.get("/api/v1/admin/jobs/failed",
                      headers=f.headers(resident)).status_code == 403
