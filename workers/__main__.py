"""`python -m workers [--burst] [--queues high,default,low]`: the app's RQ worker and scheduler."""

from __future__ import annotations

import argparse
import sys

from flask import Flask
from rq import Queue, Worker
from rq.job import Job

from app.extensions import QUEUE_NAMES, db, redis_store
from workers.schedule import book_all


class LinliWorker(Worker):
    """An RQ worker running each job in a fresh app context, and keeping the relay ticking."""

    def __init__(self, queues: list[Queue], *, app: Flask, **kwargs) -> None:
        super().__init__(queues, **kwargs)
        self.app = app

    def perform_job(self, job: Job, queue: Queue) -> bool:
        """Run the job in its own app context; popping it removes the job's session."""
        with self.app.app_context():
            # The work horse is a fork: never reuse pooled connections inherited from the parent.
            db.engine.dispose(close=False)
            return super().perform_job(job, queue)

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance; also restart the periodic chains if they lapsed (Redis flushed)."""
        super().run_maintenance_tasks()
        book_all(self.queues[-1], now=True)


def queue_names(value: str) -> list[str]:
    """Parse --queues: comma-separated names among the app's queues, in priority order."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"queues must be among {','.join(QUEUE_NAMES)}; got {value!r}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("--burst", action="store_true",
                        help="process what is queued, then exit")
    parser.add_argument("--queues", type=queue_names, default=list(QUEUE_NAMES),
                        help="comma-separated queues, highest priority first (default: all)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build the app once and run the worker; 2 when there is no real Redis to work from."""
    args = parse_args(argv)
    from app import create_app

    app = create_app()
    if not app.config.get("REDIS_URL"):
        print("python -m workers needs REDIS_URL: without it jobs already run in-process "
              "when they are enqueued, and a worker has nothing to do.", file=sys.stderr)
        return 2
    with app.app_context():
        # The app's queues may be synchronous (RQ_ASYNC=False); a worker's never are.
        queues = [Queue(name, connection=redis_store.client) for name in args.queues]
        worker = LinliWorker(queues, app=app, connection=redis_store.client)
        worker.work(burst=args.burst, with_scheduler=True, logging_level=app.config["LOG_LEVEL"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
