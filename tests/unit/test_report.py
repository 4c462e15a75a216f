"""report.py renders every series kind into one self-contained page; panels.py reads the real dashboard."""

from __future__ import annotations

import json
import re

import pytest

from alert_history_cache import report
from alert_history_cache.drills import panels
from alert_history_cache.drills.results import DrillResult


def _result() -> dict:
    r = DrillResult(drill="load", engine="valkey8", versions={"server": "Valkey 8.1 8.1.8"})
    r.check("requirements: p95 latency", "< 50 ms", "1.2 ms", True)
    r.check("goals: p99 latency", "< 5 ms", "7.5 ms", False)
    r.criteria_sets = ["requirements", "goals"]
    r.figures.update({"achieved_rate": 10000.0, "latency_all": {"p99_ms": 7.5}, "fork_usec": [1200, 900],
                      "notes": ["the generator fell behind <during> the fork"], "options": {"rate": 1}})
    r.series.update({
        "latency_cdf": {"kind": "line", "title": "Latency CDF", "x": [0.1, 1, 10], "lines": {"all": [0, 0.9, 1]},
                        "log_x": True},
        "rate": {"kind": "line", "title": "Rate", "x": [0, 1, 2], "lines": {"ok": [1, None, 3]},
                 "spans": [{"start": 0.5, "end": 1.5, "label": "bgsave"}]},
        "hist": {"kind": "bar", "title": "Histogram", "edges": [0.1, 1, 10], "counts": [5, 1], "log_x": True,
                 "log_y": True},
        "timeline": {"kind": "timeline", "title": "Recovery", "phases": [{"start": 0, "end": 1.2, "label": "loading"}],
                     "events": [{"t": 1.5, "label": "ready"}]},
        "panel:Memory": {"kind": "line", "title": "Dashboard: Memory", "x": [0, 5], "lines": {"used": [1, 2]},
                         "queries": ['redis_memory_used_bytes{namespace="default"}']},
        "panel:Replication": {"kind": "line", "title": "Dashboard: Replication", "x": [0, 5], "lines": {},
                              "queries": ["redis_connected_slaves"]},
    })
    return r.to_dict()


def test_render_embeds_one_png_per_series_and_marks_criteria(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_result()))
    out = report.write(report.load_results([path]), tmp_path / "report.html")
    page = out.read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert sorted(images) == sorted(["Latency CDF", "Rate", "Histogram", "Recovery", "Dashboard: Memory",
                                     "Dashboard: Replication"])
    assert page.count('<span class="fail">FAIL</span>') == 1
    assert page.count('<span class="pass">pass</span>') == 1
    assert "Dashboard panels over the drill window" in page
    assert 'redis_memory_used_bytes{namespace=&quot;default&quot;}' in page  # queries shown, escaped
    assert "&lt;during&gt;" in page and "<during>" not in page
    assert "achieved_rate" in page and "options.rate" not in page  # options are not figures
    assert "criteria applied: requirements + goals" in page


def test_render_lists_results_in_the_summary():
    page = report.render([_result(), {**_result(), "drill": "bench-recovery", "criteria": [], "series": {}}])
    assert "bench-recovery" in page and "figures only" in page


@pytest.mark.parametrize("value,text", [(0.000012, "1.2e-05"), (1234.5678, "1,234.568"), (12345, "12,345"),
                                        ([1, 2], "1, 2"), (True, "True")])
def test_fmt(value, text):
    assert report.fmt(value) == text


def test_flatten_nested_figures():
    rows = dict(report.flatten({"a": {"b": 1, "c": [{"d": 2}]}, "window": {"start": 1}}))
    assert rows == {"a.b": 1, "a.c.0.d": 2}


def test_dashboard_targets_resolve_without_grafana_variables():
    targets = panels.dashboard_targets()
    assert len(targets) >= 10
    for t in targets:
        expr = panels.resolve(t.expr, namespace="default", pod="alerthistory-redis-0", rate_interval="20s")
        assert "$" not in expr, expr
    titles = {t.panel for t in targets}
    assert {"Memory", "Connected clients", "Hit rate"} <= titles


def test_legend_and_durations():
    assert panels.legend("used {{pod}}", {"pod": "p-0"}) == "used p-0"
    assert panels.legend("", {"a": "b"}) == '{"a": "b"}'
    assert panels.rate_interval("5s") == "20s"
    assert panels.rate_interval("1m") == "240s"
    assert panels.rate_interval(15.0) == "60s"
    with pytest.raises(ValueError):
        panels.rate_interval("soon")
