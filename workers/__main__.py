"""`python -m workers [--burst] [--queues urgent,high,...] [--fork]`: RQ worker and scheduler."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import time

import redis
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker, Worker
from rq.job import Job

from app.extensions import QUEUE_NAMES, URGENT_QUEUE, db, redis_store
from workers.jobs import load_job_modules
from workers.schedule import book_all
from workers.yielding import Yielding

log = logging.getLogger("app.workers")

# RQ's default is 10 minutes. Maintenance is what takes over the scheduler lock and requeues
# the jobs of a worker that died without a goodbye (SIGKILL, OOM); each run is a few cheap calls.
MAINTENANCE_INTERVAL_SECONDS = 60


class _LinliWorkerMixin:
    """Each job in a fresh app context, the periodic chains kept ticking, and routine jobs
    giving way while the web's requests queue (`yielding`, workers/yielding.py)."""

    forks = False

    def __init__(self, queues: list[Queue], *, app: Flask, yielding: Yielding | None = None,
                 **kwargs) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_SECONDS)
        super().__init__(queues, **kwargs)
        self.app = app
        self.yielding = yielding
        self.stop_requested = False

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> tuple[Job, Queue] | None:
        """RQ's dequeue, after giving way while the web's requests queue - cut short when an
        urgent job comes (RQ's dequeue then takes it: `urgent` is always the first queue,
        queue_names sees to it). A burst (`timeout` None) or a worker of `urgent` alone never
        waits."""
        if self.yielding is not None and timeout is not None and any(
                queue.name != URGENT_QUEUE for queue in self.queues):
            self.yielding.wait(self._urgent_job_waiting)
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def _urgent_job_waiting(self) -> bool:
        """Whether an urgent job is queued (a Redis error: yes - RQ's dequeue deals with it)."""
        try:
            return any(queue.count for queue in self.queues if queue.name == URGENT_QUEUE)
        except RedisError:
            return True

    def request_stop(self, signum, frame) -> None:
        """A warm shutdown (SIGTERM, SIGINT, RQ's shutdown command): remember it was asked for."""
        self.stop_requested = True
        super().request_stop(signum, frame)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        """Run the job in its own app context; popping it removes the job's session."""
        with self.app.app_context():
            if self.forks:  # a work horse never reuses pooled connections of its parent
                db.engine.dispose(close=False)
            return super().perform_job(job, queue)

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance; also restart the periodic chains if they lapsed (Redis flushed),
        and say how long routine work gave way to the web since the last time."""
        super().run_maintenance_tasks()
        book_all(self.connection, now=True)
        if self.yielding is not None and self.yielding.waited >= 1:
            log.info("routine jobs gave way to the web for %.0f s (its requests queued)",
                     self.yielding.waited)
            self.yielding.waited = 0.0


class LinliWorker(_LinliWorkerMixin, SimpleWorker):
    """The default: jobs run in the worker process itself, on its pooled connections.

    Forking a work horse per job cost about 100 ms of CPU per job on the 2-core machine (page
    tables and copy-on-write of a 150 MB process, a new database connection each time) - five
    times the cost of a routing job itself (`make bench`). A worker killed mid-job leaves the
    job in RQ's started registry; the next worker's maintenance requeues it once the dead one's
    heartbeat has expired (tests/faults/test_worker_kill.py).
    """


class ForkingLinliWorker(_LinliWorkerMixin, Worker):
    """`--fork`: each job in a forked work horse (RQ's default): a job that crashes or leaks
    only loses its horse, and the worker retries it at once - at ~100 ms of CPU per job."""

    forks = True


def queue_names(value: str) -> list[str]:
    """Parse --queues: comma-separated names among the app's queues, in priority order."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"queues must be among {','.join(QUEUE_NAMES)}; got {value!r}"
        )
    if URGENT_QUEUE in names[1:]:  # safety alarms never wait behind other work
        raise argparse.ArgumentTypeError(f"{URGENT_QUEUE} must come first; got {value!r}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("--burst", action="store_true",
                        help="process what is queued, then exit")
    parser.add_argument("--queues", type=queue_names, default=list(QUEUE_NAMES),
                        help="comma-separated queues, highest priority first (default: all)")
    parser.add_argument("--fork", action=argparse.BooleanOptionalAction,
                        default=os.environ.get("WORKER_FORK", "0") == "1",
                        help="run each job in a forked work horse (env WORKER_FORK=1)")
    return parser.parse_args(argv)


