"""A fake of the WeChat server API that Linli uses, faithful to WeChat's paths and JSON shapes.

Run it on a port with ``python -m miniprogram_mock.wechat_server --port 9100 [--host 127.0.0.1]``
or use it in-process: ``shared_mock_app()`` is the one instance the client talks to when
``WX_API_BASE`` is ``inprocess://mock-wechat``. Like WeChat, every answer is HTTP 200 and an error
is ``{"errcode": n, "errmsg": "..."}``.

Rules (so tests and scripted journeys can predict the answers):

- Accepted credentials: appid ``$WX_APPID`` / secret ``$WX_SECRET`` (defaults ``wx-dev-appid`` /
  ``wx-dev-secret``, the app's development defaults); wrong appid is 40013, wrong secret 40125.
- ``/sns/jscode2session``: code ``X`` gives openid ``mock-openid-X`` and unionid
  ``mock-unionid-X`` (stable across logins) and a fresh random session_key. A code works once
  (again: 40163 "code been used"); an empty code or one starting with ``bad`` is 40029
  "invalid code"; one starting with ``ratelimit`` is 45011 (and is not used up).
- ``/wxa/business/getuserphonenumber``: the same code rules (phone codes are counted apart from
  login codes); code ``X`` gives ``138`` + 8 digits taken from sha256(X), always the same.
- ``/cgi-bin/token`` and ``/cgi-bin/stable_token`` issue tokens living ``token_lifetime`` seconds
  (default 7200). A new ``/cgi-bin/token`` leaves the previous one 5 more minutes at most; the
  stable token is returned again until it expires or ``force_refresh`` replaces it (the old one
  then answers 40001). Unknown token: 40001; expired token: 42001; none: 41001.
- ``/cgi-bin/message/subscribe/send``: any non-empty touser is accepted unless marked
  unsubscribed (43101); a template_id starting with ``bad`` is 40037; values are checked against
  WeChat's per-type limits (thing 20, phrase 5, name 10, character_string / number / letter 32,
  symbol 5, car_number 8, phone_number 17; time, date and unknown types unchecked) -> 47003.

Control endpoints (not WeChat's): ``GET /_mock/messages?touser=``, ``GET /_mock/calls``,
``POST /_mock/unsubscribe {"openid"}``, ``POST /_mock/reset``, ``POST /_mock/expire-tokens``,
``GET/POST/DELETE /_mock/faults``.

Faults (for fault-injection tests): ``POST /_mock/faults {"delay": 3, "status": 500,
"errcode": 45011, "paths": ["/sns/jscode2session"], "times": 2}`` makes the next ``times``
WeChat calls (all, when omitted) whose path starts with one of ``paths`` (any WeChat path, when
omitted) wait ``delay`` seconds, then answer HTTP ``status`` with an empty body or, with
``errcode``, WeChat's HTTP 200 error body; with neither they then answer normally. A faulted
call is counted but has no other effect (no code used up, no message recorded).
``DELETE /_mock/faults`` (or ``/_mock/reset``) ends them.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Blueprint, Flask, current_app, jsonify, request

DEFAULT_APPID = "wx-dev-appid"
DEFAULT_SECRET = "wx-dev-secret"
DEFAULT_TOKEN_LIFETIME = 7200
REPLACED_TOKEN_GRACE = 300  # seconds a /cgi-bin/token stays valid after a newer one is issued

ERRMSG = {
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    47001: "data format error",
}

# Longest value WeChat accepts per data key type (the key minus its trailing digits).
DATA_LIMITS = {
    "thing": 20, "phrase": 5, "name": 10, "character_string": 32, "number": 32,
    "letter": 32, "symbol": 5, "car_number": 8, "phone_number": 17,
}
STATES = ("developer", "trial", "formal")
LANGS = ("zh_CN", "en_US", "zh_HK", "zh_TW")


def wx_error(errcode: int, errmsg: str | None = None) -> dict:
    """A WeChat error body."""
    return {"errcode": errcode, "errmsg": errmsg or ERRMSG[errcode]}


@dataclass
class Fault:
    """A way for the next WeChat calls to misbehave (see the module docstring)."""

    delay: float = 0.0
    status: int | None = None
    errcode: int | None = None
    paths: tuple[str, ...] = ()
    times: int | None = None

    def matches(self, path: str) -> bool:
        """Whether a call to `path` is affected."""
        return not self.paths or path.startswith(self.paths)

    def as_dict(self) -> dict:
        return {"delay": self.delay, "status": self.status, "errcode": self.errcode,
                "paths": list(self.paths), "times": self.times}


def parse_fault(body: dict) -> Fault | str:
    """A Fault from a control request's JSON, or the reason it is not one."""
    try:
        fault = Fault(delay=float(body.get("delay") or 0), status=body.get("status"),
                      errcode=body.get("errcode"), paths=tuple(body.get("paths") or ()),
                      times=body.get("times"))
    except (TypeError, ValueError):
        return "delay must be a number and paths a list of strings"
    if not 0 <= fault.delay <= 120:
        return "delay must be between 0 and 120 seconds"
    if fault.status is not None and (not isinstance(fault.status, int)
                                     or not 400 <= fault.status <= 599):
        return "status must be an HTTP error status (400-599)"
    if fault.errcode is not None and not isinstance(fault.errcode, int):
        return "errcode must be an integer"
    if fault.times is not None and (not isinstance(fault.times, int) or fault.times < 1):
        return "times must be a positive integer"
    if not all(isinstance(path, str) and path.startswith("/") for path in fault.paths):
        return "paths must be absolute paths"
    return fault


