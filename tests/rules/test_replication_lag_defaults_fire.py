"""RedisReplicationLag fires with the chart's defaults (threshold 20 s, `for` 0s) at the default 30 s scrape and
evaluation interval, for a replica that stays silent past repl-timeout: real Prometheus evaluates the rendered
rule over real exporters of a real primary and replica, and the primary really drops the replica at repl-timeout
(60 s), which ends the lag series. See docs/runbooks/RedisReplicationLag.md for why the bound exists.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import port_for
import pytest
import redis
import yaml
from mirakuru import HTTPExecutor

from alert_history_cache import chart, engines
from alert_history_cache.promapi import Prometheus
from alert_history_cache.waiting import wait_until
from helpers.local_stack import engine_or_skip, exporter_or_skip
from helpers.replication import DATA_JOB, NS, frozen, plain_server

from test_exporter_metrics import _exporter

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parent


def test_default_lag_alert_fires_before_repl_timeout_drops_the_replica(tmp_path):
    engine = engine_or_skip("valkey8")
    exporter_or_skip()
    values = yaml.safe_load((RULES_DIR / "values-replication.yaml").read_text())
    [rule] = chart.render(values, release="alerthistory", namespace=NS).of_kind("PrometheusRule")
    [lag] = [r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == "RedisReplicationLag"]
    assert lag["for"] == "0s" and "> 20" in lag["expr"], lag
    scrape = chart.default_values()["valkey"]["exporter"]["serviceMonitor"]["interval"]
    assert scrape == "30s"
    ports = iter(port_for.select_random() for _ in range(8))
    p_port, r_port, pe_port, re_port, prom_port = (next(ports) for _ in range(5))
    with contextlib.ExitStack() as stack:
        stack.enter_context(plain_server(engine, p_port, tmp_path / "primary"))
        replica_proc = stack.enter_context(
            plain_server(engine, r_port, tmp_path / "replica", "--replicaof", "127.0.0.1", str(p_port)))
        primary, replica = redis.Redis(port=p_port), redis.Redis(port=r_port)
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 30, "the replica to sync")
        stack.enter_context(_exporter(p_port, pe_port, None))
        stack.enter_context(_exporter(r_port, re_port, None))
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
        # The chart's defaults: 30 s scrapes, and the rule groups evaluated at the same interval.
        config = {
            "global": {"scrape_interval": scrape, "scrape_timeout": "10s", "evaluation_interval": scrape},
            "rule_files": [str(tmp_path / "rules.yaml")],
            "scrape_configs": [
                {"job_name": pod, "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"job": DATA_JOB, "namespace": NS, "pod": pod}}]}
                for pod, port in (("alerthistory-redis-0", pe_port), ("alerthistory-redis-1", re_port))
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        stack.enter_context(HTTPExecutor(
            [str(engines.PROMETHEUS.binary), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            url=f"http://127.0.0.1:{prom_port}/-/ready", method="GET", timeout=60))
        prom = Prometheus(f"http://127.0.0.1:{prom_port}")
        lag_series = f'redis_connected_slave_lag_seconds{{job="{DATA_JOB}",namespace="{NS}"}}'
        wait_until(lambda: prom.query(lag_series), 90, "the primary's lag series scraped", interval=0.5)

        def firing() -> list[dict]:
            return [a for a in prom.api("alerts")["alerts"] if a["labels"]["alertname"] == "RedisReplicationLag"
                    and a["state"] == "firing" and a["labels"].get("pod") == "alerthistory-redis-0"]

        assert not firing()
        with frozen(replica_proc):
            # Silent for 21 s at the earliest, dropped at 60 s: one 30 s scrape falls in between, whatever the phase.
            wait_until(firing, 60 + 30 + 15, "RedisReplicationLag on the primary before the lag series ends",
                       interval=0.5)
            wait_until(lambda: primary.info("replication")["connected_slaves"] == 0, 75,
                       "the primary to drop the silent replica at repl-timeout", interval=0.5)
            # After repl-timeout the lag series is gone: this alert cannot outlast it (RedisReplicaLinkDown's job).
            wait_until(lambda: not prom.query(lag_series), 60, "the lag series to go stale", interval=0.5)
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 60, "the replica to resync")
