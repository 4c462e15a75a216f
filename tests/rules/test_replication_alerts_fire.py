"""The replication alerts, and RedisReplicationLag, fire for their real causes: real Prometheus evaluates the chart's rendered rules over
real exporters of a real primary and replica, three real Sentinels and a real HAProxy, scraped under the
labels the ServiceMonitors give (job = the metrics Service, namespace, pod, instance).

Not the local cluster (no pods, no Services): processes on 127.0.0.1, so this proves the expressions against
the real series and their real disappearance (a frozen server, a frozen Sentinel), and stays quick. The
`for` durations are shortened the way tests/rules/replication-alert-drills.yaml does.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import port_for
import pytest
import redis
import yaml
from mirakuru import HTTPExecutor, TCPExecutor

from alert_history_cache import chart, engines
from alert_history_cache.promapi import Prometheus
from alert_history_cache.waiting import wait_until
from helpers.local_stack import engine_or_skip, exporter_or_skip

from test_exporter_metrics import SENTINEL_PASSWORD, _exporter, _haproxy

pytestmark = pytest.mark.integration

NS = "cache"
DATA_JOB, SENTINEL_JOB, HAPROXY_JOB = (f"alerthistory-redis-{j}" for j in ("metrics", "sentinel-metrics", "haproxy-metrics"))
RULES_DIR = Path(__file__).resolve().parent
REPLICATION_ALERTS = ["RedisNoPrimary", "RedisMultiplePrimaries", "RedisReplicaLinkDown",
                      "RedisSentinelQuorumUnreachable", "RedisHAProxyNoBackend", "RedisReplicationLag"]


def rendered_rules() -> dict:
    plan = yaml.safe_load((RULES_DIR / "replication-alert-drills.yaml").read_text())
    values = chart.deep_merge(plan["values"], {"fullnameOverride": "alerthistory"})
    [rule] = chart.render(values, release="alerthistory", namespace=NS).of_kind("PrometheusRule")
    return {"groups": [{**g, "interval": "1s"} for g in rule["spec"]["groups"]]}


def _server(engine, port: int, d: Path, *extra: str) -> TCPExecutor:
    d.mkdir()
    return TCPExecutor([str(engine.server), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "",
                        "--appendonly", "no", "--repl-diskless-sync-delay", "0", *extra],
                       host="127.0.0.1", port=port, timeout=30)


def _sentinel(engine, port: int, primary_port: int, d: Path) -> TCPExecutor:
    d.mkdir()
    (d / "sentinel.conf").write_text(
        f"port {port}\nbind 127.0.0.1\ndir {d}\n"
        f"user default off resetpass -@all\nuser sentinel on >{SENTINEL_PASSWORD} ~* &* +@all\n"
        f"sentinel sentinel-user sentinel\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
        f"sentinel monitor alerthistory 127.0.0.1 {primary_port} 2\n"
        "sentinel down-after-milliseconds alerthistory 1000\n"
    )
    return TCPExecutor([str(engine.server), str(d / "sentinel.conf"), "--sentinel"], host="127.0.0.1", port=port,
                       timeout=30)


@contextlib.contextmanager
def frozen(executor):
    """SIGSTOP a process (a hung server or node) until the block ends."""
    os.kill(executor.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(executor.process.pid, signal.SIGCONT)


@pytest.mark.parametrize("engine_name", ["valkey8"])
def test_replication_alerts_fire_for_their_causes(engine_name, tmp_path):
    engine = engine_or_skip(engine_name)
    exporter_or_skip()
    prometheus_bin = engines.PROMETHEUS.binary
    rules = rendered_rules()
    ports = iter(port_for.select_random() for _ in range(16))
    p_port, r_port, h_port, hm_port, prom_port = (next(ports) for _ in range(5))
    s_ports = [next(ports) for _ in range(3)]
    with contextlib.ExitStack() as stack:
        primary_proc = stack.enter_context(_server(engine, p_port, tmp_path / "primary"))
        replica_proc = stack.enter_context(
            _server(engine, r_port, tmp_path / "replica", "--replicaof", "127.0.0.1", str(p_port)))
        replica = redis.Redis(port=r_port)
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 30, "the replica to sync")
        sentinels = [stack.enter_context(_sentinel(engine, p, p_port, tmp_path / f"sentinel-{i}"))
                     for i, p in enumerate(s_ports)]
        stack.enter_context(_haproxy(h_port, hm_port, {"redis-0": p_port, "redis-1": r_port}, tmp_path / "haproxy"))
        targets = []  # (job, pod, exporter port)
        for pod, port in (("alerthistory-redis-0", p_port), ("alerthistory-redis-1", r_port)):
            e_port = next(ports)
            # The metric names and labels do not depend on the login; these servers have no ACL users.
            stack.enter_context(_exporter(port, e_port, None))
            targets.append((DATA_JOB, pod, e_port))
        for i, port in enumerate(s_ports):
            e_port = next(ports)
            stack.enter_context(_exporter(port, e_port, "sentinel", SENTINEL_PASSWORD))
            targets.append((SENTINEL_JOB, f"alerthistory-redis-{i}", e_port))
        targets.append((HAPROXY_JOB, "alerthistory-redis-haproxy-5c8d7b9f4-abcde", hm_port))
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yaml")],
            "scrape_configs": [
                {"job_name": f"{job}/{pod}", "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"job": job, "namespace": NS, "pod": pod}}]}
                for job, pod, port in targets
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        stack.enter_context(HTTPExecutor(
            [str(prometheus_bin), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            url=f"http://127.0.0.1:{prom_port}/-/ready", method="GET", timeout=60))
        prom = Prometheus(f"http://127.0.0.1:{prom_port}")

        def states() -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for a in prom.api("alerts")["alerts"]:
                if a["labels"]["alertname"] in REPLICATION_ALERTS:
                    out.setdefault(a["labels"]["alertname"], set()).add(a["state"])
            return out

        def firing(name: str, **labels: str) -> list[dict]:
            return [a for a in prom.api("alerts")["alerts"] if a["labels"]["alertname"] == name
                    and a["state"] == "firing" and labels.items() <= a["labels"].items()]

        def evaluated_at() -> float:
            """When the rules last ran on scraped data (the role record's timestamp), 0 before."""
            result = prom.query("max(timestamp(alerthistory:redis_is_primary))")
            return float(result[0]["value"][1]) if result else 0.0

        # Healthy: the Sentinels know each other and the replica; every target up; nothing pending.
        def unhealthy() -> list:
            active = prom.active_targets()
            bad = [(t["labels"]["job"], t["labels"]["pod"], t["lastError"]) for t in active if t["health"] != "up"]
            return bad or (["targets missing"] if len(active) < len(targets) else [])

        try:
            wait_until(lambda: not unhealthy(), 60, "every target scraped", interval=0.5)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {unhealthy()}") from exc
        wait_until(lambda: prom.query('min(redis_sentinel_master_ok_sentinels{job="%s"}) >= 3' % SENTINEL_JOB),
                   60, "the Sentinels to find each other", interval=0.5)
        # Evaluations for longer than every `for` (5 s) of the drill values, with nothing pending or firing.
        start = wait_until(evaluated_at, 30, "the rules to run on data")
        wait_until(lambda: evaluated_at() > start + 6, 60, "6 s of rule evaluations", interval=0.5)
        assert states() == {}

        # With the Sentinels frozen (they would repair the replica's configuration within seconds):
        with contextlib.ExitStack() as hung:
            for s in sentinels:
                hung.enter_context(frozen(s))
            # a replica loses its link (it follows a port where nothing listens);
            dead = next(ports)
            replica.execute_command("REPLICAOF", "127.0.0.1", str(dead))
            wait_until(lambda: firing("RedisReplicaLinkDown", pod="alerthistory-redis-1"), 60,
                       "RedisReplicaLinkDown for the replica")
            # then it makes itself a second primary, and HAProxy passes both.
            replica.execute_command("REPLICAOF", "NO", "ONE")
            wait_until(lambda: firing("RedisMultiplePrimaries", job=DATA_JOB), 60, "RedisMultiplePrimaries")
            wait_until(lambda: prom.query('max(haproxy_backend_active_servers{job="%s"}) == 2' % HAPROXY_JOB), 30,
                       "HAProxy to pass both primaries")
            # No Sentinel answers: the count branch of the quorum alert.
            wait_until(lambda: firing("RedisSentinelQuorumUnreachable", namespace=NS), 60,
                       "RedisSentinelQuorumUnreachable with every Sentinel hung")
            replica.execute_command("REPLICAOF", "127.0.0.1", str(p_port))
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 30, "the replica to resync")
        wait_until(lambda: not states(), 90, "the link, split-brain and quorum alerts to resolve")

        # The primary hangs, and no replica may be promoted: no primary, and HAProxy has no live server.
        replica.config_set("replica-priority", 0)
        with frozen(primary_proc):
            wait_until(lambda: firing("RedisNoPrimary", job=DATA_JOB) and firing("RedisHAProxyNoBackend", proxy="redis"),
                       60, "RedisNoPrimary and RedisHAProxyNoBackend")
        replica.config_set("replica-priority", 100)
        wait_until(lambda: not ({"RedisNoPrimary", "RedisHAProxyNoBackend"} & set(states())), 60,
                   "RedisNoPrimary and RedisHAProxyNoBackend to resolve")

        # 2 of 3 Sentinels hang: the one left reports NOQUORUM.
        with frozen(sentinels[1]), frozen(sentinels[2]):
            wait_until(lambda: firing("RedisSentinelQuorumUnreachable", pod="alerthistory-redis-0", master_name="alerthistory"),
                       60, "RedisSentinelQuorumUnreachable from the Sentinel left")
        wait_until(lambda: "RedisSentinelQuorumUnreachable" not in states(), 60, "the quorum alert to resolve")

        # A replica hangs for less than repl-timeout (60 s): the primary's ack lag grows past the drill
        # threshold (5 s) before the primary drops it. (The lag series ends at repl-timeout, which is why the
        # chart's defaults are 20 s for 0s at a 30 s scrape; see docs/runbooks/RedisReplicationLag.md.)
        with frozen(replica_proc):
            wait_until(lambda: firing("RedisReplicationLag", pod="alerthistory-redis-0", slave_ip="127.0.0.1"), 45,
                       "RedisReplicationLag on the primary")
        wait_until(lambda: "RedisReplicationLag" not in states(), 60, "the lag alert to resolve")
