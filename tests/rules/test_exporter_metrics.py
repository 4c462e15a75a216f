"""Every metric the chart's alerts and dashboard read is one that redis_exporter really exports.

A real primary and replica (each engine), each with a real redis_exporter logged in as the chart's exporter
ACL user, driven into the states the rules look at (keys with TTLs, hits and misses, slow commands, an OOM
error); a real Sentinel monitoring them with its own redis_exporter (the exporter finds out from INFO that its
target is a Sentinel: 1.45 has no flag for it), and a real HAProxy whose tcp-check routes to the server that
answers role:master, serving its Prometheus metrics. The union of the metric names of the four /metrics
pages must contain every name the rules (of a replication render, a superset of the default one) and the
dashboard use, and the series the replication alerts read must carry the labels and values they assume.
"""

from __future__ import annotations

import re
import shutil
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

RECORDS = {"alerthistory:redis_container_memory_limit_bytes", "alerthistory:redis_is_primary"}
PROMETHEUS_OWN = {"up", "ALERTS", "time"}  # series or functions of Prometheus itself, not of the exporter
EXPORTER_PASSWORD = "exporter-test-password"
SENTINEL_PASSWORD = "sentinel-test-password"
REPLICATION = {"fullnameOverride": "alerthistory", "valkey": {"architecture": "replication", "replicas": 3}}


def used_metric_names() -> dict[str, str]:
    """metric name -> where it is used (rule or panel)."""
    m = chart.render(REPLICATION)
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


def _exporter(redis_port: int, port: int, user: str | None = "exporter", password: str = EXPORTER_PASSWORD) -> HTTPExecutor:
    cmd = [
        str(engines.EXPORTER.binary), "-redis.addr", f"redis://127.0.0.1:{redis_port}",
        "-web.listen-address", f"127.0.0.1:{port}",
    ]
    # The password reaches the exporter through its environment, never argv (the pod itself reads a file
    # that config-init writes, REDIS_PASSWORD_FILE; the metric names do not depend on how it logs in).
    env = {"REDIS_USER": user, "REDIS_PASSWORD": password, "PATH": "/usr/bin:/bin"} if user else {"PATH": "/usr/bin:/bin"}
    return HTTPExecutor(cmd, url=f"http://127.0.0.1:{port}/metrics", timeout=30, envvars=env)


def _sentinel(engine: engines.Engine, port: int, primary_port: int, d: Path) -> TCPExecutor:
    """A Sentinel as the chart runs it (no default user; a `sentinel` user), with a quorum of 2 that this lone
    Sentinel cannot reach: SENTINEL CKQUORUM fails, as it does when 2 of 3 Sentinels are gone."""
    d.mkdir()
    conf = d / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {d}\n"
        f"user default off resetpass -@all\nuser sentinel on >{SENTINEL_PASSWORD} ~* &* +@all\n"
        f"sentinel monitor alerthistory 127.0.0.1 {primary_port} 2\n"
    )
    return TCPExecutor([str(engine.server), str(conf), "--sentinel"], host="127.0.0.1", port=port, timeout=30)


