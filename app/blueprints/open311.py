"""Open311 GeoReport v2 under /open311/v2/: JSON only, errors as [{"code", "description"}].

A plain Flask blueprint: the standard has its own error format, so every error under /open311
(including unknown paths, wrong methods and crashes) is rendered here, never in the app's shape.
Every route accepts `jurisdiction_id` and ignores it: this deployment is one jurisdiction.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, g, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app.errors import (
    HTTP_CODES,
    APIError,
    DatabaseUnavailable,
    ServiceUnavailable,
    ValidationFailed,
    discard_unsaved_changes,
)
from app.models.reports import Report, ReportCategory
from app.security import access
from app.services import open311
from app.services.uploads import media_url

log = logging.getLogger(__name__)

blp = Blueprint("open311", __name__, url_prefix="/open311")

# Every route takes every method so that a wrong one is a 405 raised here (in our format);
# werkzeug's own 405 would be raised before the blueprint is known.
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ID_RE = re.compile(r"[0-9]{1,10}")
MAX_ID = 2**31 - 1
# What an error status becomes in Open311: token/role problems are 403, validation is 400.
OPEN311_STATUS = {401: 403, 409: 400, 415: 400, 422: 400}


class Open311Error(Exception):
    """An error raised by the routes themselves (bad format, bad parameter)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


def open311_error(status: int, description: str, headers: dict | None = None):
    """The Open311 error body: a one-element array of {code, description}."""
    response = jsonify([{"code": status, "description": description}])
    response.status_code = status
    response.headers.update(headers or {})
    return response


@blp.before_request
def _refuse_nul_characters():
    """400 for U+0000 in any parameter: PostgreSQL text cannot hold it, and SQLite would store
    it, so it is refused here, the same on every backend (found by fuzzing /open311)."""
    values = [*request.args.items(multi=True), *(request.view_args or {}).items()]
    if request.method == "POST":
        values += list(request.form.items(multi=True))
    if any("\x00" in f"{name}{value}" for name, value in values):
        raise Open311Error(400, "参数中不能含有空字符（U+0000）")


@blp.errorhandler(Open311Error)
def _open311_error(exc: Open311Error):
    discard_unsaved_changes()
    return open311_error(exc.status, exc.description)


@blp.errorhandler(APIError)
def _api_error(exc: APIError):
    discard_unsaved_changes()
    status = OPEN311_STATUS.get(exc.status, exc.status)
    return open311_error(status, exc.message, exc.headers)


# The app maps these to 422 / 503 (app/errors.py), but Flask asks a blueprint's handlers first,
# the catch-all below included, so without these they were 500s here.
@blp.errorhandler(DataError)
@blp.errorhandler(OverflowError)
def _value_out_of_range(exc: Exception):
    log.info("Open311 value out of range (request_id=%s): %s", g.get("request_id"),
             (str(exc).splitlines() or [type(exc).__name__])[0][:300])
    return _api_error(ValidationFailed("输入的数值或内容超出允许范围"))


@blp.errorhandler(OperationalError)
@blp.errorhandler(InterfaceError)
@blp.errorhandler(PoolTimeout)
def _database_unavailable(exc: Exception):
    log.warning("Open311: database unavailable (request_id=%s): %s", g.get("request_id"),
                type(exc).__name__)
    return _api_error(DatabaseUnavailable())


@blp.errorhandler(RedisError)
def _redis_unavailable(exc: RedisError):
    log.warning("Open311: redis unavailable (request_id=%s): %s", g.get("request_id"), exc)
    return _api_error(ServiceUnavailable())


@blp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    status = OPEN311_STATUS.get(exc.code or 500, exc.code or 500)
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return open311_error(status, HTTP_CODES.get(status, ("", exc.name))[1], headers)


@blp.errorhandler(Exception)
def _unexpected(exc: Exception):
    discard_unsaved_changes()
    log.exception("unhandled Open311 error (request_id=%s)", g.get("request_id"))
    return open311_error(500, "服务器开小差了，请稍后再试")


def _accept(fmt: str, *methods: str) -> None:
    """Refuse other methods (405) and any format but JSON (400)."""
    if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
        raise MethodNotAllowed(valid_methods=list(methods))
    if fmt != "json":
        raise Open311Error(400, f"不支持 .{fmt} 格式，仅支持 JSON（.json）")


@blp.route("/v2/services.<fmt>", methods=ALL_METHODS)
@access("Open311: public reads; api_key for POST")
def services(fmt: str):
    """Every active, non-private category as an Open311 service."""
    _accept(fmt, "GET")
    return jsonify([service_json(c) for c in open311.list_services()])


@blp.route("/v2/services/<code>.<fmt>", methods=ALL_METHODS)
@access("Open311: public reads; api_key for POST")
def service_definition(code: str, fmt: str):
    """A service's attributes (the category's extra fields)."""
    _accept(fmt, "GET")
    category = open311.service_by_code(code)
    return jsonify({"service_code": category.code, "attributes": attributes_json(category)})


