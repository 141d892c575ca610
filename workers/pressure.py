"""Routine jobs give way to the web while the machine's CPUs are saturated; urgent ones never do.

On the 2-core machine gunicorn, PostgreSQL, Redis and the worker share the CPUs. A worker with a
backlog (a burst of reports leaves thousands of routing jobs) works through it as fast as the
CPUs let it - and slows every resident's request meanwhile: measured with `make bench`, a report
submission cost the web 4.0-5.5 ms of CPU with the worker routing beside it against 3.3 ms with
the worker stopped, 200-280 submissions/s against 434 (README, Performance). A lower CPU weight
or the idle scheduling policy did not stop that: the worker then runs in the moments a CPU is
free, its statements run in PostgreSQL at the same priority as the web's, and on a virtual
machine a second busy vCPU slows the first anyway (an idle-priority busy loop alone cost the
submission as much as the worker).

So before it takes a routine job the worker looks at how crowded the CPUs have been (Linux's
pressure stall information, `/proc/pressure/cpu`: the share of time in which some runnable task
waited for a CPU - ~3 % with the worker draining a backlog alone, 75-99 % under the web's load).
Above `WORKER_YIELD_PRESSURE` % it waits, watching the `urgent` queue meanwhile (a safety alarm
is taken at once), until the pressure drops or `WORKER_YIELD_SECONDS` have passed - then it
takes the job anyway, so routine work goes on at least one job per that many seconds however
long the load lasts. Where the kernel has no pressure information the worker never waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("app.workers")

PSI_CPU = Path("/proc/pressure/cpu")
MIN_WINDOW_SECONDS = 0.1  # a shorter window is mostly noise: the last reading stands
STEP_SECONDS = 0.2  # how long one look at the urgent queue blocks while waiting


class CpuPressure:
    """The share of wall time, since the last reading, in which some runnable task waited for
    a CPU ("some" of Linux PSI). None readings mean the kernel does not say."""

    def __init__(self, path: Path = PSI_CPU, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.clock = path, clock
        self._at, self._stalled = clock(), self._read()
        self._share = 0.0

    @property
    def available(self) -> bool:
        return self._stalled is not None

    def _read(self) -> int | None:
        """Microseconds of "some" stall since boot, or None without PSI."""
        try:
            with self.path.open() as lines:
                for line in lines:
                    if line.startswith("some "):
                        return int(line.rsplit("total=", 1)[1])
        except (OSError, ValueError, IndexError):
            return None
        return None

    def share(self) -> float:
        """0.0-1.0 over the time since the previous reading (at least MIN_WINDOW_SECONDS)."""
        now = self.clock()
        if self._stalled is None or now - self._at < MIN_WINDOW_SECONDS:
            return self._share
        stalled = self._read()
        if stalled is None:
            return self._share
        self._share = min(1.0, max(0.0, (stalled - self._stalled) / 1e6 / (now - self._at)))
        self._at, self._stalled = now, stalled
        return self._share


class Yielding:
    """Waits before a routine job while the CPUs are crowded (see the module's doc)."""

    def __init__(self, pressure: CpuPressure, *, threshold: float, longest_wait: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pressure, self.threshold, self.longest_wait = pressure, threshold, longest_wait
        self.clock = clock
        self.waited = 0.0  # seconds spent giving way, in all (the worker logs it)

    @classmethod
    def from_config(cls, config: dict, path: Path = PSI_CPU) -> Yielding | None:
        """The gate WORKER_YIELD_PRESSURE / _SECONDS ask for; None when off or without PSI."""
        percent, seconds = config["WORKER_YIELD_PRESSURE"], config["WORKER_YIELD_SECONDS"]
        if percent <= 0 or seconds <= 0:
            return None
        pressure = CpuPressure(path)
        if not pressure.available:
            log.info("no CPU pressure information (%s): routine jobs never wait for the web",
                     path)
            return None
        return cls(pressure, threshold=percent / 100, longest_wait=seconds)

    def crowded(self) -> bool:
        return self.pressure.share() >= self.threshold

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
