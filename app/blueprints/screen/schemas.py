"""Schemas of the big screen: its summary and the stream's parameters."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app import MAX_DATABASE_ID
from app.blueprints.common import sse_event

DATE_TIME = {"format": "date-time"}
MAX_STREAM_SECONDS = 3600.0
# How the screen authenticates (the schemes are registered in create_app): the header, or the
# query string for the browser's EventSource, which cannot send headers.
SCREEN_SECURITY = [{"screenToken": []}, {"screenTokenQuery": []}]


class ScreenReportItemSchema(Schema):
    """One public report on the wall: nothing that names or reaches a person."""

    id = fields.Integer(required=True)
    category = fields.String(required=True)
    building = fields.String(required=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)
    status = fields.String(required=True)
    status_label = fields.String(required=True)


class ScreenMonthSchema(Schema):
    received = fields.Integer()
    resolved = fields.Integer()
    resolution_rate = fields.Float(allow_none=True)
    median_hours_to_resolve = fields.Float(allow_none=True)


class ScreenReportsSchema(Schema):
    today_total = fields.Integer()
    today_by_status = fields.Dict(keys=fields.String(), values=fields.Integer())
    today_by_category = fields.Dict(keys=fields.String(), values=fields.Integer())
    month = fields.Nested(ScreenMonthSchema)
    recent = fields.List(fields.Nested(ScreenReportItemSchema))


class ScreenSummarySchema(Schema):
    """Everything the wall shows; one key per screen section (app.services.screen.SECTIONS)."""

    community = fields.String(required=True)
    generated_at = fields.String(required=True, metadata=DATE_TIME)
    reports = fields.Nested(ScreenReportsSchema, required=True)
    overdue_by_org = fields.List(fields.Dict())
    alarms = fields.List(fields.Dict())
    canteen = fields.Dict()
    activities = fields.List(fields.Dict())
    leaderboard = fields.List(fields.Dict())


class ScreenStreamHeadersSchema(Schema):
    last_event_id = fields.String(
        data_key="Last-Event-ID", load_default=None,
        metadata={"description": "sent by EventSource on reconnecting: resume after this report "
                                 "id (anything but a report id is ignored)"})


class ScreenStreamArgsSchema(Schema):
    max_seconds = fields.Float(
        load_default=None, allow_nan=False, validate=validate.Range(1, MAX_STREAM_SECONDS),
        metadata={"description": "end the stream after this long (default and most: an hour; "
                                 "the browser reconnects)"})
    last_event_id = fields.Integer(
        load_default=None, validate=validate.Range(0, MAX_DATABASE_ID),
        metadata={"description": "resume after this report id (as Last-Event-ID)"})


# Each event of the stream: `summary` (the whole wall, first and then every few seconds) and
# `report` (a new public report, its id the event id).
SCREEN_EVENT_SCHEMA = {"oneOf": [
    sse_event("summary", "ScreenSummary", id_pattern="^[0-9]+$", id_required=False),
    sse_event("report", "ScreenReportItem", id_pattern="^[0-9]+$")]}
