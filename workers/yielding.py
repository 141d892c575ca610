"""Routine jobs give way while residents' requests wait for a turn; urgent jobs never do.

On the 2-core machine gunicorn, PostgreSQL, Redis and the worker share the CPUs. A worker with a
backlog (a burst of reports leaves thousands of routing jobs) works through it as fast as the
CPUs let it, and slows every resident's request meanwhile; a lower CPU weight or the idle
scheduling policy did not stop that (README, Performance: measured with `make bench`).

So the web says when it is saturated - after a request of a process waited 20 ms or more for its
turn the key QUEUED_KEY exists in Redis for half a second (app/admission.py) - and before it
takes a routine job (any queue but `urgent`) the worker looks: while the key is there it waits,
until the key lapses, an urgent job is queued (RQ's dequeue then takes it, `urgent` being the
first queue) or `WORKER_YIELD_SECONDS` have passed - then it takes the job anyway, so routine
work goes on, at least a job per that many seconds, however long the load lasts. It is the
web's queue, not the machine's load, that counts: workers draining a backlog on their own never
hold each other back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

from app.admission import QUEUED_KEY

STEP_SECONDS = 0.05  # how often a wait looks for an urgent job and at the web's queue
LONGEST_WAIT_SECONDS = 60.0  # WORKER_YIELD_SECONDS is held to this (RQ's worker TTL is 420 s)


class Yielding:
    """Holds a routine job while the web's requests queue (see the module's doc)."""

    def __init__(self, connection: Redis, *, longest_wait: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.connection, self.longest_wait = connection, min(longest_wait, LONGEST_WAIT_SECONDS)
        self.clock, self.sleep = clock, sleep
        self.waited = 0.0  # seconds spent giving way, in all (the worker logs it)

    @classmethod
    def from_config(cls, config: dict, connection: Redis) -> Yielding | None:
        """The gate WORKER_YIELD_SECONDS asks for; None when it is 0."""
        seconds = config["WORKER_YIELD_SECONDS"]
        return cls(connection, longest_wait=seconds) if seconds > 0 else None

    def crowded(self) -> bool:
        """Whether some web process's requests are waiting for a turn (a Redis error: no)."""
        try:
            return bool(self.connection.exists(QUEUED_KEY))
        except RedisError:
            return False

    def wait(self, urgent_waiting: Callable[[], bool]) -> float:
        """While crowded, up to longest_wait, unless or until `urgent_waiting()`: the seconds
        it waited."""
        if not self.crowded():
            return 0.0
        started = self.clock()
        try:
            while not urgent_waiting():
                left = self.longest_wait - (self.clock() - started)
                if left <= 0:
                    break
                self.sleep(min(STEP_SECONDS, left))
                if not self.crowded():
                    break
            return self.clock() - started
        finally:
            self.waited += self.clock() - started
