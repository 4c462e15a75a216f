"""The rendered custom resources (ServiceMonitor, PrometheusRule, and any other kind a vendored CRD defines)
validate against the CRD schemas vendored in schemas/crds/ (see its README.md for source and version), made
strict: `additionalProperties: false` wherever the CRD lists properties but leaves other keys open, so a
misspelt field fails here instead of being dropped by the API server."""

from __future__ import annotations

import copy
import functools
import hashlib
import re

import jsonschema
import pytest
import yaml
from helpers.values import CI_DIR, load_yaml

from alert_history_cache import chart

CRD_DIR = chart.REPO_ROOT / "schemas" / "crds"
# The kinds the chart renders today, each from its vendored CRD file.
RENDERED_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}


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
def crds() -> dict[str, dict]:
    """Vendored CRD file name -> the CustomResourceDefinition it holds."""
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(CRD_DIR.glob("*.yaml"))}


@functools.lru_cache(maxsize=None)
def schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema, for every version of every vendored CRD."""
    out = {}
    for crd in crds().values():
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out


@functools.lru_cache(maxsize=None)
def validator(kind: str, api_version: str) -> jsonschema.Validator:
    return jsonschema.Draft7Validator(strict(schemas()[(api_version, kind)]))


def errors(obj: dict) -> list[str]:
    v = validator(obj["kind"], obj["apiVersion"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]


def custom_resources(manifests) -> list[dict]:
    """Every rendered object whose group a vendored CRD defines (so a new kind is validated as soon as it renders)."""
    groups = {crd["spec"]["group"] for crd in crds().values()}
    return [o for o in manifests if o["apiVersion"].split("/")[0] in groups]


def test_the_vendored_crds_are_the_ones_the_readme_names():
    """Each vendored file is the CRD its name says, listed in the README with its version; prometheus-operator's
    files carry their version in an annotation, which must match the README."""
    readme = (CRD_DIR / "README.md").read_text()
    assert {"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml",
            "monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_probes.yaml",
            "cert-manager.io_certificates.yaml"} <= set(crds())
    for name, crd in crds().items():
        assert crd["kind"] == "CustomResourceDefinition", name
        assert name == f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"
        row = re.search(rf"^\| `{re.escape(name)}` \|.*\| (v[0-9][^ |]*) \|$", readme, re.M)
        assert row, f"{name} has no row with a version in {CRD_DIR / 'README.md'}"
        annotated = crd["metadata"].get("annotations", {}).get("operator.prometheus.io/version")
        if annotated:
            assert row.group(1) == f"v{annotated}", name


def test_the_vendored_crds_match_their_checksums():
    """SHA256SUMS is written by scripts/update-crds.sh: a hand edit of a vendored file fails here."""
    sums = dict(reversed(line.split(maxsplit=1)) for line in (CRD_DIR / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == set(crds())
    for name, digest in sums.items():
        assert hashlib.sha256((CRD_DIR / name).read_bytes()).hexdigest() == digest, name


def test_every_ci_set_renders_valid_custom_resources(ci_set):
    objs = custom_resources(ci_set.manifests)
    enabled = ci_set.manifests.of_kind("StatefulSet") and ci_set.values.get("monitoring", {}).get(
        "prometheusEnabled", True
    )
    monitoring = [o["kind"] for o in objs if o["kind"] in RENDERED_KINDS]
    assert sorted(monitoring) == (sorted(RENDERED_KINDS) if enabled else []), monitoring
    for obj in objs:
        assert errors(obj) == [], f"{ci_set.name}: {obj['kind']}"


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


def test_the_tls_set_renders_one_certificate_and_a_misspelt_field_fails(render_chart):
    """The Certificate is validated like the monitoring kinds: a typo in it is caught."""
    [cert] = render_chart(load_yaml(CI_DIR / "tls-values.yaml")).of_kind("Certificate")
    assert errors(cert) == []
    cert = copy.deepcopy(cert)
    cert["spec"]["dnsName"] = ["x"]
    cert["spec"]["issuerRef"]["kinds"] = "Issuer"
    found = errors(cert)
    assert any("dnsName" in e for e in found) and any("kinds" in e for e in found), found


def test_the_tls_set_renders_one_probe_and_a_misspelt_field_fails(render_chart):
    """valkey.tls.expiryProbe's Probe is validated against the vendored Probe CRD: a typo in it is caught."""
    [probe] = render_chart(load_yaml(CI_DIR / "tls-values.yaml")).of_kind("Probe")
    assert errors(probe) == []
    probe = copy.deepcopy(probe)
    probe["spec"]["targets"]["staticConfig"]["targets"] = ["x:1"]
    probe["spec"]["prober"]["host"] = "x"
    found = errors(probe)
    assert any("targets" in e for e in found) and any("host" in e for e in found), found


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
