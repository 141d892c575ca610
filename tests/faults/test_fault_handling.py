"""The pieces the fault suite relies on, fast and in-process (they run on the embedded defaults
too): the mock's /_mock/faults switch, how notifications defer a send WeChat could not take,
each Redis use with Redis unreachable, and a database error rendered as a 503."""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import Notification
from app.services import notifications
from app.services.notifications import SubscribeSendDeferred, retry_job_on_deferred_sends
from miniprogram_mock.wechat_server import create_mock_app, shared_mock_app
from tests import factories as f

pytestmark = [pytest.mark.faults]

SEND = "/cgi-bin/message/subscribe/send"


# --- the mock's fault switch ----------------------------------------------------------------

@pytest.fixture
def wx():
    return create_mock_app().test_client()


def login(wx, code: str) -> dict:
    return wx.get("/sns/jscode2session", query_string={
        "appid": "wx-dev-appid", "secret": "wx-dev-secret", "js_code": code,
        "grant_type": "authorization_code"}).get_json()


def test_faults_hit_the_named_paths_for_the_given_times_then_stop(wx):
    r = wx.post("/_mock/faults", json={"errcode": 45011, "paths": ["/sns/"], "times": 2})
    assert r.status_code == 200 and r.get_json()["fault"]["times"] == 2
    assert login(wx, "a")["errcode"] == 45011
    assert wx.post("/cgi-bin/stable_token", json={
        "grant_type": "client_credential", "appid": "wx-dev-appid",
        "secret": "wx-dev-secret"}).get_json()["access_token"]  # another path: untouched
    assert login(wx, "a")["errcode"] == 45011
    assert login(wx, "a")["openid"] == "mock-openid-a"  # the refused calls did not use it up
    assert wx.get("/_mock/faults").get_json() == {"fault": None}
    assert wx.get("/_mock/calls").get_json()["calls"]["/sns/jscode2session"] == 3


def test_a_fault_with_a_status_answers_it_until_cleared(wx):
    wx.post("/_mock/faults", json={"status": 503})
    assert wx.get("/sns/jscode2session").status_code == 503
    assert wx.get("/_mock/messages").status_code == 200  # control endpoints never fault
    assert wx.delete("/_mock/faults").status_code == 200
    assert "openid" in login(wx, "b")


def test_reset_clears_the_fault(wx):
    wx.post("/_mock/faults", json={"status": 500})
    wx.post("/_mock/reset")
    assert "openid" in login(wx, "c")


@pytest.mark.parametrize("body", [{"delay": -1}, {"delay": 500}, {"delay": "slow"},
                                  {"status": 200}, {"times": 0}, {"paths": ["relative"]},
                                  {"errcode": "45011"}])
def test_bad_fault_requests_are_400_and_change_nothing(wx, body):
    assert wx.post("/_mock/faults", json=body).status_code == 400
    assert wx.get("/_mock/faults").get_json() == {"fault": None}


# --- notifications: a send WeChat could not take is retried, once ---------------------------

@pytest.fixture
def mock_wechat():
    return shared_mock_app().extensions["mock_wechat"]


def fail_sends(mock_wechat, **fault) -> None:
    from miniprogram_mock.wechat_server import parse_fault

    mock_wechat.set_fault(parse_fault({"paths": [SEND], **fault}))


def notify(user_id: int):
    return notifications.notify_user(
        user_id=user_id, kind="report_update", title="您反映的问题已派单", body="已派单",
        dedupe_key=f"faults-test:u{user_id}", wx_data={"thing1": "路灯", "phrase2": "已派单"})


def test_a_transient_send_failure_fails_the_job_keeps_the_notice_and_the_rerun_sends_once(
        app, mock_wechat):
    user = f.resident(f.community(), openid="faults-retry")
    fail_sends(mock_wechat, status=502)
    with pytest.raises(SubscribeSendDeferred, match="wechat_unavailable"), \
            retry_job_on_deferred_sends():
        notify(user.id)
    [note] = db.session.scalars(select(Notification))
    assert note.wx_status == "retrying" and note.wx_error.startswith("wechat_unavailable")

    mock_wechat.set_fault(None)
    with retry_job_on_deferred_sends():
        notify(user.id)  # the job's rerun
        notify(user.id)  # and one more: nothing left to send
    [note] = db.session.scalars(select(Notification))
    assert note.wx_status == "sent" and note.wx_error is None
    assert len(mock_wechat.messages("faults-retry")) == 1


def test_a_rate_limited_send_is_deferred_too(app, mock_wechat):
    user = f.resident(f.community(), openid="faults-45011")
    fail_sends(mock_wechat, errcode=45011)
    with pytest.raises(SubscribeSendDeferred, match="wx_rate_limited"), \
            retry_job_on_deferred_sends():
        notify(user.id)


def test_a_permanent_send_error_is_recorded_not_retried(app, mock_wechat):
    user = f.resident(f.community(), openid="faults-40003")
    fail_sends(mock_wechat, errcode=40003)
    with retry_job_on_deferred_sends():
        assert notify(user.id).wx_status == "failed"


def test_outside_a_job_a_failed_send_is_only_recorded(app, mock_wechat):
    user = f.resident(f.community(), openid="faults-direct")
    fail_sends(mock_wechat, status=500)
    assert notify(user.id).wx_status == "failed"


# --- Redis unreachable: each use degrades as decided ----------------------------------------

@pytest.fixture
def redis_down(app, monkeypatch):
    """The app's Redis refuses connections (at once, without retries)."""
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5,
                       retry=RedisRetry(NoBackoff(), 0))
    monkeypatch.setattr(app.extensions["linli_redis"], "client", dead)
    yield
    dead.close()


def test_rate_limits_fail_open_and_tokens_are_checked_as_decided(app, client, redis_down):
    from app import ratelimit
    from app.security import RESIDENT
    from app.services.accounts import issue_tokens

    ratelimit.take("faults:x", 0, 60)  # a limit of 0 would refuse anything: it fails open
    ratelimit.ensure_below("faults:x", 0)
    assert ratelimit.once("faults:y", 60) is True
    user = f.resident(f.community())
    tokens = issue_tokens(user, RESIDENT)
    assert client.get("/api/v1/me", headers={
        "Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200
    r = client.post("/api/v1/auth/refresh",
                    headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "token_check_unavailable"


def test_any_other_redis_error_in_a_request_is_a_clean_503(app, client, monkeypatch):
    from app.services import accounts

    def redis_gone(_user_id):
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(accounts, "load_profile", redis_gone)
    user = f.resident(f.community())
    r = client.get("/api/v1/me", headers=f.headers(user))
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "service_unavailable"
    assert r.headers["Retry-After"]


def test_a_database_error_in_a_request_is_503_database_unavailable(app, client, monkeypatch):
    from app.services import accounts

    def connection_lost(_user_id):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(accounts, "load_profile", connection_lost)
    user = f.resident(f.community())
    r = client.get("/api/v1/me", headers=f.headers(user))
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "database_unavailable"
    assert b"server closed" not in r.data
