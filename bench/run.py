"""`make bench`: load benchmark of the real stack on this machine, against its own ceiling.

    make bench                                   # default scale (200,000 reports)
    make bench BENCH_ARGS="--scale 1m"           # 1,000,000 reports (reseeds, a few minutes)
    make bench BENCH_ARGS="--only tickets,report --duration 20"
    make bench BENCH_ARGS="--profile tickets"    # py-spy flame graph of the gunicorn workers

What it does, all on 127.0.0.1:
1. builds the data set when the database does not hold this scale yet (bench/seed.py);
2. starts gunicorn (2 workers, gthread, 8 threads each) and one RQ worker (`python -m workers`)
   against PostgreSQL (`linli_bench`) and Redis (db 8, flushed first), with LINLI_BENCH=1 (the
   floor route and the X-SQL-Statements header, see app/benchmark.py);
3. drives each endpoint with wrk (Debian's package; installed with apt-get when missing and
   running as root) at 16 connections with real JWTs: the ceiling (`/healthz`), the floor
   (authenticated `SELECT 1`), `GET /api/v1/bff/home` (when the app has it), the ticket list,
   report submission, the kitchen feed and order placement; each target endpoint (home, tickets,
   report) is compared with a floor run just before it (the machine's speed drifts); right after
   the report load, with its routing jobs queued, an SOS is pressed (bench/sos.py: a gateway and
   one elder's kit added to the data set) and timed until its alarm's notice is sent;
4. measures report -> ticket latency through the real worker at a steady 50 reports/s, and how
   long a new order takes to reach a client of the kitchen's SSE stream;
5. writes bench/results/latest.json (and reports-<scale>.json) and prints a Markdown table.

Every loop is bounded in count and time; the services it started are stopped by their pid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

from bench import seed, sos

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
LUA_SCRIPT = ROOT / "bench" / "wrk_request.lua"
HOST = "127.0.0.1"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"
GUNICORN = {"workers": 2, "worker_class": "gthread", "threads": 8, "backlog": 2048,
            "keepalive": 5, "timeout": 30}
ACTIVE = {"requests": None}  # WEB_ACTIVE_REQUESTS of the servers (None: the app's default)
WRK_THREADS = 2
RESIDENT_TOKENS = 3000  # report load: each resident stays far below 10 reports an hour
PIPELINE_TOKENS = 1200
TARGETS = {"home": 0.50, "tickets": 0.50, "report": 0.35}  # share of the floor's req/s
P99_TARGET_MS = 50.0
REPORT_CATEGORIES = ("broken_facility", "lighting", "water_leak", "noise", "greenery", "other")
SERVICE_START_SECONDS = 60
DRAIN_SECONDS = 180
WORKER_SETTLE_SECONDS = 120
# The RQ worker's CPU weight against the web's 100, as the README's deployment runs it (systemd
# CPUWeight= on the worker's unit): residents' requests first, routing catches up after a burst.
WORKER_CPU_WEIGHT = 20
CGROUP_NAME = "linli-bench-worker"


def log(message: str) -> None:
    """One progress line, flushed at once."""
    print(message, flush=True)


# --- what is measured --------------------------------------------------------------------------


@dataclass
class Scenario:
    """One endpoint under load: how to call it and as whom."""

    name: str
    method: str
    path: str
    caller: str = "none"  # none | residents | staff | kitchen
    bodies: str | None = None  # fixture name of the JSON bodies (creating POSTs)
    optional: bool = False  # skipped with a note when the app does not have it (404)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path.split('?')[0]}"


@dataclass
class Result:
    """The figures of one scenario."""

    name: str
    label: str
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    requests: int = 0
    errors: int = 0
    statuses: dict = field(default_factory=dict)
    sql_statements: int | None = None
    web_cpu_ms: float | None = None  # gunicorn workers' CPU per request
    db_cpu_ms: float | None = None  # the database's server processes' CPU per request
    probe_status: int | None = None
    vs_ceiling: float | None = None
    vs_floor: float | None = None
    # a target endpoint's own floor: the floor run just before it (req/s, CPU ms web + db)
    floor_rps: float | None = None
    floor_cpu_ms: float | None = None
    # full garbage collections in the web processes during the measured run, longest pause
    full_gcs: int | None = None
    full_gc_max_ms: float | None = None
    # the share of the machine's CPU time its hypervisor took (steal) during the measured run
    steal_pct: float | None = None
    target: str = ""
    note: str = ""


def scenarios(fixtures: dict) -> list[Scenario]:
    """The endpoints, in the order they run (creating POSTs last: they leave work queued)."""
    return [
        Scenario("ceiling", "GET", "/healthz"),
        Scenario("floor", "GET", "/api/v1/bench/floor", "residents"),
        Scenario("home", "GET", "/api/v1/bff/home", "residents", optional=True),
        Scenario("tickets", "GET", "/api/v1/tickets?limit=20", "staff"),
        Scenario("feed", "GET", f"/api/v1/canteen/feed?limit=50&cursor={fixtures['feed_cursor']}",
                 "kitchen"),
        Scenario("order", "POST", "/api/v1/canteen/orders", "residents", bodies="orders"),
        Scenario("report", "POST", "/api/v1/reports", "residents", bodies="reports"),
    ]


# --- the machine, wrk, Redis --------------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk's path; installed from Debian's packages when missing and we may (root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: installing Debian's package")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False,
                       timeout=300)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench needs wrk: `apt-get install wrk` (Debian) and run it again")
    return found


def wrk_version(wrk: str) -> str:
    """The first line wrk prints about itself."""
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else ""


def warn_if_busy() -> tuple[float, float, float]:
    """The load average; a warning when something else is using the 2 cores."""
    load = os.getloadavg()
    if load[0] > 1.0:
        log(f"WARNING: load average is {load[0]:.2f} - something else is running; the figures "
            "will be lower than on an idle machine")
    return load


def redis_url() -> str:
    """The Redis database the benchmark owns (it is flushed): BENCH_REDIS_URL or db 8."""
    url = os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL
    if urlsplit(url).hostname not in seed.LOCAL_HOSTS:
        raise SystemExit("the benchmark only uses a Redis on this machine")
    return url


def flush_redis(url: str) -> None:
    """Empty the benchmark's Redis database (rate-limit windows, queues of earlier runs)."""
    import redis

    redis.Redis.from_url(url).flushdb()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- fixtures: tokens and bodies ---------------------------------------------------------------


