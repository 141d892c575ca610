"""Routine jobs give way while residents' requests wait for a turn; urgent ones never wait
(workers/yielding.py and the worker's dequeue in workers/__main__.py; the web's side of it is
in tests/test_admission.py)."""

from __future__ import annotations

import threading
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue
from rq.job import JobStatus
from rq.timeouts import TimerDeathPenalty
from rq.utils import now

from app.admission import QUEUED_KEY
from app.config import load_config
from app.extensions import QUEUE_NAMES, redis_store
from workers.__main__ import LinliWorker, build_worker
from workers.yielding import Yielding


@pytest.fixture
def no_signal(app):
    redis_store.client.delete(QUEUED_KEY)
    yield redis_store.client
    redis_store.client.delete(QUEUED_KEY)


def queued(client) -> None:
    """The web's signal, as a process whose requests queue keeps it (long enough here)."""
    client.set(QUEUED_KEY, 1, px=60_000)


def test_the_worker_gives_way_for_a_second_by_default_and_never_at_zero(app, monkeypatch,
                                                                         no_signal):
    monkeypatch.delenv("WORKER_YIELD_SECONDS", raising=False)
    assert Yielding.from_config(load_config(), no_signal).longest_wait == 1.0
    monkeypatch.setitem(app.config, "WORKER_YIELD_SECONDS", 1.0)
    assert build_worker(app, list(QUEUE_NAMES), no_signal).yielding.longest_wait == 1.0
    monkeypatch.setitem(app.config, "WORKER_YIELD_SECONDS", 0)
    assert build_worker(app, list(QUEUE_NAMES), no_signal).yielding is None
    assert Yielding(no_signal, longest_wait=3600).longest_wait == 60  # inside RQ's worker TTL


class Clock:
    """A monotonic clock and a sleep that moves it."""

    def __init__(self) -> None:
        self.now, self.sleeps = 100.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def gate(client, longest_wait: float = 1.0) -> tuple[Yielding, Clock]:
    clock = Clock()
    return Yielding(client, longest_wait=longest_wait, clock=clock, sleep=clock.sleep), clock


def test_with_no_request_waiting_the_job_goes_at_once(no_signal):
    yielding, clock = gate(no_signal)
    assert yielding.wait(lambda: False) == 0
    assert clock.sleeps == [] and yielding.waited == 0


def test_while_requests_wait_routine_work_is_held_for_at_most_the_longest_wait(no_signal):
    queued(no_signal)
    yielding, clock = gate(no_signal, longest_wait=1.0)
    assert yielding.wait(lambda: False) == pytest.approx(1.0)  # then the job goes ahead anyway
    assert max(clock.sleeps) <= 0.05  # an urgent job is looked for every 50 ms meanwhile
    assert yielding.waited == pytest.approx(1.0)


def test_the_wait_ends_when_the_web_stops_queueing(no_signal):
    queued(no_signal)
    yielding, clock = gate(no_signal, longest_wait=1.0)
    looks = []

    def urgent_waiting():
        looks.append(clock.now)
        if len(looks) == 4:
            no_signal.delete(QUEUED_KEY)  # the web's signal lapsed
        return False

    assert yielding.wait(urgent_waiting) == pytest.approx(0.2)


def test_an_urgent_job_ends_the_wait(no_signal):
    queued(no_signal)
    yielding, clock = gate(no_signal, longest_wait=1.0)
    looks = []

    def urgent_waiting():
        looks.append(1)
        return len(looks) == 3  # an SOS arrives 0.1 s into the wait

    assert yielding.wait(urgent_waiting) == pytest.approx(0.1)


@pytest.fixture
def worker_queues(app, no_signal):
    """The app's four queues, emptied, and an RQ worker on them (or those named `on`) that
    gives way for up to `longest_wait` (RQ needs a real Redis: fakeredis runs no scripts)."""
    queues = {name: Queue(name, connection=redis_store.client) for name in QUEUE_NAMES}
    for queue in queues.values():
        queue.empty()

    def worker(longest_wait: float = 0.4, on: tuple[str, ...] = QUEUE_NAMES) -> LinliWorker:
        made = LinliWorker([queues[name] for name in on], app=app,
                           connection=redis_store.client,
                           yielding=Yielding(redis_store.client, longest_wait=longest_wait))
        made.death_penalty_class = TimerDeathPenalty  # not SIGALRM, in the test process
        made.last_cleaned_at = now()  # no maintenance: it would book the periodic ticks
        return made

    yield queues, worker
    for queue in queues.values():
        queue.empty()


