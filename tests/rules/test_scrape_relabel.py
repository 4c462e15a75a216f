"""What real Prometheus makes of the scrape job the local stack generates from a ServiceMonitor: the Services the
selector does not pick are dropped, the kept target ends with the labels the Prometheus Operator's rules give it
(namespace, service, pod, container, endpoint, job from jobLabel, targetLabels, podTargetLabels, the
ServiceMonitor's own relabelings), and metricRelabelings drop series at scrape time.

The pod is a local HTTP server on 127.0.0.1 standing in for the exporter, so this needs no root and no Valkey;
the rule list itself is checked in tests/unit/test_monitoring_scrape.py."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest
import yaml

from alert_history_cache import chart, engines
from alert_history_cache.monitoring_stack import Monitoring, MonitoringOptions, PodInfo
from alert_history_cache.promapi import Prometheus
from alert_history_cache.waiting import wait_until

NS = "cache"
PAGE = b"# TYPE redis_up gauge\nredis_up 1\n# TYPE go_goroutines gauge\ngo_goroutines 7\n"


class _Exporter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


@pytest.fixture
def exporter_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def service(name: str, component: str, port: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"app.kubernetes.io/name": "alert-history", "app.kubernetes.io/component": component,
                                    "tier": "cache"}},
            "spec": {"selector": {"app.kubernetes.io/component": "redis"},
                     "ports": [{"name": "metrics", "port": port, "targetPort": "metrics"}]}}


def service_monitor() -> dict:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "alerthistory-redis", "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/component": "redis-metrics"}},
                     "jobLabel": "app.kubernetes.io/name", "targetLabels": ["tier"], "podTargetLabels": ["team"],
                     "endpoints": [{"port": "metrics", "interval": "1s", "scrapeTimeout": "1s",
                                    "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"],
                                                     "targetLabel": "node", "action": "replace"}],
                                    "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*",
                                                           "action": "drop"}]}]}}


@pytest.fixture
def monitoring(exporter_port, tmp_path):
    try:
        engines.PROMETHEUS.binary  # noqa: B018 - raises when missing
        engines.ALERTMANAGER.binary  # noqa: B018
    except engines.MissingBinary as exc:
        pytest.skip(str(exc))
    objects = [service_monitor(), service("alerthistory-redis-metrics", "redis-metrics", exporter_port),
               service("unselected-metrics", "web-metrics", exporter_port)]
    pod = PodInfo(name="alerthistory-redis-0", namespace=NS, ip="127.0.0.1",
                  labels={"app.kubernetes.io/component": "redis", "team": "sre"},
                  containers=[{"name": "exporter", "ports": [{"name": "metrics", "containerPort": exporter_port}]}])
    m = Monitoring(chart.Manifests(templates={"objects.yaml": yaml.safe_dump_all(objects)}), [pod], tmp_path,
                   MonitoringOptions(evaluation_interval="1s"))
    m.start()
    try:
        yield m
    finally:
        m.stop()


def test_prometheus_applies_the_operators_relabeling(monitoring, exporter_port):
    prom = Prometheus(monitoring.prometheus_url)
    # New targets reach Prometheus' scrapers every 5 s, then the first scrape follows within the 1 s interval.
    (target,) = wait_until(lambda: [t for t in prom.active_targets() if t["health"] == "up"], 30,
                           "the selected Service's target to be scraped")
    assert target["labels"] == {
        "container": "exporter", "endpoint": "metrics", "instance": f"127.0.0.1:{exporter_port}",
        "job": "alert-history",  # jobLabel: the Service's app.kubernetes.io/name, not its name
        "namespace": NS, "node": socket.gethostname(), "pod": "alerthistory-redis-0",
        "service": "alerthistory-redis-metrics", "team": "sre", "tier": "cache"}
    assert target["scrapePool"] == f"serviceMonitor/{NS}/alerthistory-redis/0"

    dropped = prom.api("targets", state="dropped")["droppedTargets"]
    assert [t["discoveredLabels"]["__meta_kubernetes_service_name"] for t in dropped] == ["unselected-metrics"]

    (up,) = wait_until(lambda: prom.query("redis_up"), 10, "redis_up to be stored")
    assert up["metric"]["job"] == "alert-history" and up["value"][1] == "1"
    assert prom.query("go_goroutines") == [], "metricRelabelings drop go_* at scrape time"
