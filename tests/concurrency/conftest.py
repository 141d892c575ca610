"""The capacity proofs through the real HTTP stack: one gunicorn (2 gthread workers, so requests
race across processes as in production) on the test run's PostgreSQL and Redis, serving every
test of the module; the rows are built here in the test process and wiped after each test by the
autouse `_clean` fixture.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import gunicorn, service_env

CLIENT_THREADS = 48  # requests in flight at once; gunicorn serves 2 x 8 of them in parallel


@dataclass
class Call:
    """One HTTP request to fire."""

    method: str
    path: str
    headers: dict
    json: dict | None = None


@dataclass
class Answer:
    """One response: its status, JSON body (None when not JSON) and whether it was a replay."""

    status: int
    body: dict | None
    replayed: bool = False

    @property
    def code(self) -> str | None:
        """The error code of a non-2xx answer."""
        return (self.body or {}).get("error", {}).get("code")


@dataclass
class LiveServer:
    """The gunicorn of this module: its base URL and the log of its workers."""

    base: str
    log_path: Path

    def fire(self, calls: list[Call]) -> list[Answer]:
        """Send every call at once (CLIENT_THREADS at a time); answers in call order."""
        limits = httpx.Limits(max_connections=CLIENT_THREADS,
                              max_keepalive_connections=CLIENT_THREADS)
        with httpx.Client(base_url=self.base, timeout=60, limits=limits) as client, \
                ThreadPoolExecutor(CLIENT_THREADS) as pool:
            answers = list(pool.map(lambda call: _send(client, call), calls))
        self.check_no_server_errors(answers)
        return answers

    def check_no_server_errors(self, answers: list[Answer]) -> None:
        """Fail on any 5xx, showing the end of gunicorn's log."""
        broken = [a for a in answers if a.status >= 500]
        assert not broken, f"{len(broken)} x 5xx, e.g. {broken[0]}\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _send(client: httpx.Client, call: Call) -> Answer:
    r = client.request(call.method, call.path, headers=call.headers, json=call.json)
    try:
        body = r.json()
    except json.JSONDecodeError:
        body = None
    return Answer(r.status_code, body, r.headers.get("Idempotent-Replayed") == "true")


def outcomes(answers: list[Answer]) -> Counter:
    """How many answers of each kind: `201`, `409 slot_full`, ..."""
    return Counter(f"{a.status} {a.code}" if a.code else str(a.status) for a in answers)


@pytest.fixture(scope="module")
def live(app, tmp_path_factory):
    """gunicorn -w 2 -k gthread --threads 8 wsgi:app on this run's database and Redis, without
    the request queue: all 16 threads' requests race at once (the deployment runs 3 a process)."""
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = service_env(app, JWT_SECRET_KEY=app.config["JWT_SECRET_KEY"], WEB_ACTIVE_REQUESTS="0")
    with open(log_path, "w") as log, gunicorn(env, workers=2, log=log) as base:
        yield LiveServer(base, log_path)
