"""monitoring_stack.py without servers: a ServiceMonitor becomes the scrape job the Prometheus Operator would
generate (job name, interval, timeout, path, relabel rules in the operator's order), ServiceMonitor relabelings
translate to Prometheus relabel_configs, and the static targets that stand in for Kubernetes service discovery
carry the `__meta_kubernetes_*` labels discovery would set. `promtool check config` (real Prometheus) accepts
what is generated. What Prometheus makes of these rules on real targets is checked in
tests/rules/test_scrape_relabel.py."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from alert_history_cache import chart
from alert_history_cache.monitoring_stack import Monitoring, MonitoringOptions, PodInfo, relabel

NS = "cache"
POD_LABELS = {"app.kubernetes.io/name": "alert-history", "app.kubernetes.io/component": "redis", "team": "sre"}
CONTAINERS = [{"name": "valkey", "ports": [{"name": "redis", "containerPort": 6379}]},
              {"name": "exporter", "ports": [{"name": "metrics", "containerPort": 9121}]}]
POD = PodInfo(name="alerthistory-redis-0", namespace=NS, ip="10.244.0.7", labels=POD_LABELS, containers=CONTAINERS)


def service(name: str, labels: dict, port: str, number: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"selector": {"app.kubernetes.io/component": "redis"},
                     "ports": [{"name": port, "port": number, "targetPort": port}]}}


METRICS_SERVICE = service("alerthistory-redis-metrics", {"app.kubernetes.io/name": "alert-history",
                                                         "app.kubernetes.io/component": "redis-metrics",
                                                         "tier": "cache"}, "metrics", 9121)
CLIENT_SERVICE = service("alerthistory-redis", {"app.kubernetes.io/component": "redis"}, "redis", 6379)


def service_monitor(spec: dict, name: str = "alerthistory-redis") -> dict:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def jobs(*objects: dict, pod: PodInfo = POD, tmp_path=None, options: MonitoringOptions | None = None) -> list[dict]:
    manifests = chart.Manifests(templates={"objects.yaml": yaml.safe_dump_all(objects)})
    return Monitoring(manifests, [pod], tmp_path, options).scrape_configs()


SELECTOR = {"matchLabels": {"app.kubernetes.io/component": "redis-metrics"}}
FULL_SPEC = {
    "selector": SELECTOR,
    "jobLabel": "app.kubernetes.io/name",
    "targetLabels": ["tier"],
    "podTargetLabels": ["team"],
    "endpoints": [{
        "port": "metrics", "interval": "15s", "scrapeTimeout": "5s", "path": "/metrics",
        "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node",
                         "action": "replace"}],
        "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
    }],
}


# -- the job --------------------------------------------------------------------------------------------

def test_one_job_per_endpoint_named_and_timed_like_the_operators(tmp_path):
    spec = {**FULL_SPEC, "endpoints": [FULL_SPEC["endpoints"][0], {"port": "metrics", "path": "/other",
                                                                   "scheme": "https", "honorLabels": True,
                                                                   "params": {"module": ["x"]}}]}
    first, second = jobs(service_monitor(spec), METRICS_SERVICE, tmp_path=tmp_path,
                         options=MonitoringOptions(scrape_interval="45s"))
    assert first["job_name"] == f"serviceMonitor/{NS}/alerthistory-redis/0"
    assert (first["scrape_interval"], first["scrape_timeout"], first["metrics_path"], first["scheme"],
            first["honor_labels"]) == ("15s", "5s", "/metrics", "http", False)
    assert first["metric_relabel_configs"] == [{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}]
    assert second["job_name"] == f"serviceMonitor/{NS}/alerthistory-redis/1"
    assert (second["scrape_interval"], second["metrics_path"], second["scheme"], second["honor_labels"],
            second["params"]) == ("45s", "/other", "https", True, {"module": ["x"]})
    assert "scrape_timeout" not in second, "without scrapeTimeout Prometheus' default applies"


# -- relabel rules --------------------------------------------------------------------------------------

JOB_TMP = {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}
PORT_KEEP = {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": "metrics"}
TARGET_KIND = [{"source_labels": ["__meta_kubernetes_endpoint_address_target_kind",
                                  "__meta_kubernetes_endpoint_address_target_name"],
                "separator": ";", "regex": f"{kind};(.*)", "replacement": "${1}", "target_label": kind.lower()}
               for kind in ("Node", "Pod")]
STANDARD = [
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
    {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
]
JOB_FROM_SERVICE = {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job",
                    "replacement": "${1}"}


def keep_label(key: str, values: str) -> dict:
    """The operator's rule for a matchLabels entry or an In expression on a Service label."""
    return {"action": "keep", "source_labels": [f"__meta_kubernetes_service_label_{key}",
                                                f"__meta_kubernetes_service_labelpresent_{key}"],
            "regex": f"({values});true"}


