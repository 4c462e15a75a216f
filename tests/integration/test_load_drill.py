"""CI's load drill: the pass criteria of docs/requirements.md at 500 held connections for a 30-s hold on the
local pod.

Runs the real command (`alert-history-cache drill load`) against the rendered pod, with the capacity anchor
(redis-benchmark against the pod and the stock binary) and the dashboard panels captured from Prometheus. It
asserts those criteria only (p95 < 50 ms, errors < 1 %, 500 connections held, none rejected): CI machines
are noisy, so our own 10k req/s / p99 < 5 ms goal is measured by `drill load` on a quiet machine
(docs/performance.md). The figures are printed so a CI log shows them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alert_history_cache.drills import capacity

from helpers.local_stack import assert_nothing_left, engine_or_skip, run_drill

pytestmark = pytest.mark.integration

RATE = 2000  # twice the 1,000 req/s of docs/requirements.md, light enough for a shared CI machine


def test_load_drill_meets_the_requirements(tmp_path: Path, needs_root):
    engine_or_skip("valkey8")
    try:
        capacity.redis_benchmark()
    except capacity.CapacityError as exc:
        pytest.skip(str(exc))
    out, html, state = tmp_path / "load.json", tmp_path / "load.html", tmp_path / "state"
    proc, result = run_drill(
        ["load", "--engine", "valkey8", "--connections", "500", "--rate", str(RATE), "--duration", "30",
         "--criteria", "requirements", "--bench-requests", "20000", "--state-dir", str(state), "--report", str(html)],
        out, timeout=600)
    f = result["figures"]
    print(json.dumps({k: f[k] for k in ("achieved_rate", "error_rate", "hit_rate", "latency_all", "latency_fork",
                                        "fork_usec", "connections_held_min", "rejected_connections", "generator",
                                        "cpu", "rate_vs_capacity")}, indent=1))
    print(json.dumps({k: f["capacity"][k] for k in ("production_mix_rps", "stock_mix_rps", "production_vs_stock")}))

    required = {c["name"]: c for c in result["criteria"] if c["name"].startswith("requirements:")}
    assert set(required) == {"requirements: p95 latency", "requirements: errors", "requirements: connections held",
                             "requirements: rejected connections"}
    assert result["criteria_sets"] == ["requirements"]
    failed = [c for c in required.values() if not c["passed"]]
    assert not failed, failed
    # The exit code fails only on a failed criterion; with --criteria requirements the one other criterion is the
    # generator's own schedule (a noisy machine may trip it: the result then says so instead of blaming the server).
    others_failed = [c["name"] for c in result["criteria"] if not c["passed"]]
    assert proc.returncode == (1 if others_failed else 0), (others_failed, proc.returncode)
    assert set(others_failed) <= {"generator kept its schedule"}
    assert not any(c["name"].startswith("goals:") for c in result["criteria"])

    # The run was what it claims: 500 connections by the application identity, the offered rate, the forks.
    assert f["connections_opened"] == 500 and f["connections_held_min"] >= 500
    assert f["offered_rate"] == pytest.approx(RATE, rel=0.01)
    assert f["achieved_rate"] == pytest.approx(RATE, rel=0.05)
    assert [w["kind"] for w in f["fork_windows"] if w["triggered"]] == ["bgsave", "aof-rewrite"]
    assert all(u and u > 0 for u in f["fork_usec"])
    assert f["hit_rate"] > 0.9  # the keyspace was prefilled; only TTL-less misses are impossible
    cap = f["capacity"]
    assert cap["production"]["GET"]["rps"] > RATE and cap["stock"]["SET"]["rps"] > 0
    assert 0 < f["rate_vs_capacity"] < 1

    # Every dashboard panel was captured from Prometheus over the window, and the core ones have data.
    panels = {k: s for k, s in result["series"].items() if k.startswith("panel:")}
    for title in ("Connected clients", "Commands per second", "Memory", "Hit rate"):
        lines = panels[f"panel:{title}"]["lines"]
        assert any(v is not None for ys in lines.values() for v in ys), title
    page = html.read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 6 + len(panels)
    assert_nothing_left(state)


def test_container_limits_throttle_and_oom_kill(needs_root):
    """What `drill load --enforce-limits` and bench/oom_limit.py rely on: the kernel really enforces the quota
    and the memory limit on a process put into ContainerLimits, and the cgroups are gone afterwards."""
    import os

    from alert_history_cache.drills.limits import ROOT, ContainerLimits, LimitsUnavailable

    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass\n"
    hog = "import sys\nsys.stdin.readline()\nx = bytearray(256 * 2**20)\nprint('survived')\n"
    name = f"ahc-test-limits-{os.getpid()}"
    try:
        with ContainerLimits(name, 200, 64 * 2**20) as cg:
            busy = subprocess.Popen([sys.executable, "-c", spin])
            cg.add(busy.pid)
            busy.wait(30)
            greedy = subprocess.Popen([sys.executable, "-c", hog], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            cg.add(greedy.pid)
            out, _ = greedy.communicate(b"\n", timeout=30)
            stats = cg.stats()
            dirs = list(cg.dirs.values())
    except LimitsUnavailable as exc:
        pytest.skip(str(exc))
    print(stats)
    assert stats["nr_throttled"] > 0 and stats["throttled_seconds"] > 0.5  # 200m of a 1.5-s spin
    assert greedy.returncode == -9 and b"survived" not in out
    assert stats["oom_kills"] >= 1
    assert dirs and not any(d.exists() for d in dirs)
    assert not any((ROOT / sub / name).exists() for sub in ("", "cpu", "memory"))