def _haproxy(port: int, metrics_port: int, servers: dict[str, int], d: Path) -> HTTPExecutor:
    """HAProxy routing to the server that answers role:master, with its Prometheus exporter on a stats frontend."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy missing (Debian package haproxy)")
    lines = [
        "global", "  maxconn 100",
        "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 30s", "  timeout server 30s",
        "frontend stats", "  mode http", f"  bind 127.0.0.1:{metrics_port}",
        "  http-request use-service prometheus-exporter if { path /metrics }",
        "frontend redis", f"  bind 127.0.0.1:{port}", "  default_backend redis",
        "backend redis", "  option tcp-check",
        "  tcp-check send PING\\r\\n", "  tcp-check expect string +PONG",
        '  tcp-check send "INFO replication\\r\\n"', "  tcp-check expect string role:master",
        "  tcp-check send QUIT\\r\\n", "  tcp-check expect string +OK",
        *(f"  server {name} 127.0.0.1:{p} check inter 500ms fall 2 rise 1" for name, p in servers.items()),
    ]
    d.mkdir()
    (d / "haproxy.cfg").write_text("\n".join(lines) + "\n")
    return HTTPExecutor([haproxy, "-db", "-f", str(d / "haproxy.cfg")], url=f"http://127.0.0.1:{metrics_port}/metrics",
                        timeout=30)


def _page_when(url: str, name: str, at_least: float, **labels: str) -> str | None:
    """The page, once the sum of `name` over its series (those with these labels) reaches `at_least`."""
    page = scrape(url)
    total = sum(v for have, v in _samples(page, name) if labels.items() <= have.items())
    return page if total >= at_least else None


def _samples(page: str, name: str) -> list[tuple[dict, float]]:
    """(labels, value) of every sample of `name` on the page."""
    out = []
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{(.*?)\}})? (\S+)$", page, re.M):
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        out.append((labels, float(m.group(2))))
    return out


@pytest.mark.parametrize("engine_name", ["valkey8", "redis7"])
def test_rules_and_dashboard_use_only_exported_metrics(engine_name, tmp_path):
    engine = engine_or_skip(engine_name)
    exporter_or_skip()
    p_port, r_port, pe_port, re_port, s_port, se_port, h_port, hm_port = (port_for.select_random() for _ in range(8))
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
        servers = {"redis-0": p_port, "redis-1": r_port}
        with _sentinel(engine, s_port, p_port, tmp_path / "sentinel"), _haproxy(
            h_port, hm_port, servers, tmp_path / "haproxy"
        ), _exporter(p_port, pe_port), _exporter(r_port, re_port), _exporter(
            s_port, se_port, "sentinel", SENTINEL_PASSWORD
        ):
            page = scrape(f"http://127.0.0.1:{pe_port}/metrics")
            replica_page = scrape(f"http://127.0.0.1:{re_port}/metrics")
            # The Sentinel learns the replica from the primary's INFO (every 10 s), HAProxy checks every 500 ms.
            sentinel_page = wait_until(
                lambda: _page_when(f"http://127.0.0.1:{se_port}/metrics", "redis_sentinel_master_slaves", 1), 30,
                "the Sentinel exporter to see the replica", interval=0.5)
            # Both servers checked: the replica DOWN (it fails `expect string role:master`).
            haproxy_page = wait_until(
                lambda: _page_when(f"http://127.0.0.1:{hm_port}/metrics", "haproxy_server_status", 1, state="DOWN"),
                30, "HAProxy's check to take the replica out", interval=0.5)
            exported = set().union(*(sample_names(p) for p in (page, replica_page, sentinel_page, haproxy_page)))
    assert "redis_up 1" in page, "the exporter could not log in as the chart's exporter user"
    assert 'redis_errors_total{err="OOM"}' in page
    assert re.search(r'redis_instance_info\{[^}]*maxmemory_policy="noeviction"', page)
    used = used_metric_names()
    missing = {
        name: where for name, where in used.items() if name not in exported | RECORDS | PROMETHEUS_OWN
    }
    assert not missing, f"used but not exported by redis_exporter {engines.EXPORTER.version} or HAProxy: {missing}"
    assert len(used) >= 40, sorted(used)
    assert "haproxy_process_uptime_seconds" in exported  # the dashboard's Pod variable lists HAProxy pods by it

    # What the replication alerts assume of these series.
    roles = {labels["role"] for labels, _ in _samples(page, "redis_instance_info")}
    assert roles == {"master"}
    assert {labels["role"] for labels, _ in _samples(replica_page, "redis_instance_info")} == {"slave"}
    assert "redis_master_link_up" not in sample_names(page), "the primary has no link series"
    [(link, up)] = _samples(replica_page, "redis_master_link_up")
    assert up == 1 and set(link) == {"master_host", "master_port"}
    # The primary's offsets and its replica's acknowledged offset: the dashboard's offset lag.
    [(_, offset)] = _samples(page, "redis_master_repl_offset")
    [(slave, acked)] = _samples(page, "redis_connected_slave_offset_bytes")
    assert 0 <= offset - acked and {"slave_ip", "slave_port", "slave_state"} <= set(slave)
    # A Sentinel's own INFO has no role: its redis_instance_info never counts as a primary.
    assert {labels.get("role") for labels, _ in _samples(sentinel_page, "redis_instance_info")} <= {"", None}
    [(quorum, status)] = _samples(sentinel_page, "redis_sentinel_master_ckquorum_status")
    assert status == 0 and quorum["master_name"] == "alerthistory" and quorum["message"].startswith("NOQUORUM")
    assert _samples(sentinel_page, "redis_sentinel_masters")[0][1] == 1
    # HAProxy: exactly the primary passes the role:master check.
    assert _samples(haproxy_page, "haproxy_backend_active_servers") == [({"proxy": "redis"}, 1.0)]
    up_servers = {l["server"] for l, v in _samples(haproxy_page, "haproxy_server_status") if l["state"] == "UP" and v}
    assert up_servers == {"redis-0"}