def warn_of_queues_left(queue_names: list[str]) -> list[str]:
    """Log the app's queues this worker does not work (without a worker on `urgent`, alarms
    are raised and nobody is told); returns them."""
    left = [name for name in QUEUE_NAMES if name not in queue_names]
    if left:
        log.warning("this worker leaves the queues %s to others: run a worker for them (safety "
                    "alarms go to urgent, the periodic housekeeping to low)", ",".join(left))
    return left


def main(argv: list[str] | None = None) -> int:
    """Build the app once and run the worker; 2 when there is no real Redis to work from."""
    args = parse_args(argv)
    warn_of_queues_left(args.queues)
    from app import create_app

    app = create_app()
    if not app.config.get("REDIS_URL"):
        print("python -m workers needs REDIS_URL: without it jobs already run in-process "
              "when they are enqueued, and a worker has nothing to do.", file=sys.stderr)
        return 2
    with app.app_context():
        warm_up()
        while not run_worker(app, args.queues, burst=args.burst, fork=args.fork):
            wait_for_redis()
    return 0


def warm_up() -> None:
    """Import the job modules and configure the ORM mappers once, before the first job.

    With --fork every job runs in a work horse that exits afterwards: whatever the horse does
    lazily (imports, SQLAlchemy's mapper configuration) it would redo and throw away for every
    job - about half a second each, measured by `make bench`.
    """
    import _strptime  # noqa: F401 - datetime.strptime imports it lazily (in every horse)

    from sqlalchemy.orm import configure_mappers

    from app.wechat import get_client

    load_job_modules()
    configure_mappers()
    # Notification jobs call WeChat: build the client (and its TLS context) once, here. Its
    # connection pool is still empty, so no socket is shared with the horses.
    get_client()
    # Keep the horses from writing to (so copying) every page of the parent's heap when their
    # garbage collector walks the objects made so far.
    gc.freeze()


def run_worker(app: Flask, queue_names: list[str], *, burst: bool, fork: bool = False) -> bool:
    """Run one RQ worker (with the scheduler); False when it quit on an error, not on request.

    RQ quits when Redis goes away in the middle of a job. The jobs are safe in the outbox, so
    main() waits for Redis and works on, rather than leave it to a supervisor to notice.
    """
    # The worker's own connection, apart from the app's pool the jobs use: RQ talks to Redis
    # from its SIGTERM handler, which runs between two bytecodes of the job; had it shared the
    # job's pool, it could wait for the pool lock that job already holds, for ever. (RQ also
    # raises its connection's socket timeout for its blocking pops.) The app's queues may be
    # synchronous (RQ_ASYNC=False); a worker's never are.
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    worker = build_worker(app, queue_names, connection, fork=fork)
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=app.config["LOG_LEVEL"])
    except (RedisConnectionError, RedisTimeoutError) as exc:  # its goodbye could not reach Redis
        if burst:
            raise
        log.warning("worker lost Redis (%s); starting a new one once Redis answers", exc)
        return False
    if burst or worker.stop_requested:
        return True
    log.warning("worker quit on an error (see above); starting a new one once Redis answers")
    return False


def build_worker(app: Flask, queue_names: list[str], connection: redis.Redis, *,
                 fork: bool = False) -> _LinliWorkerMixin:
    """The worker run_worker runs: on `queue_names` in that order, giving way to the web as
    WORKER_YIELD_SECONDS says."""
    queues = [Queue(name, connection=connection) for name in queue_names]
    worker_class = ForkingLinliWorker if fork else LinliWorker
    return worker_class(queues, app=app, connection=connection,
                        yielding=Yielding.from_config(app.config, connection))


def wait_for_redis(longest_pause: float = 30.0) -> None:
    """Pause, then block until Redis answers a PING, pausing longer between tries."""
    # The quit worker's signal handlers talk to Redis; while waiting, SIGTERM simply ends us.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    pause = 0.5
    while True:
        time.sleep(pause)
        try:
            redis_store.client.ping()
            return
        except RedisError:
            pause = min(pause * 2, longest_pause)


if __name__ == "__main__":
    sys.exit(main())