@dataclass
class Token:
    """An issued access token."""

    appid: str
    expires_at: float
    revoked: bool = False


class MockWeChatState:
    """Everything the fake remembers; every method holds the lock."""

    def __init__(self, apps: dict[str, str] | None = None,
                 token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
                 clock: Callable[[], float] = time.time) -> None:
        self.apps = dict(apps or {DEFAULT_APPID: DEFAULT_SECRET})
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget tokens, used codes, messages, unsubscriptions and call counts."""
        with self.lock:
            self.tokens: dict[str, Token] = {}
            self.current: dict[tuple[str, str], str] = {}
            self.used_codes: dict[str, set[str]] = {"login": set(), "phone": set()}
            self.sent: list[dict] = []
            self.unsubscribed: set[str] = set()
            self.calls: Counter[str] = Counter()
            self.msgids = itertools.count(2_000_000_001)
            self.fault: Fault | None = None

    def set_fault(self, fault: Fault | None) -> None:
        """Make the next WeChat calls misbehave (None: behave again)."""
        with self.lock:
            self.fault = fault

    def take_fault(self, path: str) -> Fault | None:
        """The fault a call to `path` suffers now, using up one of its `times`."""
        with self.lock:
            fault = self.fault
            if fault is None or not fault.matches(path):
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.fault = None
            return fault

    def count_call(self, path: str) -> None:
        """Count one call to a WeChat path."""
        with self.lock:
            self.calls[path] += 1

    def call_count(self, path: str) -> int:
        """How many calls a WeChat path has had since the last reset."""
        with self.lock:
            return self.calls[path]

    def check_credentials(self, appid: str | None, secret: str | None) -> dict | None:
        """The WeChat error for a bad appid/secret pair, or None."""
        if not appid:
            return wx_error(41002)
        if appid not in self.apps:
            return wx_error(40013)
        if not secret:
            return wx_error(41004)
        if not secrets.compare_digest(secret, self.apps[appid]):
            return wx_error(40125)
        return None

    def consume_code(self, kind: str, code: str | None) -> dict | None:
        """Use up a one-time code of `kind` ("login"/"phone"); the WeChat error or None."""
        if not code or code.startswith("bad"):
            return wx_error(40029)
        if code.startswith("ratelimit"):
            return wx_error(45011)
        with self.lock:
            if code in self.used_codes[kind]:
                return wx_error(40163)
            self.used_codes[kind].add(code)
        return None

    def issue_token(self, appid: str, *, stable: bool, force: bool = False) -> tuple[str, int]:
        """Return (token, expires_in) the way /cgi-bin/token or stable_token would."""
        slot = (appid, "stable" if stable else "basic")
        now = self.clock()
        with self.lock:
            previous = self.tokens.get(self.current.get(slot, ""))
            if stable and not force and previous and not previous.revoked \
                    and previous.expires_at > now:
                return self.current[slot], int(previous.expires_at - now)
            if previous and stable and force:
                previous.revoked = True
            elif previous and not stable:
                previous.expires_at = min(previous.expires_at, now + REPLACED_TOKEN_GRACE)
            token = secrets.token_urlsafe(48)
            self.tokens[token] = Token(appid=appid, expires_at=now + self.token_lifetime)
            self.current[slot] = token
            return token, self.token_lifetime

    def check_token(self, token: str | None) -> tuple[str | None, dict | None]:
        """(appid, None) for a live token, else (None, the WeChat error)."""
        if not token:
            return None, wx_error(41001)
        with self.lock:
            found = self.tokens.get(token)
            if found is None or found.revoked:
                return None, wx_error(40001)
            if found.expires_at <= self.clock():
                return None, wx_error(42001)
            return found.appid, None

    def expire_tokens(self) -> int:
        """Make every issued token expired now; returns how many there were."""
        now = self.clock()
        with self.lock:
            for token in self.tokens.values():
                token.expires_at = min(token.expires_at, now)
            return len(self.tokens)

    def unsubscribe(self, openid: str) -> None:
        """Mark a user as refusing subscribe messages (43101)."""
        with self.lock:
            self.unsubscribed.add(openid)

    def is_subscribed(self, openid: str) -> bool:
        """Whether subscribe messages to `openid` are accepted."""
        with self.lock:
            return openid not in self.unsubscribed

    def record_message(self, message: dict) -> int:
        """Store a sent subscribe message and return its msgid."""
        with self.lock:
            msgid = next(self.msgids)
            self.sent.append({"msgid": msgid, **message,
                              "sent_at": datetime.fromtimestamp(self.clock(), UTC).isoformat()})
            return msgid

    def messages(self, touser: str | None = None) -> list[dict]:
        """Sent subscribe messages, oldest first, optionally for one user."""
        with self.lock:
            return [dict(m) for m in self.sent if touser is None or m["touser"] == touser]


def mock_state() -> MockWeChatState:
    """The state of the mock app handling the current request."""
    return current_app.extensions["mock_wechat"]


def phone_for_code(code: str) -> str:
    """The mainland mobile number the mock derives from a phone code: 138 + 8 digits."""
    digest = int(hashlib.sha256(code.encode()).hexdigest(), 16)
    return f"138{digest % 10**8:08d}"


def json_body() -> dict:
    """The request's JSON object body, or {} when there is none."""
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


