"""The persistence and failover drills on every engine, through the real CLI: every criterion passes and the
figures in the JSON results are sane."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from alert_history_cache.cli import main

from helpers.local_stack import FAST_PROBES, engine_or_skip

pytestmark = pytest.mark.integration

ENGINES = ["valkey8", "valkey9", "redis7"]


def run_drill(name: str, engine: str, tmp_path) -> dict:
    engine_or_skip(engine)
    values = tmp_path / "fast-probes.yaml"
    values.write_text(yaml.safe_dump(FAST_PROBES))
    out = tmp_path / f"{name}.json"
    res = CliRunner().invoke(main, ["drill", name, "--engine", engine, "-f", str(values), "--json", str(out),
                                    "--state-dir", str(tmp_path / "state")], catch_exceptions=False)
    data = json.loads(out.read_text())
    failed = [c for c in data["criteria"] if not c["passed"]]
    assert res.exit_code == 0, f"{res.output}\nfailed: {failed}"
    assert data["passed"] and data["criteria"] and not failed
    assert data["engine"] == engine and data["versions"]["server"] and data["machine"]["cores"]
    return data


@pytest.mark.parametrize("engine", ENGINES)
def test_persistence_drill(engine, tmp_path, needs_root):
    data = run_drill("persistence", engine, tmp_path)
    fig = data["figures"]
    assert len(data["criteria"]) == 8
    assert fig["appendfsync"] == "everysec"
    assert fig["keys_after_restart"] == 1000
    assert 0 < fig["save_seconds"] <= 5 and fig["rdb_bytes"] > 1000
    assert fig["aof_files"]["appendonly.aof.manifest"] > 0
    assert any("append only file" in line for line in fig["replay_log_lines"])
    assert 0 < fig["restart_recovery_seconds"] < 60
    # Only Valkey 9's checker needs the per-file fallback (its manifest check rejects the VALKEY base signature).
    assert ("check_aof_workaround" in fig) == (engine == "valkey9")


@pytest.mark.parametrize("engine", ENGINES)
def test_failover_drill(engine, tmp_path, needs_root):
    data = run_drill("failover", engine, tmp_path)
    fig = data["figures"]
    assert fig["aof_load_truncated"] == "yes"
    for name in ("graceful", "hard_kill", "truncated_aof"):
        f = fig[name]
        assert f["acknowledged_before_kill"] > 100, f  # the load really ran before the disruption
        assert f["acknowledged_writes"] > f["acknowledged_before_kill"]  # and resumed after recovery
        assert 0 < f["recovery_seconds"] < 60
        assert f["replay_log_lines"]
    assert fig["graceful"]["lost_acknowledged_writes"] == 0
    assert fig["hard_kill"]["loss_window_seconds"] <= 1.0
    trunc = fig["truncated_aof"]
    assert trunc["truncation"]["size_after"] < trunc["truncation"]["size_before"]
    assert trunc["lost_acknowledged_writes"] <= 1 and trunc["loss_window_seconds"] <= 1.0
    assert trunc["truncation"]["last_command"].startswith("*3 $3 SET")  # the cut hit a write of the load
    assert any("loaded anyway" in line for line in trunc["truncation_log_lines"])


def test_persistence_drill_fails_without_aof(tmp_path, needs_root):
    """A criterion that fails makes the drill exit non-zero, and the JSON names it."""
    engine_or_skip("valkey8")
    values = tmp_path / "fast-probes.yaml"
    values.write_text(yaml.safe_dump(FAST_PROBES))
    out = tmp_path / "persistence.json"
    res = CliRunner().invoke(main, ["drill", "persistence", "-f", str(values), "--set", "valkey.settings.appendonly=false",
                                    "--json", str(out), "--state-dir", str(tmp_path / "state")])
    assert res.exit_code == 1, res.output
    data = json.loads(out.read_text())
    failed = {c["name"] for c in data["criteria"] if not c["passed"]}
    assert not data["passed"] and "appendonly (CONFIG GET as admin)" in failed
