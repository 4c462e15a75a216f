"""`restore` on the local stack: a backup taken by the release's own backup Job comes back after FLUSHALL,
through the documented procedure (loaded with the AOF off, then a new AOF), and survives a restart of the
server, so it really is in the new AOF. With replication: the primary stays the primary (Sentinel held off)
and the replicas resync. Standalone on valkey8 and redis7, replication on valkey8."""

from __future__ import annotations

import os
import signal

import pytest

from alert_history_cache.restore import sentinel_master
from alert_history_cache.waiting import wait_until

pytestmark = pytest.mark.integration


def round_trip(stack, keys: int = 300) -> tuple[dict, dict]:
    admin = stack.client("admin")
    written = {f"alert:{i}": os.urandom(16).hex() for i in range(keys)}
    admin.mset(written)
    if stack.full_values["valkey"]["architecture"] == "replication":
        assert admin.execute_command("WAIT", 2, 10000) == 2
    backup = stack.run_job()
    assert backup["succeeded"], backup
    admin.flushall()
    assert admin.dbsize() == 0
    result = stack.restore(backup["files"][0])
    return written, result


@pytest.mark.parametrize("engine_name", ["valkey8", "redis7"])
def test_restore_after_flushall_standalone(make_stack, engine_name):
    stack = make_stack({"backup": {"enabled": True}}, engine=engine_name)
    stack.start()
    written, result = round_trip(stack)
    assert result["keys"] == len(written)
    admin = stack.client("admin")
    assert {k: admin.get(k) for k in written} == written
    assert admin.config_get("appendonly")["appendonly"] == "yes"
    assert not (stack.data_dir / "restore").exists()
    # The data is in the new AOF: a crash of the server (SIGKILL, no save) and a restart load it back.
    pid = stack.server_pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: stack.server_pid not in (None, pid) and stack.cluster.pod(stack.primary_name).ready, 120,
               "the server restarted and Ready")
    admin = stack.client("admin")
    assert {k: admin.get(k) for k in written} == written


def test_restore_after_flushall_replication(make_stack):
    stack = make_stack({"backup": {"enabled": True}, "valkey": {"architecture": "replication", "replicas": 3}},
                       engine="valkey8", fast=False)
    stack.start()
    written, result = round_trip(stack, keys=200)
    assert result["keys"] == len(written) and len(result["replicas_resynced"]) == 2
    primary = result["primary"]
    for pod in [primary, *result["replicas_resynced"]]:
        client = stack.client("admin", pod=pod)
        assert {k: client.get(k) for k in written} == written, pod
    # No failover happened, and the Sentinels are back on the chart's down-after-milliseconds.
    assert stack.client("admin", pod=primary).info("replication")["role"] == "master"
    port = int(stack.full_values["valkey"]["sentinel"]["port"])
    for name, pod in stack.cluster.pods.items():
        if pod.plan.owner_kind != "StatefulSet":
            continue
        sentinel = stack.credentials.client(pod.ip, port, stack.full_values["valkey"]["acl"]["sentinelUser"])
        master = sentinel_master(sentinel, "alerthistory")
        assert master["down-after-milliseconds"] == str(stack.full_values["valkey"]["sentinel"]["downAfterMilliseconds"])
        assert master["name"] == "alerthistory" and master["ip"].startswith(primary + ".")


def test_drill_corrupted_aof(needs_root, tmp_path):
    """Garbage in the middle of the AOF: the crash loop shows, --fix truncates at the garbage, and the writes it
    dropped are counted against the recorded ones (about half: the garbage sits in the middle)."""
    from alert_history_cache.drills import restore as restore_drill

    result = restore_drill.run(engine="valkey8", state_dir=str(tmp_path / "state"), scenario="corrupted-aof")
    assert result.passed, [(c.name, c.measured) for c in result.criteria]
    f = result.figures
    assert f["bytes_dropped"] == f["incr_bytes"] - f["incr_bytes_after_fix"] > 0
    # Cut within the garbage at the latest (the checker may take a few of its bytes for the end of a command).
    assert f["incr_bytes_after_fix"] <= f["garbage_at"] + len(restore_drill.GARBAGE)
    assert 0.2 < f["writes_dropped_by_fix"] / f["acknowledged_writes"] < 0.8
    # The guide's copy is kept, on the volume (its image stays after the stack stopped).
    from alert_history_cache import volumes

    data = tmp_path / "state" / "pvc"
    volumes.mount_claim(data, 0)
    try:
        assert (data / "appendonlydir.corrupt").is_dir()
    finally:
        volumes.unmount_all(data)


@pytest.mark.parametrize("scenario", ["flushall", "volume-lost"])
def test_drill_restore(needs_root, scenario, tmp_path):
    """The drill's criteria pass, and its figures add up: the RPO counts only writes after the backup started."""
    from alert_history_cache.drills import restore as restore_drill

    result = restore_drill.run(engine="valkey8", state_dir=str(tmp_path / "state"), scenario=scenario)
    assert result.passed, [(c.name, c.measured) for c in result.criteria]
    f = result.figures
    assert f["acknowledged_before_backup"] >= 2000 and f["acknowledged_after_restore"] >= 500
    assert 0 < f["rpo_writes_lost"] <= f["acknowledged_after_backup_before_serving"]
    assert f["keys_in_backup"] >= f["acknowledged_before_backup"]


# Seconds, not minutes: 1 s scrapes and rule evaluations, the alerts without `for`, a save rule due 10 s after the
# last snapshot, a 256Mi volume (the fill is a fallocate: the size costs no time).
DISK_FULL_VALUES = {
    "valkey": {"storage": {"requestedSize": "256Mi"}, "settings": {"save": ["10 1000"]},
               "exporter": {"serviceMonitor": {"interval": "1s", "scrapeTimeout": "1s"}},
               "probes": {k: {"periodSeconds": 1} for k in ("startup", "readiness", "liveness")}},
    "monitoring": {"rules": {"redisAofWriteFailure": {"for": "1s"}, "redisPersistenceFailure": {"for": "1s"}}},
}


@pytest.mark.parametrize("engine_name", ["valkey8", "redis7"])
def test_drill_disk_full(needs_root, engine_name, tmp_path):
    """The volume fills under the write load: both persistence alerts fire end to end, writes are refused with
    MISCONF, the server stays up and recovers by itself once the space is back; nothing acknowledged is lost."""
    from alert_history_cache.drills import diskfull
    from alert_history_cache.monitoring_stack import MonitoringOptions

    from helpers.local_stack import assert_nothing_left, engine_or_skip

    engine_or_skip(engine_name)
    state = tmp_path / "state"
    result = diskfull.run(engine_name, DISK_FULL_VALUES, str(state),
                          monitoring_options=MonitoringOptions(evaluation_interval="1s", resend_delay="1s"))
    assert result.passed, [(c.name, c.measured) for c in result.criteria if not c.passed]
    f = result.figures
    assert f["fill"]["free_bytes"] < 8192 and f["fill"]["size_bytes"] > 200 * 1024 * 1024
    assert f["write_errors_by_kind"]["MISCONF"] > 0 and f["rpo_writes_lost"] == f["rpo_writes_lost_after_restart"] == 0
    assert f["while_full"]["aof_last_write_status"] == "err" and f["after_free"]["aof_last_write_status"] == "ok"
    assert 0 < f["rto_seconds"] < 60 and f["acknowledged_writes"] > 2000
    assert any("No space left on device" in line for line in f["server_log"]), f["server_log"]
    assert_nothing_left(state)
