"""Open311 GeoReport v2: city systems read and file reports through the same rules as residents.

Services are the active, non-private report categories; service requests are reports. Private
categories (neighbour disputes) never appear, and the contact details a city system sends are
stored on the report but never given back.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app import ratelimit
from app.errors import Forbidden, NotFound, ValidationFailed
from app.extensions import db
from app.models import Community, Org
from app.models.open311 import Open311Key
from app.models.reports import (
    Report,
    ReportCategory,
    ReportPhoto,
    ReportStatus,
    Ticket,
    TicketStatus,
)
from app.services.labels import REPORT_STATUS_LABELS
from app.services.reports import (
    OPEN_STATUSES,
    check_in_community,
    clean_description,
    clean_extra,
    file_report,
    list_categories,
    now,
)

DEFAULT_WINDOW = timedelta(days=90)
MAX_REQUESTS = 1000
MAX_URL = 500
MAX_ADDRESS = 200
REQUESTS_PER_HOUR = 300
CONTACT_FIELDS = ("email", "first_name", "last_name", "phone")
# Open311 knows two states. `resolved` counts as closed: the spec defines closed as "it has been
# resolved", and city systems read closed as "the work is done". If the resident then says it is
# not fixed, the report moves to `reopened` and shows as open again.
CLOSED_STATUSES = frozenset(s for s in ReportStatus if s not in OPEN_STATUSES)
STATUS_FILTERS = {"open": tuple(OPEN_STATUSES), "closed": tuple(CLOSED_STATUSES)}
# Open311 `group` of each catalogue code; codes added later fall into 其他.
SERVICE_GROUPS = {
    "illegal_parking": "安全与秩序", "fire_lane_blocked": "安全与秩序",
    "garbage": "环境卫生", "greenery": "环境卫生",
    "broken_facility": "设施维修", "lighting": "设施维修", "elevator_fault": "设施维修",
    "water_leak": "设施维修",
    "elevator_installation": "公共事务", "public_space_change": "公共事务",
    "noise": "邻里关系", "neighbour_dispute": "邻里关系",
}


def _bad(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, details={"fields": {field: [message]}})


def hash_key(api_key: str) -> str:
    """The sha256 hex stored for an API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def issue_key(*, org_code: str, name: str = "") -> tuple[Open311Key, str]:
    """Create an API key for the org; returns the row and the key, which is never stored."""
    org = db.session.scalar(select(Org).where(Org.code == org_code))
    if org is None:
        raise NotFound("找不到该组织", code="org_not_found")
    api_key = secrets.token_urlsafe(32)
    row = Open311Key(org_id=org.id, name=name or "", key_hash=hash_key(api_key), created_at=now())
    db.session.add(row)
    db.session.commit()
    return row, api_key


def key_for(api_key: str | None) -> Open311Key:
    """The live key row for `api_key`; 403 when missing, unknown or revoked."""
    if not api_key:
        raise Forbidden("缺少 api_key", code="api_key_required")
    row = db.session.scalar(select(Open311Key).where(Open311Key.key_hash == hash_key(api_key)))
    if row is None or row.revoked_at is not None:
        raise Forbidden("api_key 无效或已停用", code="api_key_invalid")
    return row


def list_services() -> list[ReportCategory]:
    """The services: active categories that are not private, in display order."""
    return [c for c in list_categories() if not c.is_private]


def service_by_code(code: str | None) -> ReportCategory:
    """An active, non-private category; 404 otherwise (private ones do not exist here)."""
    category = db.session.scalar(select(ReportCategory).where(
        ReportCategory.code == (code or ""), ReportCategory.is_active.is_(True),
        ReportCategory.is_private.is_(False)))
    if category is None:
        raise NotFound("没有这个服务类别", code="unknown_service_code")
    return category


def service_group(category: ReportCategory) -> str:
    """The Open311 `group` of a category."""
    return SERVICE_GROUPS.get(category.code, "其他")


def open311_status(report: Report) -> str:
    """`open` or `closed`."""
    return "closed" if report.status in CLOSED_STATUSES else "open"


def status_notes(report: Report) -> str:
    """A short explanation of the status: the rejection reason, the original, or its label."""
    if report.status == ReportStatus.REJECTED and report.rejected_reason:
        return report.rejected_reason
    if report.status == ReportStatus.DUPLICATE and report.duplicate_of_id:
        return f"与 #{report.duplicate_of_id} 重复"
    return REPORT_STATUS_LABELS.get(str(report.status), str(report.status))


def handling_tickets(report: Report) -> list[Ticket]:
    """The tickets that hold the report (a transferred ticket no longer does)."""
    return [t for t in report.tickets if t.status != TicketStatus.TRANSFERRED]


def agency_responsible(report: Report) -> str:
    """The names of the orgs holding tickets for the report."""
    return "、".join(dict.fromkeys(t.org.name for t in handling_tickets(report)))


def expected_datetime(report: Report) -> datetime | None:
    """The earliest deadline among the report's tickets."""
    return min((t.expected_at for t in handling_tickets(report)), default=None)


