"""The periodic schedule: every job booked once per slot, ticks run their job."""

from __future__ import annotations

from rq import Queue
from rq.registry import ScheduledJobRegistry

from app.extensions import redis_store
from workers import schedule
from workers.jobs import get_job


def test_every_periodic_job_is_registered():
    for name in schedule.PERIODIC:
        assert callable(get_job(name))


def test_book_all_books_each_job_once_however_many_workers_ask(app):
    queue = Queue("low", connection=redis_store.client)
    assert schedule.book_all(queue, now=False) == len(schedule.PERIODIC)
    assert schedule.book_all(queue, now=False) == 0
    scheduled = ScheduledJobRegistry(queue=queue).get_job_ids()
    assert sorted(j.rsplit("-", 1)[0] for j in scheduled) == sorted(
        n.replace("_", "-") for n in schedule.PERIODIC)


def test_a_tick_runs_its_job_and_books_the_next(app, monkeypatch):
    calls = []
    monkeypatch.setitem(schedule.PERIODIC, "escalate_overdue", 300)
    monkeypatch.setattr("workers.schedule.get_job", lambda name: lambda: calls.append(name) or 7)
    assert schedule.periodic_tick("escalate_overdue", 300) == 7
    assert calls == ["escalate_overdue"]
    queue = Queue("low", connection=redis_store.client)
    assert [j for j in ScheduledJobRegistry(queue=queue).get_job_ids()
            if j.startswith("escalate-overdue-")]
