"""Admission: at most `WEB_ACTIVE_REQUESTS` requests of a process run at once, the rest wait
their turn in arrival order.

A gunicorn gthread worker keeps 8 threads so that server-sent event streams can each hold one,
but Python runs one thread at a time (the GIL): eight requests started together all share one
core and all finish late, where a few at a time, first come first served, finish in turn (and
the threads spend less CPU handing the GIL around). Measured with `make bench` (16 connections,
2 workers; README, Performance): 3 at a time served the kitchen feed 15-40 % faster than no
queue and cut a report submission's p99 from 121 to 81-97 ms; the other endpoints moved within
the noise. 3 rather than 2 because a request also waits on PostgreSQL and Redis, and a third
keeps the core busy meanwhile.

What never holds a turn:
- reading a request's body of known length: it is read before the request queues (up to
  MAX_CONTENT_LENGTH; at most a thread's worth of bodies a process), so a slow phone uploading a
  photo does not stop the process (a chunked body, without a length, is read in its turn);
- a response streamed after the view returned (the kitchen feed, the big screen): the turn ends
  when the view returns;
- the liveness probe `/healthz`: it answers that the process is up even while every turn waits
  on a slow database (a probe that timed out then would have the process restarted for it);
- waiting on an outside service: `leave()` (the WeChat client calls it) gives the turn to the
  next request for good - the request goes on without one, so it never waits for a turn while
  it may hold database locks that the requests holding turns wait for.

While requests wait for their turns (20 ms or more) the process says so in Redis
(`QueuedSignal`): the RQ workers hold their routine jobs meanwhile, so residents' requests get
the CPUs (workers/yielding.py).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from redis.exceptions import RedisError

log = logging.getLogger(__name__)
_held = threading.local()  # .turns: the Turns whose turn this thread's request holds
UNQUEUED_PATHS = frozenset({"/healthz"})
QUEUED_KEY = "linli:web:queued"  # exists while some process's requests wait for a turn
QUEUED_AFTER_SECONDS = 0.02  # a wait this long counts (at 50 submissions/s a p99 is ~15 ms)
QUEUED_TTL_MS = 500  # how long it outlives the last request seen waiting
QUEUED_RENEW_SECONDS = 0.1  # a process writes it at most this often


class Turns:
    """A counting semaphore that serves waiters strictly in arrival order: a finished holder
    hands its turn to the longest waiter (threading.Semaphore lets a newcomer take it first,
    which left some requests waiting for many turns - a long tail)."""

    def __init__(self, size: int, on_queue: Callable[[], None] | None = None,
                 queued_after: float = QUEUED_AFTER_SECONDS) -> None:
        if size < 1:
            raise ValueError("a request needs at least one turn")
        self._free = size
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        # called (it must not block) when a request got its turn after waiting `queued_after`
        # or longer: a moment's queue at a modest load does not count
        self.on_queue, self.queued_after = on_queue, queued_after

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append(gate)
        waiting_since = time.monotonic()
        gate.acquire()  # opened by the holder that hands its turn over
        if self.on_queue is not None and time.monotonic() - waiting_since >= self.queued_after:
            self.on_queue()

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1

    @property
    def waiting(self) -> int:
        """Requests queued for a turn."""
        return len(self._waiters)

    @property
    def free(self) -> int:
        """Turns nobody holds."""
        return self._free


class ActiveRequestLimit:
    """WSGI middleware: each request takes a turn of `turns` to run the application."""

    def __init__(self, app: Callable, turns: Turns, max_body: int | None) -> None:
        self.app, self.turns, self.max_body = app, turns, max_body

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in UNQUEUED_PATHS:
            return self.app(environ, start_response)
        _read_body_first(environ, self.max_body)
        self.turns.acquire()
        _held.turns = self.turns
        try:
            return self.app(environ, start_response)
        finally:
            leave()


def leave() -> None:
    """End this request's turn now (before waiting on an outside service); no-op without one."""
    turns, _held.turns = getattr(_held, "turns", None), None
    if turns is not None:
        turns.release()


def _read_body_first(environ: dict, max_body: int | None) -> None:
    """Read a body of known length into memory, so the client's upload speed is not spent
    holding a turn (a larger body than the app accepts is left for its 413)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if length <= 0 or (max_body is not None and length > max_body):
        return
    try:
        body = environ["wsgi.input"].read(length)
    except OSError:  # the client went away: werkzeug finds the body short and answers 400
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)


class QueuedSignal:
    """Keeps QUEUED_KEY in Redis while this process's requests wait for their turns.

    Called by a request that waited; the write is left to a thread of its own, so a slow or
    stopped Redis never holds up a request (nor a turn handed to it meanwhile), and made at
    most every QUEUED_RENEW_SECONDS. The key expires QUEUED_TTL_MS after the last one.
    """

    def __init__(self, client) -> None:
        self.client = client
        self._wanted = threading.Event()
        self._started_in: int | None = None  # the pid whose thread writes (gunicorn forks)
        self._start_lock = threading.Lock()

    def __call__(self) -> None:
        if self._started_in != os.getpid():
            self._start()
        self._wanted.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._started_in != os.getpid():
                threading.Thread(target=self._write, name="queued-signal", daemon=True).start()
                self._started_in = os.getpid()

    def _write(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                self.client.set(QUEUED_KEY, 1, px=QUEUED_TTL_MS)
            except RedisError:  # the workers then just do not hold back
                pass
            except Exception:  # never let the thread die: the process would stop signalling
                log.exception("could not tell the workers that requests queue")
            time.sleep(QUEUED_RENEW_SECONDS)


def install(app) -> None:
    """Wrap the Flask app's WSGI callable when WEB_ACTIVE_REQUESTS is above 0."""
    size = int(app.config.get("WEB_ACTIVE_REQUESTS") or 0)
    if size > 0:
        signal = QueuedSignal(app.extensions["linli_redis"].client)
        app.wsgi_app = ActiveRequestLimit(app.wsgi_app, Turns(size, on_queue=signal),
                                          app.config.get("MAX_CONTENT_LENGTH"))
