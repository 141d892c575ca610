"""The fake WeChat API answers like WeChat: paths, parameters, JSON shapes and errcodes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from miniprogram_mock.wechat_server import (
    DEFAULT_APPID,
    DEFAULT_SECRET,
    create_mock_app,
    phone_for_code,
)

APPID, SECRET = "wx-test-appid", "wx-test-secret"


@pytest.fixture
def mock_app():
    """A fresh mock with its own state."""
    return create_mock_app(apps={APPID: SECRET})


@pytest.fixture
def wx(mock_app):
    """A test client for the mock."""
    return mock_app.test_client()


def login(wx, code, appid=APPID, secret=SECRET, grant_type="authorization_code"):
    """Call jscode2session and return its JSON."""
    return wx.get("/sns/jscode2session", query_string={
        "appid": appid, "secret": secret, "js_code": code, "grant_type": grant_type,
    }).get_json()


def stable_token(wx, force=False, appid=APPID, secret=SECRET):
    """Call stable_token and return its JSON."""
    return wx.post("/cgi-bin/stable_token", json={
        "grant_type": "client_credential", "appid": appid, "secret": secret,
        "force_refresh": force,
    }).get_json()


def send(wx, token, **overrides):
    """Send a subscribe message and return its JSON."""
    body = {"touser": "mock-openid-a", "template_id": "tpl-report-status",
            "page": "pages/reports/detail?id=1",
            "data": {"thing1": {"value": "路灯不亮"}, "time2": {"value": "2025-01-01 10:00"}}}
    body.update(overrides)
    body = {k: v for k, v in body.items() if v is not None}
    return wx.post("/cgi-bin/message/subscribe/send", query_string={"access_token": token},
                   json=body).get_json()


def phone(wx, token, code):
    """Call getuserphonenumber and return its JSON."""
    return wx.post("/wxa/business/getuserphonenumber", query_string={"access_token": token},
                   json={"code": code}).get_json()


def test_jscode2session_gives_stable_openid_for_code(mock_app, wx):
    body = login(wx, "abc")
    assert body["openid"] == "mock-openid-abc"
    assert body["unionid"] == "mock-unionid-abc"
    assert body["session_key"]
    assert "errcode" not in body
    mock_app.extensions["mock_wechat"].reset()
    assert login(wx, "abc")["openid"] == "mock-openid-abc"


def test_jscode2session_code_works_once(wx):
    login(wx, "once")
    assert login(wx, "once") == {"errcode": 40163, "errmsg": "code been used"}


@pytest.mark.parametrize("code", ["", "bad", "bad-code-1"])
def test_jscode2session_invalid_code(wx, code):
    assert login(wx, code) == {"errcode": 40029, "errmsg": "invalid code"}


def test_jscode2session_missing_code(wx):
    body = wx.get("/sns/jscode2session", query_string={
        "appid": APPID, "secret": SECRET, "grant_type": "authorization_code"}).get_json()
    assert body["errcode"] == 41008


def test_jscode2session_rate_limited_code_is_not_used_up(wx):
    assert login(wx, "ratelimit-1")["errcode"] == 45011
    assert login(wx, "ratelimit-1")["errcode"] == 45011


@pytest.mark.parametrize(("appid", "secret", "errcode"), [
    ("wx-other", SECRET, 40013), (APPID, "wrong", 40125), ("", SECRET, 41002), (APPID, "", 41004),
])
def test_jscode2session_checks_credentials(wx, appid, secret, errcode):
    assert login(wx, "c1", appid=appid, secret=secret)["errcode"] == errcode


def test_jscode2session_checks_grant_type(wx):
    assert login(wx, "c1", grant_type="client_credential")["errcode"] == 40002


def test_default_credentials_are_the_apps_development_defaults(monkeypatch):
    monkeypatch.delenv("WX_APPID", raising=False)
    monkeypatch.delenv("WX_SECRET", raising=False)
    wx = create_mock_app().test_client()
    assert login(wx, "d1", appid=DEFAULT_APPID, secret=DEFAULT_SECRET)["openid"] == "mock-openid-d1"


def test_cgi_bin_token_shape(wx):
    body = wx.get("/cgi-bin/token", query_string={
        "grant_type": "client_credential", "appid": APPID, "secret": SECRET}).get_json()
    assert set(body) == {"access_token", "expires_in"}
    assert body["expires_in"] == 7200


def test_cgi_bin_token_rejects_wrong_secret(wx):
    body = wx.get("/cgi-bin/token", query_string={
        "grant_type": "client_credential", "appid": APPID, "secret": "nope"}).get_json()
    assert body["errcode"] == 40125


def test_stable_token_is_reused_until_forced(wx):
    first = stable_token(wx)
    assert first["expires_in"] <= 7200
    assert stable_token(wx)["access_token"] == first["access_token"]
    forced = stable_token(wx, force=True)
    assert forced["access_token"] != first["access_token"]
    assert send(wx, first["access_token"])["errcode"] == 40001
    assert send(wx, forced["access_token"])["errcode"] == 0


def test_stable_token_checks_grant_type_and_appid(wx):
    body = wx.post("/cgi-bin/stable_token", json={"grant_type": "x", "appid": APPID,
                                                  "secret": SECRET}).get_json()
    assert body["errcode"] == 40002
    assert stable_token(wx, appid="wx-other")["errcode"] == 40013


def test_token_lifetime_is_configurable():
    wx = create_mock_app(apps={APPID: SECRET}, token_lifetime=60).test_client()
    assert stable_token(wx)["expires_in"] == 60


def test_expired_unknown_and_missing_tokens(wx):
    token = stable_token(wx)["access_token"]
    assert wx.post("/_mock/expire-tokens").get_json() == {"ok": True, "expired": 1}
    assert send(wx, token) == {"errcode": 42001, "errmsg": "access_token expired"}
    assert send(wx, "made-up")["errcode"] == 40001
    assert send(wx, "")["errcode"] == 41001
    fresh = stable_token(wx)["access_token"]
    assert fresh != token
    assert send(wx, fresh)["errcode"] == 0


def test_phone_number_shape_and_stable_derivation(wx):
    token = stable_token(wx)["access_token"]
    body = phone(wx, token, "p1")
    assert body["errcode"] == 0 and body["errmsg"] == "ok"
    info = body["phone_info"]
    assert info["purePhoneNumber"] == info["phoneNumber"] == phone_for_code("p1")
    assert info["purePhoneNumber"].startswith("138") and len(info["purePhoneNumber"]) == 11
    assert info["countryCode"] == "86"
    assert info["watermark"]["appid"] == APPID
    assert isinstance(info["watermark"]["timestamp"], int)
    other = create_mock_app(apps={APPID: SECRET}).test_client()
    again = phone(other, stable_token(other)["access_token"], "p1")["phone_info"]
    assert again["purePhoneNumber"] == info["purePhoneNumber"]
    assert phone(wx, token, "p1-other")["phone_info"]["purePhoneNumber"] != info["phoneNumber"]


def test_phone_code_rules(wx):
    token = stable_token(wx)["access_token"]
    phone(wx, token, "p2")
    assert phone(wx, token, "p2")["errcode"] == 40163
    assert phone(wx, token, "bad-p")["errcode"] == 40029
    assert phone(wx, token, "")["errcode"] == 40029
    assert phone(wx, "expired-or-unknown", "p3")["errcode"] == 40001


def test_phone_and_login_codes_are_counted_apart(wx):
    login(wx, "shared-code")
    assert phone(wx, stable_token(wx)["access_token"], "shared-code")["errcode"] == 0


def test_subscribe_send_is_recorded_and_listed(wx):
    token = stable_token(wx)["access_token"]
    body = send(wx, token)
    assert body["errcode"] == 0 and body["errmsg"] == "ok"
    assert isinstance(body["msgid"], int)
    send(wx, token, touser="mock-openid-b")
    items = wx.get("/_mock/messages", query_string={"touser": "mock-openid-a"}).get_json()["items"]
    assert len(items) == 1
    assert items[0]["msgid"] == body["msgid"]
    assert items[0]["template_id"] == "tpl-report-status"
    assert items[0]["page"] == "pages/reports/detail?id=1"
    assert items[0]["data"]["thing1"] == {"value": "路灯不亮"}
    assert len(wx.get("/_mock/messages").get_json()["items"]) == 2


def test_unsubscribed_user_gets_43101(wx):
    token = stable_token(wx)["access_token"]
    assert wx.post("/_mock/unsubscribe", json={"openid": "mock-openid-a"}).status_code == 200
    assert send(wx, token) == {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
    assert wx.get("/_mock/messages").get_json()["items"] == []


@pytest.mark.parametrize(("overrides", "errcode"), [
    ({"touser": None}, 40003), ({"touser": ""}, 40003),
    ({"template_id": None}, 40037), ({"template_id": "bad-template"}, 40037),
    ({"data": None}, 47001), ({"miniprogram_state": "beta"}, 47003), ({"lang": "fr"}, 47003),
])
def test_subscribe_send_rejects_malformed_body(wx, overrides, errcode):
    assert send(wx, stable_token(wx)["access_token"], **overrides)["errcode"] == errcode


@pytest.mark.parametrize(("key", "longest"), [
    ("thing1", 20), ("phrase2", 5), ("name3", 10), ("character_string4", 32), ("number5", 32),
])
def test_subscribe_send_enforces_value_limits(wx, key, longest):
    token = stable_token(wx)["access_token"]
    assert send(wx, token, data={key: {"value": "1" * longest}})["errcode"] == 0
    assert send(wx, token, data={key: {"value": "1" * (longest + 1)}}) == {
        "errcode": 47003, "errmsg": f"argument invalid! data.{key}.value invalid"}


def test_subscribe_send_time_values_are_not_length_checked(wx):
    token = stable_token(wx)["access_token"]
    long_time = "2025年01月01日 10:00 至 2025年01月02日 12:00"
    body = send(wx, token, data={"time1": {"value": long_time}})
    assert body["errcode"] == 0


def test_subscribe_send_rejects_empty_value(wx):
    body = send(wx, stable_token(wx)["access_token"], data={"thing1": {"value": ""}})
    assert body["errcode"] == 47003


def test_reset_forgets_everything(wx):
    token = stable_token(wx)["access_token"]
    login(wx, "r1")
    send(wx, token)
    wx.post("/_mock/unsubscribe", json={"openid": "mock-openid-b"})
    assert wx.post("/_mock/reset").get_json() == {"ok": True}
    assert wx.get("/_mock/messages").get_json()["items"] == []
    assert login(wx, "r1")["openid"] == "mock-openid-r1"
    assert send(wx, token)["errcode"] == 40001
    assert send(wx, stable_token(wx)["access_token"], touser="mock-openid-b")["errcode"] == 0


def test_calls_are_counted_per_path(mock_app, wx):
    stable_token(wx)
    stable_token(wx)
    login(wx, "k1")
    state = mock_app.extensions["mock_wechat"]
    assert state.call_count("/cgi-bin/stable_token") == 2
    assert wx.get("/_mock/calls").get_json()["calls"] == {
        "/cgi-bin/stable_token": 2, "/sns/jscode2session": 1}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_runs_on_its_own_port():
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "miniprogram_mock.wechat_server", "--port", str(port),
         "--appid", DEFAULT_APPID, "--secret", DEFAULT_SECRET],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        body = _poll_login(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert body["openid"] == "mock-openid-port-code"


def _poll_login(base: str) -> dict:
    """Log in against a mock that may still be starting."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return httpx.get(f"{base}/sns/jscode2session", params={
                "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET, "js_code": "port-code",
                "grant_type": "authorization_code"}, timeout=2).json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
