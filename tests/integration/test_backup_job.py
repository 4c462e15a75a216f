"""`backup` on the local stack: the rendered CronJob's pod runs once as a Job pod in its own namespaces, with
the rendered command, env, volumes and user, against the release's running pods; the file it writes lands in
the backup PVC's folder, holds every key, and the pod leaves nothing behind. Standalone and replication."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import port_for
import pytest
import redis
from mirakuru import TCPExecutor

from alert_history_cache import engines

pytestmark = pytest.mark.integration

REPLICATION = {"architecture": "replication", "replicas": 3}


def keys_of_rdb(engine_name: str, rdb, folder) -> dict:
    """Every string key of an RDB file, as a fresh server (AOF off) loads it."""
    engine = engines.get(engine_name)
    folder.mkdir()
    shutil.copy(rdb, folder / "dump.rdb")
    port = port_for.select_random()
    with TCPExecutor([str(engine.server), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                      "--appendonly", "no", "--save", ""], host="127.0.0.1", port=port, timeout=30):
        client = redis.Redis(port=port)
        return {k: client.get(k) for k in client.scan_iter(count=1000)}


@pytest.mark.parametrize("engine_name", ["valkey8", "redis7"])
def test_backup_of_a_standalone_release(make_stack, tmp_path, engine_name):
    stack = make_stack({"backup": {"enabled": True}}, engine=engine_name)
    stack.start()
    written = {f"alert:{i}".encode(): os.urandom(32) for i in range(300)}
    stack.client("admin").mset(written)
    result = stack.run_job()
    assert result["succeeded"], result
    (path,) = result["files"]
    assert path.startswith(str(stack.state_dir / "pvcs" / "alerthistory-redis-backup" / ""))
    assert result["pod"].startswith(result["job"] + "-") and result["job"].startswith("alerthistory-redis-backup-")
    log = open(next(iter(result["logs"].values()))).read()
    assert "verifying" in log and "-check-rdb" in log
    assert keys_of_rdb(engine_name, path, tmp_path / "load") == written
    # The Job pod is gone: no process of it, no network namespace (make_stack's teardown checks the rest).
    assert not any(result["pod"] in p for p in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                              text=True).stdout.split())


def test_backup_of_a_replication_release_comes_from_a_replica(make_stack, tmp_path):
    # The chart's probe defaults: the fast probes do not leave the replication bootstrap its budget.
    stack = make_stack({"backup": {"enabled": True}, "valkey": REPLICATION}, engine="valkey8", fast=False)
    stack.start()
    written = {f"alert:{i}".encode(): os.urandom(32) for i in range(200)}
    stack.client("admin").mset(written)
    # WAIT: both replicas have every write before the snapshot is taken.
    assert stack.client("admin").execute_command("WAIT", 2, 10000) == 2
    result = stack.run_job()
    assert result["succeeded"], result
    log = open(next(iter(result["logs"].values()))).read()
    source = log.split("streaming a snapshot from ", 1)[1].split()[0]
    primary = stack.client("admin").execute_command("ROLE")
    assert primary[0] in (b"master", "master")
    # The source is a pod the Sentinels call a healthy replica: never the pod that is the primary now.
    roles = {}
    for pod in stack.cluster.pods:
        if pod.startswith("alerthistory-redis-") and pod[-1].isdigit():
            role = stack.client("admin", pod=pod).execute_command("ROLE")[0]
            roles[pod] = role.decode() if isinstance(role, bytes) else role
    source_pod = source.split(".", 1)[0]
    assert roles[source_pod] == "slave", (source, roles)
    assert keys_of_rdb("valkey8", result["files"][0], tmp_path / "load") == written


def test_without_backup_enabled_there_is_no_job(make_stack):
    stack = make_stack()
    stack.start()
    with pytest.raises(Exception, match="backup.enabled: true"):
        stack.run_job()


def test_the_backup_command_runs_the_job_in_a_stack_started_by_up(tmp_path, needs_root, nothing_left):
    import sys

    cli = [sys.executable, "-m", "alert_history_cache.cli"]
    state = tmp_path / "state"
    up = subprocess.run([*cli, "up", "--detach", "--state-dir", str(state), "--no-monitoring",
                         "--set", "backup.enabled=true"], capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        done = subprocess.run([*cli, "backup", "--state-dir", str(state)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        (line,) = done.stdout.strip().splitlines()
        assert line.startswith(str(state.resolve() / "pvcs" / "alerthistory-redis-backup" / ""))
        assert line.endswith(".rdb") and os.path.getsize(line) > 0
        restored = subprocess.run([*cli, "restore", "--state-dir", str(state), line], capture_output=True,
                                  text=True, timeout=300)
        assert restored.returncode == 0, restored.stderr
        result = json.loads(restored.stdout)
        assert result["primary"] == "alerthistory-redis-0" and result["backup"] == line
        assert result["keys"] >= 0 and result["serving_after_seconds"] <= result["seconds"]
    finally:
        subprocess.run([*cli, "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=300)
    nothing_left(state)


def test_the_backup_command_without_a_stack_says_how_to_start_one(tmp_path):
    import sys

    done = subprocess.run([sys.executable, "-m", "alert_history_cache.cli", "backup", "--state-dir",
                           str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no stack is running" in done.stderr and "backup.enabled=true" in done.stderr
    assert "Traceback" not in done.stderr