wechat = Blueprint("wechat", __name__)
control = Blueprint("mock_control", __name__, url_prefix="/_mock")


@wechat.before_app_request
def _count_call():
    """Count every WeChat call (not the control endpoints)."""
    if not request.path.startswith("/_mock/"):
        mock_state().count_call(request.path)


@wechat.before_app_request
def _misbehave():
    """Apply the configured fault to a WeChat call: wait, then maybe answer with an error."""
    if request.path.startswith("/_mock/"):
        return None
    fault = mock_state().take_fault(request.path)
    if fault is None:
        return None
    if fault.delay:
        time.sleep(fault.delay)
    if fault.status is not None:
        return "", fault.status
    if fault.errcode is not None:
        return jsonify(wx_error(fault.errcode, ERRMSG.get(fault.errcode, "system error")))
    return None


@wechat.get("/sns/jscode2session")
def jscode2session():
    """wx.login code -> openid, unionid, session_key."""
    state, args = mock_state(), request.args
    error = state.check_credentials(args.get("appid"), args.get("secret"))
    if error is None and args.get("grant_type") != "authorization_code":
        error = wx_error(40002)
    if error is None and args.get("js_code") is None:
        error = wx_error(41008)
    error = error or state.consume_code("login", args.get("js_code"))
    if error:
        return jsonify(error)
    code = args["js_code"]
    return jsonify({"openid": f"mock-openid-{code}", "unionid": f"mock-unionid-{code}",
                    "session_key": secrets.token_urlsafe(16)})


