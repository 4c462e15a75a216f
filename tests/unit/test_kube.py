"""kube.py: the Kubernetes semantics the local pod relies on, checked against what the API documents:
label selectors, named ports, $(VAR) expansion, env resolution (value, secretKeyRef, configMapKeyRef, fieldRef,
resourceFieldRef with divisors, envFrom) and quantities."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
import yaml

from alert_history_cache import chart, kube
from alert_history_cache.units import UnitError

LABELS = {"app.kubernetes.io/name": "alert-history", "app.kubernetes.io/component": "redis", "tier": "cache"}


def manifests(*objects: dict) -> chart.Manifests:
    return chart.Manifests(templates={"objects.yaml": yaml.safe_dump_all(objects)})


def secret(name: str, data: dict[str, str] | None = None, string_data: dict[str, str] | None = None) -> dict:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
           "data": {k: base64.b64encode(v.encode()).decode() for k, v in (data or {}).items()}}
    if string_data:
        obj["stringData"] = string_data
    return obj


def config_map(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def env_of(container: dict, *objects: dict, external: dict | None = None, fields: dict | None = None) -> dict:
    return kube.resolve_env({"name": "c", **container}, kube.Objects(manifests(*objects), external), fields or {})


# -- selectors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("selector, matches", [
    ({"matchLabels": {"tier": "cache"}}, True),
    ({"matchLabels": {"tier": "web"}}, False),
    ({"matchLabels": {"tier": "cache", "missing": "x"}}, False),
    ({"tier": "cache", "app.kubernetes.io/component": "redis"}, True),  # a Service's plain map
    ({"tier": "web"}, False),
    (None, False),  # a Service without a selector has no endpoints
])
def test_match_labels_and_plain_maps(selector, matches):
    assert kube.selector_matches(selector, LABELS) is matches


@pytest.mark.parametrize("expression, matches", [
    ({"key": "tier", "operator": "In", "values": ["cache", "db"]}, True),
    ({"key": "tier", "operator": "In", "values": ["web"]}, False),
    ({"key": "absent", "operator": "In", "values": ["x"]}, False),
    ({"key": "tier", "operator": "NotIn", "values": ["web", "batch"]}, True),
    ({"key": "tier", "operator": "NotIn", "values": ["cache"]}, False),
    ({"key": "absent", "operator": "NotIn", "values": ["x"]}, True),  # NotIn holds for a missing label
    ({"key": "tier", "operator": "Exists"}, True),
    ({"key": "absent", "operator": "Exists"}, False),
    ({"key": "absent", "operator": "DoesNotExist"}, True),
    ({"key": "tier", "operator": "DoesNotExist"}, False),
])
def test_match_expressions(expression, matches):
    assert kube.selector_matches({"matchExpressions": [expression]}, LABELS) is matches


def test_match_labels_and_expressions_must_all_hold():
    both = {"matchLabels": {"tier": "cache"},
            "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In", "values": ["redis"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]}
    assert kube.selector_matches(both, LABELS)
    assert not kube.selector_matches(both, {**LABELS, "canary": "true"})
    assert not kube.selector_matches(both, {**LABELS, "tier": "web"})


# -- ports and $(VAR) expansion -------------------------------------------------------------------------

CONTAINER = {"name": "valkey", "ports": [{"name": "redis", "containerPort": 6379},
                                         {"name": "metrics", "containerPort": 9121}]}


def test_container_port_by_number_or_name():
    assert kube.container_port(CONTAINER, 6380) == 6380
    assert kube.container_port(CONTAINER, "6380") == 6380
    assert kube.container_port(CONTAINER, "metrics") == 9121


def test_unknown_port_name_names_container_and_port():
    with pytest.raises(kube.KubeError, match=r"'valkey' has no port named 'admin'"):
        kube.container_port(CONTAINER, "admin")


@pytest.mark.parametrize("text, expanded", [
    ("--port $(PORT)", "--port 6379"),
    ("$(HOST):$(PORT)", "localhost:6379"),
    ("$(UNKNOWN) stays", "$(UNKNOWN) stays"),
    ("$$(PORT) is escaped", "$(PORT) is escaped"),
    ("cost: $$5", "cost: $5"),
    ("$PORT without parentheses", "$PORT without parentheses"),
])
def test_expand(text, expanded):
    assert kube.expand(text, {"PORT": "6379", "HOST": "localhost"}) == expanded


# -- env ------------------------------------------------------------------------------------------------

def test_values_expand_earlier_variables_only():
    env = env_of({"env": [{"name": "A", "value": "a"}, {"name": "B", "value": "$(A)-$(C)"},
                          {"name": "C", "value": "c"}, {"name": "N", "value": 7}]})
    assert env == {"A": "a", "B": "a-$(C)", "C": "c", "N": "7"}


def test_secret_key_ref_reads_data_and_string_data():
    s = secret("cache", {"password": "from-data"}, {"other": "from-string-data"})
    env = env_of({"env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "cache", "key": "password"}}},
                          {"name": "O", "valueFrom": {"secretKeyRef": {"name": "cache", "key": "other"}}}]}, s)
    assert env == {"P": "from-data", "O": "from-string-data"}


def test_external_secret_stands_in_for_one_the_chart_does_not_render():
    ref = {"name": "P", "valueFrom": {"secretKeyRef": {"name": "existing", "key": "password"}}}
    assert env_of({"env": [ref]}, external={"existing": {"password": b"given"}}) == {"P": "given"}
    with pytest.raises(kube.KubeError, match=r"Secret 'existing' is not rendered.*--secret-file"):
        env_of({"env": [ref]})


def test_missing_secret_key_is_an_error_unless_optional():
    s = secret("cache", {"password": "x"})
    with pytest.raises(kube.KubeError, match=r"Secret 'cache' has no key 'nope'"):
        env_of({"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "cache", "key": "nope"}}}]}, s)
    optional = [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "cache", "key": "nope", "optional": True}}},
                {"name": "G", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}}]
    assert env_of({"env": optional}, s) == {}


def test_config_map_key_ref():
    cm = config_map("settings", {"level": "notice"})
    env = env_of({"env": [{"name": "L", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}}]}, cm)
    assert env == {"L": "notice"}


def test_env_from_with_prefix_then_env_overrides():
    cm = config_map("settings", {"LEVEL": "notice", "MODE": "cache"})
    s = secret("cache", {"PASSWORD": "pw"})
    env = env_of({"envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                              {"secretRef": {"name": "cache"}},
                              {"secretRef": {"name": "gone", "optional": True}}],
                  "env": [{"name": "CFG_MODE", "value": "overridden"}]}, cm, s)
    assert env == {"CFG_LEVEL": "notice", "CFG_MODE": "overridden", "PASSWORD": "pw"}


def test_field_ref():
    fields = {"metadata.name": "alerthistory-redis-0", "status.podIP": "10.244.0.2",
              "labels:tier": "cache", "annotations:note": "hi"}
    env = env_of({"env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
        {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
        {"name": "NONE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['absent']"}}},
    ]}, fields=fields)
    assert env == {"POD": "alerthistory-redis-0", "IP": "10.244.0.2", "TIER": "cache", "NOTE": "hi", "NONE": ""}
    with pytest.raises(kube.KubeError, match=r"env X: fieldRef 'spec.nodeName' is not provided"):
        env_of({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}, fields=fields)


RESOURCES = {"limits": {"memory": "1Gi", "cpu": "1500m"}, "requests": {"memory": "512Mi", "cpu": "250m"}}


@pytest.mark.parametrize("resource, divisor, value", [
    ("limits.memory", None, str(2**30)),
    ("limits.memory", "1Mi", "1024"),
    ("requests.memory", "1Gi", "1"),   # 0.5 rounds up, as the kubelet does
    ("limits.memory", "1M", "1074"),   # 1073.74 decimal megabytes, rounded up
    ("limits.cpu", None, "2"),         # 1.5 cores round up to 2
    ("limits.cpu", "1m", "1500"),
    ("requests.cpu", "1m", "250"),
    ("requests.cpu", "100m", "3"),     # 2.5 rounds up
])
def test_resource_field_ref_with_divisor(resource, divisor, value):
    ref = {"resource": resource, **({"divisor": divisor} if divisor else {})}
    env = env_of({"resources": RESOURCES, "env": [{"name": "V", "valueFrom": {"resourceFieldRef": ref}}]})
    assert env == {"V": value}


def test_resource_field_ref_without_the_resource_is_an_error():
    with pytest.raises(kube.KubeError, match=r"env V: container has no limits.cpu"):
        env_of({"resources": {"limits": {"memory": "1Gi"}},
                "env": [{"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]})


def test_unsupported_value_from_is_named():
    with pytest.raises(kube.KubeError, match=r"env V: unsupported valueFrom \['fileKeyRef'\]"):
        env_of({"env": [{"name": "V", "valueFrom": {"fileKeyRef": {}}}]})


# -- quantities (kube uses units.quantity) -----------------------------------------------------------------

@pytest.mark.parametrize("text, number", [
    ("512Mi", Decimal(512 * 2**20)), ("1Gi", Decimal(2**30)), ("500m", Decimal("0.5")), ("2", Decimal(2)),
    ("1e3", Decimal(1000)), ("1.5k", Decimal(1500)), (".5Gi", Decimal(2**29)), ("100u", Decimal("0.0001")),
])
def test_quantity(text, number):
    assert kube.quantity(text) == number


@pytest.mark.parametrize("text", ["5MB", "Mi", "1..5", "ten", ""])
def test_quantity_refuses(text):
    with pytest.raises(UnitError, match="not a Kubernetes quantity"):
        kube.quantity(text)


def test_read_secret_files_drops_one_trailing_newline(tmp_path):
    (tmp_path / "a").write_text("secret\n")
    (tmp_path / "b").write_bytes(b"raw")
    assert kube.read_secret_files({"password": tmp_path / "a", "other": str(tmp_path / "b")}) == {
        "password": b"secret", "other": b"raw"}
