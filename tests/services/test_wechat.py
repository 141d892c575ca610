"""Our WeChat client against the in-process fake WeChat API."""

from __future__ import annotations

import logging
import threading

import fakeredis
import httpx
import pytest

from app.config import MOCK_WX_API_BASE
from app.errors import APIError, RateLimited, UpstreamError
from app.extensions import redis_store
from app.wechat import (
    CACHE_KEY,
    SendResult,
    WeChatClient,
    WeChatCodeInvalid,
    WeChatCodeUsed,
    WeChatUnavailable,
    get_client,
    trim_data,
)
from miniprogram_mock.wechat_server import phone_for_code, shared_mock_app

TOKEN_PATH = "/cgi-bin/stable_token"


@pytest.fixture
def mock_wx():
    """The shared in-process mock's state, empty before and after each test."""
    state = shared_mock_app().extensions["mock_wechat"]
    state.reset()
    yield state
    state.reset()


@pytest.fixture
def fake_redis():
    """A private in-memory Redis."""
    return fakeredis.FakeRedis()


@pytest.fixture
def make_client(app, mock_wx, fake_redis):
    """Build clients on the in-process mock sharing one Redis (like several workers)."""
    clients = []

    def make(base_url=MOCK_WX_API_BASE, **kw):
        client = WeChatClient(base_url, app.config["WX_APPID"], app.config["WX_SECRET"],
                              kw.pop("redis_client", fake_redis), **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def wx(make_client):
    """A client on the in-process mock."""
    return make_client()


def test_code2session_follows_the_openid_rule(wx, mock_wx):
    session = wx.code2session("alice")
    assert session["openid"] == "mock-openid-alice"
    assert session["unionid"] == "mock-unionid-alice"
    assert session["session_key"]
    mock_wx.reset()
    assert wx.code2session("alice")["openid"] == "mock-openid-alice"


def test_reused_code_is_wx_code_used(wx):
    wx.code2session("once")
    with pytest.raises(WeChatCodeUsed) as caught:
        wx.code2session("once")
    assert (caught.value.status, caught.value.code) == (422, "wx_code_used")


@pytest.mark.parametrize("code", ["bad", "bad-123"])
def test_bad_code_is_wx_code_invalid(wx, code):
    with pytest.raises(WeChatCodeInvalid) as caught:
        wx.code2session(code)
    assert (caught.value.status, caught.value.code) == (422, "wx_code_invalid")
    assert caught.value.message == "微信登录凭证无效，请重新进入小程序"


def test_empty_code_is_rejected_without_calling_wechat(wx, mock_wx):
    with pytest.raises(WeChatCodeInvalid):
        wx.code2session("")
    assert mock_wx.call_count("/sns/jscode2session") == 0


def test_rate_limited_code_is_429_with_retry_after(wx):
    with pytest.raises(RateLimited) as caught:
        wx.code2session("ratelimit-1")
    assert (caught.value.status, caught.value.code) == (429, "wx_rate_limited")
    assert caught.value.headers == {"Retry-After": "60"}


def test_wrong_secret_is_wechat_unavailable(make_client, app):
    client = WeChatClient(MOCK_WX_API_BASE, app.config["WX_APPID"], "wrong",
                          fakeredis.FakeRedis())
    with pytest.raises(WeChatUnavailable) as caught:
        client.code2session("c1")
    client.close()
    assert (caught.value.status, caught.value.code) == (502, "wechat_unavailable")
    assert caught.value.details == {"errcode": 40125}


def test_session_key_and_secret_are_not_logged(wx, app, caplog):
    caplog.set_level(logging.DEBUG)
    session = wx.code2session("quiet")
    assert session["session_key"] not in caplog.text
    assert app.config["WX_SECRET"] not in caplog.text


def test_access_token_is_cached_and_shared(make_client, mock_wx, fake_redis, app):
    first, second = make_client(), make_client()
    token = first.get_access_token()
    assert first.get_access_token() == token
    assert second.get_access_token() == token
    assert mock_wx.call_count(TOKEN_PATH) == 1
    key = CACHE_KEY.format(appid=app.config["WX_APPID"])
    assert 6800 < fake_redis.ttl(key) <= 6900
    assert fake_redis.get(key + ":lock") is None


def test_force_refresh_fetches_a_new_token(wx, mock_wx):
    token = wx.get_access_token()
    assert wx.get_access_token(force_refresh=True) != token
    assert mock_wx.call_count(TOKEN_PATH) == 2


def test_concurrent_first_fetch_hits_wechat_once(make_client, mock_wx):
    tokens = _in_threads([make_client().get_access_token for _ in range(6)])
    assert len(set(tokens)) == 1
    assert mock_wx.call_count(TOKEN_PATH) == 1


def test_expired_token_is_refreshed_once_and_the_call_retried(wx, mock_wx):
    old = wx.get_access_token()
    mock_wx.expire_tokens()
    result = wx.send_subscribe_message(openid="mock-openid-a", template_id="tpl-1",
                                       data={"thing1": "路灯不亮"})
    assert result.sent
    assert mock_wx.call_count(TOKEN_PATH) == 2
    assert mock_wx.call_count("/cgi-bin/message/subscribe/send") == 2
    assert wx.get_access_token() != old


def test_unknown_cached_token_is_replaced(wx, mock_wx, fake_redis, app):
    fake_redis.set(CACHE_KEY.format(appid=app.config["WX_APPID"]), "stale-token", ex=600)
    assert wx.get_phone_number("p-unknown") == phone_for_code("p-unknown")
    assert mock_wx.call_count(TOKEN_PATH) == 1


def test_many_workers_seeing_an_expired_token_refresh_it_once(make_client, mock_wx):
    clients = [make_client() for _ in range(6)]
    clients[0].get_access_token()
    mock_wx.expire_tokens()
    results = _in_threads([
        lambda c=c, i=i: c.send_subscribe_message(
            openid=f"mock-openid-{i}", template_id="tpl-1", data={"thing1": "提醒"})
        for i, c in enumerate(clients)
    ])
    assert all(r.sent for r in results)
    assert mock_wx.call_count(TOKEN_PATH) == 2


def test_subscribe_message_is_recorded(wx, mock_wx):
    result = wx.send_subscribe_message(
        openid="mock-openid-bob", template_id="tpl-report",
        data={"thing1": {"value": "楼道灯坏了"}, "time2": "2025-01-01 10:00"},
        page="pages/reports/detail?id=7",
    )
    assert result == SendResult(sent=True, errcode=0, errmsg="ok", msgid=result.msgid)
    assert isinstance(result.msgid, int)
    items = shared_mock_app().test_client().get(
        "/_mock/messages", query_string={"touser": "mock-openid-bob"}).get_json()["items"]
    assert len(items) == 1
    assert items[0]["msgid"] == result.msgid
    assert items[0]["page"] == "pages/reports/detail?id=7"
    assert items[0]["data"] == {"thing1": {"value": "楼道灯坏了"},
                                "time2": {"value": "2025-01-01 10:00"}}


def test_unsubscribed_user_is_not_an_error(wx, mock_wx, caplog):
    mock_wx.unsubscribe("mock-openid-carol")
    caplog.set_level(logging.INFO, logger="app.wechat")
    result = wx.send_subscribe_message(openid="mock-openid-carol", template_id="tpl-1",
                                       data={"thing1": "提醒"})
    assert result == SendResult(sent=False, errcode=43101,
                                errmsg="user refuse to accept the msg", msgid=None)
    assert any(r.levelno == logging.INFO and "not subscribed" in r.getMessage()
               for r in caplog.records)
    assert mock_wx.messages() == []


def test_long_thing_value_is_trimmed(wx, mock_wx):
    long_text = "三号楼二单元门口的路灯已经坏了整整一个星期了晚上回家很不方便"
    result = wx.send_subscribe_message(openid="mock-openid-dan", template_id="tpl-1",
                                       data={"thing1": long_text, "time2": "2025-01-01 10:00"})
    assert result.sent
    sent = mock_wx.messages("mock-openid-dan")[0]["data"]["thing1"]["value"]
    assert len(sent) == 20
    assert sent == long_text[:19] + "…"


def test_trim_data_limits_per_key_type():
    trimmed = trim_data({"phrase1": "处理中已完成啦", "name2": "一" * 12,
                         "character_string3": "A" * 40, "number4": "9" * 40,
                         "time5": "2025-01-01 10:00", "thing6": "短"})
    assert trimmed == {"phrase1": {"value": "处理中已完"}, "name2": {"value": "一" * 10},
                       "character_string3": {"value": "A" * 32},
                       "number4": {"value": "9" * 32}, "time5": {"value": "2025-01-01 10:00"},
                       "thing6": {"value": "短"}}


def test_other_send_errors_are_wechat_unavailable(wx):
    with pytest.raises(WeChatUnavailable) as caught:
        wx.send_subscribe_message(openid="mock-openid-a", template_id="bad-template",
                                  data={"thing1": "提醒"})
    assert caught.value.details == {"errcode": 40037}


def test_phone_number(wx):
    phone = wx.get_phone_number("phone-code-1")
    assert phone == phone_for_code("phone-code-1")
    assert phone.startswith("138") and len(phone) == 11


def test_phone_code_errors(wx):
    wx.get_phone_number("phone-code-2")
    with pytest.raises(WeChatCodeUsed):
        wx.get_phone_number("phone-code-2")
    with pytest.raises(WeChatCodeInvalid):
        wx.get_phone_number("bad-phone")
    with pytest.raises(WeChatCodeInvalid):
        wx.get_phone_number("")


def test_unreachable_wechat_is_upstream_error(make_client):
    client = make_client("http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(UpstreamError) as caught:
        client.code2session("any")
    assert (caught.value.status, caught.value.code) == (502, "wechat_unavailable")
    with pytest.raises(UpstreamError):
        client.get_phone_number("any")


@pytest.mark.parametrize("respond", [
    lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request)),
    lambda request: httpx.Response(500, text="<html>oops</html>"),
    lambda request: httpx.Response(200, text="not json"),
])
def test_timeouts_and_garbage_are_upstream_errors(make_client, respond):
    client = make_client()
    client._http = httpx.Client(transport=httpx.MockTransport(respond), base_url="http://wx")
    with pytest.raises(WeChatUnavailable):
        client.code2session("any")
    client._http.close()


def test_get_client_is_built_once_from_config(app):
    client = get_client()
    assert isinstance(client, WeChatClient)
    assert get_client() is client
    assert app.extensions["linli_wechat"] is client
    assert client.appid == app.config["WX_APPID"]
    assert client.redis is redis_store.client


def test_house_errors_are_api_errors():
    for error in (WeChatCodeInvalid(), WeChatCodeUsed(), WeChatUnavailable()):
        assert isinstance(error, APIError)


def _in_threads(calls):
    """Run each call in its own thread at once; return their results in order."""
    results, errors = [None] * len(calls), []
    barrier = threading.Barrier(len(calls))

    def run(i):
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results
