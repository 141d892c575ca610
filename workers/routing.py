"""Report jobs: routing to orgs, SLA escalation, the 7-day auto-close."""

from __future__ import annotations

from app.services import reports, routing, tickets
from workers.jobs import job


@job("route_report")
def route_report(report_id: int) -> int:
    """Open the report's tickets; returns how many it has."""
    return len(routing.route_report(report_id))


@job("escalate_overdue")
def escalate_overdue() -> int:
    """Flag and escalate tickets past their deadlines."""
    return tickets.escalate_overdue()


@job("auto_close_reports")
def auto_close_reports() -> int:
    """Close reports resolved 7 days ago without the resident's feedback."""
    return reports.auto_close_resolved()
