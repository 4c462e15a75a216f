"""The five template tests of docs/requirements.md, the required names, and the checksum annotations that roll
the pod."""

from __future__ import annotations


import pytest
from helpers.values import CI_DIR, load_yaml, with_

SPEC = {**load_yaml(CI_DIR / "default-values.yaml"), "fullnameOverride": "alerthistory"}
NAME = "alerthistory-redis"




@pytest.fixture(scope="module")
def spec(render_chart):
    return render_chart(SPEC)


def pod_labels(m) -> dict:
    return m.get("StatefulSet", NAME)["spec"]["template"]["metadata"]["labels"]


# --- the template tests of docs/requirements.md --------------------------------------------------


def test_standard_profile_renders_one_statefulset(spec):
    assert [s["metadata"]["name"] for s in spec.of_kind("StatefulSet")] == [NAME]
    assert spec.get("StatefulSet", NAME)["spec"]["replicas"] == 1


def test_lite_profile_renders_no_cache_tier_object(render_chart):
    lite = render_chart(with_(SPEC, profile="lite"))
    assert [(o["kind"], o["metadata"]["name"]) for o in lite] == []
    # valkey.enabled: false is the other switch that turns the tier off.
    assert [(o["kind"], o["metadata"]["name"]) for o in render_chart(with_(SPEC, **{"valkey.enabled": False}))] == []


def test_configmap_sets_maxmemory_384mb(spec):
    conf = spec.get("ConfigMap", f"{NAME}-config")["data"]["valkey.conf"].splitlines()
    assert "maxmemory 384mb" in conf
    assert "maxmemory-policy allkeys-lru" in conf


def test_three_services_select_the_pods(spec):
    services = spec.by_kind["Service"]
    assert sorted(services) == [NAME, f"{NAME}-headless", f"{NAME}-metrics"]
    labels = pod_labels(spec)
    for name, svc in services.items():
        selector = svc["spec"]["selector"]
        pod_only = {k: v for k, v in selector.items() if k != "statefulset.kubernetes.io/pod-name"}
        assert pod_only.items() <= labels.items(), f"{name} selects {selector}, pod labels {labels}"

    headless = services[f"{NAME}-headless"]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    assert spec.get("StatefulSet", NAME)["spec"]["serviceName"] == f"{NAME}-headless"

    client = services[NAME]["spec"]
    assert client["selector"]["statefulset.kubernetes.io/pod-name"] == f"{NAME}-0"
    assert [(p["name"], p["port"], p["targetPort"]) for p in client["ports"]] == [("redis", 6379, "redis")]

    metrics = services[f"{NAME}-metrics"]["spec"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in metrics["ports"]] == [("metrics", 9121, "metrics")]
    containers = spec.get("StatefulSet", NAME)["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", [])}
    assert ports == {"redis": 6379, "metrics": 9121}


@pytest.mark.parametrize("enabled", [True, False])
def test_servicemonitor_follows_monitoring_flag(render_chart, enabled):
    # The exporter goes with it: monitoring on needs the exporter (validateValues).
    m = render_chart(with_(SPEC, **{"monitoring.prometheusEnabled": enabled, "valkey.exporter.enabled": enabled}))
    found = m.names("ServiceMonitor")
    assert len(found) == (1 if enabled else 0), f"monitoring.prometheusEnabled={enabled}: ServiceMonitors {found}"


# --- names and checksums ---------------------------------------------------------------------------


def test_names_with_fullname_override_are_the_specs(spec):
    names = {(o["kind"], o["metadata"]["name"]) for o in spec}
    assert {
        ("StatefulSet", NAME),
        ("Service", NAME),
        ("Service", f"{NAME}-headless"),
        ("Service", f"{NAME}-metrics"),
        ("ConfigMap", f"{NAME}-config"),
        ("ConfigMap", f"{NAME}-scripts"),
        ("Secret", NAME),
        ("PodDisruptionBudget", NAME),
    } <= names
    assert all(name.startswith(NAME) for _, name in names), sorted(names)
    # The pod the client Service selects is the StatefulSet's ordinal 0.
    assert spec.get("Service", NAME)["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "alerthistory-redis-0"
    assert {o["metadata"].get("namespace") for o in spec} == {"default"}


def checksums(m) -> dict:
    ann = m.get("StatefulSet", NAME)["spec"]["template"]["metadata"]["annotations"]
    return {k: v for k, v in ann.items() if k.startswith("checksum/")}


def test_checksums_are_stable_for_equal_values(spec, render_chart):
    again = render_chart(with_(SPEC, nameOverride=""))  # same values, a separate render
    assert checksums(again) == checksums(spec)
    assert set(checksums(spec)) == {"checksum/config", "checksum/scripts", "checksum/secret"}


@pytest.mark.parametrize(
    "change, rolled",
    [
        ({"valkey.settings.maxmemory": "256mb"}, {"checksum/config"}),
        ({"valkey.settings.appendfsync": "always"}, {"checksum/config"}),
        ({"valkey.acl.keyPatterns": ["group:*"]}, {"checksum/config"}),
        ({"valkey.password.application": "another-application-password-1"}, {"checksum/secret"}),
        ({"valkey.password.admin": "another-admin-password-000001"}, {"checksum/secret"}),
    ],
)
def test_checksums_change_with_config_or_secret(spec, render_chart, change, rolled):
    before, after = checksums(spec), checksums(render_chart(with_(SPEC, **change)))
    assert {k for k in before if before[k] != after[k]} == rolled
