"""Safety-alarm jobs: evaluate stored device events, notify, and the 30-second watch."""

from __future__ import annotations

from app.services import alarm_notices, alarms
from workers.jobs import app_context, job


def run_evaluation() -> int:
    """The RQ job ingest queues (see alarms.request_evaluation): evaluate what is stored."""
    with app_context():
        return alarms.evaluate_pending()


@job("evaluate_device_events")
def evaluate_device_events() -> int:
    """Apply the stored, not yet evaluated events to their devices and the alarm rules."""
    return alarms.evaluate_pending()


@job("notify_alarm_raised")
def notify_alarm_raised(alarm_id: int) -> int:
    """On-duty staff and grid worker in-app; the first family contact by subscribe message."""
    return alarm_notices.notify_raised(alarm_id)


@job("notify_alarm_escalated")
def notify_alarm_escalated(alarm_id: int) -> int:
    """Grid worker, next family contact and office managers, once the deadline passed."""
    return alarm_notices.notify_escalated(alarm_id)


@job("notify_alarm_resolved")
def notify_alarm_resolved(alarm_id: int) -> int:
    """The family contacts told of the alarm hear how it ended."""
    return alarm_notices.notify_resolved(alarm_id)


@job("alarm_watch")
def alarm_watch() -> int:
    """Evaluate events a lost job left behind, escalate late alarms, raise periodic ones."""
    return (alarms.evaluate_pending() + alarms.escalate_unacknowledged()
            + alarms.check_periodic_rules())
