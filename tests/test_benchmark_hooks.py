"""The benchmark's hooks (only with LINLI_BENCH=1): the floor, the statement count, and the
pauses of full garbage collections that bench.run reads from the web processes' log."""

from __future__ import annotations

import gc
import re

import pytest

from app import benchmark
from app.extensions import db
from tests import factories as f


@pytest.fixture
def gc_callbacks():
    """The garbage collector's callbacks as they were before the test, put back after it."""
    before = list(gc.callbacks)
    yield before
    gc.callbacks[:] = before


def test_the_floor_counts_its_one_statement_and_full_collections_are_timed(
        app_of_its_own, session, monkeypatch, capfd, gc_callbacks):
    monkeypatch.setenv(benchmark.BENCH_ENV, "1")
    bench_app = app_of_its_own()
    app_of_its_own()  # another app in the same process: still one timer
    assert len([c for c in gc.callbacks if c not in gc_callbacks]) == 1
    user = f.resident()
    db.session.commit()
    answer = bench_app.test_client().get(benchmark.FLOOR_PATH, headers=f.headers(user))
    assert answer.status_code == 200 and answer.headers[benchmark.SQL_HEADER] == "1"

    gc.disable()  # no automatic collection between the two asked for
    try:
        capfd.readouterr()
        gc.collect(1)  # a younger generation's collection is not reported
        gc.collect()
        lines = capfd.readouterr().err.splitlines()
    finally:
        gc.enable()
    assert len(lines) == 1, lines
    # the line bench.run reads back: pattern and format agree
    assert re.fullmatch(benchmark.FULL_GC_PAUSE, lines[0]) and re.fullmatch(
        r"linli-bench full-gc pid=\d+ ms=\d+\.\d", lines[0])


def test_without_the_setting_there_is_no_floor_and_no_timer(app_of_its_own, monkeypatch,
                                                            gc_callbacks):
    monkeypatch.delenv(benchmark.BENCH_ENV, raising=False)
    plain = app_of_its_own()
    assert gc.callbacks == gc_callbacks
    assert plain.test_client().get(benchmark.FLOOR_PATH).status_code == 404
