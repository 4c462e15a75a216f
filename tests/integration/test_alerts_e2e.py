"""Every alert of the chart's PrometheusRule (except RedisReplicationLag: no replica) fires for its real cause on a
real server, exporter, Prometheus and Alertmanager, and resolves once the cause is removed.

One stack per engine; the causes are induced one after another. Thresholds, `for` durations, the rate window and
the scrape interval are lowered through values, so each alert needs seconds, not minutes."""

from __future__ import annotations

import select
import signal
import socket
import time

import pytest
import redis

from alert_history_cache.monitoring_stack import MonitoringOptions
from alert_history_cache.waiting import wait_until

from helpers.alerts import wait_firing, wait_resolved, wait_rules_evaluated_after
from helpers.traffic import Traffic

pytestmark = pytest.mark.integration

MAXCLIENTS = 40
ALERTS = ["RedisDown", "RedisExporterDown", "RedisTargetAbsent", "RedisOutOfMemory", "RedisHighMemoryUsage",
          "RedisTooManyConnections", "RedisHighConnectionUsage", "RedisRejectedConnections",
          "RedisPersistenceFailure", "RedisAofWriteFailure", "RedisUnsavedChangesGrowing", "RedisOOMErrors",
          "RedisSlowQueries", "RedisLowHitRate"]
KEYS = {a: a[0].lower() + a[1:] for a in ALERTS}
RULES = {key: {"for": "0s"} for key in KEYS.values()}
RULES["redisOutOfMemory"]["threshold"] = 0.2          # RSS above 25.6 MB of the 128Mi limit: a full 32mb dataset
RULES["redisTooManyConnections"]["threshold"] = 0.5   # 20 of 40 clients
RULES["redisHighConnectionUsage"]["threshold"] = 0.4  # 16 of 40 clients
RULES["redisSlowQueries"]["threshold"] = 2
RULES["redisUnsavedChangesGrowing"]["threshold"] = 1  # seconds since the last snapshot
RULES["redisLowHitRate"]["minRequestRate"] = 5

VALUES = {
    "valkey": {
        "resources": {"requests": {"memory": "128Mi"}, "limits": {"memory": "128Mi"}},
        # noeviction: a full server refuses writes (OOM) instead of evicting, the case the memory alerts are for.
        "settings": {"maxmemory": "32mb", "maxmemoryPolicy": "noeviction", "maxclients": MAXCLIENTS,
                     "slowlogThreshold": 2000},
        # Probes may hit a full maxclients for a moment: liveness must not restart the server for that.
        "probes": {"liveness": {"failureThreshold": 20}},
        "exporter": {"serviceMonitor": {"interval": "1s", "scrapeTimeout": "1s"}},
    },
    "monitoring": {"prometheusRule": {"rateWindow": "5s"}, "rules": RULES},
}


def check(stack, name: str, induce, remove, timeout: float = 30) -> dict:
    """Induce the cause, the alert fires in Prometheus and Alertmanager; remove it, the alert resolves."""
    ctx = induce()
    try:
        alert = wait_firing(stack, name, timeout)
    finally:
        remove(ctx)
    wait_resolved(stack, name, timeout)
    assert alert["labels"]["component"] == "redis" and alert["labels"]["pod"] == "alerthistory-redis-0"
    assert alert["annotations"]["runbook_url"].endswith(f"/{name}.md")
    assert alert["labels"]["severity"] in ("critical", "warning") and alert["annotations"]["summary"]
    return alert


def open_clients(stack, n: int) -> tuple[list, int]:
    """n more connections as the application; returns the open ones and how many the server rejected."""
    conns, rejected = [], 0
    for _ in range(n):
        try:
            c = stack.client(single_connection_client=True)  # connects and authenticates at once
            c.ping()
            conns.append(c)
        except redis.ConnectionError:
            rejected += 1
    return conns, rejected