@blp.route("/v2/requests.<fmt>", methods=ALL_METHODS)
@access("Open311: public reads; api_key for POST")
def requests_(fmt: str):
    """GET: search service requests. POST: file one (form-encoded, with an api_key)."""
    _accept(fmt, "GET", "POST")
    if request.method == "POST":
        return _create_request()
    args = request.args
    reports = open311.find_requests(
        ids=_ids(args.get("service_request_id")), service_codes=_list(args.get("service_code")),
        start=_datetime(args, "start_date"), end=_datetime(args, "end_date"),
        statuses=_list(args.get("status")))
    return jsonify([request_json(r) for r in reports])


def _create_request():
    form = request.form
    report = open311.submit_external_report(
        api_key=form.get("api_key"), service_code=form.get("service_code"),
        description=form.get("description"), lat=_float(form, "lat"), lng=_float(form, "long"),
        address_string=form.get("address_string"), media_url=form.get("media_url"),
        attributes={m.group(1): v for k, v in form.items()
                    if (m := re.fullmatch(r"attribute\[(.+)\]", k))},
        contact={name: form.get(name) for name in open311.CONTACT_FIELDS})
    notice = f"已收到，将派发给相关单位处理，预计 {report.category.sla_hours} 小时内处理完毕"
    body = [{"service_request_id": str(report.id), "service_notice": notice, "account_id": None}]
    return jsonify(body), 201


@blp.route("/v2/requests/<request_id>.<fmt>", methods=ALL_METHODS)
@access("Open311: public reads; api_key for POST")
def request_detail(request_id: str, fmt: str):
    """One service request, as a one-element array."""
    _accept(fmt, "GET")
    if not ID_RE.fullmatch(request_id) or int(request_id) > MAX_ID:
        raise Open311Error(404, "找不到该服务请求")
    return jsonify([request_json(open311.get_request(int(request_id)))])


@blp.route("/", defaults={"rest": ""}, methods=ALL_METHODS, strict_slashes=False)
@blp.route("/<path:rest>", methods=ALL_METHODS)
@access("Open311: public reads; api_key for POST")
def not_found(rest: str):
    """Anything else under /open311 is a 404 in the Open311 format."""
    raise Open311Error(404, "找不到该资源")


def _list(value: str | None) -> list[str]:
    """A comma-delimited parameter as a list (empty items dropped)."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _ids(value: str | None) -> list[int]:
    ids = _list(value)
    if any(not ID_RE.fullmatch(i) or int(i) > MAX_ID for i in ids):
        raise Open311Error(400, "service_request_id 须为以逗号分隔的数字")
    return [int(i) for i in ids]


def _float(form, name: str) -> float | None:
    value = (form.get(name) or "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise Open311Error(400, f"{name} 须为数字")
    return number


def _datetime(args, name: str) -> datetime | None:
    """An ISO 8601 parameter; without an offset it is read in the deployment's time zone."""
    value = (args.get(name) or "").strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Open311Error(
            400, f"{name} 须为 ISO 8601 时间，例如 2026-01-31T08:00:00+08:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(current_app.config["DEFAULT_TIMEZONE"]))
    return moment


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _absolute(url: str) -> str:
    return urljoin(request.host_url, url)


def service_json(category: ReportCategory) -> dict:
    """A category as an Open311 service."""
    return {"service_code": category.code, "service_name": category.name,
            "description": category.description or category.name_en,
            "metadata": bool(category.extra_fields), "type": "realtime",
            "keywords": ",".join([category.code, category.name_en]),
            "group": open311.service_group(category)}


def attributes_json(category: ReportCategory) -> list[dict]:
    """The category's extra fields as Open311 attributes (all free text)."""
    return [{"variable": True, "code": field["key"], "datatype": "string",
             "required": bool(field.get("required")), "datatype_description": "",
             "order": order, "description": field.get("label") or field["key"]}
            for order, field in enumerate(category.extra_fields or [], start=1)]


def request_json(report: Report) -> dict:
    """A report as an Open311 service request (never its reporter or contact details)."""
    building = report.building
    lat = report.lat if report.lat is not None else (building.lat if building else None)
    lng = report.lng if report.lng is not None else (building.lng if building else None)
    return {
        "service_request_id": str(report.id), "status": open311.open311_status(report),
        "status_notes": open311.status_notes(report),
        "service_name": report.category.name, "service_code": report.category.code,
        "description": report.description,
        "agency_responsible": open311.agency_responsible(report),
        "service_notice": None,
        "requested_datetime": _iso(report.created_at),
        "updated_datetime": _iso(report.updated_at),
        "expected_datetime": _iso(open311.expected_datetime(report)),
        "address": report.location_text or (building.name if building else ""),
        "lat": lat, "long": lng, "media_url": _media_url(report),
    }


def _media_url(report: Report) -> str | None:
    """The first photo's absolute URL, or the URL a city system filed the report with."""
    if report.photos:
        return _absolute(media_url(report.photos[0].upload.sha256))
    return report.extra.get("media_url") if report.extra else None
