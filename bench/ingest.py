"""Ingest burst benchmark: how many signed device events per second `POST /api/v1/iot/events`
stores, and how fast a worker then evaluates them. Prints figures; it is not a test.

In-process (default): builds the app on DATABASE_URL (default: a fresh SQLite file), creates a
community with `--elders` kits and a gateway, and posts through Flask's test client. Jobs are
queued (not run inline) so the burst measures what the request does: verify, check, store,
enqueue. Afterwards an in-process RQ worker drains the queue and the evaluation rate is printed.

    .venv/bin/python -m bench.ingest --events 2000 --batch 1
    .venv/bin/python -m bench.ingest --events 5000 --batch 50
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/linli_bench \\
        .venv/bin/python -m bench.ingest --events 2000 --threads 8

Against a running server (only loopback addresses): pass the gateway and the serials the seed
created (`flask seed-demo` prints the demo gateway's key once):

    .venv/bin/python -m bench.ingest --url http://127.0.0.1:5000 --gateway zpq-gw-01 \\
        --secret '<key>' --serials ZPQ-SOS-00012,ZPQ-DOOR-00012 --events 2000 --threads 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlparse

from app.services.alarms import sign

KIT = ("sos_button", "door_sensor", "gas_alarm", "smoke_alarm", "bed_belt")
BENCH_SECRET = "bench-gateway-secret-0123456789abcdef"  # noqa: S105 - a throwaway local key
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events in the burst")
    parser.add_argument("--batch", type=int, default=1, help="events per request (max 500)")
    parser.add_argument("--threads", type=int, default=1, help="concurrent senders")
    parser.add_argument("--elders", type=int, default=20, help="kits (in-process mode)")
    parser.add_argument("--smoke-share", type=float, default=0.02,
                        help="share of smoke events (the rest: heartbeats, vitals, doors)")
    parser.add_argument("--url", help="a running server on this machine")
    parser.add_argument("--gateway", help="gateway code (with --url)")
    parser.add_argument("--secret", help="gateway secret (with --url)")
    parser.add_argument("--serials", help="comma-separated kind-prefixed serials (with --url)")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 500:
        parser.error("--batch must be between 1 and 500")
    if args.url and not (args.gateway and args.secret and args.serials):
        parser.error("--url needs --gateway, --secret and --serials")
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        parser.error("benchmarks only target this machine (127.0.0.1 / localhost)")
    return args


# --- the burst ----------------------------------------------------------------------------------


def make_events(n: int, devices: list[tuple[str, str]], smoke_share: float) -> list[dict]:
    """A realistic mix: mostly heartbeats and vitals, some doors, a few smoke events."""
    now = datetime.now(UTC)
    smoke = [s for s, kind in devices if kind == "smoke_alarm"]
    events = []
    for i in range(n):
        serial, kind = devices[i % len(devices)]
        type_, payload = "heartbeat", {"battery": 90}
        if smoke and i % max(1, round(1 / smoke_share)) == 0 and smoke_share > 0:
            serial, kind, type_, payload = smoke[i // 7 % len(smoke)], "smoke_alarm", "smoke", {}
        elif kind == "bed_belt":
            type_, payload = "vitals", {"in_bed": True, "heart_rate": 68, "breath_rate": 15}
        elif kind == "door_sensor" and i % 3 == 0:
            type_, payload = "opened", {}
        events.append({"event_id": uuid.uuid4().hex, "serial": serial, "kind": kind,
                       "type": type_, "at": (now - timedelta(seconds=n - i)).isoformat(),
                       "payload": payload})
    return events


def signed(gateway: str, secret: str, events: list[dict]) -> tuple[bytes, dict]:
    """The body and headers of one signed batch."""
    body = json.dumps({"events": events}).encode()
    ts = str(int(time.time()))
    return body, {"X-Linli-Gateway": gateway, "X-Linli-Timestamp": ts,
                  "X-Linli-Signature": "sha256=" + sign(secret, ts, body),
                  "Content-Type": "application/json"}


def burst(send, events: list[dict], batch: int, threads: int) -> dict:
    """Send all batches from `threads` senders; wall time, latencies and outcome counts."""
    batches = [events[i:i + batch] for i in range(0, len(events), batch)]
    latencies, outcomes, lock = [], Counter(), threading.Lock()
    cursor = iter(range(len(batches)))

    def sender():
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            started = time.perf_counter()
            status, body = send(batches[index])
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status == 202:
                    outcomes.update({k: body[k] for k in ("accepted", "duplicate", "rejected")})
                else:
                    outcomes[f"http_{status}"] += len(batches[index])

    workers = [threading.Thread(target=sender) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"seconds": time.perf_counter() - started, "latencies": latencies,
            "outcomes": outcomes, "requests": len(batches)}


def report(title: str, n: int, result: dict) -> None:
    """Print the burst's figures."""
    lat = sorted(result["latencies"])
    p95 = lat[max(0, int(len(lat) * 0.95) - 1)]
    print(f"{title}: {n} events in {result['requests']} requests, {result['seconds']:.2f} s "
          f"→ {n / result['seconds']:.0f} events/s, {result['requests'] / result['seconds']:.0f}"
          f" requests/s")
    print(f"  request latency: median {statistics.median(lat) * 1000:.1f} ms, "
          f"p95 {p95 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms")
    print(f"  outcomes: {dict(result['outcomes'])}")


