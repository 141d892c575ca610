"""Schemas of the ticket API (property staff, committee, grid workers, community office)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate, validates_schema

from app.blueprints.common import page_of
from app.blueprints.me.schemas import mask_phone
from app.blueprints.reports.schemas import PhotoSchema, TimelineEntrySchema
from app.pagination import PageArgsSchema
from app.services.labels import REPORT_STATUS_LABELS, TICKET_STATUS_LABELS
from app.services.tickets import STAFF_ACTIONS


class OrgRefSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()


class TicketSummarySchema(Schema):
    id = fields.Integer()
    report_id = fields.Integer()
    status = fields.String()
    status_label = fields.Function(lambda t: TICKET_STATUS_LABELS[str(t.status)])
    org = fields.Nested(OrgRefSchema)
    category = fields.Function(lambda t: t.category.code)
    category_name = fields.Function(lambda t: t.category.name)
    description = fields.Function(lambda t: t.report.description[:120])
    location_text = fields.Function(lambda t: t.report.location_text)
    building = fields.Function(
        lambda t: t.report.building.name if t.report.building_id else None)
    building_id = fields.Integer(allow_none=True)
    micro_grid_id = fields.Integer(allow_none=True)
    assignee_id = fields.Integer(allow_none=True)
    accept_by = fields.DateTime()
    expected_at = fields.DateTime()
    overdue = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


def summary_of_row(row) -> dict:
    """A row of the ticket list (tickets.LIST_ROWS) exactly as TicketSummarySchema dumps it."""
    (id_, report_id, status, org_id, org_code, org_name, category, category_name, description,
     location_text, building, building_id, micro_grid_id, assignee_id, accept_by, expected_at,
     overdue, created_at, updated_at) = row  # unpacked: half the CPU of 19 lookups by name
    return {
        "id": id_, "report_id": report_id, "status": str(status),
        "status_label": TICKET_STATUS_LABELS[str(status)],
        "org": {"id": org_id, "code": org_code, "name": org_name},
        "category": category, "category_name": category_name,
        "description": description[:120], "location_text": location_text,
        "building": building, "building_id": building_id,
        "micro_grid_id": micro_grid_id, "assignee_id": assignee_id,
        "accept_by": accept_by.isoformat(), "expected_at": expected_at.isoformat(),
        "overdue": overdue, "created_at": created_at.isoformat(),
        "updated_at": updated_at.isoformat(),
    }


class TicketPageSchema(page_of(TicketSummarySchema, "TicketPageSchema")):
    """The ticket list as documented, dumped straight from its rows: the list is the staff's
    busiest read, and marshmallow's field-by-field dump cost more than the query."""

    def dump(self, obj, *, many=None):
        return {"items": [summary_of_row(row) for row in obj["items"]],
                "next_cursor": obj["next_cursor"]}


class ReporterSchema(Schema):
    id = fields.Integer()
    display_name = fields.String()
    phone = fields.String(allow_none=True)


class TicketReportSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    status_label = fields.Function(lambda r: REPORT_STATUS_LABELS[str(r.status)])
    category = fields.Function(lambda r: r.category.code)
    description = fields.String()
    lat = fields.Float(allow_none=True)
    lng = fields.Float(allow_none=True)
    location_text = fields.String()
    building_id = fields.Integer(allow_none=True)
    photos = fields.List(fields.Nested(PhotoSchema))
    rating = fields.Integer(allow_none=True)
    fixed = fields.Boolean(allow_none=True)
    feedback_comment = fields.String(allow_none=True)
    created_at = fields.DateTime()


class StaffTimelineEntrySchema(TimelineEntrySchema):
    public = fields.Boolean()
    actor = fields.Function(lambda e: e.actor_id)
    data = fields.Dict()


STAFF_TIMELINE = StaffTimelineEntrySchema(many=True)
REPORTER = ReporterSchema()


class TicketDetailSchema(TicketSummarySchema):
    report = fields.Nested(TicketReportSchema, attribute="full_report")
    timeline = fields.Method("full_timeline")
    reporter = fields.Method("reporter_info")
    tickets = fields.Method("sibling_tickets")

    def full_timeline(self, ticket):
        return STAFF_TIMELINE.dump(ticket.full_report.events)

    def reporter_info(self, ticket):
        """Name and a masked phone; the full number only for the assigned handler."""
        person = ticket.reporter
        if person is None:
            return None
        phone = person.phone if ticket.viewer_is_assignee else mask_phone(person.phone)
        return REPORTER.dump({"id": person.id, "display_name": person.display_name,
                              "phone": phone})

    def sibling_tickets(self, ticket):
        return [{"id": t.id, "org": t.org.name, "status": str(t.status)}
                for t in ticket.full_report.tickets]


class TicketListArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(
        list(TICKET_STATUS_LABELS)))
    category = fields.String(load_default=None)
    overdue = fields.Boolean(load_default=None)
    building_id = fields.Integer(load_default=None)
    q = fields.String(load_default=None, validate=validate.Length(max=100))
    sort = fields.String(load_default="newest", validate=validate.OneOf(["newest", "overdue"]))


class TransitionSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(STAFF_ACTIONS))
    note = fields.String(load_default="", validate=validate.Length(max=2000))
    photo_ids = fields.List(fields.Integer(), load_default=list,
                            validate=validate.Length(max=9))
    assignee_id = fields.Integer(load_default=None)
    to_org = fields.String(load_default=None)
    of_report = fields.Integer(load_default=None)

    @validates_schema
    def needs_target(self, data, **_kwargs):
        from marshmallow import ValidationError

        if data["action"] == "transfer" and not data.get("to_org"):
            raise ValidationError("转派须指定单位", field_name="to_org")
        if data["action"] == "mark_duplicate" and not data.get("of_report"):
            raise ValidationError("须指定原报告", field_name="of_report")


class CommentSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    internal = fields.Boolean(load_default=False)


class StatsArgsSchema(Schema):
    start = fields.DateTime(data_key="from", required=True)
    end = fields.DateTime(data_key="to", required=True)


class StatsRowSchema(Schema):
    org_id = fields.Integer()
    org_name = fields.String()
    category = fields.String()
    category_name = fields.String()
    received = fields.Integer()
    resolved = fields.Integer()
    resolution_rate = fields.Float(allow_none=True)
    median_hours_to_accept = fields.Float(allow_none=True)
    median_hours_to_resolve = fields.Float(allow_none=True)
    overdue = fields.Integer()
    average_rating = fields.Float(allow_none=True)


class StatsSchema(Schema):
    items = fields.List(fields.Nested(StatsRowSchema))
    next_cursor = fields.String(allow_none=True)
