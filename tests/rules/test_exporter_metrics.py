"""Every metric the chart's alerts and dashboard read is one that redis_exporter really exports.

A real primary and replica (each engine), each with a real redis_exporter logged in as the chart's exporter
ACL user, driven into the states the rules look at (keys with TTLs, hits and misses, slow commands, an OOM
error); then the union of the metric names of both /metrics pages must contain every name used.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import port_for
import pytest
import redis
from mirakuru import HTTPExecutor, TCPExecutor

from alert_history_cache import chart, engines
from alert_history_cache.waiting import wait_until
from helpers.local_stack import engine_or_skip, exporter_or_skip
from helpers.metrics import sample_names, scrape

sys.path.insert(0, str(chart.REPO_ROOT))
from dashboards import cache_dashboard  # noqa: E402

pytestmark = pytest.mark.integration

RECORDS = {"alerthistory:redis_container_memory_limit_bytes"}
PROMETHEUS_OWN = {"up", "ALERTS", "time"}  # series or functions of Prometheus itself, not of the exporter
EXPORTER_PASSWORD = "exporter-test-password"


def used_metric_names() -> dict[str, str]:
    """metric name -> where it is used (rule or panel)."""
    m = chart.render({"fullnameOverride": "alerthistory"})
    [rule] = m.of_kind("PrometheusRule")
    exprs = [(r.get("alert") or r.get("record"), r["expr"]) for g in rule["spec"]["groups"] for r in g["rules"]]
    exprs += [(f"panel {t.panel}", t.expr) for t in cache_dashboard.targets()]
    names = {}
    for where, expr in exprs:
        # Identifiers followed by a selector, or a range; label values inside "" are stripped first.
        bare = re.sub(r'"[^"]*"', '""', expr)
        for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", bare):
            names.setdefault(name, where)
    return names


def exporter_acl(manifests: chart.Manifests) -> list[str]:
    """ACL SETUSER arguments of the chart's exporter user, with a test password instead of the Secret."""
    tpl = manifests.get("ConfigMap", "alerthistory-redis-config")["data"]["users.acl.tpl"]
    [line] = [l for l in tpl.splitlines() if l.startswith("user exporter ")]
    tokens = line.split()[1:]
    return [f">{EXPORTER_PASSWORD}" if t.startswith("@secret:") else t for t in tokens]


def _server(engine: engines.Engine, port: int, data: Path, *extra: str) -> TCPExecutor:
    data.mkdir()
    cmd = [
        str(engine.server), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
        "--appendonly", "yes", "--maxmemory", "4mb", "--maxmemory-policy", "noeviction",
        "--slowlog-log-slower-than", "0", "--repl-diskless-sync-delay", "0", *extra,
    ]
    return TCPExecutor(cmd, host="127.0.0.1", port=port, timeout=30)


def _exporter(redis_port: int, port: int) -> HTTPExecutor:
    cmd = [
        str(engines.EXPORTER.binary), "-redis.addr", f"redis://127.0.0.1:{redis_port}",
        "-web.listen-address", f"127.0.0.1:{port}",
    ]
    # The password reaches the exporter through its environment, never argv (the pod itself reads a file
    # that config-init writes, REDIS_PASSWORD_FILE; the metric names do not depend on how it logs in).
    env = {"REDIS_USER": "exporter", "REDIS_PASSWORD": EXPORTER_PASSWORD, "PATH": "/usr/bin:/bin"}
    return HTTPExecutor(cmd, url=f"http://127.0.0.1:{port}/metrics", timeout=30, envvars=env)


@pytest.mark.parametrize("engine_name", ["valkey8", "redis7"])
def test_rules_and_dashboard_use_only_exported_metrics(engine_name, tmp_path):
    engine = engine_or_skip(engine_name)
    exporter_or_skip()
    p_port, r_port, pe_port, re_port = (port_for.select_random() for _ in range(4))
    acl = exporter_acl(chart.render({"fullnameOverride": "alerthistory"}))
    with _server(engine, p_port, tmp_path / "primary"), _server(
        engine, r_port, tmp_path / "replica", "--replicaof", "127.0.0.1", str(p_port)
    ):
        primary, replica = redis.Redis(port=p_port), redis.Redis(port=r_port)
        for client in (primary, replica):
            client.execute_command("ACL", "SETUSER", *acl)
        primary.set("hit", "1", ex=3600)
        primary.get("hit")
        primary.get("miss")
        # Fill past maxmemory under noeviction: the next write fails with OOM (errorstat_OOM appears).
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(10_000):
                primary.set(f"fill:{i}", "x" * 4096)
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 20,
                   "the replica to sync", interval=0.2)
        with _exporter(p_port, pe_port), _exporter(r_port, re_port):
            page = scrape(f"http://127.0.0.1:{pe_port}/metrics")
            exported = sample_names(page) | sample_names(scrape(f"http://127.0.0.1:{re_port}/metrics"))
    assert "redis_up 1" in page, "the exporter could not log in as the chart's exporter user"
    assert 'redis_errors_total{err="OOM"}' in page
    assert re.search(r'redis_instance_info\{[^}]*maxmemory_policy="noeviction"', page)
    used = used_metric_names()
    missing = {
        name: where for name, where in used.items() if name not in exported | RECORDS | PROMETHEUS_OWN
    }
    assert not missing, f"used but not exported by redis_exporter {engines.EXPORTER.version}: {missing}"
    assert len(used) >= 30, sorted(used)
