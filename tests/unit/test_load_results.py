"""The load drill's typed figures: they read the JSON a real `drill load` wrote and write it back unchanged, and
what analyze() measures serializes to the same keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alert_history_cache.drills import capacity, load
from alert_history_cache.drills.load_results import Capacity, LoadFigures, Window

from test_load_analysis import CSV, STAGES, _run, _samples

# figures of `drill load --duration 30s --rate 500 --connections 50 --no-capacity` on valkey8, before the types
RECORDED = Path(__file__).parent / "data" / "load-figures-valkey8.json"


def test_recorded_figures_read_and_write_back_unchanged():
    recorded = json.loads(RECORDED.read_text())
    figures = LoadFigures.from_dict(recorded)
    assert figures.latency_all.p95_ms == recorded["latency_all"]["p95_ms"]
    assert figures.generator.fell_behind is recorded["generator"]["fell_behind"]
    assert isinstance(figures.window, Window) and figures.window.end > figures.window.start
    assert all(w.kind in ("bgsave", "aof-rewrite") for w in figures.fork_windows)
    assert figures.capacity is None and "capacity" not in figures.to_dict()  # --no-capacity: left out, as before
    assert json.loads(json.dumps(figures.to_dict())) == recorded


def test_unknown_keys_are_ignored_on_reading():
    recorded = json.loads(RECORDED.read_text())
    figures = LoadFigures.from_dict({**recorded, "added_by_a_later_version": 1})
    assert figures.to_dict() == recorded


def test_a_missing_figure_is_an_error_not_a_silent_default():
    recorded = json.loads(RECORDED.read_text())
    del recorded["achieved_rate"]
    with pytest.raises(TypeError, match="achieved_rate"):
        LoadFigures.from_dict(recorded)


def test_analyzed_figures_have_the_recorded_keys():
    recorded = json.loads(RECORDED.read_text())
    sched = np.arange(0, 10, 0.01)
    run_figures, _ = load.analyze(_run(np.full(len(sched), 1.0), sched), STAGES, _samples(4.0, 4.75),
                                  [{"command": "bgsave", "at": 1004.0, "returned_at": 1004.01}], {})
    prod = capacity.parse_csv(CSV)
    cap = Capacity(redis_benchmark="7.0.15", connections=500, value_size=2048, keyspace=1000, requests=100,
                   threads=1, auth="x", production_window=[1.0, 2.0], production=prod,
                   production_mix_rps=capacity.mix_rps(prod, 0.9))
    figures = LoadFigures.of_run(run_figures, options={"rate": 1000.0}, prefill_keys=10, prefill_seconds=0.1,
                                 dataset_bytes_before=1, window=Window(1000.0, 1010.0), capacity=cap,
                                 rate_vs_capacity=0.5)
    out = json.loads(json.dumps(figures.to_dict()))
    assert set(out) == set(recorded) | {"capacity", "rate_vs_capacity"}
    for nested in ("generator", "latency_all", "cpu", "window"):
        assert set(out[nested]) == set(recorded[nested]), nested
    assert set(out["fork_windows"][0]) == {"kind", "start", "end", "triggered", "fork_usec"}
    assert out["capacity"]["production"]["GET"]["rps"] == 80000.0 and "stock" not in out["capacity"]
    assert LoadFigures.from_dict(out).capacity.production["SET"].p99_ms == pytest.approx(16.415)


def test_drill_result_json_carries_the_typed_figures(tmp_path):
    recorded = json.loads(RECORDED.read_text())
    result = load.DrillResult(drill="load", engine="valkey8", figures=LoadFigures.from_dict(recorded))
    result.check("requirements: errors", "< 1%", "0", True)
    path = tmp_path / "r.json"
    result.write_json(path)
    data = json.loads(path.read_text())
    assert data["figures"] == recorded and data["passed"] and data["criteria_sets"] == ["requirements"]