def service_env(database_url: str, redis: str) -> dict:
    """The environment of gunicorn and the worker (and of the tokens issued here)."""
    return {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis,
            "JWT_SECRET_KEY": "bench-" + secrets.token_urlsafe(32), "JWT_ACCESS_MINUTES": "180",
            "LINLI_BENCH": "1", "LINLI_ENV": "development", "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **({"WEB_ACTIVE_REQUESTS": str(ACTIVE["requests"])}
               if ACTIVE["requests"] is not None else {})}


def prepare_fixtures(database_url: str, env: dict, workdir: Path) -> dict:
    """Real JWTs (issued with the servers' secret), request bodies and ids, as files for wrk."""
    from sqlalchemy import select

    from app import create_app
    from app.extensions import db
    from app.models import User
    from app.security import RESIDENT, STAFF_KIND
    from app.services.accounts import issue_tokens

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": None,
                      "JWT_SECRET_KEY": env["JWT_SECRET_KEY"],
                      "JWT_ACCESS_TOKEN_EXPIRES": timedelta(hours=3)})
    with app.app_context():
        def token(user, kind):
            return issue_tokens(user, kind)["access_token"]

        staff = {name: token(db.session.scalar(select(User).where(User.username == name)),
                             STAFF_KIND) for name in ("property", "canteen")}
        residents = db.session.scalars(select(User).where(User.openid.like("bench-openid-%"))
                                       .order_by(User.id).limit(RESIDENT_TOKENS + PIPELINE_TOKENS))
        resident_tokens = [token(user, RESIDENT) for user in residents]
        db.engine.dispose()
    fixtures = request_fixtures(database_url)
    fixtures["tokens"] = {"residents": resident_tokens[:RESIDENT_TOKENS],
                          "pipeline": resident_tokens[RESIDENT_TOKENS:],
                          "staff": [staff["property"]], "kitchen": [staff["canteen"]]}
    fixtures["files"] = write_fixture_files(fixtures, workdir)
    return fixtures


def request_fixtures(database_url: str) -> dict:
    """Buildings, the open menu's dishes and a feed cursor, from the database."""
    from app.services.canteen_feed import encode_cursor

    with psycopg.connect(seed.libpq_url(database_url)) as conn:
        ctx = seed.ids(conn)
        menu_id = seed.ensure_open_menu(conn, ctx)
        conn.commit()
        dishes = [r[0] for r in conn.execute(
            "SELECT dish_id FROM canteen_menu_items WHERE menu_id = %s ORDER BY id", (menu_id,))]
        buildings = [r[0] for r in conn.execute(
            "SELECT id FROM buildings WHERE community_id = %s ORDER BY id", (ctx["community"],))]
        position = conn.execute(
            "SELECT txid, id FROM canteen_order_events WHERE org_id = %s "
            "ORDER BY txid DESC, id DESC OFFSET 50 LIMIT 1", (ctx["canteen"],)).fetchone()
    return {"menu_id": menu_id, "dishes": dishes, "buildings": buildings,
            "canteen_org": ctx["canteen"], "feed_cursor": encode_cursor(tuple(position))}


def report_bodies(buildings: list[int], count: int = 200) -> list[str]:
    """Report submissions without photos, spread over categories and buildings."""
    texts = {code: phrases for code, (_w, phrases) in seed.REPORT_TEXTS.items()}
    return [json.dumps({"category": code, "description": texts[code][i % len(texts[code])],
                        "building_id": buildings[(i * 7) % len(buildings)],
                        "location_text": "单元门口"}, ensure_ascii=False)
            for i in range(count) for code in [REPORT_CATEGORIES[i % len(REPORT_CATEGORIES)]]]


def order_bodies(menu_id: int, dishes: list[int], count: int = 60) -> list[str]:
    """Orders of one or two dishes on the open menu, eaten in or delivered home."""
    bodies = []
    for i in range(count):
        items = [{"dish_id": dishes[i % len(dishes)], "qty": 1}]
        if i % 3 == 0:
            items.append({"dish_id": dishes[(i + 1) % len(dishes)], "qty": 1})
        bodies.append(json.dumps({"menu_id": menu_id, "items": items,
                                  "fulfilment": "delivery" if i % 4 == 0 else "dine_in"}))
    return bodies


def write_fixture_files(fixtures: dict, workdir: Path) -> dict[str, str]:
    """One line per token / body, as wrk_request.lua reads them."""
    contents = {**{f"tokens-{k}": v for k, v in fixtures["tokens"].items()},
                "bodies-reports": report_bodies(fixtures["buildings"]),
                "bodies-orders": order_bodies(fixtures["menu_id"], fixtures["dishes"])}
    files = {}
    for name, lines in contents.items():
        path = workdir / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files[name] = str(path)
    return files


# --- the services ------------------------------------------------------------------------------


