"""Routine jobs give way while residents' requests wait for a turn; urgent jobs never do.

On the 2-core machine gunicorn, PostgreSQL, Redis and the worker share the CPUs. A worker with a
backlog (a burst of reports leaves thousands of routing jobs) works through it as fast as the
CPUs let it - and slows every resident's request meanwhile: measured with `make bench`, a report
submission cost the web 4.0-5.5 ms of CPU with the worker routing beside it against 3.3 ms with
the worker stopped, 200-280 submissions/s against 434 (README, Performance). A lower CPU weight
or the idle scheduling policy did not stop that: the worker then runs whenever a CPU is free for
a moment, its statements run in PostgreSQL at the web's priority, and on a virtual machine a
second busy vCPU slows the first anyway (an idle-priority busy loop alone cost the submission as
much as the worker).

So the web says when it is saturated - while requests of a process wait for a turn
(app/admission.py) the key QUEUED_KEY exists in Redis - and before it takes a routine job (any
queue but `urgent`) the worker looks: while the key is there it waits, watching the `urgent`
queue meanwhile (a safety alarm is taken at once), until the key expires or
`WORKER_YIELD_SECONDS` have passed - then it takes the job anyway, so routine work goes on at
least one job per that many seconds however long the load lasts. It is the web's queue, not
the machine's load, that counts: workers draining a backlog on their own never hold each other
back (the machine's CPU pressure, tried first, did: three workers on two cores halved their own
rate).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

from app.admission import QUEUED_KEY

log = logging.getLogger("app.workers")

STEP_SECONDS = 0.2  # how long one look at the urgent queue blocks while waiting


class Yielding:
    """Holds a routine job while the web's requests queue (see the module's doc)."""

    def __init__(self, connection: Redis, *, longest_wait: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.connection, self.longest_wait, self.clock = connection, longest_wait, clock
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

    def wait(self, look: Callable[[float], object | None]) -> object | None:
        """While crowded, up to longest_wait: `look(seconds)` blocks for up to that long for
        an urgent job and returns it (or None); the first one found is returned at once.
        None when the routine job may go ahead."""
        if not self.crowded():
            return None
        started = self.clock()
        try:
            while True:
                left = self.longest_wait - (self.clock() - started)
                if left <= 0:
                    return None
                found = look(min(STEP_SECONDS, left))
                if found is not None or not self.crowded():
                    return found
        finally:
            self.waited += self.clock() - started
