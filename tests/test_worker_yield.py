"""Routine jobs give way while residents' requests wait for a turn; urgent ones never wait
(the web's signal in app/admission.py, the worker's wait in workers/yielding.py and its dequeue
in workers/__main__.py)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from rq import Queue
from rq.utils import now

from app.admission import QUEUED_KEY, ActiveRequestLimit, QueuedSignal, Turns
from app.config import load_config
from app.extensions import QUEUE_NAMES, redis_store
from workers.__main__ import LinliWorker
from workers.yielding import Yielding


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def no_signal(app):
    redis_store.client.delete(QUEUED_KEY)
    yield redis_store.client
    redis_store.client.delete(QUEUED_KEY)


def _hold_a_turn_then_queue(wsgi, held_for: float) -> None:
    """One request holds the only turn for `held_for` seconds while a second waits for it."""
    release = threading.Event()
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()}

    def view(environ, start_response):
        release.wait(5)
        start_response("200 OK", [])
        return [b"ok"]

    wsgi.app = view
    requests = [threading.Thread(target=lambda: b"".join(wsgi(dict(environ), lambda *a: None)))
                for _ in range(2)]
    requests[0].start()
    _wait_for(lambda: wsgi.turns.free == 0)
    requests[1].start()
    _wait_for(lambda: wsgi.turns.waiting == 1)
    time.sleep(held_for)
    release.set()
    for request in requests:
        request.join(5)


def test_requests_waiting_for_their_turns_tell_the_workers_in_redis(app, no_signal):
    wsgi = ActiveRequestLimit(None, Turns(1, on_queue=QueuedSignal(no_signal)), None)
    _hold_a_turn_then_queue(wsgi, held_for=0.05)
    _wait_for(lambda: no_signal.exists(QUEUED_KEY))
    assert 0 < no_signal.pttl(QUEUED_KEY) <= 500  # it lapses soon after the queue empties


def test_a_moments_wait_for_a_turn_does_not_count():
    waits = []
    wsgi = ActiveRequestLimit(None, Turns(1, on_queue=lambda: waits.append(1),
                                          queued_after=1.0), None)
    _hold_a_turn_then_queue(wsgi, held_for=0.05)  # a modest load's blip
    assert waits == []
    wsgi.turns.queued_after = 0.02
    _hold_a_turn_then_queue(wsgi, held_for=0.05)
    assert waits == [1]


def test_the_signal_is_written_at_most_every_tenth_of_a_second(no_signal):
    writes = []

    class Counting:
        def set(self, *args, **kwargs):
            writes.append(time.monotonic())

    signal = QueuedSignal(Counting())
    started = time.monotonic()
    while time.monotonic() - started < 0.5:
        signal()
        time.sleep(0.001)
    time.sleep(0.15)
    assert 3 <= len(writes) <= 7
    assert all(b - a >= 0.09 for a, b in zip(writes, writes[1:], strict=False))


def test_a_redis_outage_never_holds_up_a_request_that_waits():
    class Down:
        def set(self, *args, **kwargs):
            time.sleep(2)  # a Redis that does not answer until the socket times out

    signal = QueuedSignal(Down())
    started = time.monotonic()
    signal()
    signal()
    assert time.monotonic() - started < 0.1


def test_the_gate_is_on_by_default_and_off_at_zero(no_signal):
    assert Yielding.from_config(load_config(), no_signal).longest_wait == 1.0
    assert Yielding.from_config({"WORKER_YIELD_SECONDS": 0}, no_signal) is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_with_no_request_waiting_the_job_goes_at_once(no_signal):
    gate = Yielding(no_signal, longest_wait=1.0)
    looks = []
    assert gate.wait(looks.append) is None
    assert looks == [] and gate.waited == 0


def test_while_requests_wait_routine_work_is_held_for_at_most_the_longest_wait(no_signal):
    no_signal.set(QUEUED_KEY, 1, px=60_000)
    clock = Clock()
    gate = Yielding(no_signal, longest_wait=1.0, clock=clock)
    looks = []

    def look(seconds):
        looks.append(seconds)
        clock.now += seconds
        return None

    assert gate.wait(look) is None  # then the routine job goes ahead anyway
    assert sum(looks) == pytest.approx(1.0)
    assert max(looks) <= 0.2  # the urgent queue is looked at every 0.2 s meanwhile
    assert gate.waited == pytest.approx(1.0)


def test_the_wait_ends_when_the_queue_empties(no_signal):
    no_signal.set(QUEUED_KEY, 1, px=60_000)
    clock = Clock()
    gate = Yielding(no_signal, longest_wait=1.0, clock=clock)

    def look(seconds):
        clock.now += seconds
        no_signal.delete(QUEUED_KEY)  # the web's signal lapsed
        return None

    assert gate.wait(look) is None
    assert gate.waited == pytest.approx(0.2)


def test_an_urgent_job_found_while_waiting_is_taken_at_once(no_signal):
    no_signal.set(QUEUED_KEY, 1, px=60_000)
    clock = Clock()
    gate = Yielding(no_signal, longest_wait=1.0, clock=clock)
    found = ("job", "urgent")

    def look(seconds):
        clock.now += 0.05
        return found

    assert gate.wait(look) is found
    assert gate.waited == pytest.approx(0.05)


@pytest.fixture
def worker_queues(app, no_signal):
    """The app's four queues, emptied, and an RQ worker on them that gives way for up to
    `longest_wait` (RQ needs a real Redis: fakeredis runs no scripts)."""
    queues = {name: Queue(name, connection=redis_store.client) for name in QUEUE_NAMES}
    for queue in queues.values():
        queue.empty()

    def worker(longest_wait: float = 0.4) -> LinliWorker:
        made = LinliWorker(list(queues.values()), app=app, connection=redis_store.client,
                           yielding=Yielding(redis_store.client, longest_wait=longest_wait))
        made.last_cleaned_at = now()  # no maintenance: it would book the periodic ticks
        return made

    yield queues, worker
    for queue in queues.values():
        queue.empty()


@pytest.mark.redis
def test_a_worker_takes_a_routine_job_at_once_when_no_request_waits(worker_queues):
    queues, worker = worker_queues
    routine = queues["high"].enqueue("builtins.len", "route")
    started = time.monotonic()
    job, queue = worker().dequeue_job_and_maintain_ttl(timeout=1)
    assert (job.id, queue.name) == (routine.id, "high")
    assert time.monotonic() - started < 0.3


@pytest.mark.redis
def test_while_requests_wait_routine_jobs_wait_and_urgent_ones_go_first(worker_queues):
    queues, worker = worker_queues
    redis_store.client.set(QUEUED_KEY, 1, px=60_000)
    routine = queues["high"].enqueue("builtins.len", "route")
    urgent = queues["urgent"].enqueue("builtins.len", "sos")
    busy = worker(longest_wait=0.4)
    started = time.monotonic()
    job, queue = busy.dequeue_job_and_maintain_ttl(timeout=1)
    assert (job.id, queue.name) == (urgent.id, "urgent")  # at once, ahead of the routine one
    assert time.monotonic() - started < 0.3
    job, queue = busy.dequeue_job_and_maintain_ttl(timeout=1)
    assert (job.id, queue.name) == (routine.id, "high")
    assert time.monotonic() - started >= 0.4  # it waited its longest, then went ahead
    assert busy.yielding.waited == pytest.approx(0.4, abs=0.15)


@pytest.mark.redis
def test_an_urgent_job_arriving_while_routine_work_waits_is_taken(worker_queues):
    queues, worker = worker_queues
    redis_store.client.set(QUEUED_KEY, 1, px=60_000)
    queues["high"].enqueue("builtins.len", "route")
    busy = worker(longest_wait=5.0)
    later = threading.Timer(0.3, lambda: queues["urgent"].enqueue("builtins.len", "sos"))
    later.start()
    started = time.monotonic()
    job, queue = busy.dequeue_job_and_maintain_ttl(timeout=1)
    later.join()
    assert queue.name == "urgent"
    assert 0.25 <= time.monotonic() - started < 2.0  # not the 5 s the routine job may wait


@pytest.mark.redis
def test_routine_work_resumes_once_the_web_stops_queueing(worker_queues):
    queues, worker = worker_queues
    redis_store.client.set(QUEUED_KEY, 1, px=300)  # the last waiting request 0.3 s from now
    routine = queues["default"].enqueue("builtins.len", "notify")
    started = time.monotonic()
    job, _ = worker(longest_wait=5.0).dequeue_job_and_maintain_ttl(timeout=1)
    assert job.id == routine.id
    assert 0.25 <= time.monotonic() - started < 1.0


@pytest.mark.redis
def test_a_burst_never_waits(worker_queues):
    queues, worker = worker_queues
    redis_store.client.set(QUEUED_KEY, 1, px=60_000)
    routine = queues["low"].enqueue("builtins.len", "tick")
    started = time.monotonic()
    job, _ = worker(longest_wait=5.0).dequeue_job_and_maintain_ttl(timeout=None)
    assert job.id == routine.id
    assert time.monotonic() - started < 0.3