def start(cmd: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """Start a process of ours in its own session, its output to a log file."""
    out = open(log_path, "wb")  # noqa: SIM115 - closed when the process is stopped
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM a process we started in its own session (start), give it `grace` seconds, then
    SIGKILL its process group - what it left behind too (a worker killed so leaves its RQ
    scheduler child; not a `--fork` horse, which RQ puts in a session of its own) - before
    reaping it: until then its id names only that group."""
    if process.returncode is not None:  # reaped already: its id may be another's now
        return
    deadline = time.monotonic() + grace
    try:
        os.kill(process.pid, signal.SIGTERM)  # not terminate(): it reaps a child that has exited
        while time.monotonic() < deadline and not _exited(process.pid):
            time.sleep(0.1)
    except (ChildProcessError, ProcessLookupError):  # reaped behind Popen's back: not ours now
        process.poll()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (a zombie keeps its group's id)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def worker_yield_seconds() -> float:
    """How long the worker holds a routine job while requests queue (workers/yielding.py; the
    services get this process's environment)."""
    from app.config import load_config

    return load_config()["WORKER_YIELD_SECONDS"]


def worker_yield_note(seconds: float | None) -> str:
    """The table's header words for it (older results did not record it)."""
    if seconds is None:
        return ""
    if seconds <= 0:
        return " never giving way"
    return f" giving way up to {seconds:g} s a job while requests queue"


def active_requests() -> int:
    """The requests each gunicorn worker runs at once (app/admission.py; 0: no queue)."""
    if ACTIVE["requests"] is not None:
        return ACTIVE["requests"]
    from app.config import load_config

    return int(load_config().get("WEB_ACTIVE_REQUESTS") or 0)


def gunicorn_cmd(port: int) -> list[str]:
    """gunicorn with the production settings the README documents."""
    g = GUNICORN
    return [sys.executable, "-m", "gunicorn", "-w", str(g["workers"]), "-k", g["worker_class"],
            "--threads", str(g["threads"]), "--backlog", str(g["backlog"]),
            "--keep-alive", str(g["keepalive"]), "--timeout", str(g["timeout"]),
            "--no-control-socket", "-b", f"{HOST}:{port}", "wsgi:app"]


@contextlib.contextmanager
def services(env: dict, workdir: Path, worker_weight: int = WORKER_CPU_WEIGHT) -> Iterator[dict]:
    """gunicorn and one RQ worker (at `worker_weight`, see cpu_weight), running until the
    block ends."""
    port = free_port()
    web = start(gunicorn_cmd(port), env, workdir / "gunicorn.log")
    worker = start([sys.executable, "-m", "workers"], env, workdir / "worker.log")
    weighted = cpu_weight(worker.pid, worker_weight)
    try:
        base = f"http://{HOST}:{port}"
        wait_ready(base, web, workdir / "gunicorn.log")
        yield {"base": base, "web": web, "web_log": workdir / "gunicorn.log", "worker": worker,
               "database_url": env["DATABASE_URL"], "worker_weight": weighted}
    finally:
        try:
            stop(web)
        finally:
            stop(worker)
        for group in CGROUP_DIRS:
            with contextlib.suppress(OSError):  # empty once the worker is gone; or never made
                (group / CGROUP_NAME).rmdir()


CGROUP_DIRS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup"))  # v1's cpu controller, v2


def cpu_weight(pid: int, weight: int) -> str:
    """Give process `pid` a CPU weight against the default 100, the way the machine allows;
    what was done, for the report.

    Linux shares the CPU between groups - cgroups, and in the root cgroup sessions
    (autogroup) - before it looks at a process's priority, so the weight is set on a group: a
    cgroup of its own when we may create one (root; v1 cpu.shares or v2 cpu.weight), else the
    nice value of the process's session (each service here runs in a session of its own).
    """
    if weight == 100:
        return "weight 100 (as the web)"
    v1, v2 = CGROUP_DIRS
    try:
        if (v1 / "cpu.shares").exists():
            group = v1 / CGROUP_NAME
            group.mkdir(exist_ok=True)
            (group / "cpu.shares").write_text(str(1024 * weight // 100))
            (group / "cgroup.procs").write_text(str(pid))
            return f"weight {weight}: cgroup v1 cpu.shares {1024 * weight // 100}"
        if "cpu" in (v2 / "cgroup.controllers").read_text().split():
            (v2 / "cgroup.subtree_control").write_text("+cpu")
            group = v2 / CGROUP_NAME
            group.mkdir(exist_ok=True)
            (group / "cpu.weight").write_text(str(weight))
            (group / "cgroup.procs").write_text(str(pid))
            return f"weight {weight}: cgroup v2 cpu.weight {weight}"
    except OSError as exc:
        log(f"no cgroup for the worker ({exc}); its session's nice value instead")
    nice = max(0, min(19, round(math.log(100 / weight, 1.25))))  # 1.25x weight a nice step
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        return f"weight {weight}: session (autogroup) nice {nice}"
    except OSError as exc:
        return f"weight 100: could not lower it ({exc})"


def wait_ready(base: str, web: subprocess.Popen, log_path: Path) -> None:
    """Wait (bounded) until /readyz answers 200."""
    deadline = time.monotonic() + SERVICE_START_SECONDS
    while time.monotonic() < deadline:
        if web.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"gunicorn did not become ready; its log:\n{log_path.read_text()[-3000:]}")


def worker_pids(web: subprocess.Popen) -> list[int]:
    """The gunicorn workers (children of the master we started)."""
    done = subprocess.run(["pgrep", "-P", str(web.pid)], capture_output=True, text=True,
                          check=False)
    return [int(pid) for pid in done.stdout.split()]


def retire_leftover_jobs(database_url: str) -> int:
    """Mark jobs an earlier run left pending as failed (their queues were flushed with Redis),
    so that this run's worker does not spend the measurements on them; how many."""
    with psycopg.connect(seed.libpq_url(database_url), autocommit=True) as conn:
        return conn.execute(
            "UPDATE outbox SET status = 'failed', last_error = 'left over by an earlier "
            "benchmark run' WHERE status = 'pending'").rowcount


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU time (user + system) each process has used so far."""
    used = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def machine_ticks() -> tuple[int, int]:
    """The machine's CPU time so far in clock ticks, all of it and the part stolen by the
    hypervisor (/proc/stat's first line: user nice system idle iowait irq softirq steal...)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields), fields[7]


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Per cent of the machine's CPU time between two machine_ticks() the hypervisor took: a
    slow stretch of a virtual machine that is not the code's."""
    total, stolen = after[0] - before[0], after[1] - before[1]
    return round(100 * stolen / total, 1) if total > 0 else None


def cpu_used(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds used since `before` by the processes that were there all along."""
    after = cpu_seconds(pids)
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def wait_for_quiet_worker(pid: int, seconds: float = WORKER_SETTLE_SECONDS) -> float:
    """Wait (bounded) until the worker has run the periodic jobs it starts with (SLA escalation,
    auto-close, reminders... over the whole data set), so they do not share the cores with the
    measured endpoints; returns the seconds waited."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < seconds and quiet < 3:
        before = cpu_seconds([pid])
        time.sleep(1)
        quiet = quiet + 1 if cpu_used(before, [pid]) < 0.05 else 0
    return time.monotonic() - started


def database_backends(database_url: str) -> list[int]:
    """The PostgreSQL server processes serving the benchmark database right now."""
    with psycopg.connect(seed.libpq_url(database_url), autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]


def wait_for_routing(database_url: str, seconds: float = DRAIN_SECONDS) -> float:
    """Wait (bounded) until no report waits for its routing job; returns the seconds waited.

    Notifications may still be queued: they go to a lower-priority queue than routing, so a
    backlog of them delays a routing job by one job at most.
    """
    start_at = time.monotonic()
    with psycopg.connect(seed.libpq_url(database_url), autocommit=True) as conn:
        while time.monotonic() - start_at < seconds:
            pending = conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending' "
                                   "AND job = 'route_report'").fetchone()[0]
            if pending == 0:
                break
            time.sleep(0.5)
    return time.monotonic() - start_at


# --- wrk ---------------------------------------------------------------------------------------


def probe(base: str, scenario: Scenario, fixtures: dict) -> tuple[int, int | None]:
    """One request outside the load: its status and how many SQL statements it ran."""
    headers = {}
    tokens = fixtures["tokens"].get(scenario.caller)
    if tokens:
        headers["Authorization"] = f"Bearer {tokens[-1]}"
    content = None
    if scenario.bodies:
        lines = Path(fixtures["files"][f"bodies-{scenario.bodies}"]).read_text("utf-8").split("\n")
        content = lines[0].encode()
        headers |= {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
    response = httpx.request(scenario.method, base + scenario.path, headers=headers,
                             content=content, timeout=10)
    statements = response.headers.get("X-SQL-Statements")
    return response.status_code, int(statements) if statements else None


def run_wrk(wrk: str, base: str, scenario: Scenario, fixtures: dict, *, seconds: float,
            connections: int, workdir: Path) -> dict:
    """One wrk run of the scenario; wrk_request.lua's JSON summary."""
    files = fixtures["files"]
    tokens = files.get(f"tokens-{scenario.caller}", "-")
    bodies = files.get(f"bodies-{scenario.bodies}", "-") if scenario.bodies else "-"
    out = workdir / f"wrk-{scenario.name}-{uuid.uuid4().hex[:6]}.json"
    cmd = [wrk, "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds:g}s",
           "--timeout", "5s", "-s", str(LUA_SCRIPT), base + scenario.path.split("?")[0], "--",
           scenario.method, scenario.path, tokens, bodies, str(out), uuid.uuid4().hex[:12]]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed for {scenario.name}: {done.stderr or done.stdout}")
    return json.loads(out.read_text())


def result_from(scenario: Scenario, summary: dict, probe_status: int,
                statements: int | None) -> Result:
    """The figures of one wrk summary."""
    latency, errors = summary["latency_us"], summary["errors"]
    ok = sum(n for status, n in summary["statuses"].items() if 200 <= int(status) < 400)
    failed = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    return Result(name=scenario.name, label=scenario.label,
                  requests_per_s=summary["requests"] / (summary["duration_us"] / 1e6),
                  p50_ms=latency["p50"] / 1000, p95_ms=latency["p95"] / 1000,
                  p99_ms=latency["p99"] / 1000, max_ms=latency["max"] / 1000,
                  requests=summary["requests"],
                  errors=failed + summary["requests"] - ok if summary["statuses"] else failed,
                  statuses=summary["statuses"], sql_statements=statements,
                  probe_status=probe_status)


def profile_run(pids: list[int], seconds: float, name: str) -> list[subprocess.Popen]:
    """py-spy profiles (speedscope JSON) of the gunicorn workers during the measured run: only
    the thread holding the GIL is sampled, so they show where the CPU goes (a thread waiting for
    PostgreSQL, Redis or the GIL is left out)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    RESULTS_DIR.mkdir(exist_ok=True)
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                              "--rate", "200", "--nonblocking", "--gil", "--format", "speedscope",
                              "--output", str(RESULTS_DIR / f"profile-{name}-{pid}.json")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid in pids]


def measure(wrk: str, server: dict, scenario: Scenario, fixtures: dict, args,
            workdir: Path) -> Result:
    """Probe, warm up, then the measured wrk run of one scenario."""
    status, _cold = probe(server["base"], scenario, fixtures)
    if scenario.optional and status == 404:
        return Result(scenario.name, scenario.label, probe_status=status,
                      note="not in the app yet (404): skipped")
    if args.warmup > 0:
        run_wrk(wrk, server["base"], scenario, fixtures, seconds=args.warmup,
                connections=args.connections, workdir=workdir)
    status, statements = probe(server["base"], scenario, fixtures)  # warm caches, as under load
    spies = (profile_run(worker_pids(server["web"]), args.duration, scenario.name)
             if scenario.name in args.profile else [])
    web_pids, db_pids = worker_pids(server["web"]), database_backends(server["database_url"])
    web_before, db_before = cpu_seconds(web_pids), cpu_seconds(db_pids)
    ticks_before = machine_ticks()
    log_offset = server["web_log"].stat().st_size
    summary = run_wrk(wrk, server["base"], scenario, fixtures, seconds=args.duration,
                      connections=args.connections, workdir=workdir)
    web_cpu, db_cpu = cpu_used(web_before, web_pids), cpu_used(db_before, db_pids)
    steal = steal_share(ticks_before, machine_ticks())
    for spy in spies:
        spy.wait(30)
    pauses = full_collections(server["web_log"], log_offset)
    result = result_from(scenario, summary, status, statements)
    if result.requests:
        result.web_cpu_ms = round(1000 * web_cpu / result.requests, 2)
        result.db_cpu_ms = round(1000 * db_cpu / result.requests, 2)
    result.full_gcs, result.full_gc_max_ms = len(pauses), max(pauses, default=None)
    result.steal_pct = steal
    log(f"  {scenario.name:<8} {result.requests_per_s:8.1f} req/s  p50 {result.p50_ms:6.1f} ms"
        f"  p99 {result.p99_ms:6.1f} ms  errors {result.errors}  SQL {statements}"
        f"  CPU/req web {result.web_cpu_ms} ms db {result.db_cpu_ms} ms"
        f"  full GCs {len(pauses)}" + (f" (longest {max(pauses):.1f} ms)" if pauses else "")
        + f"  steal {steal} %")
    return result


def full_collections(web_log: Path, offset: int) -> list[float]:
    """The pauses (ms) of the full garbage collections the web processes wrote to their log
    after `offset` (app/benchmark.py: one line each)."""
    from app.benchmark import FULL_GC_PAUSE

    with open(web_log, "rb") as log_file:
        log_file.seek(offset)
        text = log_file.read().decode("utf-8", "replace")
    return [float(pause) for pause in re.findall(FULL_GC_PAUSE, text)]


def measure_floor_again(wrk: str, server: dict, fixtures: dict, args, workdir: Path) -> Result:
    """The floor once more, just before a target endpoint, the worker quiet as for the first:
    the machine's speed drifts over a run (±40 % here), so each target is compared with the
    floor of its own minute."""
    wait_for_quiet_worker(server["worker"].pid)
    [floor] = [s for s in scenarios(fixtures) if s.name == "floor"]
    return measure(wrk, server, floor, fixtures, args, workdir)


def cpu_ms(result: Result) -> float | None:
    """CPU per request, web + database."""
    if result.web_cpu_ms is None:
        return None
    return result.web_cpu_ms + (result.db_cpu_ms or 0)


# --- latencies through the worker and the SSE stream -------------------------------------------


def percentile(values: list[float], pct: float) -> float | None:
    """The pct-th percentile (nearest rank) of values, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def submit_steadily(base: str, tokens: list[str], bodies: list[str], *, rate: float,
                    seconds: float) -> list[dict]:
    """POST reports at a steady rate (one thread paces, a pool sends); each one's outcome."""
    count = int(rate * seconds)
    outcomes: list[dict] = []
    lock = threading.Lock()
    client = httpx.Client(base_url=base, timeout=10,
                          limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))

    def send(i: int) -> None:
        started = time.perf_counter()
        try:
            response = client.post("/api/v1/reports", content=bodies[i % len(bodies)].encode(),
                                    headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}",
                                             "Content-Type": "application/json",
                                             "Idempotency-Key": uuid.uuid4().hex})
            outcome = {"status": response.status_code,
                       "id": response.json().get("id") if response.status_code == 201 else None}
        except httpx.HTTPError as exc:
            outcome = {"status": None, "id": None, "error": type(exc).__name__}
        outcome["ms"] = (time.perf_counter() - started) * 1000
        with lock:
            outcomes.append(outcome)

    with client, ThreadPoolExecutor(max_workers=32) as pool:
        start_at = time.perf_counter()
        for i in range(count):
            delay = start_at + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, i)
    return outcomes


def measure_pipeline(base: str, database_url: str, fixtures: dict, *, rate: float,
                     seconds: float) -> dict:
    """Report -> ticket latency through the real worker at a steady submission rate."""
    bodies = Path(fixtures["files"]["bodies-reports"]).read_text("utf-8").split("\n")[:-1]
    started, ticks = time.perf_counter(), machine_ticks()
    outcomes = submit_steadily(base, fixtures["tokens"]["pipeline"], bodies, rate=rate,
                               seconds=seconds)
    elapsed = time.perf_counter() - started
    ids = [o["id"] for o in outcomes if o["id"]]
    latencies = ticket_latencies(database_url, ids, timeout=DRAIN_SECONDS)
    steal = steal_share(ticks, machine_ticks())  # until the last report was routed
    routed_per_s = routing_rate(database_url, ids)
    submit_ms = [o["ms"] for o in outcomes if o["id"]]
    return {"rate_target": rate, "rate_achieved": round(len(outcomes) / elapsed, 1),
            "submitted": len(outcomes), "accepted": len(ids),
            "failed": len(outcomes) - len(ids),
            "routed": len(latencies), "not_routed": len(ids) - len(latencies),
            "submit_p50_ms": percentile(submit_ms, 50), "submit_p99_ms": percentile(submit_ms, 99),
            "ticket_p50_ms": percentile(latencies, 50), "ticket_p95_ms": percentile(latencies, 95),
            "ticket_max_ms": max(latencies, default=None), "routed_per_s": routed_per_s,
            "steal_pct": steal}


def routing_rate(database_url: str, report_ids: list[int]) -> float | None:
    """Reports routed per second by the worker: routed reports over the span of their tickets."""
    with psycopg.connect(seed.libpq_url(database_url)) as conn:
        count, span = conn.execute(
            "SELECT count(DISTINCT report_id), extract(epoch FROM max(created_at) - "
            "min(created_at)) FROM tickets WHERE report_id = ANY(%s)", (report_ids,)).fetchone()
    return round(count / float(span), 1) if count > 1 and span else None


def ticket_latencies(database_url: str, report_ids: list[int], *, timeout: float) -> list[float]:
    """Per report: its first ticket's created_at minus its own, once all are routed (bounded)."""
    query = """SELECT extract(epoch FROM min(t.created_at) - r.created_at) * 1000
               FROM reports r JOIN tickets t ON t.report_id = r.id
               WHERE r.id = ANY(%s) GROUP BY r.id, r.created_at"""
    deadline = time.monotonic() + timeout
    with psycopg.connect(seed.libpq_url(database_url), autocommit=True) as conn:
        while True:
            rows = [float(r[0]) for r in conn.execute(query, (report_ids,))]
            if len(rows) >= len(report_ids) or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)