def test_relabel_rules_are_the_operators_in_its_order(tmp_path):
    """Selector, port, node/pod, namespace/service/pod/container, running filter, targetLabels, podTargetLabels,
    job from the Service name then from jobLabel, endpoint, then the endpoint's own relabelings: the sequence
    the Prometheus Operator writes for this ServiceMonitor (pkg/prometheus/promcfg.go)."""
    (job,) = jobs(service_monitor(FULL_SPEC), METRICS_SERVICE, tmp_path=tmp_path)
    assert job["relabel_configs"] == [
        JOB_TMP,
        keep_label("app_kubernetes_io_component", "redis-metrics"),
        PORT_KEEP,
        *TARGET_KIND,
        *STANDARD,
        {"source_labels": ["__meta_kubernetes_service_label_tier"], "target_label": "tier", "regex": "(.+)",
         "replacement": "${1}"},
        {"source_labels": ["__meta_kubernetes_pod_label_team"], "target_label": "team", "regex": "(.+)",
         "replacement": "${1}"},
        JOB_FROM_SERVICE,
        {"source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"], "target_label": "job",
         "regex": "(.+)", "replacement": "${1}"},
        {"target_label": "endpoint", "replacement": "metrics"},
        {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node", "action": "replace"},
    ]


def selector_rules(tmp_path, selector: dict) -> list[dict]:
    """The selector part of the relabel rules: what comes after the job rule and before the port rule."""
    (job,) = jobs(service_monitor({"selector": selector, "endpoints": [{"port": "metrics"}]}), METRICS_SERVICE,
                  tmp_path=tmp_path)
    rules = job["relabel_configs"]
    assert rules[0] == JOB_TMP and PORT_KEEP in rules
    return rules[1:rules.index(PORT_KEEP)]


def test_match_expressions_in_and_exists(tmp_path):
    assert selector_rules(tmp_path, {"matchExpressions": [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["redis-metrics", "metrics"]},
        {"key": "tier", "operator": "Exists"},
    ]}) == [
        keep_label("app_kubernetes_io_component", "redis-metrics|metrics"),
        {"action": "keep", "source_labels": ["__meta_kubernetes_service_labelpresent_tier"], "regex": "true"},
    ]


def test_match_expressions_not_in_and_does_not_exist(tmp_path):
    assert selector_rules(tmp_path, {"matchExpressions": [
        {"key": "tier", "operator": "NotIn", "values": ["web", "batch"]},
        {"key": "canary", "operator": "DoesNotExist"},
    ]}) == [
        {"action": "drop", "source_labels": ["__meta_kubernetes_service_label_tier",
                                             "__meta_kubernetes_service_labelpresent_tier"],
         "regex": "(web|batch);true"},
        {"action": "drop", "source_labels": ["__meta_kubernetes_service_labelpresent_canary"], "regex": "true"},
    ]


def test_without_job_label_the_job_is_the_service_name(tmp_path):
    (job,) = jobs(service_monitor({"selector": SELECTOR, "endpoints": [{"port": "metrics"}]}), METRICS_SERVICE,
                  tmp_path=tmp_path)
    rules = job["relabel_configs"]
    assert [r for r in rules if r.get("target_label") == "job"] == [JOB_FROM_SERVICE]
    assert rules[-1] == {"target_label": "endpoint", "replacement": "metrics"}


def test_relabelings_translate_to_snake_case_with_lowercase_actions():
    assert relabel([
        {"sourceLabels": ["a", "b"], "separator": "/", "regex": "(.*)", "targetLabel": "t", "replacement": "$1",
         "action": "Replace"},
        {"sourceLabels": ["__address__"], "modulus": 4, "targetLabel": "__tmp_hash", "action": "HashMod"},
        {"regex": "pod_template_hash", "action": "LabelDrop"},
    ]) == [
        {"source_labels": ["a", "b"], "separator": "/", "regex": "(.*)", "target_label": "t", "replacement": "$1",
         "action": "replace"},
        {"source_labels": ["__address__"], "modulus": 4, "target_label": "__tmp_hash", "action": "hashmod"},
        {"regex": "pod_template_hash", "action": "labeldrop"},
    ]
    assert relabel(None) == [] and relabel([]) == []


# -- targets (what service discovery would find) ---------------------------------------------------------

def test_each_service_port_of_the_pod_named_by_the_endpoint_is_one_target(tmp_path):
    (job,) = jobs(service_monitor(FULL_SPEC), METRICS_SERVICE, CLIENT_SERVICE, tmp_path=tmp_path)
    (target,) = job["static_configs"]
    assert target["targets"] == ["10.244.0.7:9121"]
    labels = target["labels"]
    assert {k: labels[k] for k in (
        "__meta_kubernetes_namespace", "__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name",
        "__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name",
        "__meta_kubernetes_pod_name", "__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_container_name",
        "__meta_kubernetes_pod_container_port_name", "__meta_kubernetes_pod_container_port_number",
        "__meta_kubernetes_pod_phase")} == {
        "__meta_kubernetes_namespace": NS, "__meta_kubernetes_service_name": "alerthistory-redis-metrics",
        "__meta_kubernetes_endpoint_port_name": "metrics", "__meta_kubernetes_endpoint_address_target_kind": "Pod",
        "__meta_kubernetes_endpoint_address_target_name": POD.name, "__meta_kubernetes_pod_name": POD.name,
        "__meta_kubernetes_pod_ip": POD.ip, "__meta_kubernetes_pod_container_name": "exporter",
        "__meta_kubernetes_pod_container_port_name": "metrics", "__meta_kubernetes_pod_container_port_number": "9121",
        "__meta_kubernetes_pod_phase": "Running"}
    # Label names are sanitized as discovery does; *_labelpresent_* marks each one.
    assert labels["__meta_kubernetes_service_label_app_kubernetes_io_component"] == "redis-metrics"
    assert labels["__meta_kubernetes_service_labelpresent_app_kubernetes_io_component"] == "true"
    assert labels["__meta_kubernetes_service_label_tier"] == "cache"
    assert labels["__meta_kubernetes_pod_label_team"] == "sre"
    assert "__meta_kubernetes_service_label_team" not in labels