def burst_past_maxclients(stack) -> int:
    """Open MAXCLIENTS raw TCP connections at once (the server counts them before any AUTH) and close them within
    a second, so probes and the exporter find free slots again; returns how many the server refused."""
    socks = [socket.create_connection((stack.pod_ip, stack.port), timeout=2) for _ in range(MAXCLIENTS)]
    answered: set[socket.socket] = set()
    refused = 0

    def read_refusals() -> int:
        nonlocal refused
        readable, _, _ = select.select([s for s in socks if s not in answered], [], [], 0)
        for s in readable:
            answered.add(s)
            refused += b"max number of clients reached" in s.recv(256)
        return refused

    try:
        wait_until(read_refusals, 10, "the server to refuse connections past maxclients", interval=0.05)
    finally:
        for s in socks:
            s.close()
    return refused


@pytest.mark.parametrize("engine", ["valkey8", "redis7"])
def test_every_alert_fires_and_resolves(make_stack, engine) -> None:
    started = time.monotonic()
    stack = make_stack(values=VALUES, engine=engine, monitoring=True, backoff=(12.0, 300.0),
                       monitoring_options=MonitoringOptions(evaluation_interval="1s", resend_delay="1s")).start()
    stack.wait_target_up(30)
    loaded = {r["name"] for g in stack.prometheus_api("rules")["groups"] for r in g["rules"] if r["type"] == "alerting"}
    assert loaded == set(ALERTS) | {"RedisReplicationLag"}
    app, admin = stack.client(), stack.client("admin")
    proven = []
    # Baseline: with the lowered thresholds, an idle healthy server still pages for nothing, once every rule has
    # been evaluated over full 5 s rate windows of scrapes.
    wait_rules_evaluated_after(stack, time.time() + 6, timeout=30)
    assert stack.query("ALERTS") == [] and stack.alertmanager_alerts() == []

    # Unsaved changes: writes keep coming and no snapshot is taken (save rules need 900 s); BGSAVE clears them.
    writes = Traffic(lambda i: app.set(f"unsaved:{i % 100}", i))
    check(stack, "RedisUnsavedChangesGrowing", writes.__enter__,
          lambda _: (writes.__exit__(), admin.bgsave(), wait_until(
              lambda: admin.info("persistence")["rdb_changes_since_last_save"] == 0, 20, "BGSAVE")))
    proven.append("RedisUnsavedChangesGrowing")

    # Low hit rate: the application misses every lookup at ~50/s; no traffic, no alert.
    misses = Traffic(lambda i: app.get(f"missing:{i}"))
    check(stack, "RedisLowHitRate", misses.__enter__, lambda _: misses.__exit__())
    proven.append("RedisLowHitRate")

    # Slow queries: Lua busy loops (admin) above the lowered 2 ms slow-log threshold.
    def slow():
        for _ in range(6):
            admin.eval("local i = 0 while i < 3000000 do i = i + 1 end return i", 0)
    check(stack, "RedisSlowQueries", slow, lambda _: None)
    proven.append("RedisSlowQueries")

    # Connections: 24 idle application clients are 60% of maxclients (both connection alerts); then a burst past
    # maxclients is rejected. Closing them all clears the three alerts.
    held, refused = open_clients(stack, 24)
    assert refused == 0, admin.info("clients")
    for name in ("RedisHighConnectionUsage", "RedisTooManyConnections"):
        wait_firing(stack, name)
    assert burst_past_maxclients(stack) > 0
    wait_firing(stack, "RedisRejectedConnections")
    for c in held:
        c.close()
    for name in ("RedisHighConnectionUsage", "RedisTooManyConnections", "RedisRejectedConnections"):
        wait_resolved(stack, name)
        proven.append(name)

    # Persistence: as the pod user, a directory takes the RDB file's place (BGSAVE's rename of its temp file fails)
    # and the AOF directory becomes read-only (BGREWRITEAOF cannot open its new incremental file). Undone, both
    # succeed and the alerts resolve.
    rdb = "/data/" + admin.config_get("dbfilename")["dbfilename"]
    aof_dir = "/data/" + admin.config_get("appenddirname")["appenddirname"]

    def sh(script: str) -> None:
        res = stack.exec(["sh", "-c", script])
        assert res.returncode == 0, res

    def break_persistence() -> None:
        sh(f"rm -f {rdb} && mkdir -p {rdb}/blocked && chmod 0555 {aof_dir}")

    def repair_persistence() -> None:
        sh(f"rm -rf {rdb} && chmod 0755 {aof_dir}")

    def bg_done() -> bool:
        p = admin.info("persistence")
        return not p["rdb_bgsave_in_progress"] and not p["aof_rewrite_in_progress"] \
            and not p["aof_rewrite_scheduled"]

    break_persistence()
    try:
        admin.bgsave()
        wait_until(lambda: admin.info("persistence")["rdb_last_bgsave_status"] == "err", 20, "BGSAVE to fail")
        wait_until(bg_done, 20, "BGSAVE to end")
        try:
            admin.bgrewriteaof()
        except redis.ResponseError:  # the new incremental AOF cannot be opened before the fork
            pass
        wait_until(bg_done, 20, "BGREWRITEAOF to end")
        assert admin.info("persistence")["aof_last_bgrewrite_status"] == "err"
        wait_firing(stack, "RedisPersistenceFailure")
        wait_firing(stack, "RedisAofWriteFailure")
    finally:
        repair_persistence()
    admin.bgsave()
    wait_until(bg_done, 20, "BGSAVE to end")
    admin.bgrewriteaof()
    wait_until(bg_done, 20, "BGREWRITEAOF to end")
    persistence = admin.info("persistence")
    assert (persistence["rdb_last_bgsave_status"], persistence["aof_last_bgrewrite_status"]) == ("ok", "ok")
    for name in ("RedisPersistenceFailure", "RedisAofWriteFailure"):
        wait_resolved(stack, name)
        proven.append(name)

    # Memory: fill the 32mb maxmemory under noeviction until writes fail with OOM. Used memory is above 90% of
    # maxmemory, commands are refused, and RSS passes the lowered share of the container limit. FLUSHALL and a
    # jemalloc purge give the memory back.
    value = "x" * 256 * 1024
    oom = 0
    for i in range(400):
        try:
            admin.set(f"fill:{i}", value)
        except redis.exceptions.OutOfMemoryError:  # the server's "-OOM command not allowed ..." reply
            oom += 1
            if oom >= 3:
                break
    assert oom >= 3, "the server never refused a write"
    for name in ("RedisHighMemoryUsage", "RedisOOMErrors", "RedisOutOfMemory"):
        wait_firing(stack, name)
    admin.flushall()
    admin.execute_command("MEMORY", "PURGE")
    for name in ("RedisHighMemoryUsage", "RedisOOMErrors", "RedisOutOfMemory"):
        wait_resolved(stack, name)
        proven.append(name)
    admin.bgsave()
    wait_until(bg_done, 20, "BGSAVE to end")

    # Exporter stopped (SIGSTOP): scrapes time out, up is 0. SIGCONT lets it answer again.
    exporter = stack.container("exporter")
    check(stack, "RedisExporterDown", lambda: exporter.signal(signal.SIGSTOP),
          lambda _: exporter.signal(signal.SIGCONT))
    proven.append("RedisExporterDown")
    stack.wait_target_up(30)

    # Server down: a second crash within the back-off window keeps it down for 12 s (crash-loop back-off) while
    # the exporter, refused, reports redis_up 0. The restart clears the alert.
    stack.kill_server(signal.SIGKILL)
    stack.wait_ready(30)
    check(stack, "RedisDown", lambda: stack.kill_server(signal.SIGKILL), lambda _: None, timeout=40)
    proven.append("RedisDown")
    stack.wait_ready(30)

    # Pod deleted: its exporter goes with it, so only the absent target can page.
    check(stack, "RedisTargetAbsent", stack.delete_pod,
          lambda _: (stack.create_pod(), stack.wait_ready(30), stack.wait_target_up(30)), timeout=40)
    proven.append("RedisTargetAbsent")

    assert sorted(proven) == sorted(ALERTS)
    print(f"{engine}: {len(proven)} alerts fired and resolved in {time.monotonic() - started:.0f} s")
