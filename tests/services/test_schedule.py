"""The periodic schedule: every job booked once per slot, ticks run their job."""

from __future__ import annotations

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry

from app.extensions import QUEUE_NAMES, redis_store
from tests.conftest import work_in_process
from workers import schedule
from workers.jobs import get_job


def test_every_periodic_job_is_registered():
    for name in schedule.PERIODIC:
        assert callable(get_job(name))


def scheduled_ticks(queue: Queue) -> list[str]:
    """The periodic jobs with a tick booked on `queue`."""
    return sorted(j.rsplit("-", 1)[0] for j in ScheduledJobRegistry(queue=queue).get_job_ids())


def test_book_all_books_each_job_once_however_many_workers_ask(app):
    queues = [Queue(name, connection=redis_store.client) for name in QUEUE_NAMES]
    assert schedule.book_all(redis_store.client, now=False) == len(schedule.PERIODIC)
    assert schedule.book_all(redis_store.client, now=False) == 0
    assert sorted(tick for queue in queues for tick in scheduled_ticks(queue)) == sorted(
        n.replace("_", "-") for n in schedule.PERIODIC)


def test_the_alarm_watch_ticks_ahead_of_the_residents_jobs(app):
    """Escalating a late SOS must not wait behind a backlog of routing and notices: its ticks
    go to the urgent queue; the housekeeping ticks to the lowest."""
    queues = {name: Queue(name, connection=redis_store.client) for name in QUEUE_NAMES}
    schedule.book_all(redis_store.client, now=False)
    assert scheduled_ticks(queues["urgent"]) == ["alarm-watch"]
    assert "alarm-watch" not in scheduled_ticks(queues["low"])
    assert "outbox-relay" in scheduled_ticks(queues["low"])
    assert scheduled_ticks(queues["high"]) == scheduled_ticks(queues["default"]) == []


def test_a_watch_chain_booked_on_another_queue_moves_to_urgent_with_its_next_tick(app,
                                                                                  monkeypatch):
    """A chain an earlier version booked on "low" would stay there tick after tick."""
    monkeypatch.setattr("workers.schedule.get_job", lambda name: lambda: 0)
    low = Queue("low", connection=redis_store.client)
    low.enqueue(schedule.periodic_tick, "alarm_watch", 30)
    work_in_process({"low": low})
    assert scheduled_ticks(Queue("urgent", connection=redis_store.client)) == ["alarm-watch"]
    assert scheduled_ticks(low) == []


def test_a_tick_runs_its_job_and_books_the_next(app, monkeypatch):
    calls = []
    monkeypatch.setitem(schedule.PERIODIC, "escalate_overdue", 300)
    monkeypatch.setattr("workers.schedule.get_job", lambda name: lambda: calls.append(name) or 7)
    assert schedule.periodic_tick("escalate_overdue", 300) == 7
    assert calls == ["escalate_overdue"]
    queue = Queue("low", connection=redis_store.client)
    assert [j for j in ScheduledJobRegistry(queue=queue).get_job_ids()
            if j.startswith("escalate-overdue-")]


def test_a_worker_started_without_the_urgent_queue_says_so(caplog):
    from workers.__main__ import parse_args, warn_of_queues_left

    assert warn_of_queues_left(parse_args([]).queues) == []
    assert warn_of_queues_left(parse_args(["--queues", "high,default,low"]).queues) == ["urgent"]
    assert "leaves the queues urgent to others" in caplog.text


def test_a_worker_refuses_the_urgent_queue_behind_others(capsys):
    """Safety alarms never wait behind other work: the command says why it will not start."""
    from workers.__main__ import parse_args

    assert parse_args(["--queues", "urgent,high"]).queues == ["urgent", "high"]
    with pytest.raises(SystemExit) as refused:
        parse_args(["--queues", "high,urgent"])
    assert refused.value.code == 2
    assert "urgent must come first; got 'high,urgent'" in capsys.readouterr().err
