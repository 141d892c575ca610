"""The lines `make bench` prints under its table: the hypervisor's steal and the web's full
garbage collections while each endpoint was measured, and the report -> ticket figures."""

from __future__ import annotations

from bench import run


def test_the_share_stolen_is_per_cent_of_the_machines_time_between_two_readings():
    assert run.steal_share((10_000, 100), (10_400, 140)) == 10.0
    assert run.steal_share((10_000, 100), (10_000, 100)) is None  # no time passed


def test_the_machines_ticks_are_read_from_proc_stat():
    total, stolen = run.machine_ticks()
    assert total > 0 and 0 <= stolen <= total


def test_a_line_under_the_table_names_each_endpoints_steal():
    report = {"endpoints": [
        {"name": "floor", "requests": 8000, "steal_pct": 2.5},
        {"name": "home", "requests": 4000, "steal_pct": 31.0},
        {"name": "skipped", "requests": 0, "steal_pct": None},
    ]}
    [line] = run.steal_line(report)
    assert line.endswith("floor 2.5 %, home 31 %.")
    assert run.steal_line({"endpoints": [{"name": "floor", "requests": 9,
                                          "steal_pct": None}]}) == []  # older results


def test_the_report_to_ticket_line_names_the_steal_while_the_worker_routed():
    pipeline = {"rate_achieved": 49.9, "rate_target": 50, "submitted": 1000,
                "ticket_p50_ms": 40, "ticket_p95_ms": 210, "ticket_max_ms": 300,
                "routed_per_s": 49.8, "submit_p50_ms": 11.0, "submit_p99_ms": 19.0, "failed": 0,
                "not_routed": 0}
    line = run.extra_lines({"endpoints": [], "pipeline": {**pipeline, "steal_pct": 12.5}})
    assert any(text.endswith("0 not routed; steal 12.5 %.") for text in line)
    older = run.extra_lines({"endpoints": [], "pipeline": pipeline})
    assert any(text.endswith("0 failed, 0 not routed.") for text in older)


def test_a_line_under_the_table_names_each_endpoints_full_collections():
    report = {"endpoints": [
        {"name": "home", "requests": 4000, "full_gcs": 0, "full_gc_max_ms": None},
        {"name": "feed", "requests": 800, "full_gcs": 18, "full_gc_max_ms": 27.8},
        {"name": "skipped", "requests": 0, "full_gcs": None},
    ]}
    assert run.full_collection_line(report) == [
        "- Full garbage collections in the web processes while measured (the longest pause): "
        "home 0, feed 18 (28 ms)."]
    assert run.full_collection_line({"endpoints": [{"name": "home", "requests": 9}]}) == []
