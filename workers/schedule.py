"""Periodic jobs on RQ's scheduler: each tick books the next one, then does its work.

A Redis key per (job, time slot) makes sure that however many workers book ticks, each job runs
once per slot. Workers book every job at start and during RQ's maintenance, so the chains
restart after Redis is flushed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rq import Queue

from app.extensions import URGENT_QUEUE, redis_store
from workers.jobs import app_context, get_job

# job name → interval in seconds
PERIODIC = {
    "outbox_relay": 30,
    "escalate_overdue": 300,
    "auto_close_reports": 3600,
    "alarm_watch": 30,
    "activity_reminders": 300,
    "purge_courier_positions": 3600,
}
# The alarm watch - late alarms escalated, lost evaluations picked up - ticks on the urgent
# queue, ahead of a backlog of routing jobs; the housekeeping ticks on the lowest, behind every
# job of the residents.
TICK_QUEUES = {"alarm_watch": URGENT_QUEUE}
HOUSEKEEPING_QUEUE = "low"
SLOT_KEY = "linli:periodic:{}:{}"


def periodic_tick(name: str, interval: int) -> int:
    """Book the next tick of `name`, then run it; booking first keeps the chain alive."""
    with app_context():
        book_tick(Queue(tick_queue(name), connection=redis_store.client), name, interval)
        return get_job(name)()


def book_tick(queue: Queue, name: str, interval: int, *, now: bool = False) -> bool:
    """Schedule the tick of the next slot (or one now) unless another worker already did."""
    slot = int(time.time() // interval) + (0 if now else 1)
    if not queue.connection.set(SLOT_KEY.format(name, slot), queue.name, nx=True,
                                ex=interval * 4):
        return False
    options = {"job_id": f"{name.replace('_', '-')}-{slot}", "result_ttl": interval * 4}
    if now:
        queue.enqueue(periodic_tick, name, interval, **options)
    else:
        queue.enqueue_at(datetime.fromtimestamp(slot * interval, UTC), periodic_tick, name,
                         interval, **options)
    return True


def tick_queue(name: str) -> str:
    """The queue the ticks of periodic job `name` go to (a chain booked elsewhere by an earlier
    version moves there with its next tick)."""
    return TICK_QUEUES.get(name, HOUSEKEEPING_QUEUE)


def book_all(connection, *, now: bool = True) -> int:
    """Book every periodic job on its queue (tick_queue); how many were newly booked."""
    return sum(book_tick(Queue(tick_queue(name), connection=connection), name, interval, now=now)
               for name, interval in PERIODIC.items())