def timed_dequeue(worker, timeout: float | None = 1) -> tuple:
    """The job and queue the worker's dequeue gives, and the seconds it took."""
    started = time.monotonic()
    job, queue = worker.dequeue_job_and_maintain_ttl(timeout=timeout)
    return job, queue, time.monotonic() - started


@pytest.mark.redis
def test_a_worker_takes_a_routine_job_at_once_when_no_request_waits(worker_queues):
    queues, worker = worker_queues
    routine = queues["high"].enqueue("builtins.len", "route")
    job, queue, seconds = timed_dequeue(worker(longest_wait=5.0))
    assert (job.id, queue.name) == (routine.id, "high")
    assert seconds < 2.0  # not the 5 s it would hold a routine job


@pytest.mark.redis
def test_while_requests_wait_a_routine_job_waits_its_longest(worker_queues):
    queues, worker = worker_queues
    queued(redis_store.client)
    routine = queues["high"].enqueue("builtins.len", "route")
    busy = worker(longest_wait=0.5)
    job, queue, seconds = timed_dequeue(busy)
    assert (job.id, queue.name) == (routine.id, "high")  # then it went ahead
    assert seconds >= 0.5
    assert busy.yielding.waited >= 0.5


@pytest.mark.redis
def test_an_urgent_job_arriving_while_routine_work_waits_goes_first_and_runs_once(
        worker_queues):
    queues, worker = worker_queues
    queued(redis_store.client)
    routine = queues["high"].enqueue("builtins.len", "route")
    busy = worker(longest_wait=5.0)
    sos = []
    later = threading.Timer(0.3, lambda: sos.append(queues["urgent"].enqueue("builtins.len",
                                                                             "sos")))
    later.start()
    job, queue, seconds = timed_dequeue(busy)
    later.join()
    assert (job.id, queue.name) == (sos[0].id, "urgent")
    assert seconds < 2.5  # not the 5 s the routine job may wait
    busy.execute_job(job, queue)
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    # taken the way RQ takes any job: nothing parked where maintenance would later find it
    # "stuck" and fail it (or, with a Retry, run it again)
    assert redis_store.client.llen(queue.intermediate_queue_key) == 0
    assert queues["high"].job_ids == [routine.id]  # still waiting its turn


@pytest.mark.redis
def test_routine_work_resumes_once_the_web_stops_queueing(worker_queues):
    queues, worker = worker_queues
    routine = queues["default"].enqueue("builtins.len", "notify")
    busy = worker(longest_wait=5.0)
    redis_store.client.set(QUEUED_KEY, 1, px=300)  # the last waiting request 0.3 s from now
    job, _, seconds = timed_dequeue(busy)
    assert job.id == routine.id
    assert 0.25 <= seconds < 2.5


@pytest.mark.redis
def test_a_burst_never_waits(worker_queues):
    queues, worker = worker_queues
    queued(redis_store.client)
    routine = queues["low"].enqueue("builtins.len", "tick")
    job, _, seconds = timed_dequeue(worker(longest_wait=5.0), timeout=None)
    assert job.id == routine.id
    assert seconds < 2.0


@pytest.mark.redis
def test_trouble_looking_at_the_urgent_queue_ends_the_wait(worker_queues, monkeypatch):
    queues, worker = worker_queues
    queued(redis_store.client)
    routine = queues["high"].enqueue("builtins.len", "route")
    busy = worker(longest_wait=5.0)
    urgent = next(queue for queue in busy.queues if queue.name == "urgent")

    def broken(self):
        raise RedisConnectionError("a blip")

    monkeypatch.setattr(type(urgent), "count", property(broken))
    job, _, seconds = timed_dequeue(busy)  # RQ's dequeue deals with Redis
    assert job.id == routine.id
    assert seconds < 2.0


@pytest.mark.redis
def test_a_worker_of_the_urgent_queue_alone_never_waits(worker_queues):
    queues, worker = worker_queues
    queued(redis_store.client)
    sos = queues["urgent"].enqueue("builtins.len", "sos")
    alone = worker(longest_wait=5.0, on=("urgent",))
    looked = []
    alone._urgent_job_waiting = lambda: looked.append(1) or False
    job, _ = alone.dequeue_job_and_maintain_ttl(timeout=1)
    assert job.id == sos.id
    assert looked == [] and alone.yielding.waited == 0
