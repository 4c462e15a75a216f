"""The ServiceMonitor (docs/requirements.md, monitoring): what it selects, how it scrapes, and when it renders."""

from __future__ import annotations


import pytest
from helpers.values import CI_DIR, load_yaml, with_

from alert_history_cache import chart

BASE = {**load_yaml(CI_DIR / "default-values.yaml"), "fullnameOverride": "alerthistory"}
NS = "cache"




def render(render_chart, values=BASE, namespace=NS):
    return render_chart(values, namespace=namespace)


def only(m, kind):
    objs = m.of_kind(kind)
    assert len(objs) == 1, [o["metadata"]["name"] for o in objs]
    return objs[0]


def selects(selector: dict, labels: dict) -> bool:
    """matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist) against a label map."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        have, op = e["key"] in labels, e["operator"]
        value = labels.get(e["key"])
        if (
            (op == "In" and value not in e["values"])
            or (op == "NotIn" and have and value in e["values"])
            or (op == "Exists" and not have)
            or (op == "DoesNotExist" and have)
        ):
            return False
    return True


def test_selects_the_metrics_service_and_no_other(render_chart):
    m = render(render_chart)
    sm = only(m, "ServiceMonitor")
    chosen = [
        s["metadata"]["name"]
        for s in m.of_kind("Service")
        if s["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
        and selects(sm["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert chosen == ["alerthistory-redis-metrics"]
    assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "redis-metrics"
    assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == chart.DEFAULT_RELEASE


def test_endpoint_port_reaches_the_exporter_container(render_chart):
    m = render(render_chart)
    sm, svc = only(m, "ServiceMonitor"), m.get("Service", "alerthistory-redis-metrics")
    [endpoint] = sm["spec"]["endpoints"]
    [port] = [p for p in svc["spec"]["ports"] if p["name"] == endpoint["port"]]
    pod = m.get("StatefulSet", "alerthistory-redis")["spec"]["template"]
    assert selects({"matchLabels": svc["spec"]["selector"]}, pod["metadata"]["labels"])
    [exporter] = [c for c in pod["spec"]["containers"] if c["name"] == "exporter"]
    assert port["targetPort"] in [p["name"] for p in exporter["ports"]]
    assert [p["containerPort"] for p in exporter["ports"] if p["name"] == port["targetPort"]] == [9121]
    assert endpoint["path"] == exporter["readinessProbe"]["httpGet"]["path"] == "/metrics"
    assert endpoint["scheme"] == "http"
    assert svc["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert svc["metadata"]["annotations"]["prometheus.io/port"] == "9121"


def test_scrape_settings_and_relabelings(render_chart):
    sm = only(render(render_chart), "ServiceMonitor")
    [endpoint] = sm["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")
    relabel = {(tuple(r["sourceLabels"]), r["targetLabel"]) for r in endpoint["relabelings"]}
    assert relabel == {(("__meta_kubernetes_pod_name",), "pod"), (("__meta_kubernetes_pod_node_name",), "node")}
    assert all(r["action"] == "replace" for r in endpoint["relabelings"])
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NS]}
    assert sm["metadata"]["namespace"] == NS


def test_interval_timeout_labels_and_namespace_from_values(render_chart):
    values = with_(
        BASE,
        **{
            "valkey.exporter.serviceMonitor.interval": "15s",
            "valkey.exporter.serviceMonitor.scrapeTimeout": "5s",
            "valkey.exporter.serviceMonitor.labels": {"release": "kube-prometheus-stack"},
            "valkey.exporter.serviceMonitor.namespace": "monitoring",
        },
    )
    sm = only(render(render_chart, values), "ServiceMonitor")
    assert (sm["spec"]["endpoints"][0]["interval"], sm["spec"]["endpoints"][0]["scrapeTimeout"]) == ("15s", "5s")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["metadata"]["namespace"] == "monitoring"
    # The targets stay in the release namespace wherever the ServiceMonitor lives.
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NS]}


@pytest.mark.parametrize("timeout, interval", [("31s", "30s"), ("1m", "30s"), ("1m1s", "1m")])
def test_timeout_longer_than_interval_fails(render_chart, timeout, interval):
    values = with_(
        BASE,
        **{"valkey.exporter.serviceMonitor.scrapeTimeout": timeout, "valkey.exporter.serviceMonitor.interval": interval},
    )
    with pytest.raises(chart.RenderError, match="scrapeTimeout"):
        render(render_chart, values)


@pytest.mark.parametrize("bad", ["30s1m", "30", "1.5m", ""])
def test_schema_refuses_durations_prometheus_operator_refuses(render_chart, bad):
    with pytest.raises(chart.RenderError, match="interval"):
        render(render_chart, with_(BASE, **{"valkey.exporter.serviceMonitor.interval": bad}))


@pytest.mark.parametrize(
    "dotted",
    [{"monitoring.prometheusEnabled": False}, {"profile": "lite"}, {"valkey.enabled": False}],
)
def test_no_monitoring_objects_when_switched_off(render_chart, dotted):
    m = render(render_chart, with_(BASE, **dotted))
    kinds = {"ServiceMonitor", "PrometheusRule"}
    assert [o["kind"] for o in m if o["kind"] in kinds] == []
    assert [n for n in m.names("ConfigMap") if n.endswith("-dashboard")] == []


def test_monitoring_needs_the_exporter(render_chart):
    with pytest.raises(chart.RenderError, match="valkey.exporter.enabled"):
        render(render_chart, with_(BASE, **{"valkey.exporter.enabled": False}))
