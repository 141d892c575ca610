"""Benchmark-only hooks, present only when LINLI_BENCH=1 (bench/run.py sets it for gunicorn).

- `GET /api/v1/bench/floor`: role_required (JWT decoded, its blocklist entry looked up in
  Redis) and one `SELECT 1` - what every real endpoint pays at least; the benchmark's floor.
- `X-SQL-Statements` on every response: how many SQL statements the request executed.
- Each full garbage collection's pause, one line on stderr (gunicorn's log, which bench.run
  reads for each endpoint): a full collection holds every request of its process meanwhile.
"""

from __future__ import annotations

import gc
import os
import sys
import time

from flask import Flask, g, has_app_context, jsonify
from sqlalchemy import event, text

BENCH_ENV = "LINLI_BENCH"
SQL_HEADER = "X-SQL-Statements"
FLOOR_PATH = "/api/v1/bench/floor"
FULL_GC_LINE = "linli-bench full-gc pid={pid} ms={ms:.1f}"
FULL_GC_PAUSE = r"linli-bench full-gc pid=\d+ ms=(\d+\.\d)"  # a line of it; the pause


def enabled() -> bool:
    """Whether the benchmark hooks are wanted (never in normal runs or tests)."""
    return os.environ.get(BENCH_ENV) == "1"


def register(app: Flask) -> None:
    """Add the floor route, the per-request SQL statement count and the full collections'
    pauses on stderr."""
    from app.extensions import db
    from app.security import RESIDENT, role_required

    @role_required(RESIDENT)
    def bench_floor():
        """One trivial query behind the same authentication as every real endpoint."""
        db.session.execute(text("SELECT 1"))
        return jsonify(status="ok")

    app.add_url_rule(FLOOR_PATH, "bench_floor", bench_floor)

    with app.app_context():
        @event.listens_for(db.engine, "before_cursor_execute")
        def _count_statement(*_args):
            if has_app_context():
                g.sql_statements = g.get("sql_statements", 0) + 1

    @app.after_request
    def _sql_statements_header(response):
        response.headers[SQL_HEADER] = str(g.get("sql_statements", 0))
        return response

    _time_full_collections()


def _time_full_collections() -> None:
    """Write each full (generation 2) collection's pause to stderr, once per process."""
    if any(getattr(callback, "linli_bench", False) for callback in gc.callbacks):
        return
    started: list[float] = []

    def timer(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            pause_ms = (time.perf_counter() - started.pop()) * 1000
            # one write: the processes and their threads share the log, print() writes twice
            sys.stderr.write(FULL_GC_LINE.format(pid=os.getpid(), ms=pause_ms) + "\n")
            sys.stderr.flush()

    timer.linli_bench = True
    gc.callbacks.append(timer)