class FeedListener(threading.Thread):
    """A kitchen client of the SSE feed, noting when each order's `place` event arrives."""

    def __init__(self, base: str, token: str, cursor: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url = base + "/api/v1/canteen/feed/stream"
        self.headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": cursor}
        self.seconds = seconds
        self.arrivals: dict[int, float] = {}
        self.connected = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        timeout = httpx.Timeout(10, read=2)
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=timeout) as stream:
                self.connected.set()
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        if event.get("action") == "place":
                            self.arrivals.setdefault(event["order_id"], time.perf_counter())
                    if time.monotonic() > deadline:
                        return
        except httpx.ReadTimeout:
            return  # quiet for 2 s after the last order: done
        except httpx.HTTPError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()


def newest_feed_cursor(database_url: str, org_id: int) -> str:
    """The cursor of the newest released feed event (a client that has seen everything)."""
    from app.services.canteen_feed import encode_cursor

    with psycopg.connect(seed.libpq_url(database_url)) as conn:
        row = conn.execute("SELECT txid, id FROM canteen_order_events WHERE org_id = %s "
                           "ORDER BY txid DESC, id DESC LIMIT 1", (org_id,)).fetchone()
    return encode_cursor(tuple(row))


def measure_sse(base: str, database_url: str, fixtures: dict, *, orders: int = 20) -> dict:
    """Place orders one by one; how long until the SSE client sees each one's `place` event."""
    listener = FeedListener(base, fixtures["tokens"]["kitchen"][0],
                            newest_feed_cursor(database_url, fixtures["canteen_org"]),
                            seconds=orders * 1.0 + 30)
    listener.start()
    listener.connected.wait(15)
    time.sleep(1.0)  # the stream's first poll has run
    bodies = order_bodies(fixtures["menu_id"], fixtures["dishes"])
    placed: dict[int, tuple[float, float]] = {}
    with httpx.Client(base_url=base, timeout=10) as client:
        for i in range(orders):
            sent = time.perf_counter()
            response = client.post(
                "/api/v1/canteen/orders", content=bodies[i % len(bodies)].encode(),
                headers={"Authorization": f"Bearer {fixtures['tokens']['pipeline'][i]}",
                         "Content-Type": "application/json",
                         "Idempotency-Key": uuid.uuid4().hex})
            if response.status_code == 201:
                placed[response.json()["id"]] = (sent, time.perf_counter())
            time.sleep(0.37)  # not a multiple of the feed's poll interval
    listener.join(timeout=30)
    after_201 = [(listener.arrivals[i] - t[1]) * 1000 for i, t in placed.items()
                 if i in listener.arrivals]
    end_to_end = [(listener.arrivals[i] - t[0]) * 1000 for i, t in placed.items()
                  if i in listener.arrivals]
    return {"orders": orders, "placed": len(placed), "seen": len(after_201),
            "after_201_p50_ms": percentile(after_201, 50),
            "after_201_max_ms": max(after_201, default=None),
            "post_to_event_p50_ms": percentile(end_to_end, 50),
            "post_to_event_max_ms": max(end_to_end, default=None), "error": listener.error}


