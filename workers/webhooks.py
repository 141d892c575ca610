"""Signed webhooks to an org's external property system; retried with backoff on failure."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from app.extensions import db
from app.models import Org
from app.models.reports import ReportEvent, Ticket
from workers.jobs import job


class WebhookFailed(RuntimeError):
    """The receiver did not answer 2xx; RQ retries, the outbox row keeps the error."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `timestamp.body`, hex, as sent in X-Linli-Signature."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def payload(ticket: Ticket, event: ReportEvent) -> dict:
    """What the receiver gets: the ticket and the step that happened."""
    return {
        "event": {"id": event.id, "action": event.action, "note": event.note,
                  "at": event.created_at.isoformat()},
        "ticket": {"id": ticket.id, "report_id": ticket.report_id, "status": str(ticket.status),
                   "expected_at": ticket.expected_at.isoformat()},
    }


@job("deliver_webhook")
def deliver_webhook(ticket_id: int, event_id: int) -> int:
    """POST the signed event to the org's webhook; raise on anything but 2xx."""
    ticket, event = db.session.get(Ticket, ticket_id), db.session.get(ReportEvent, event_id)
    org = db.session.get(Org, ticket.org_id) if ticket else None
    if org is None or event is None or not org.webhook_url:
        return 0
    body = json.dumps(payload(ticket, event), ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Linli-Timestamp": timestamp,
               "X-Linli-Signature": signature(org.webhook_secret or "", timestamp, body),
               "X-Linli-Delivery": f"{ticket.id}-{event.id}"}
    try:
        response = httpx.post(org.webhook_url, content=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"{org.code}: {type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        raise WebhookFailed(f"{org.code}: HTTP {response.status_code}")
    return response.status_code
