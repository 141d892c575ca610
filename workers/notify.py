"""Notification jobs: residents hear about their reports, orgs about their tickets."""

from __future__ import annotations

from app.extensions import db
from app.models import Org
from app.models.reports import Report, ReportEvent, ReportFollower, Ticket
from app.services import notifications, reports
from app.services.labels import REPORT_STATUS_LABELS, event_label
from app.services.tickets import office_org_ids
from workers.jobs import job


def _audience(report: Report) -> list[int]:
    """The reporter and the followers of a report."""
    followers = db.session.scalars(db.select(ReportFollower.user_id).where(
        ReportFollower.report_id == report.id))
    return [uid for uid in dict.fromkeys([report.reporter_id, *followers]) if uid]


@job("notify_report_update")
def notify_report_update(report_id: int, event_id: int) -> int:
    """Tell the reporter and followers about a public step; subscribe message included."""
    report, event = db.session.get(Report, report_id), db.session.get(ReportEvent, event_id)
    if report is None or event is None or not (event.public or event.to_status):
        return 0  # internal comments stay internal; status changes always reach the resident
    category = reports.category_by_id(report.category_id)
    # The state this step moved to, not the report's state when the job happens to run.
    state = event.to_status if event.ticket_id is None and event.to_status else str(report.status)
    status = REPORT_STATUS_LABELS[state]
    kind = "report_resolved" if state == "resolved" else "report_update"
    title = f"您反映的“{category.name}”{status}"
    sent = 0
    for user_id in _audience(report):
        sent += bool(notifications.notify_user(
            user_id=user_id, kind=kind, title=title, body=event.note or event_label(event),
            dedupe_key=f"report-event:{event.id}:u{user_id}",
            data={"report_id": report.id, "event_id": event.id, "status": state},
            wx_data={"thing1": category.name, "phrase2": status,
                     "time3": event.created_at.strftime("%Y-%m-%d %H:%M"),
                     "thing4": event.note or event_label(event)},
            page=f"pages/reports/detail?id={report.id}"))
    return sent


@job("notify_ticket_org")
def notify_ticket_org(ticket_id: int, event_id: int) -> int:
    """In-app notice to the handling org's staff (and the copied grid worker)."""
    ticket, event = db.session.get(Ticket, ticket_id), db.session.get(ReportEvent, event_id)
    if ticket is None or event is None:
        return 0
    category = reports.category_by_id(ticket.category_id)
    title = f"工单 #{ticket.id}（{category.name}）：{event_label(event)}"
    data = {"ticket_id": ticket.id, "report_id": ticket.report_id, "event_id": event.id}
    # read before notify_org commits (a commit expires them: two SELECTs more)
    grid_worker_id, note = ticket.grid_worker_id, event.note
    sent = notifications.notify_org(org_id=ticket.org_id, kind="ticket", title=title,
                                    body=note, data=data, dedupe_key=f"ticket-event:{event_id}")
    if grid_worker_id:
        sent += bool(notifications.notify_user(
            user_id=grid_worker_id, kind="ticket_copy", title=title, body=note,
            data=data, dedupe_key=f"ticket-event:{event_id}:grid{grid_worker_id}"))
    return sent


@job("notify_escalation")
def notify_escalation(ticket_id: int, event_id: int) -> int:
    """Tell the community office (and the handling org) that a ticket is overdue."""
    ticket = db.session.get(Ticket, ticket_id)
    if ticket is None:
        return 0
    org = db.session.get(Org, ticket.org_id)
    title = f"工单 #{ticket.id} 已超时（{org.name}）"
    sent = 0
    for org_id in {*office_org_ids(ticket.community_id), ticket.org_id}:
        sent += notifications.notify_org(
            org_id=org_id, kind="ticket_overdue", title=title, body="请尽快督办",
            data={"ticket_id": ticket.id, "report_id": ticket.report_id},
            dedupe_key=f"escalation:{event_id}:org{org_id}")
    return sent
