"""The one JSON error shape and every handler that produces it."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from psycopg.errors import LockNotAvailable, QueryCanceled
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    """A domain error with a stable machine code; raised by services, rendered in one place."""

    status = 400
    code = "bad_request"
    message = "请求有误"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 details: dict | None = None, status: int | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details or {}
        self.headers = headers or {}


class Unauthorized(APIError):
    status, code, message = 401, "unauthorized", "请先登录"


class Forbidden(APIError):
    status, code, message = 403, "forbidden", "没有权限执行此操作"


class NotFound(APIError):
    status, code, message = 404, "not_found", "找不到该资源"


class Conflict(APIError):
    status, code, message = 409, "conflict", "操作与当前状态冲突"


class InvalidTransition(Conflict):
    code, message = "invalid_transition", "当前状态不允许此操作"


class TooLarge(APIError):
    status, code, message = 413, "too_large", "内容过大"


class ValidationFailed(APIError):
    status, code, message = 422, "validation_error", "输入有误"


class RateLimited(APIError):
    status, code, message = 429, "rate_limited", "操作太频繁，请稍后再试"

    def __init__(self, message: str | None = None, *, retry_after: int, **kw) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))}, **kw)
        self.details.setdefault("retry_after", max(1, int(retry_after)))


class UpstreamError(APIError):
    status, code, message = 502, "upstream_error", "外部服务暂时不可用，请稍后再试"


class ServiceUnavailable(APIError):
    status, code, message = 503, "service_unavailable", "服务暂时不可用，请稍后再试"

    def __init__(self, message: str | None = None, *, retry_after: int = 5, **kw) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))}, **kw)


class DatabaseUnavailable(ServiceUnavailable):
    code, message = "database_unavailable", "数据服务暂时不可用，请稍后再试"


class DatabaseBusy(ServiceUnavailable):
    """A wait on the database ran past its bound (DB_LOCK_TIMEOUT_MS, DB_STATEMENT_TIMEOUT_MS)."""

    code, message = "database_busy", "数据服务繁忙，请稍后再试"


# Codes and Chinese messages for plain HTTP errors raised by Flask/werkzeug.
HTTP_CODES = {
    400: ("bad_request", "请求有误"),
    401: ("unauthorized", "请先登录"),
    403: ("forbidden", "没有权限执行此操作"),
    404: ("not_found", "找不到该资源"),
    405: ("method_not_allowed", "不支持该请求方法"),
    409: ("conflict", "操作与当前状态冲突"),
    413: ("too_large", "内容过大"),
    415: ("unsupported_media_type", "请求体须为 JSON"),
    422: ("validation_error", "输入有误"),
    429: ("rate_limited", "操作太频繁，请稍后再试"),
}


def error_response(status: int, code: str, message: str, details: dict | None = None,
                   headers: dict | None = None):
    """Build the one error shape: {"error": {"code", "message", "details"}}."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def render_http_exception(exc: HTTPException):
    """Render a werkzeug/flask-smorest HTTPException in the one shape."""
    status = exc.code or 500
    code, message = HTTP_CODES.get(status, ("error", exc.name))
    details = {}
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if messages:
        # webargs: {"json": {"field": ["msg"]}}; an unparsable JSON body arrives as 400.
        if status == 400 and "json" in messages and isinstance(messages["json"], list):
            return error_response(400, "invalid_json", "请求体不是合法的 JSON")
        details = {"fields": _flatten_locations(messages)}
    headers = dict(data.get("headers") or {})
    valid_methods = getattr(exc, "valid_methods", None)
    if status == 405 and valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    return error_response(status, code, message, details, headers)


def _flatten_locations(messages: dict) -> dict:
    """Merge webargs' per-location messages into one {field: [messages]} mapping."""
    fields: dict = {}
    for location, value in messages.items():
        if isinstance(value, dict):
            fields.update(value)
        else:
            fields[location] = value
    return fields


def register_error_handlers(app: Flask) -> None:
    """Install the handlers so that no response is ever HTML or a traceback."""

    @app.errorhandler(APIError)
    def _api_error(exc: APIError):
        discard_unsaved_changes()
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        discard_unsaved_changes()
        return render_http_exception(exc)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def _database_unavailable(exc: Exception):
        # A dropped connection, a database down or restarting, an exhausted pool, a wait past
        # its bound: the transaction is rolled back, nothing is half-written, the client may
        # retry.
        if _waited_too_long(exc):
            log.warning("database wait timed out (request_id=%s): %s",
                        getattr(g, "request_id", None), _first_line(exc))
            return _api_error(DatabaseBusy())
        log.warning("database unavailable (request_id=%s): %s", getattr(g, "request_id", None),
                    _first_line(exc), exc_info=not getattr(exc, "connection_invalidated", False))
        return _api_error(DatabaseUnavailable())

    @app.errorhandler(DataError)
    @app.errorhandler(OverflowError)
    def _value_out_of_range(exc: Exception):
        # A value the database cannot hold (an id of 2**70, a text longer than its column)
        # came from the caller: a 422, never a 500. Found by the fuzzer (tests/fuzz/).
        log.info("value out of range (request_id=%s): %s", getattr(g, "request_id", None),
                 _first_line(exc))
        return _api_error(ValidationFailed("输入的数值或内容超出允许范围",
                                           code="value_out_of_range"))

    @app.errorhandler(RedisError)
    def _redis_unavailable(exc: RedisError):
        # Redis uses that can degrade do so where they are made (rate limits fail open, the
        # outbox relays later); whatever cannot is a clean 503, never a 500.
        log.warning("redis unavailable (request_id=%s): %s", getattr(g, "request_id", None),
                    _first_line(exc))
        return _api_error(ServiceUnavailable())

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        discard_unsaved_changes()
        request_id = getattr(g, "request_id", None)
        log.exception("unhandled error (request_id=%s)", request_id)
        return error_response(
            500, "internal_error", "服务器开小差了，请稍后再试", {"request_id": request_id}
        )


def _waited_too_long(exc: Exception) -> bool:
    """PostgreSQL cancelled the statement: lock_timeout (55P03) or statement_timeout (57014)."""
    return isinstance(getattr(exc, "orig", None), LockNotAvailable | QueryCanceled)


def _first_line(exc: Exception) -> str:
    """The first line of an exception's text (driver messages run over several lines)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def discard_unsaved_changes() -> None:
    """A failed request writes nothing: drop whatever it added before the error."""
    from app.extensions import db

    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - a broken connection must not hide the original error
        log.warning("rollback after an error failed", exc_info=True)
