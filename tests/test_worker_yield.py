"""Routine jobs give way to the web while the CPUs are saturated; urgent ones never wait
(workers/pressure.py and the worker's dequeue in workers/__main__.py)."""

from __future__ import annotations

import threading
import time

import pytest
from rq import Queue
from rq.utils import now

from app.config import load_config
from app.extensions import QUEUE_NAMES, redis_store
from workers.__main__ import LinliWorker
from workers.pressure import CpuPressure, Yielding


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def psi(path, some_total_us: int) -> None:
    """A /proc/pressure/cpu as Linux writes it."""
    path.write_text(f"some avg10=1.00 avg60=2.00 avg300=3.00 total={some_total_us}\n"
                    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def test_pressure_is_the_stalled_share_of_the_time_since_the_last_reading(tmp_path):
    path, clock = tmp_path / "cpu", Clock()
    psi(path, 5_000_000)
    pressure = CpuPressure(path, clock)
    assert pressure.available
    clock.now += 0.5
    psi(path, 5_400_000)  # 0.4 s of the 0.5 s some task waited for a CPU
    assert pressure.share() == pytest.approx(0.8)
    clock.now += 1.0
    psi(path, 5_450_000)
    assert pressure.share() == pytest.approx(0.05)


def test_a_window_too_short_to_tell_keeps_the_last_reading(tmp_path):
    path, clock = tmp_path / "cpu", Clock()
    psi(path, 0)
    pressure = CpuPressure(path, clock)
    clock.now += 0.5
    psi(path, 450_000)
    assert pressure.share() == pytest.approx(0.9)
    clock.now += 0.01  # a quick job later: 10 ms say nothing either way
    psi(path, 450_000)
    assert pressure.share() == pytest.approx(0.9)
    clock.now += 0.2  # the window runs from the last real reading
    assert pressure.share() == pytest.approx(0.0)


@pytest.mark.parametrize("content", [None, "garbage\n", "some avg10=1 total=x\n"])
def test_without_pressure_information_the_worker_never_waits(tmp_path, content):
    path = tmp_path / "cpu"
    if content is not None:
        path.write_text(content)
    assert not CpuPressure(path).available
    config = load_config({"WORKER_YIELD_PRESSURE": 50, "WORKER_YIELD_SECONDS": 1})
    assert Yielding.from_config(config, path) is None


def test_the_gate_is_off_at_zero_and_on_by_default(tmp_path):
    path = tmp_path / "cpu"
    psi(path, 0)
    assert Yielding.from_config({"WORKER_YIELD_PRESSURE": 0, "WORKER_YIELD_SECONDS": 1},
                                path) is None
    assert Yielding.from_config({"WORKER_YIELD_PRESSURE": 50, "WORKER_YIELD_SECONDS": 0},
                                path) is None
    gate = Yielding.from_config(load_config(), path)
    assert (gate.threshold, gate.longest_wait) == (0.5, 1.0)


class Pressure:
    """A pressure reading the test sets; counts the readings."""

    def __init__(self, share: float) -> None:
        self.value, self.readings = share, 0

    def share(self) -> float:
        self.readings += 1
        return self.value


def gate_with(share: float, longest_wait: float = 1.0) -> tuple[Yielding, Pressure, Clock]:
    clock, pressure = Clock(), Pressure(share)
    gate = Yielding(pressure, threshold=0.5, longest_wait=longest_wait, clock=clock)
    return gate, pressure, clock


def test_an_uncrowded_machine_lets_the_job_go_at_once():
    gate, _, _ = gate_with(0.49)
    looks = []
    assert gate.wait(looks.append) is None
    assert looks == [] and gate.waited == 0


def test_a_crowded_machine_holds_routine_work_for_at_most_the_longest_wait():
    gate, _, clock = gate_with(0.9, longest_wait=1.0)
    looks = []

    def look(seconds):
        looks.append(seconds)
        clock.now += seconds
        return None

    assert gate.wait(look) is None  # then the routine job goes ahead anyway
    assert sum(looks) == pytest.approx(1.0)
    assert max(looks) <= 0.2  # the urgent queue is looked at every 0.2 s meanwhile
    assert gate.waited == pytest.approx(1.0)


def test_the_wait_ends_when_the_pressure_drops():
    gate, pressure, clock = gate_with(0.9)

    def look(seconds):
        clock.now += seconds
        pressure.value = 0.1  # the web's load is over
        return None

    assert gate.wait(look) is None
    assert gate.waited == pytest.approx(0.2)


def test_an_urgent_job_found_while_waiting_is_taken_at_once():
    gate, _, clock = gate_with(0.95)
    found = ("job", "urgent")

    def look(seconds):
        clock.now += 0.05
        return found

    assert gate.wait(look) is found
    assert gate.waited == pytest.approx(0.05)


@pytest.fixture
def worker_queues(app):
    """The app's four queues, emptied, and an RQ worker on them with a gate the test sets
    (RQ needs a real Redis: fakeredis runs no scripts)."""
    queues = {name: Queue(name, connection=redis_store.client) for name in QUEUE_NAMES}
    for queue in queues.values():
        queue.empty()

    def worker(share: float, longest_wait: float = 0.4) -> LinliWorker:
        gate = Yielding(Pressure(share), threshold=0.5, longest_wait=longest_wait)
        made = LinliWorker(list(queues.values()), app=app, connection=redis_store.client,
                           yielding=gate)
        made.last_cleaned_at = now()  # no maintenance: it would book the periodic ticks
        return made

    yield queues, worker
    for queue in queues.values():
        queue.empty()


@pytest.mark.redis
def test_a_worker_takes_a_routine_job_at_once_when_the_cpus_have_room(worker_queues):
    queues, worker = worker_queues
    routine = queues["high"].enqueue("builtins.len", "route")
    started = time.monotonic()
    job, queue = worker(share=0.1).dequeue_job_and_maintain_ttl(timeout=1)
    assert (job.id, queue.name) == (routine.id, "high")
    assert time.monotonic() - started < 0.3


@pytest.mark.redis
def test_a_busy_machine_makes_routine_jobs_wait_and_urgent_ones_go_first(worker_queues):
    queues, worker = worker_queues
    routine = queues["high"].enqueue("builtins.len", "route")
    urgent = queues["urgent"].enqueue("builtins.len", "sos")
    busy = worker(share=0.9, longest_wait=0.4)
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
    queues["high"].enqueue("builtins.len", "route")
    busy = worker(share=0.9, longest_wait=5.0)
    later = threading.Timer(0.3, lambda: queues["urgent"].enqueue("builtins.len", "sos"))
    later.start()
    started = time.monotonic()
    job, queue = busy.dequeue_job_and_maintain_ttl(timeout=1)
    later.join()
    assert queue.name == "urgent"
    assert 0.25 <= time.monotonic() - started < 2.0  # not the 5 s the routine job may wait


@pytest.mark.redis
def test_a_burst_never_waits(worker_queues):
    queues, worker = worker_queues
    routine = queues["low"].enqueue("builtins.len", "tick")
    started = time.monotonic()
    job, _ = worker(share=1.0, longest_wait=5.0).dequeue_job_and_maintain_ttl(timeout=None)
    assert job.id == routine.id
    assert time.monotonic() - started < 0.3