@wechat.get("/cgi-bin/token")
def token():
    """client_credential -> access_token (replaces the previous one after a grace period)."""
    args = request.args
    return _token_response(args.get("grant_type"), args.get("appid"), args.get("secret"),
                           stable=False, force=False)


@wechat.post("/cgi-bin/stable_token")
def stable_token():
    """client_credential -> the stable access_token, new only when expired or forced."""
    body = json_body()
    return _token_response(body.get("grant_type"), body.get("appid"), body.get("secret"),
                           stable=True, force=body.get("force_refresh") is True)


def _token_response(grant_type, appid, secret, *, stable: bool, force: bool):
    state = mock_state()
    error = state.check_credentials(appid, secret)
    if error is None and grant_type != "client_credential":
        error = wx_error(40002)
    if error:
        return jsonify(error)
    access_token, expires_in = state.issue_token(appid, stable=stable, force=force)
    return jsonify({"access_token": access_token, "expires_in": expires_in})


@wechat.post("/wxa/business/getuserphonenumber")
def getuserphonenumber():
    """getPhoneNumber code -> phone_info."""
    state = mock_state()
    appid, error = state.check_token(request.args.get("access_token"))
    code = json_body().get("code")
    error = error or state.consume_code("phone", code if isinstance(code, str) else None)
    if error:
        return jsonify(error)
    phone = phone_for_code(code)
    return jsonify({"errcode": 0, "errmsg": "ok", "phone_info": {
        "phoneNumber": phone, "purePhoneNumber": phone, "countryCode": "86",
        "watermark": {"timestamp": int(state.clock()), "appid": appid},
    }})


@wechat.post("/cgi-bin/message/subscribe/send")
def subscribe_send():
    """Send (record) a subscribe message."""
    state = mock_state()
    _appid, error = state.check_token(request.args.get("access_token"))
    body = json_body()
    error = error or subscribe_error(body)
    if error is None and not state.is_subscribed(body["touser"]):
        error = wx_error(43101)
    if error:
        return jsonify(error)
    msgid = state.record_message({
        "touser": body["touser"], "template_id": body["template_id"], "page": body.get("page"),
        "data": body["data"], "miniprogram_state": body.get("miniprogram_state", "formal"),
        "lang": body.get("lang", "zh_CN"),
    })
    return jsonify({"errcode": 0, "errmsg": "ok", "msgid": msgid})


def subscribe_error(body: dict) -> dict | None:
    """The WeChat error for a malformed subscribe message body, or None."""
    if not isinstance(body.get("touser"), str) or not body["touser"]:
        return wx_error(40003)
    template_id = body.get("template_id")
    if not isinstance(template_id, str) or not template_id or template_id.startswith("bad"):
        return wx_error(40037)
    if body.get("miniprogram_state", "formal") not in STATES:
        return wx_error(47003, "argument invalid! miniprogram_state invalid")
    if body.get("lang", "zh_CN") not in LANGS:
        return wx_error(47003, "argument invalid! lang invalid")
    if not isinstance(body.get("data"), dict) or not body["data"]:
        return wx_error(47001)
    return next(filter(None, (data_error(k, v) for k, v in body["data"].items())), None)


