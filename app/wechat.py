"""The WeChat API client: code2session, phone number, access token and subscribe messages.

The access token is shared by every worker through Redis; WeChat's errcodes become the house
errors (422 wx_code_invalid / wx_code_used, 429 wx_rate_limited, 502 wechat_unavailable).
The session_key WeChat returns is never logged and never leaves the server.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import redis
from flask import current_app
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from app import admission
from app.config import MOCK_WX_API_BASE
from app.errors import RateLimited, UpstreamError, ValidationFailed

log = logging.getLogger(__name__)

CACHE_KEY = "linli:wx:access_token:{appid}"  # the shared access token
TOKEN_SAFETY_MARGIN = 300  # seconds: refresh well before WeChat expires the token
TOKEN_ERRCODES = {40001, 42001}  # invalid / expired access token
NOT_SUBSCRIBED = 43101
RATE_LIMIT_RETRY_AFTER = 60
# Longest value WeChat accepts per subscribe-message data key type (key minus trailing digits).
DATA_LIMITS = {
    "thing": 20, "phrase": 5, "name": 10, "character_string": 32, "number": 32,
    "letter": 32, "symbol": 5, "car_number": 8, "phone_number": 17,
}


class WeChatCodeInvalid(ValidationFailed):
    code, message = "wx_code_invalid", "微信登录凭证无效，请重新进入小程序"


class WeChatCodeUsed(ValidationFailed):
    code, message = "wx_code_used", "微信登录凭证已使用，请重新进入小程序"


class WeChatRateLimited(RateLimited):
    code, message = "wx_rate_limited", "微信接口调用太频繁，请稍后再试"

    def __init__(self, message: str | None = None, *, retry_after: int = RATE_LIMIT_RETRY_AFTER,
                 **kw) -> None:
        super().__init__(message, retry_after=retry_after, **kw)


class WeChatUnavailable(UpstreamError):
    code, message = "wechat_unavailable", "微信服务暂时不可用，请稍后再试"


PHONE_CODE_MESSAGES = {
    WeChatCodeInvalid: "手机号授权凭证无效，请重新授权",
    WeChatCodeUsed: "手机号授权凭证已使用，请重新授权",
}


@dataclass(frozen=True)
class SendResult:
    """The outcome of one subscribe message send."""

    sent: bool
    errcode: int
    errmsg: str
    msgid: int | None = None


class _RedactSecrets(logging.Filter):
    """Masks secrets, codes and tokens in httpx's request log lines."""

    pattern = re.compile(r"(secret|js_code|access_token)=[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.pattern.sub(r"\1=***", record.getMessage()), None
        return True


if not any(isinstance(f, _RedactSecrets) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_RedactSecrets())


class _TransactionLock(Lock):
    """redis-py's Lock released with WATCH/MULTI, so it also works where Lua is missing."""

    def do_release(self, expected_token: bytes) -> None:
        def delete_if_owned(pipe) -> None:
            stored = pipe.get(self.name)
            if isinstance(stored, str):
                stored = stored.encode()
            if stored != expected_token:
                raise LockNotOwnedError("lock no longer owned", lock_name=self.name)
            pipe.multi()
            pipe.delete(self.name)

        self.redis.transaction(delete_if_owned, self.name)


class WeChatClient:
    """A small client for the parts of the WeChat server API Linli uses."""

    def __init__(self, base_url: str, appid: str, secret: str, redis_client: redis.Redis,
                 timeout: float = 5.0) -> None:
        self.appid = appid
        self._secret = secret
        self.redis = redis_client
        self.token_key = CACHE_KEY.format(appid=appid)
        self._http = _http_client(base_url, timeout)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def code2session(self, code: str) -> dict:
        """Exchange a wx.login code for {"openid", "unionid"?, "session_key"}."""
        if not code:
            raise WeChatCodeInvalid()
        body = self._request("GET", "/sns/jscode2session", params={
            "appid": self.appid, "secret": self._secret, "js_code": code,
            "grant_type": "authorization_code",
        })
        _raise_for_errcode(body, "jscode2session")
        if not body.get("openid"):
            raise WeChatUnavailable(details={"reason": "no openid"})
        return body

    def get_phone_number(self, code: str) -> str:
        """The mobile number (without country code) a getPhoneNumber code stands for."""
        if not code:
            raise WeChatCodeInvalid(PHONE_CODE_MESSAGES[WeChatCodeInvalid])
        body = self._call_with_token("POST", "/wxa/business/getuserphonenumber", {"code": code})
        _raise_for_errcode(body, "getuserphonenumber", messages=PHONE_CODE_MESSAGES)
        try:
            return body["phone_info"]["purePhoneNumber"]
        except (KeyError, TypeError) as exc:
            raise WeChatUnavailable(details={"reason": "no phone_info"}) from exc

    def send_subscribe_message(self, *, openid: str, template_id: str, data: dict,
                               page: str | None = None) -> SendResult:
        """Send a subscribe message; a user who has not subscribed gives sent=False."""
        payload = {"touser": openid, "template_id": template_id, "data": trim_data(data)}
        if page:
            payload["page"] = page
        body = self._call_with_token("POST", "/cgi-bin/message/subscribe/send", payload)
        errcode, errmsg = body.get("errcode", 0), body.get("errmsg", "ok")
        if errcode == NOT_SUBSCRIBED:
            log.info("subscribe message not sent: user has not subscribed (template %s)",
                     template_id)
            return SendResult(sent=False, errcode=errcode, errmsg=errmsg)
        _raise_for_errcode(body, "subscribe/send")
        return SendResult(sent=True, errcode=0, errmsg=errmsg, msgid=body.get("msgid"))

    def get_access_token(self, force_refresh: bool = False) -> str:
        """The app's access token, shared by all workers through Redis."""
        cached = self._cached_token()
        if cached and not force_refresh:
            return cached
        return self._refresh_token(stale=cached if force_refresh else None, force=force_refresh)

    def _refresh_token(self, *, stale: str | None, force: bool) -> str:
        """Fetch a token under the Redis lock unless another worker just stored a newer one."""
        with self._token_lock():
            cached = self._cached_token()
            if cached and cached != stale:
                return cached
            return self._fetch_token(force)

    def _fetch_token(self, force: bool) -> str:
        """Ask /cgi-bin/stable_token for the token and cache it."""
        body = self._request("POST", "/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": self.appid, "secret": self._secret,
            "force_refresh": force,
        })
        _raise_for_errcode(body, "stable_token")
        token, expires_in = body.get("access_token"), int(body.get("expires_in") or 0)
        if not token:
            raise WeChatUnavailable(details={"reason": "no access_token"})
        ttl = max(expires_in - TOKEN_SAFETY_MARGIN, expires_in // 2)
        if ttl > 0:
            with contextlib.suppress(redis.RedisError):
                self.redis.set(self.token_key, token, ex=ttl)
        return token

    def _cached_token(self) -> str | None:
        """The token in Redis, or None (also when Redis cannot be reached)."""
        try:
            value = self.redis.get(self.token_key)
        except redis.RedisError:
            log.warning("redis unavailable; fetching the WeChat access token without cache")
            return None
        return value.decode() if isinstance(value, bytes) else value

    @contextlib.contextmanager
    def _token_lock(self) -> Iterator[None]:
        """Hold the token lock when Redis grants it in time; go on without it otherwise."""
        lock = self.redis.lock(self.token_key + ":lock", timeout=10, blocking_timeout=5,
                               lock_class=_TransactionLock)
        admission.leave()  # up to 5 s of waiting: other requests take this one's turn
        try:
            acquired = lock.acquire()
        except redis.RedisError:
            acquired = False
        if not acquired:
            log.warning("could not take the WeChat token lock; fetching without it")
        try:
            yield
        finally:
            if acquired:
                with contextlib.suppress(LockError, redis.RedisError):
                    lock.release()

    def _call_with_token(self, method: str, path: str, payload: dict) -> dict:
        """Call an access_token API; on 40001/42001 refresh the token once and retry once."""
        token = self.get_access_token()
        body = self._request(method, path, params={"access_token": token}, json=payload)
        if body.get("errcode") in TOKEN_ERRCODES:
            log.info("WeChat rejected the access token (%s); refreshing", body.get("errcode"))
            token = self._refresh_token(stale=token, force=True)
            body = self._request(method, path, params={"access_token": token}, json=payload)
        return body

    def _request(self, method: str, path: str, **kwargs) -> dict:
        """One HTTP call to WeChat, returning its JSON object; transport trouble is a 502."""
        admission.leave()  # a slow WeChat must not hold up the process's other requests
        try:
            response = self._http.request(method, path, **kwargs)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("WeChat %s failed: %s", path, type(exc).__name__)
            raise WeChatUnavailable() from exc
        if not isinstance(body, dict):
            raise WeChatUnavailable(details={"reason": "unexpected response"})
        return body


def _http_client(base_url: str, timeout: float) -> httpx.Client:
    """An httpx client for a real base URL, or one wired to the in-process mock."""
    if base_url == MOCK_WX_API_BASE:
        from miniprogram_mock.wechat_server import shared_mock_app

        transport = httpx.WSGITransport(app=shared_mock_app())
        return httpx.Client(transport=transport, base_url="http://mock-wechat", timeout=timeout)
    return httpx.Client(base_url=base_url, timeout=timeout)


def _raise_for_errcode(body: dict, api: str, messages: dict | None = None) -> None:
    """Raise the house error for a non-zero WeChat errcode."""
    errcode = body.get("errcode") or 0
    if errcode == 0:
        return
    error_class = {40029: WeChatCodeInvalid, 40163: WeChatCodeUsed,
                   45011: WeChatRateLimited}.get(errcode)
    if error_class is None:
        log.warning("WeChat %s answered errcode %s: %s", api, errcode, body.get("errmsg"))
        raise WeChatUnavailable(details={"errcode": errcode})
    raise error_class((messages or {}).get(error_class))


def data_key_type(key: str) -> str:
    """A data key's type: the key without its trailing digits ("thing12" -> "thing")."""
    return re.sub(r"\d+$", "", key)


def trim_value(key: str, value: str) -> str:
    """Cut a value to WeChat's limit for its key type ("thing" ends with an ellipsis)."""
    limit = DATA_LIMITS.get(data_key_type(key))
    if limit is None or len(value) <= limit:
        return value
    if data_key_type(key) == "thing":
        return value[: limit - 1] + "…"
    return value[:limit]


def trim_data(data: dict) -> dict:
    """{key: value or {"value": value}} -> WeChat's {key: {"value": trimmed}}."""
    trimmed = {}
    for key, item in data.items():
        value = item.get("value") if isinstance(item, dict) else item
        trimmed[key] = {"value": trim_value(key, "" if value is None else str(value))}
    return trimmed


def get_client() -> WeChatClient:
    """The app's WeChat client, built once from its config and Redis connection."""
    client = current_app.extensions.get("linli_wechat")
    if client is None:
        from app.extensions import redis_store

        cfg = current_app.config
        client = WeChatClient(cfg["WX_API_BASE"], cfg["WX_APPID"], cfg["WX_SECRET"],
                              redis_store.client, timeout=cfg["WX_TIMEOUT_SECONDS"])
        current_app.extensions["linli_wechat"] = client
    return client