# --- results -----------------------------------------------------------------------------------


def add_ratios(results: list[Result]) -> None:
    """Each result's share of the ceiling's and the floor's req/s, and its target verdict."""
    by_name = {r.name: r for r in results}
    ceiling, floor = by_name.get("ceiling"), by_name.get("floor")
    for r in results:
        if not r.requests:
            continue
        if ceiling and ceiling.requests_per_s:
            r.vs_ceiling = r.requests_per_s / ceiling.requests_per_s
        floor_rps = r.floor_rps or (floor.requests_per_s if floor else None)
        if floor_rps:
            r.vs_floor = r.requests_per_s / floor_rps
        if r.name in TARGETS and r.vs_floor is not None:
            ok = r.vs_floor >= TARGETS[r.name] and r.p99_ms < P99_TARGET_MS and r.errors == 0
            r.target = (f"{'met' if ok else 'MISSED'} (≥ {TARGETS[r.name]:.0%} of floor, "
                        f"p99 < {P99_TARGET_MS:g} ms)")


def fmt(value, pattern: str = "{:.1f}") -> str:
    """A figure for the table ('–' when there is none)."""
    return "–" if value is None else pattern.format(value)


def markdown(report: dict) -> str:
    """The results as the Markdown the README shows."""
    meta = report["meta"]
    lines = [f"Linli load benchmark — {meta['reports']:,} reports, {meta['connections']} "
             f"connections, {meta['duration_s']:g} s per endpoint, gunicorn "
             f"{GUNICORN['workers']}×{GUNICORN['worker_class']}/{GUNICORN['threads']} threads "
             f"({meta.get('active_requests', 'all')} active), "
             f"RQ worker at {meta.get('worker_cpu', 'weight 100')}"
             f"{worker_yield_note(meta.get('worker_yield_s'))}, "
             f"{meta['cpus']} CPUs, load before {meta['load_before'][0]:.2f}",
             "",
             "| endpoint | req/s | p50 ms | p95 ms | p99 ms | errors | SQL/req "
             "| CPU ms/req web + db | × ceiling | × floor | target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["endpoints"]:
        if not r["requests"]:
            lines.append(f"| `{r['label']}` | – | – | – | – | – | – | – | – | – | {r['note']} |")
            continue
        lines.append(
            f"| `{r['label']}` | {r['requests_per_s']:.0f} | {r['p50_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
            f"{fmt(r['sql_statements'], '{}')} | {fmt(r.get('web_cpu_ms'))} + "
            f"{fmt(r.get('db_cpu_ms'), '{:.2f}')} | {fmt(r['vs_ceiling'], '{:.0%}')} | "
            f"{fmt(r['vs_floor'], '{:.0%}')} | {r['target']} |")
    lines += extra_lines(report)
    return "\n".join(lines)


def cpu_shares(report: dict) -> list[str]:
    """Each target endpoint's share of the floor by CPU per request (web + database): what the
    req/s ratio is when nothing else competes for the cores."""
    by_name = {r["name"]: r for r in report["endpoints"] if r["requests"]}
    floor = by_name.get("floor")
    if not floor or not floor.get("web_cpu_ms"):
        return []
    first_cost = (floor["web_cpu_ms"] or 0) + (floor["db_cpu_ms"] or 0)
    shares, floors = [], []
    for name, r in by_name.items():
        if name in TARGETS and r.get("web_cpu_ms"):
            cost = r.get("floor_cpu_ms") or first_cost
            shares.append(f"{name} {cost / ((r['web_cpu_ms'] or 0) + (r['db_cpu_ms'] or 0)):.0%}")
            floors.append(f"{name} {fmt(r.get('floor_rps'), '{:.0f}')} req/s")
    return [f"- Share of the floor by CPU per request (web + database): {', '.join(shares)}.",
            f"- Each target against the floor run just before it: {', '.join(floors)}."]


def per_endpoint_line(report: dict, key: str, part, sentence: str) -> list[str]:
    """A line under the table naming `part(endpoint)` for each endpoint measured with `key`
    recorded (none: older results did not record it, no line)."""
    parts = [part(r) for r in report["endpoints"] if r["requests"] and r.get(key) is not None]
    return [f"- {sentence}: " + ", ".join(parts) + "."] if parts else []


def full_collection_line(report: dict) -> list[str]:
    """How often a full garbage collection held a web process during each endpoint's run."""
    return per_endpoint_line(
        report, "full_gcs",
        lambda r: f"{r['name']} {r['full_gcs']}" + (f" ({r['full_gc_max_ms']:.0f} ms)"
                                                     if r["full_gcs"] else ""),
        "Full garbage collections in the web processes while measured (the longest pause)")


def steal_line(report: dict) -> list[str]:
    """How much of the machine's CPU time its hypervisor took during each endpoint's run."""
    return per_endpoint_line(
        report, "steal_pct", lambda r: f"{r['name']} {r['steal_pct']:g} %",
        "CPU time the hypervisor took from this machine while measured (steal; a slow stretch "
        "that is not the code's)")


def extra_lines(report: dict) -> list[str]:
    """The pipeline and SSE figures under the table."""
    lines = ["", *cpu_shares(report), *full_collection_line(report), *steal_line(report)]
    p = report.get("pipeline")
    if p:
        lines.append(
            f"- Report → ticket through the worker at {p['rate_achieved']:g} reports/s "
            f"(target {p['rate_target']:g}) for {p['submitted']} reports: p50 "
            f"{fmt(p['ticket_p50_ms'], '{:.0f}')} ms, p95 {fmt(p['ticket_p95_ms'], '{:.0f}')} ms, "
            f"max {fmt(p['ticket_max_ms'], '{:.0f}')} ms; the worker routed "
            f"{fmt(p.get('routed_per_s'), '{:g}')} reports/s; submission p50 "
            f"{fmt(p['submit_p50_ms'])} ms, p99 {fmt(p['submit_p99_ms'])} ms; "
            f"{p['failed']} failed, {p['not_routed']} not routed"
            + (f"; steal {p['steal_pct']:g} %." if p.get("steal_pct") is not None else "."))
    s = report.get("sse")
    if s:
        lines.append(
            f"- New order → kitchen SSE client ({s['seen']}/{s['placed']} orders seen): p50 "
            f"{fmt(s['after_201_p50_ms'], '{:.0f}')} ms after the 201, max "
            f"{fmt(s['after_201_max_ms'], '{:.0f}')} ms (the stream polls every 0.5 s)"
            + (f"; error: {s['error']}" if s.get("error") else "") + ".")
    if report.get("sos"):
        lines.append("- An SOS pressed right after the report load (the worker behind it), "
                     f"{sos.describe(report['sos'])}.")
    lines += scale_comparison(report)
    return lines


def scale_comparison(report: dict) -> list[str]:
    """p50/p99 against the runs at other scales kept in bench/results/reports-*.json."""
    lines = []
    mine = {r["name"]: r for r in report["endpoints"] if r["requests"]}
    for path in sorted(RESULTS_DIR.glob("reports-*.json")):
        other = json.loads(path.read_text())
        if other["meta"]["reports"] == report["meta"]["reports"]:
            continue
        theirs = {r["name"]: r for r in other["endpoints"] if r["requests"]}
        parts = [f"{name} p50 {mine[name]['p50_ms'] / theirs[name]['p50_ms']:.2f}×, "
                 f"p99 {mine[name]['p99_ms'] / theirs[name]['p99_ms']:.2f}×"
                 for name in ("tickets", "report", "home") if name in mine and name in theirs]
        if parts:
            lines.append(f"- Against {other['meta']['reports']:,} reports "
                         f"({other['meta']['started_at'][:16]}): " + "; ".join(parts) + ".")
    return lines


def git_commit() -> str:
    """The commit the tree is at (the benchmark may run on uncommitted changes)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()


def save(report: dict) -> Path:
    """Write latest.json, and reports-<scale>.json for a run of every endpoint."""
    RESULTS_DIR.mkdir(exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if not report["meta"]["only"]:
        (RESULTS_DIR / f"reports-{report['meta']['reports']}.json").write_text(text)
    latest = RESULTS_DIR / "latest.json"
    latest.write_text(text)
    return latest


# --- the command -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=seed.parse_scale, default=seed.DEFAULT_REPORTS,
                        help="reports in the data set (default 200000; e.g. 10k, 1m)")
    parser.add_argument("--reseed", action="store_true", help="rebuild the data set first")
    parser.add_argument("--database-url", help=f"default: {seed.DEFAULT_DATABASE_URL}")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=GUNICORN["threads"],
                        help="gunicorn threads per worker")
    parser.add_argument("--active", type=int, default=None,
                        help="WEB_ACTIVE_REQUESTS of each gunicorn worker (0: no queue; "
                             "default: the app's)")
    parser.add_argument("--worker-weight", type=int, default=WORKER_CPU_WEIGHT,
                        help="the RQ worker's CPU weight against the web's 100 (100: the same)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per endpoint")
    parser.add_argument("--warmup", type=float, default=3, help="seconds before each run")
    parser.add_argument("--only", type=lambda v: set(v.split(",")), default=None,
                        help="comma-separated endpoints (ceiling and floor always run)")
    parser.add_argument("--pipeline-rate", type=float, default=50)
    parser.add_argument("--pipeline-seconds", type=float, default=20)
    parser.add_argument("--skip-latency", action="store_true",
                        help="skip the report->ticket and SSE measurements")
    parser.add_argument("--profile", type=lambda v: set(v.split(",")), default=set(),
                        help="endpoints to profile with py-spy (speedscope files in bench/results)")
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 256 or not 1 <= args.duration <= 120:
        parser.error("connections must be 1..256 and duration 1..120 s")
    if not 1 <= args.pipeline_rate <= 200 or not 1 <= args.pipeline_seconds <= 60:
        parser.error("pipeline rate must be 1..200/s for 1..60 s")
    if not 1 <= args.worker_weight <= 100:
        parser.error("the worker's CPU weight must be 1..100 (the web's is 100)")
    return args


def run(args, wrk: str, database_url: str, workdir: Path) -> dict:
    """Seed, start the services, measure everything; the report."""
    load_before = warn_if_busy()
    seed.ensure_seeded(database_url, reports=args.scale, reseed=args.reseed)
    redis = redis_url()
    flush_redis(redis)
    retired = retire_leftover_jobs(database_url)
    if retired:
        log(f"outbox: {retired} jobs left pending by an earlier run marked failed")
    env = service_env(database_url, redis)
    fixtures = prepare_fixtures(database_url, env, workdir)
    kit = sos.make_kit(database_url) if not args.only or "report" in args.only else None
    started_at = datetime.now(UTC).isoformat()
    results, extra = [], {}
    with services(env, workdir, args.worker_weight) as server:
        log(f"load: {server['base']} (gunicorn pid {server['web'].pid}, "
            f"worker pid {server['worker'].pid}, {server['worker_weight']})")
        worker_weight = server["worker_weight"]
        settled = wait_for_quiet_worker(server["worker"].pid)
        log(f"  the worker's start-up jobs (periodic ticks over the data set) took {settled:.0f} s")
        for scenario in scenarios(fixtures):
            if args.only and scenario.name not in args.only | {"ceiling", "floor"}:
                continue
            if scenario.name in TARGETS and results[-1].name != "floor":
                floor = measure_floor_again(wrk, server, fixtures, args, workdir)
            result = measure(wrk, server, scenario, fixtures, args, workdir)
            if scenario.name in TARGETS:
                own = floor if results[-1].name != "floor" else results[-1]
                result.floor_rps, result.floor_cpu_ms = own.requests_per_s, cpu_ms(own)
            results.append(result)
        if kit and results[-1].name == "report":  # the worker has the load's routing queued
            extra["sos"] = sos.measure(server["base"], database_url, *kit, timeout=120)
        if not args.skip_latency:
            waited = wait_for_routing(database_url)
            log(f"latency: report -> ticket through the worker (after {waited:.0f} s for the "
                "worker to route the load's reports), new order -> SSE client")
            extra["pipeline"] = measure_pipeline(server["base"], database_url, fixtures,
                                                 rate=args.pipeline_rate,
                                                 seconds=args.pipeline_seconds)
            extra["sse"] = measure_sse(server["base"], database_url, fixtures)
    add_ratios(results)
    meta = {"started_at": started_at, "commit": git_commit(), "reports": args.scale,
            "only": sorted(args.only) if args.only else None,
            "rows": seed.table_counts(database_url), "connections": args.connections,
            "duration_s": args.duration, "warmup_s": args.warmup, "wrk": wrk_version(wrk),
            "wrk_threads": WRK_THREADS, "gunicorn": GUNICORN, "worker_cpu": worker_weight,
            "active_requests": active_requests(), "worker_yield_s": worker_yield_seconds(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_before": load_before,
            "load_after": os.getloadavg()}
    return {"meta": meta, "endpoints": [asdict(r) for r in results], **extra}


def main(argv: list[str] | None = None) -> int:
    """`make bench`."""
    args = parse_args(argv)
    GUNICORN["threads"] = args.threads
    ACTIVE["requests"] = args.active
    database_url = seed.database_url(args.database_url)
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="linli-bench-"))
    try:
        report = run(args, wrk, database_url, workdir)
    finally:
        if os.environ.get("BENCH_KEEP_LOGS") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")
    path = save(report)
    print()
    print(markdown(report))
    print(f"\n(results: {path.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