def test_a_service_that_does_not_select_the_pod_has_no_target(tmp_path):
    elsewhere = service("other-metrics", {"app.kubernetes.io/component": "redis-metrics"}, "metrics", 9121)
    elsewhere["spec"]["selector"] = {"app.kubernetes.io/component": "web"}
    (job,) = jobs(service_monitor(FULL_SPEC), elsewhere, tmp_path=tmp_path)
    assert job["static_configs"] == []


def test_a_namespace_selector_that_excludes_the_pod_leaves_no_target(tmp_path):
    manifests = chart.Manifests(templates={"o.yaml": yaml.safe_dump_all([
        service_monitor({**FULL_SPEC, "namespaceSelector": {"matchNames": ["elsewhere"]}}), METRICS_SERVICE])})
    monitoring = Monitoring(manifests, [POD], tmp_path)
    (job,) = monitoring.scrape_configs()
    assert job["static_configs"] == []
    assert any("namespaceSelector excludes namespace cache" in n for n in monitoring.notes)
    any_ns = Monitoring(chart.Manifests(templates={"o.yaml": yaml.safe_dump_all([
        service_monitor({**FULL_SPEC, "namespaceSelector": {"any": True}}), METRICS_SERVICE])}), [POD], tmp_path)
    assert len(any_ns.scrape_configs()[0]["static_configs"]) == 1


def test_a_deleted_pod_has_no_targets_but_the_job_stays(tmp_path):
    manifests = chart.Manifests(templates={"o.yaml": yaml.safe_dump_all([service_monitor(FULL_SPEC),
                                                                          METRICS_SERVICE])})
    monitoring = Monitoring(manifests, [POD], tmp_path)
    monitoring.set_pods([])  # the pod was deleted
    (job,) = monitoring.scrape_configs()
    assert job["static_configs"] == [] and job["relabel_configs"]


# -- real Prometheus accepts it -------------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")


def promtool_check_config(monitoring: Monitoring, tmp_path) -> subprocess.CompletedProcess:
    monitoring.alertmanager_port = 9093  # set by start(); the check only parses the address
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(monitoring.prometheus_config(), sort_keys=False))
    return subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (Debian package prometheus)")
def test_promtool_accepts_the_config_of_a_full_service_monitor(tmp_path):
    manifests = chart.Manifests(templates={"o.yaml": yaml.safe_dump_all([service_monitor(FULL_SPEC),
                                                                          METRICS_SERVICE, CLIENT_SERVICE])})
    checked = promtool_check_config(Monitoring(manifests, [POD], tmp_path), tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (Debian package prometheus)")
def test_promtool_accepts_the_config_and_rules_of_the_rendered_chart(tmp_path):
    """The chart's own ServiceMonitor and PrometheusRule, as the local stack feeds them to Prometheus."""
    manifests = chart.render({"fullnameOverride": "alerthistory"}, namespace=NS)
    template = manifests.of_kind("StatefulSet")[0]["spec"]["template"]
    pod = PodInfo(name="alerthistory-redis-0", namespace=NS, ip="10.244.0.7",
                  labels=template["metadata"]["labels"], containers=template["spec"]["containers"])
    monitoring = Monitoring(manifests, [pod], tmp_path)
    (job,) = monitoring.scrape_configs()
    assert [t["targets"] for t in job["static_configs"]] == [["10.244.0.7:9121"]]
    checked = promtool_check_config(monitoring, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "rules found" in checked.stdout


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (Debian package prometheus)")
def test_promtool_refuses_a_broken_relabeling(tmp_path):
    """The check has teeth: a relabeling Prometheus cannot load fails it, naming the problem."""
    spec = {**FULL_SPEC, "endpoints": [{"port": "metrics",
                                        "relabelings": [{"sourceLabels": ["x"], "regex": "(", "action": "keep"}]}]}
    manifests = chart.Manifests(templates={"o.yaml": yaml.safe_dump_all([service_monitor(spec), METRICS_SERVICE])})
    checked = promtool_check_config(Monitoring(manifests, [POD], tmp_path), tmp_path)
    assert checked.returncode != 0 and "missing closing )" in checked.stdout + checked.stderr