# --- against a running server -------------------------------------------------------------------


def run_against_server(args: argparse.Namespace) -> None:
    """Post the burst to --url with httpx (one client per thread)."""
    import httpx

    devices = [(s, _kind_of(s)) for s in args.serials.split(",")]
    events = make_events(args.events, devices, args.smoke_share)
    local = threading.local()

    def send(chunk):
        client = getattr(local, "client", None) or httpx.Client(base_url=args.url, timeout=30)
        local.client = client
        body, headers = signed(args.gateway, args.secret, chunk)
        r = client.post("/api/v1/iot/events", content=body, headers=headers)
        return r.status_code, r.json() if r.status_code == 202 else {}

    report(f"ingest → {args.url}", len(events), burst(send, events, args.batch, args.threads))


def _kind_of(serial: str) -> str:
    """The device kind from a demo serial (ZPQ-SOS-..., ZPQ-DOOR-...)."""
    tags = {"SOS": "sos_button", "DOOR": "door_sensor", "GAS": "gas_alarm",
            "SMOKE": "smoke_alarm", "BED": "bed_belt"}
    return next((kind for tag, kind in tags.items() if f"-{tag}-" in serial), "sos_button")


# --- in-process ---------------------------------------------------------------------------------


def build_app():
    """The app on DATABASE_URL (or a fresh SQLite file), migrated, with jobs queued."""
    from flask_migrate import upgrade
    from rq import Queue

    from app import create_app
    from app.extensions import QUEUE_NAMES

    url = os.environ.get("DATABASE_URL") or \
        f"sqlite:///{tempfile.mkdtemp(prefix='linli-bench-')}/bench.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        upgrade(revision="heads")
    state = app.extensions["linli_redis"]
    # Queue jobs instead of running them inline, as a real worker deployment does.
    state.jobs_async = True
    state.queues = {n: Queue(n, connection=state.client, is_async=True) for n in QUEUE_NAMES}
    return app


def make_kits(n_elders: int) -> tuple[str, list[tuple[str, str]]]:
    """A community with `n_elders` kits and a gateway; (gateway code, [(serial, kind)])."""
    from app.extensions import db
    from app.models import (
        Building,
        Community,
        Device,
        DeviceKind,
        Gateway,
        Household,
        WatchedElder,
    )
    from app.services.alarm_rules import ensure_alarm_rules

    tag = uuid.uuid4().hex[:6]
    community = Community(code=f"bench-{tag}", name="压测社区", timezone="Asia/Shanghai")
    db.session.add(community)
    db.session.flush()
    building = Building(community_id=community.id, number="1", name="1号楼", units=1)
    db.session.add(building)
    db.session.flush()
    devices = []
    for i in range(n_elders):
        home = Household(community_id=community.id, building_id=building.id, unit="1",
                         room=f"{i + 101}")
        db.session.add(home)
        db.session.flush()
        elder = WatchedElder(community_id=community.id, household_id=home.id, name=f"老人{i}")
        db.session.add(elder)
        db.session.flush()
        for kind in KIT:
            serial = f"B{tag}-{kind}-{i}"
            db.session.add(Device(community_id=community.id, household_id=home.id,
                                  elder_id=elder.id, kind=DeviceKind(kind), serial=serial,
                                  installed_on=date.today(), last_seen_at=datetime.now(UTC)))
            devices.append((serial, kind))
    code = f"gw-bench-{tag}"
    db.session.add(Gateway(community_id=community.id, code=code, secret=BENCH_SECRET))
    ensure_alarm_rules()
    db.session.commit()
    return code, devices


def drain(app) -> tuple[int, float]:
    """Run the queued jobs with an in-process worker; (jobs run, seconds)."""
    from rq import SimpleWorker

    from app.extensions import QUEUE_NAMES

    state = app.extensions["linli_redis"]
    queues = [state.queues[name] for name in QUEUE_NAMES]
    jobs = sum(q.count for q in queues)
    started = time.perf_counter()
    SimpleWorker(queues, connection=state.client).work(burst=True, logging_level="WARNING")
    return jobs, time.perf_counter() - started


def run_in_process(args: argparse.Namespace) -> None:
    """The burst through the test client, then the worker's evaluation."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import Alarm, DeviceEvent

    app = build_app()
    with app.app_context():
        code, devices = make_kits(args.elders)
    events = make_events(args.events, devices, args.smoke_share)
    local = threading.local()

    def send(chunk):
        client = getattr(local, "client", None) or app.test_client()
        local.client = client
        body, headers = signed(code, BENCH_SECRET, chunk)
        r = client.post("/api/v1/iot/events", data=body, headers=headers)
        return r.status_code, r.get_json()

    database = app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0]
    report(f"ingest (in-process, {database})", len(events),
           burst(send, events, args.batch, args.threads))
    with app.app_context():
        jobs, seconds = drain(app)
        processed = db.session.scalar(select(func.count()).select_from(DeviceEvent).where(
            DeviceEvent.processed_at.is_not(None)))
        raised = db.session.scalar(select(func.count()).select_from(Alarm))
    print(f"evaluation: {jobs} queued jobs run in {seconds:.2f} s → "
          f"{processed / seconds:.0f} events/s evaluated; {raised} alarm(s) raised, "
          f"the other smoke events attached")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark chosen on the command line."""
    args = parse_args(argv)
    if args.url:
        run_against_server(args)
    else:
        run_in_process(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
