"""An SOS pressed while the worker has a backlog of routing jobs: how long until the alarm is
raised and its notice sent. Prints figures; it is not a test.

    .venv/bin/python -m bench.sos [--load-seconds 5]

Against the benchmark's data set (bench/seed.py, PostgreSQL + Redis as `make bench`): starts
gunicorn and one RQ worker, stops the worker (SIGSTOP, by its pid), submits reports with wrk for
`--load-seconds` - each leaves a routing job queued -, has a gateway post an SOS button press,
then lets the worker go on (SIGCONT) and times the alarm row and its `notify_alarm_raised` job.
Each run adds a small community with one elder's kit and a gateway (bench.ingest.make_kits).
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from bench import ingest, seed
from bench import run as bench


def make_kit(database_url: str) -> tuple[str, str]:
    """A gateway and one elder's kit in the data set: (gateway code, the SOS button's serial)."""
    from app.extensions import db

    with seed.bench_app(database_url).app_context():
        code, devices = ingest.make_kits(1)
        db.engine.dispose()
    return code, next(serial for serial, kind in devices if kind == "sos_button")


def press(base: str, gateway: str, serial: str) -> int:
    """The gateway posts one SOS button press; the response's status."""
    body, headers = ingest.signed(gateway, ingest.BENCH_SECRET, [{
        "event_id": uuid.uuid4().hex, "serial": serial, "kind": "sos_button", "type": "pressed",
        "at": datetime.now(UTC).isoformat(), "payload": {}}])
    return httpx.post(f"{base}/api/v1/iot/events", content=body, headers=headers,
                      timeout=10).status_code


def wait_for_alarm(conn, serial: str, timeout: float) -> tuple[float | None, float | None]:
    """Seconds until the button's alarm is raised, and until its notice job is done."""
    started, raised = time.monotonic(), None
    while time.monotonic() - started < timeout:
        alarm = conn.execute("SELECT a.id FROM alarms a JOIN alarm_devices d ON d.id = a.device_id"
                             " WHERE d.serial = %s", (serial,)).fetchone()
        if alarm and raised is None:
            raised = time.monotonic() - started
        if alarm and conn.execute(
                "SELECT 1 FROM outbox WHERE job = 'notify_alarm_raised' AND status = 'done' "
                "AND (args->>'alarm_id')::int = %s", (alarm[0],)).fetchone():
            return raised, time.monotonic() - started
        time.sleep(0.02)
    return raised, None


def measure(base: str, database_url: str, gateway: str, serial: str, *,
            resume=None, timeout: float = 300) -> dict:
    """Press the SOS with whatever the worker has queued, `resume` it (a callable, for a stopped
    worker), and time the alarm and its notice; the figures."""
    with psycopg.connect(seed.libpq_url(database_url), autocommit=True) as conn:
        backlog = dict(conn.execute("SELECT job, count(*) FROM outbox WHERE status = 'pending' "
                                    "GROUP BY job").fetchall())
        status = press(base, gateway, serial)
        if resume is not None:
            resume()
        if status != 202:
            return {"backlog": backlog, "status": status, "raised_s": None, "notified_s": None}
        raised, notified = wait_for_alarm(conn, serial, timeout)
    return {"backlog": backlog, "status": status, "raised_s": raised, "notified_s": notified}


def describe(figures: dict) -> str:
    """One line of the figures."""
    queued = figures["backlog"].get("route_report", 0)
    if figures["status"] != 202:
        return f"the gateway's SOS was answered {figures['status']}, not 202"
    if figures["notified_s"] is None:
        return f"{queued} routing jobs queued: no notice in time (raised: {figures['raised_s']})"
    return (f"{queued} routing jobs queued: alarm raised after {figures['raised_s']:.2f} s, its "
            f"notice sent after {figures['notified_s']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load-seconds", type=float, default=5)
    parser.add_argument("--database-url", default=seed.DEFAULT_DATABASE_URL)
    args = parser.parse_args()
    wrk, workdir = bench.ensure_wrk(), Path(tempfile.mkdtemp(prefix="linli-sos-"))
    seed.ensure_seeded(args.database_url, reports=seed.DEFAULT_REPORTS, reseed=False)
    redis = bench.redis_url()
    bench.flush_redis(redis)
    bench.retire_leftover_jobs(args.database_url)
    env = bench.service_env(args.database_url, redis)
    fixtures = bench.prepare_fixtures(args.database_url, env, workdir)
    gateway, serial = make_kit(args.database_url)
    report = next(s for s in bench.scenarios(fixtures) if s.name == "report")
    with bench.services(env, workdir) as server:
        worker = server["worker"].pid
        bench.wait_for_quiet_worker(worker)
        os.kill(worker, signal.SIGSTOP)
        try:
            bench.run_wrk(wrk, server["base"], report, fixtures, seconds=args.load_seconds,
                          connections=16, workdir=workdir)
            figures = measure(server["base"], args.database_url, gateway, serial,
                              resume=lambda: os.kill(worker, signal.SIGCONT))
        finally:
            os.kill(worker, signal.SIGCONT)
    print(f"An SOS pressed with the worker stopped, then let go on: {describe(figures)}.")


if __name__ == "__main__":
    main()
