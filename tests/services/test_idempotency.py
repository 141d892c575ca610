"""The Idempotency-Key decorator on its own: the claim commits with the view's work."""

from __future__ import annotations

import pytest
from flask import jsonify
from sqlalchemy import event, func, select

from app import idempotency
from app.extensions import db, redis_store
from app.models import Community, IdempotencyRecord
from app.services import outbox
from tests import factories as f
from workers.jobs import PING_KEY


@pytest.fixture
def caller(app, monkeypatch):
    """Run a view under @idempotent as one resident's POST with the given key."""
    user_id = f.resident().id
    db.session.commit()
    monkeypatch.setattr(idempotency, "current_user_id", lambda: user_id)

    def call(view, key="k-1", body=b'{"a": 1}'):
        with app.test_request_context("/api/v1/things", method="POST", data=body,
                                      headers={"Idempotency-Key": key,
                                               "Content-Type": "application/json"}):
            try:
                return idempotency.idempotent()(view)()
            finally:
                db.session.remove()  # the end of the request

    return call


def _count(model) -> int:
    with db.engine.connect() as conn:  # another connection: only what was committed
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def _add_community(name: str) -> int:
    community = Community(code=name, name=name)
    db.session.add(community)
    db.session.flush()
    return community.id


def test_the_claim_is_not_committed_before_the_work_and_a_retry_replays(caller):
    runs = []

    def view():
        assert _count(IdempotencyRecord) == 0  # the claim waits for the view's commit
        runs.append(_add_community(f"c{len(runs)}"))
        db.session.commit()
        return jsonify(id=runs[-1]), 201

    first = caller(view)
    again = caller(view)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    assert len(runs) == 1 and _count(Community) == 1 and _count(IdempotencyRecord) == 1


def test_a_view_that_fails_leaves_no_claim_and_the_key_can_be_used_again(caller):
    def failing():
        _add_community("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        caller(failing)
    assert _count(IdempotencyRecord) == 0 and _count(Community) == 0

    def working():
        _add_community("whole")
        db.session.commit()
        return jsonify(ok=True), 201

    assert caller(working).status_code == 201
    assert _count(IdempotencyRecord) == 1 and _count(Community) == 1


def test_a_view_that_rolled_back_its_transaction_is_still_replayed(caller):
    runs = []

    def view():
        _add_community("discarded")
        db.session.rollback()  # e.g. a retried conflict: the claim went with it
        runs.append(_add_community("kept"))
        db.session.commit()
        return jsonify(id=runs[-1]), 201

    first = caller(view)
    again = caller(view)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json() and len(runs) == 1
    assert _count(Community) == 1 and _count(IdempotencyRecord) == 1


def test_a_non_success_answer_writes_nothing_and_keeps_no_claim(caller):
    def refusing():
        _add_community("not-this")
        return jsonify(error="no"), 409

    assert caller(refusing).status_code == 409
    assert _count(IdempotencyRecord) == 0 and _count(Community) == 0


def test_work_committed_through_the_outbox_and_the_answer_commit_once_together(caller):
    commits = []  # what another connection sees after each commit

    def count_commit(_session):
        with db.engine.connect() as conn:
            answered = conn.execute(select(func.count()).select_from(IdempotencyRecord).where(
                IdempotencyRecord.status_code.is_not(None))).scalar_one()
        commits.append((_count(Community), answered))

    event.listen(db.session, "after_commit", count_commit)
    try:
        def view():
            _add_community("together")
            outbox.add_job("ping", value="after the commit")
            outbox.commit()  # held by the decorator: nothing is committed yet
            assert _count(Community) == 0 and _count(IdempotencyRecord) == 0
            return jsonify(ok=True), 201

        assert caller(view).status_code == 201
    finally:
        event.remove(db.session, "after_commit", count_commit)
    assert commits[0] == (1, 1)  # the first commit holds the work and the stored answer
    assert redis_store.client.lrange(PING_KEY, 0, -1) == [b"after the commit"]


def test_a_failure_after_the_services_commit_leaves_nothing_written(caller):
    def view():
        _add_community("half")
        outbox.add_job("ping", value="never")
        outbox.commit()
        raise RuntimeError("the answer could not be made")

    with pytest.raises(RuntimeError):
        caller(view)
    assert _count(Community) == 0 and _count(IdempotencyRecord) == 0
    assert redis_store.client.lrange(PING_KEY, 0, -1) == []


def test_work_rolled_back_after_the_services_held_commit_fails_the_request(caller):
    def view():
        _add_community("lost")
        outbox.commit()  # held: only flushed
        db.session.rollback()  # e.g. a retry loop that assumed the commit happened
        _add_community("after")
        return jsonify(ok=True), 201

    with pytest.raises(outbox.HeldWorkLost):
        caller(view)
    assert _count(Community) == 0 and _count(IdempotencyRecord) == 0  # nothing half-written
