"""`drill load --compare-tls`'s figures: the ratios TLS / plaintext come from the two runs' own capacity anchors
and steady p99s, and the combined figures go to JSON and back unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from alert_history_cache.drills import load
from alert_history_cache.drills.load_results import Capacity, LoadFigures, TlsCost

RECORDED = Path(__file__).parent / "data" / "load-figures-valkey8.json"


def figures(mix_rps: float, p99_ms: float, tls: bool) -> LoadFigures:
    data = copy.deepcopy(json.loads(RECORDED.read_text()))
    data["latency_steady"]["p99_ms"] = p99_ms
    data["options"] = {**data["options"], "rate": 10_000.0, "connections": 500, "tls": tls}
    f = LoadFigures.from_dict(data)
    f.capacity = Capacity(redis_benchmark="7.0.15", connections=500, value_size=2048, keyspace=100_000,
                          requests=20_000, threads=1, auth="throwaway user", production_window=[0.0, 1.0],
                          production={}, production_mix_rps=mix_rps)
    return f


def test_the_ratios_are_tls_over_plaintext():
    plain, tls = figures(60_000.0, 2.0, False), figures(45_000.0, 3.0, True)
    cost = load.tls_cost(plain, tls)
    assert (cost.rate, cost.connections) == (10_000.0, 500)
    assert (cost.plaintext_mix_rps, cost.tls_mix_rps, cost.capacity_ratio) == (60_000.0, 45_000.0, 0.75)
    assert (cost.plaintext_p99_ms, cost.tls_p99_ms, cost.p99_ratio) == (2.0, 3.0, 1.5)
    assert cost.tls_run["options"]["tls"] is True


def test_no_capacity_anchor_no_capacity_ratio():
    plain, tls = figures(60_000.0, 2.0, False), figures(45_000.0, 3.0, True)
    plain.capacity = tls.capacity = None
    cost = load.tls_cost(plain, tls)
    assert cost.capacity_ratio is None and cost.p99_ratio == 1.5


def test_the_combined_figures_round_trip_through_json():
    plain = figures(60_000.0, 2.0, False)
    plain.tls_cost = load.tls_cost(plain, figures(45_000.0, 3.0, True))
    data = json.loads(json.dumps(plain.to_dict()))
    back = LoadFigures.from_dict(data)
    assert isinstance(back.tls_cost, TlsCost) and back.tls_cost.capacity_ratio == 0.75
    assert back.to_dict() == data


def test_an_engine_without_tls_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"--compare-tls: the valkey8 engine's server is built without TLS.*redis7"):
        load.compare_tls(load.LoadOptions(engine="valkey8"))
