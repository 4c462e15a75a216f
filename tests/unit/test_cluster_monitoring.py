"""Prometheus' scrape config comes from the ServiceMonitor's endpoints across all pods: every pod the
metrics Service selects is a target at its own address with its own `pod` label (what the operator's
endpoints discovery would give), and a pod that is gone has no target."""

from __future__ import annotations

from alert_history_cache import chart
from alert_history_cache.monitoring_stack import Monitoring, PodInfo
from alert_history_cache.workloads import StatefulSetController

VALUES = {"fullnameOverride": "alerthistory", "monitoring": {"prometheusEnabled": True}}


def pods(manifests, n: int) -> list[PodInfo]:
    # The chart refuses replicas > 1 until replication lands; the StatefulSet controller plans any count.
    sts = StatefulSetController(manifests.get("StatefulSet", "alerthistory-redis"))
    plans = [sts.plan(i) for i in range(n)]
    return [PodInfo(name=p.name, namespace=p.namespace, ip=f"10.244.{i + 1}.2", labels=p.labels,
                    containers=p.spec["containers"]) for i, p in enumerate(plans)]


def test_every_pod_is_a_target_with_its_own_pod_label(tmp_path) -> None:
    manifests = chart.render(VALUES)
    monitoring = Monitoring(manifests, pods(manifests, 3), tmp_path)
    (job,) = monitoring.scrape_configs()
    targets = job["static_configs"]
    assert [t["targets"] for t in targets] == [["10.244.1.2:9121"], ["10.244.2.2:9121"], ["10.244.3.2:9121"]]
    assert [t["labels"]["__meta_kubernetes_pod_name"] for t in targets] == \
        ["alerthistory-redis-0", "alerthistory-redis-1", "alerthistory-redis-2"]
    assert {t["labels"]["__meta_kubernetes_service_name"] for t in targets} == {"alerthistory-redis-metrics"}
    relabel = {(tuple(r.get("source_labels", [])), r.get("target_label")) for r in job["relabel_configs"]}
    assert (("__meta_kubernetes_pod_name",), "pod") in relabel


def test_a_deleted_pod_has_no_target(tmp_path) -> None:
    manifests = chart.render(VALUES)
    three = pods(manifests, 3)
    monitoring = Monitoring(manifests, three, tmp_path)
    monitoring.set_pods([three[0], three[2]])  # not started: only the model changes
    (job,) = monitoring.scrape_configs()
    assert [t["labels"]["__meta_kubernetes_pod_name"] for t in job["static_configs"]] == \
        ["alerthistory-redis-0", "alerthistory-redis-2"]
