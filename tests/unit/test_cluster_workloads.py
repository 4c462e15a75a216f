"""The controllers' pod plans from rendered charts: StatefulSet pod names, labels, stable identities and PVC
names, the start order podManagementPolicy dictates, Deployment pod names; the Services' model."""

from __future__ import annotations

from pathlib import Path

import pytest

from alert_history_cache import chart
from alert_history_cache.cluster import LocalCluster, proxy_table
from alert_history_cache.kube import KubeError, Objects
from alert_history_cache.services import Service
from alert_history_cache.workloads import DeploymentController, StatefulSetController, controllers

TRIO = Path(__file__).resolve().parents[1] / "charts" / "valkey-trio"


def trio(**values):
    return chart.render(values, release="trio", namespace="cache", chart_dir=TRIO)


def test_statefulset_plans_every_replica_with_its_identity_and_pvc() -> None:
    (sts,) = controllers(trio())
    assert isinstance(sts, StatefulSetController) and sts.ordered
    plans = sts.plans()
    assert [p.name for p in plans] == ["trio-0", "trio-1", "trio-2"]
    for i, p in enumerate(plans):
        assert p.hostname == p.name and p.subdomain == "trio-headless" and p.namespace == "cache"
        assert p.labels["statefulset.kubernetes.io/pod-name"] == p.name
        assert p.labels["apps.kubernetes.io/pod-index"] == str(i) and p.labels["app"] == "trio"
        assert p.claim_name("data") == f"data-{p.name}" and p.ordinal == i
    assert plans[0].spec is not plans[1].spec, "each pod gets its own copy of the template"


def test_pod_management_policy() -> None:
    (parallel,) = controllers(trio(podManagementPolicy="Parallel"))
    assert parallel.ordered is False
    bad = StatefulSetController({"metadata": {"name": "x"}, "spec": {"podManagementPolicy": "Random"}})
    with pytest.raises(KubeError, match="podManagementPolicy 'Random'"):
        bad.ordered  # noqa: B018


def test_the_alert_history_chart_renders_one_pod_behind_the_client_service() -> None:
    manifests = chart.render({"fullnameOverride": "alerthistory"})
    plans = [p for c in controllers(manifests) for p in c.plans()]
    assert [p.name for p in plans] == ["alerthistory-redis-0"]
    services = {s["metadata"]["name"]: Service.from_manifest(s, "default") for s in manifests.of_kind("Service")}
    headless = services["alerthistory-redis-headless"]
    assert headless.headless and headless.publish_not_ready
    client = services["alerthistory-redis"]
    assert not client.headless and client.selects(plans[0].labels)
    assert client.target_port(client.ports[0], plans[0].spec["containers"]) == 6379  # named port "redis"
    assert services["alerthistory-redis-metrics"].target_port(services["alerthistory-redis-metrics"].ports[0],
                                                              plans[0].spec["containers"]) == 9121


def test_deployment_pods_get_a_new_name_each_time() -> None:
    dep = DeploymentController({"metadata": {"name": "web", "namespace": "ns"},
                                "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}},
                                                                     "spec": {"containers": [{"name": "c"}]}}}})
    a, b = dep.plans()
    assert a.name != b.name and a.name.startswith(f"web-{dep.template_hash}-") and len(a.name.split("-")[-1]) == 5
    assert a.labels == {"app": "web", "pod-template-hash": dep.template_hash} and a.subdomain is None
    assert dep.plan().name not in (a.name, b.name)


def test_cluster_layout_single_pod_at_the_top_several_pods_in_their_folders(tmp_path) -> None:
    one = LocalCluster(chart.render({"fullnameOverride": "alerthistory"}), tmp_path, bin_dir=tmp_path,
                       objects=Objects(chart.render({"fullnameOverride": "alerthistory"})))
    assert one.single and one.pod_dir("alerthistory-redis-0") == tmp_path.resolve()
    assert one.log_path("alerthistory-redis-0", "valkey") == tmp_path.resolve() / "logs" / "valkey.log"
    three = LocalCluster(trio(), tmp_path, bin_dir=tmp_path, objects=Objects(trio()))
    assert not three.single and three.pod_dir("trio-1") == tmp_path.resolve() / "pods" / "trio-1"
    assert three.log_path("trio-1", "valkey") == tmp_path.resolve() / "logs" / "trio-1.valkey.log"
    assert proxy_table(tmp_path) == proxy_table(tmp_path / ".") != proxy_table(tmp_path / "other")
    assert proxy_table(tmp_path).startswith("ahc_")


def test_no_workload_is_a_clear_error(tmp_path) -> None:
    lite = chart.render({"profile": "lite"})
    with pytest.raises(KubeError, match="no StatefulSet or Deployment"):
        LocalCluster(lite, tmp_path, bin_dir=tmp_path, objects=Objects(lite))


def test_services_become_proxied_services_with_resolved_target_ports(tmp_path) -> None:
    manifests = chart.render({"fullnameOverride": "alerthistory"})
    cluster = LocalCluster(manifests, tmp_path, bin_dir=tmp_path, objects=Objects(manifests))
    for i, svc in enumerate(s for s in cluster.services if not s.headless):
        svc.cluster_ip = f"10.96.7.{i + 2}"
    proxied = {p.name: p for p in cluster.proxied()}
    assert set(proxied) == {"alerthistory-redis", "alerthistory-redis-metrics"}, "headless Services are not proxied"
    (redis_port,) = proxied["alerthistory-redis"].ports
    assert (redis_port.name, redis_port.port, redis_port.target_port) == ("redis", 6379, 6379)
    assert proxied["alerthistory-redis-metrics"].ports[0].target_port == 9121
    assert all(p.endpoints == () for p in proxied.values()), "no pod is Ready before start"
    script = cluster.proxy.ruleset(proxied.values())
    assert f"table ip {proxy_table(tmp_path)}" in script and "10.96.7.2" in script


def test_a_cronjob_run_is_one_job_pod_named_as_kubernetes_names_it() -> None:
    from alert_history_cache.workloads import cronjob

    m = chart.render({"fullnameOverride": "alerthistory", "backup": {"enabled": True}})
    controller = cronjob(m)
    plan = controller.plan(now=60 * 29_000_000 + 5)
    assert plan.owner_kind == "Job" and plan.owner == "alerthistory-redis-backup-29000000"
    assert plan.name.startswith("alerthistory-redis-backup-29000000-") and len(plan.name.rsplit("-", 1)[1]) == 5
    assert plan.labels["batch.kubernetes.io/job-name"] == plan.owner
    assert plan.labels["app.kubernetes.io/component"] == "backup"
    assert plan.spec["restartPolicy"] == "Never" and plan.claims == []
    assert controller.plan().name != controller.plan().name  # a new pod name each run


def test_no_cronjob_is_a_clear_error() -> None:
    from alert_history_cache.workloads import cronjob

    with pytest.raises(KubeError, match=r"renders none \(backups need backup.enabled: true\)"):
        cronjob(chart.render({"fullnameOverride": "alerthistory"}))


def test_a_job_pod_that_would_restart_is_refused() -> None:
    from alert_history_cache.workloads import CronJobController

    obj = {"metadata": {"name": "x"}, "spec": {"jobTemplate": {"spec": {"template": {
        "metadata": {}, "spec": {"restartPolicy": "Always", "containers": [{"name": "c"}]}}}}}}
    with pytest.raises(KubeError, match="restartPolicy must be Never or OnFailure, not 'Always'"):
        CronJobController(obj).plan()
