"""The ticket API: staff of the handling orgs work their tickets here."""

from __future__ import annotations

from datetime import UTC

from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.reports.schemas import TimelineEntrySchema
from app.blueprints.tickets.schemas import (
    CommentSchema,
    StatsArgsSchema,
    StatsSchema,
    TicketDetailSchema,
    TicketListArgsSchema,
    TicketPageSchema,
    TransitionSchema,
)
from app.errors import ValidationFailed
from app.security import current_user_id, role_required, staff_orgs
from app.services import tickets

blp = Blueprint("tickets", __name__, url_prefix="/api/v1/tickets",
                description="Tickets: the staff side of reports")
TICKET_ROLES = ("staff", "manager", "grid_worker", "admin")
TICKET_ORGS = ("property_company", "owners_committee", "community_office", "service_provider")


def caller_scope() -> tickets.Scope:
    """The tickets the caller works, from the org roles in their token."""
    return tickets.Scope(user_id=current_user_id(),
                         orgs=staff_orgs(roles=TICKET_ROLES, org_types=TICKET_ORGS))


def with_viewer(ticket):
    """Mark whether the caller is the assigned handler (they see the full phone)."""
    ticket.viewer_is_assignee = ticket.assignee_id == current_user_id()
    return ticket


@blp.route("")
class Tickets(MethodView):
    @role_required(*TICKET_ROLES, org_types=TICKET_ORGS)
    @blp.arguments(TicketListArgsSchema(), location="query")  # an instance: not one per call
    @blp.response(200, TicketPageSchema)
    def get(self, args):
        """My orgs' tickets (grid workers: their micro-grids), newest or most overdue first."""
        items, cursor = tickets.list_tickets(scope=caller_scope(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/stats")
class TicketStats(MethodView):
    @role_required(*TICKET_ROLES, org_types=TICKET_ORGS)
    @blp.arguments(StatsArgsSchema, location="query")
    @blp.response(200, StatsSchema)
    def get(self, args):
        """Per org and category: received, resolved, medians, overdue, rating."""
        start, end = (d if d.tzinfo else d.replace(tzinfo=UTC)
                      for d in (args["start"], args["end"]))
        if end <= start:
            raise ValidationFailed("结束时间须晚于开始时间", code="invalid_range")
        return {"items": tickets.stats(scope=caller_scope(), start=start, end=end),
                "next_cursor": None}


@blp.route("/<int:ticket_id>")
class TicketDetail(MethodView):
    @role_required(*TICKET_ROLES, org_types=TICKET_ORGS)
    @blp.response(200, TicketDetailSchema)
    def get(self, ticket_id):
        """The ticket with its report, photos, full timeline and the reporter."""
        return with_viewer(tickets.get_ticket(ticket_id=ticket_id, scope=caller_scope()))


@blp.route("/<int:ticket_id>/transitions")
class TicketTransitions(MethodView):
    @role_required(*TICKET_ROLES, org_types=TICKET_ORGS)
    @blp.arguments(TransitionSchema)
    @blp.response(200, TicketDetailSchema)
    def post(self, body, ticket_id):
        """accept, start, resolve, reject, transfer or mark_duplicate."""
        return with_viewer(tickets.transition(ticket_id=ticket_id, scope=caller_scope(),
                                              **body))


@blp.route("/<int:ticket_id>/comments")
class TicketComments(MethodView):
    @role_required(*TICKET_ROLES, org_types=TICKET_ORGS)
    @blp.arguments(CommentSchema)
    @blp.response(201, TimelineEntrySchema)
    def post(self, body, ticket_id):
        """A comment; `internal` ones never reach the resident."""
        return tickets.comment(ticket_id=ticket_id, scope=caller_scope(), **body)
