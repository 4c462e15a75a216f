"""The local stack turns the chart's Probe into the scrape job prometheus-operator generates for it (job name,
module param, the target as __param_target and instance, the prober as __address__, then the Probe's own
relabelings), with the prober replaced by the local blackbox exporter, and writes that exporter's module: a
TCP connect with a verified TLS handshake against the stack's CA."""

from __future__ import annotations

from pathlib import Path

from alert_history_cache import chart
from alert_history_cache.credentials import TlsFiles
from alert_history_cache.monitoring_stack import Monitoring

VALUES = {"fullnameOverride": "alerthistory",
          "valkey": {"tls": {"enabled": True, "existingSecret": "cache-tls", "authClients": "yes",
                             "expiryProbe": {"enabled": True, "proberUrl": "bb.monitoring.svc:9115", "module": "m1"}}}}


def test_the_probe_becomes_the_operators_job_against_the_local_prober(tmp_path):
    monitoring = Monitoring(chart.render(VALUES), [], tmp_path,
                            tls_files=TlsFiles(ca=Path("/ca.crt"), cert=Path("/c.crt"), key=Path("/c.key")))
    monitoring.blackbox_port = 19115
    [job] = monitoring.probe_configs()
    assert job["job_name"] == "probe/default/alerthistory-redis-tls"
    assert job["params"] == {"module": ["m1"]} and job["metrics_path"] == "/probe"
    assert job["static_configs"] == [{"targets": [
        "alerthistory-redis-0.alerthistory-redis-headless.default.svc.cluster.local:6379"],
        "labels": {"namespace": "default"}}]
    rules = job["relabel_configs"]
    assert {"target_label": "job", "replacement": "alerthistory-redis-tls"} in rules
    assert {"target_label": "__address__", "replacement": "127.0.0.1:19115"} in rules
    # The Probe's own relabelings (the pod and port labels) come after the operator's.
    assert rules[-2:] == [{"source_labels": ["__param_target"], "regex": "([^.]+)\\..*", "target_label": "pod",
                           "replacement": "${1}"},
                          {"source_labels": ["__param_target"], "regex": ".*:([0-9]+)", "target_label": "port",
                           "replacement": "${1}"}]
    assert monitoring.blackbox_config() == {"modules": {"m1": {"prober": "tcp", "tcp": {
        "preferred_ip_protocol": "ip4", "tls": True,
        "tls_config": {"ca_file": "/ca.crt", "cert_file": "/c.crt", "key_file": "/c.key"}}}}}


def test_no_probe_no_job(tmp_path):
    monitoring = Monitoring(chart.render({"fullnameOverride": "alerthistory"}), [], tmp_path)
    assert monitoring.probe_configs() == [] and monitoring.blackbox_config() == {"modules": {}}
