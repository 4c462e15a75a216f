"""The rendered ServiceMonitor and PrometheusRule validate against prometheus-operator's CRD schemas
(../shared/crds), made strict: `additionalProperties: false` wherever the CRD lists properties but leaves
other keys open, so a misspelt field fails here instead of being dropped by the API server."""

from __future__ import annotations

import copy
import functools

import jsonschema
import pytest
import yaml
from helpers.values import CI_DIR, load_yaml

from alert_history_cache import chart

# In CI the shared folder sits beside the checkout: <repo>/../shared/crds.
CRD_DIR = chart.REPO_ROOT.parent / "shared" / "crds"
CRD_FILES = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}
needs_crds = pytest.mark.skipif(not CRD_DIR.is_dir(), reason=f"{CRD_DIR} missing")


def strict(schema):
    """A copy with additionalProperties false on every object schema that lists properties and has no
    explicit additionalProperties / x-kubernetes-preserve-unknown-fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=None)
def validator(kind: str, api_version: str) -> jsonschema.Validator:
    crd = yaml.safe_load((CRD_DIR / CRD_FILES[kind]).read_text())
    group = crd["spec"]["group"]
    [version] = [v for v in crd["spec"]["versions"] if f"{group}/{v['name']}" == api_version]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def errors(obj: dict) -> list[str]:
    v = validator(obj["kind"], obj["apiVersion"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]


def monitoring_objects(manifests) -> list[dict]:
    return [o for kind in CRD_FILES for o in manifests.of_kind(kind)]


@needs_crds
def test_every_ci_set_renders_valid_monitoring_objects(ci_set):
    objs = monitoring_objects(ci_set.manifests)
    enabled = ci_set.manifests.of_kind("StatefulSet") and ci_set.values.get("monitoring", {}).get(
        "prometheusEnabled", True
    )
    assert len(objs) == (2 if enabled else 0), [o["kind"] for o in objs]
    for obj in objs:
        assert errors(obj) == [], f"{ci_set.name}: {obj['kind']}"


@needs_crds
@pytest.mark.parametrize(
    "kind, path, key",
    [
        ("ServiceMonitor", ["spec", "endpoints", 0], "scrapeTimeOut"),
        ("ServiceMonitor", ["spec", "endpoints", 0, "relabelings", 0], "target_label"),
        ("ServiceMonitor", ["spec"], "namespaceSelectors"),
        ("PrometheusRule", ["spec", "groups", 0, "rules", 0], "annotation"),
        ("PrometheusRule", ["spec", "groups", 0], "evaluation_interval"),
    ],
)
def test_a_misspelt_field_is_rejected(render_chart, kind, path, key):
    [obj] = render_chart(load_yaml(CI_DIR / "default-values.yaml")).of_kind(kind)
    obj = copy.deepcopy(obj)
    node = obj
    for p in path:
        node = node[p]
    node[key] = "x"
    assert any(key in e for e in errors(obj)), errors(obj)


@needs_crds
def test_a_malformed_duration_is_rejected(render_chart):
    [rule] = render_chart(load_yaml(CI_DIR / "default-values.yaml")).of_kind("PrometheusRule")
    rule = copy.deepcopy(rule)
    rule["spec"]["groups"][0]["rules"][0]["for"] = "30s1m"
    assert any("for" in e for e in errors(rule)), errors(rule)


def test_strict_leaves_open_maps_open():
    schema = {"type": "object", "properties": {"a": {"type": "object", "additionalProperties": {"type": "string"}}}}
    out = strict(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["a"]["additionalProperties"] == {"type": "string"}