def data_error(key: str, item) -> dict | None:
    """47003 when one data entry is not {"value": str} within its type's limit."""
    value = item.get("value") if isinstance(item, dict) else None
    key_type = re.sub(r"\d+$", "", key)
    limit = DATA_LIMITS.get(key_type)
    if not isinstance(value, str) or not value or (limit and len(value) > limit):
        return wx_error(47003, f"argument invalid! data.{key}.value invalid")
    return None


@control.get("/messages")
def list_messages():
    """Recorded subscribe messages: {"items": [...]}, optionally ?touser=."""
    return jsonify({"items": mock_state().messages(request.args.get("touser"))})


@control.get("/calls")
def list_calls():
    """How often each WeChat path was called since the last reset."""
    with mock_state().lock:
        return jsonify({"calls": dict(mock_state().calls)})


@control.post("/unsubscribe")
def unsubscribe():
    """Mark {"openid"} as not subscribed: later sends to it get 43101."""
    openid = json_body().get("openid")
    if not isinstance(openid, str) or not openid:
        return jsonify(wx_error(40003)), 400
    mock_state().unsubscribe(openid)
    return jsonify({"ok": True, "openid": openid})


@control.post("/reset")
def reset():
    """Forget everything."""
    mock_state().reset()
    return jsonify({"ok": True})


@control.post("/expire-tokens")
def expire_tokens():
    """Expire every issued access token now (later calls with them get 42001)."""
    return jsonify({"ok": True, "expired": mock_state().expire_tokens()})


@control.get("/faults")
def show_faults():
    """The fault in force, or null."""
    fault = mock_state().fault
    return jsonify({"fault": fault.as_dict() if fault else None})


@control.post("/faults")
def set_faults():
    """Make the next WeChat calls slow or failing (see the module docstring)."""
    fault = parse_fault(json_body())
    if isinstance(fault, str):
        return jsonify(wx_error(47001, fault)), 400
    mock_state().set_fault(fault)
    return jsonify({"ok": True, "fault": fault.as_dict()})


@control.delete("/faults")
def clear_faults():
    """Behave again."""
    mock_state().set_fault(None)
    return jsonify({"ok": True})


def create_mock_app(*, apps: dict[str, str] | None = None,
                    token_lifetime: int = DEFAULT_TOKEN_LIFETIME) -> Flask:
    """A fresh fake WeChat API with its own state at app.extensions["mock_wechat"]."""
    app = Flask(__name__)
    app.extensions["mock_wechat"] = MockWeChatState(apps or env_apps(), token_lifetime)
    app.register_blueprint(wechat)
    app.register_blueprint(control)
    return app


def env_apps() -> dict[str, str]:
    """The appid/secret pair accepted by default: $WX_APPID / $WX_SECRET or the dev defaults."""
    appid = os.environ.get("WX_APPID") or DEFAULT_APPID
    return {appid: os.environ.get("WX_SECRET") or DEFAULT_SECRET}


_shared: Flask | None = None
_shared_lock = threading.Lock()


def shared_mock_app() -> Flask:
    """The one process-wide mock used in-process (WX_API_BASE=inprocess://mock-wechat)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            lifetime = int(os.environ.get("MOCK_WX_TOKEN_LIFETIME") or DEFAULT_TOKEN_LIFETIME)
            _shared = create_mock_app(token_lifetime=lifetime)
        return _shared


def main(argv: list[str] | None = None) -> None:
    """Serve the mock on a port (threaded)."""
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description="Fake WeChat API for Linli")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--appid", default=None, help="accepted appid (default $WX_APPID)")
    parser.add_argument("--secret", default=None, help="accepted secret (default $WX_SECRET)")
    parser.add_argument("--token-lifetime", type=int, default=DEFAULT_TOKEN_LIFETIME)
    args = parser.parse_args(argv)
    apps = env_apps()
    if args.appid or args.secret:
        apps = {args.appid or next(iter(apps)): args.secret or next(iter(apps.values()))}
    app = create_mock_app(apps=apps, token_lifetime=args.token_lifetime)
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