def _requests_query():
    """Reports of public categories, with what a service request shows."""
    return (select(Report).join(Report.category)
            .where(ReportCategory.is_private.is_(False))
            .options(selectinload(Report.category), selectinload(Report.building),
                     selectinload(Report.photos).selectinload(ReportPhoto.upload),
                     selectinload(Report.tickets).selectinload(Ticket.org)))


def get_request(report_id: int) -> Report:
    """One service request; 404 when unknown or of a private category."""
    report = db.session.scalar(_requests_query().where(Report.id == report_id))
    if report is None:
        raise NotFound("找不到该服务请求", code="request_not_found")
    return report


def find_requests(*, ids: list[int] | None = None, service_codes: list[str] | None = None,
                  start: datetime | None = None, end: datetime | None = None,
                  statuses: list[str] | None = None, limit: int = MAX_REQUESTS) -> list[Report]:
    """Service requests, newest first; ids (when given) override every other filter."""
    stmt = _requests_query()
    if ids:
        stmt = stmt.where(Report.id.in_(ids))
    else:
        stmt = _filtered(stmt, service_codes, start, end, statuses)
    stmt = stmt.order_by(Report.created_at.desc(), Report.id.desc()).limit(limit)
    return list(db.session.scalars(stmt))


def _filtered(stmt, service_codes, start, end, statuses):
    """Apply the service_code, status and requested_datetime window filters (90 days default)."""
    end = end or now()
    start = start or end - DEFAULT_WINDOW
    if start > end:
        raise _bad("start_date", "invalid_date_range", "start_date 不能晚于 end_date")
    stmt = stmt.where(Report.created_at >= start, Report.created_at <= end)
    if service_codes:
        stmt = stmt.where(ReportCategory.code.in_(service_codes))
    if statuses:
        unknown = [s for s in statuses if s not in STATUS_FILTERS]
        if unknown:
            raise _bad("status", "invalid_status", "status 只能是 open 或 closed")
        wanted = [s for name in dict.fromkeys(statuses) for s in STATUS_FILTERS[name]]
        stmt = stmt.where(Report.status.in_(wanted))
    return stmt


def submit_external_report(*, api_key: str | None, service_code: str | None,
                           description: str | None, lat: float | None = None,
                           lng: float | None = None, address_string: str | None = None,
                           media_url: str | None = None, attributes: dict | None = None,
                           contact: dict | None = None) -> Report:
    """File a report for a city system (source `open311`) and queue its routing."""
    key = key_for(api_key)
    if not service_code:
        raise _bad("service_code", "service_code_required", "缺少 service_code")
    category = service_by_code(service_code)
    description = clean_description(description)
    org = db.session.get(Org, key.org_id)
    community = db.session.get(Community, org.community_id)
    address = _check_location(lat, lng, address_string)
    check_in_community(community, lat, lng)
    media_url = _check_media_url(media_url, required=category.photo_required)
    extra = _extra(category, attributes or {}, media_url, contact or {})
    ratelimit.take(f"open311:{key.id}", REQUESTS_PER_HOUR, 3600, "提交太频繁，请稍后再试")
    report = Report(community_id=community.id, reporter_id=None, category_id=category.id,
                    description=description, lat=lat, lng=lng, location_text=address,
                    extra=extra, source="open311", source_org_id=org.id, created_at=now())
    return file_report(report, actor_id=None)


def _check_location(lat: float | None, lng: float | None, address_string: str | None) -> str:
    """A point (both lat and long, in range) or an address; returns the trimmed address."""
    address = (address_string or "").strip()[:MAX_ADDRESS]
    if (lat is None) != (lng is None):
        raise _bad("lat", "location_incomplete", "lat 与 long 须同时提供")
    if lat is None and not address:
        raise _bad("location", "location_required", "须提供 lat 和 long，或 address_string")
    if lat is not None and not (_finite_within(lat, 90) and _finite_within(lng, 180)):
        raise _bad("lat", "location_out_of_range", "lat/long 超出范围")
    return address


def _finite_within(value: float, bound: float) -> bool:
    return math.isfinite(value) and -bound <= value <= bound


def _check_media_url(media_url: str | None, *, required: bool) -> str | None:
    """An http(s) URL of at most MAX_URL characters (never fetched); required for some services."""
    media_url = (media_url or "").strip() or None
    if media_url is None:
        if required:
            raise _bad("media_url", "photo_required", "该类问题需要提供照片（media_url）")
        return None
    parts = urlsplit(media_url)
    if len(media_url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.netloc:
        raise _bad("media_url", "invalid_media_url", "media_url 须为 http(s) 地址")
    return media_url


def _extra(category: ReportCategory, attributes: dict, media_url: str | None,
           contact: dict) -> dict:
    """The report's extra: the category's fields, the media URL and the (private) contact."""
    extra = clean_extra(category, attributes, field_name=lambda key: f"attribute[{key}]")
    if media_url:
        extra["media_url"] = media_url
    kept = {k: str(contact[k]).strip()[:100] for k in CONTACT_FIELDS if contact.get(k)}
    if kept:
        extra["contact"] = kept
    return extra
