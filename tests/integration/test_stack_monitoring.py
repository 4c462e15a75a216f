"""Prometheus and Alertmanager of the local stack: the exporter target carries the labels Kubernetes service
discovery and the operator give, the chart's rules are loaded, and an alert travels to Alertmanager."""

from __future__ import annotations

import socket

import pytest

from alert_history_cache.monitoring_stack import MonitoringOptions

from alert_history_cache.waiting import wait_until

from helpers.alerts import alertmanager_active, wait_resolved

pytestmark = pytest.mark.integration

VALUES = {
    "valkey": {"exporter": {"serviceMonitor": {"interval": "1s", "scrapeTimeout": "1s"}}},
    "monitoring": {"prometheusRule": {"rateWindow": "10s"}, "rules": {"redisTargetAbsent": {"for": "0s"}}},
}


def test_scrape_job_rules_and_alert_path(make_stack) -> None:
    stack = make_stack(values=VALUES, monitoring=True,
                       monitoring_options=MonitoringOptions(evaluation_interval="1s", resend_delay="1s")).start()
    sm = stack.manifests.get("ServiceMonitor", "alerthistory-redis")
    target = stack.wait_target_up(30)
    assert target["labels"] == {
        "container": "exporter", "endpoint": "metrics", "instance": f"{stack.pod_ip}:9121",
        "job": "alerthistory-redis-metrics", "namespace": "default", "node": socket.gethostname(),
        "pod": "alerthistory-redis-0", "service": "alerthistory-redis-metrics",
    }
    assert target["scrapePool"] == "serviceMonitor/default/alerthistory-redis/0"
    endpoint = sm["spec"]["endpoints"][0]
    assert (target["scrapeInterval"], target["scrapeTimeout"]) == (endpoint["interval"], endpoint["scrapeTimeout"])
    assert target["scrapeUrl"] == f"http://{stack.pod_ip}:9121{endpoint['path']}"
    up = stack.query('redis_up{job="alerthistory-redis-metrics"}')
    assert [r["value"][1] for r in up] == ["1"], "the exporter logs in as its ACL user"

    rendered = {g["name"]: len(g["rules"]) for pr in stack.manifests.of_kind("PrometheusRule")
                for g in pr["spec"]["groups"]}
    loaded = {g["name"]: len(g["rules"]) for g in stack.prometheus_api("rules")["groups"]}
    assert loaded == rendered and rendered
    ams = stack.prometheus_api("alertmanagers")["activeAlertmanagers"]
    assert [a["url"] for a in ams] == [f"{stack.alertmanager_url}/api/v2/alerts"]

    # Deleting the pod removes its Endpoints: the target disappears, RedisTargetAbsent (for: 0s here) fires
    # and reaches Alertmanager; the successor pod brings the target back and the alert resolves.
    stack.delete_pod()
    alert = wait_until(lambda: alertmanager_active(stack, "RedisTargetAbsent"), 40, "RedisTargetAbsent",
                       interval=0.25)[0]
    assert alert["labels"]["pod"] == "alerthistory-redis-0" and alert["labels"]["severity"] == "critical"
    assert alert["status"]["state"] == "active"
    stack.create_pod()
    stack.wait_ready(30)
    stack.wait_target_up(30)
    wait_resolved(stack, "RedisTargetAbsent", 40)
