"""Every object name, label and derived name is valid for any release name Helm accepts.

Helm accepts release names of up to 53 characters matching `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]...)*$`
(dots and a leading digit included). Kubernetes then derives more names from the chart's: pods `<sts>-<ordinal>`,
the `controller-revision-hash` label `<sts>-<hash of up to 10 characters>`, the `statefulset.kubernetes.io/pod-name`
label, PVCs `<claim template>-<pod>`. Each rule below is the one the API server applies to that field.
"""

from __future__ import annotations

import re
import string

import pytest
from helpers.values import CI_DIR, load_yaml

from alert_history_cache import chart

HELM_RELEASE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# The StatefulSet controller's revision hash is a 32-bit FNV hash printed with SafeEncodeString: up to 10 characters.
REVISION_HASH_LEN = 10
STATEFULSET_MAX = 63 - 1 - REVISION_HASH_LEN  # 52
BASE = load_yaml(CI_DIR / "default-values.yaml")  # explicit passwords: renders are cached and comparable


def release_names() -> list[str]:
    """Helm-valid release names of every length from 1 to 53, in shapes that stress each rule."""
    names = []
    for n in range(1, 54):
        plain = "".join(string.ascii_lowercase[(i * 7) % 26] for i in range(n))  # letters only
        names.append(plain)
        # The other shapes at the lengths around each cut (41 for the prefix, 47 and 52 for the StatefulSet).
        if n in (3, 13, 27, 28, 40, 41, 42, 46, 47, 48, 51, 52, 53):
            names.append("1" + plain[1:])  # leading digit
            names.append(plain[: n // 2] + "." + plain[n // 2 + 1 :])  # a dot
            names.append(plain[: n - 2] + "-" + plain[-1])  # a dash near the end
    # The chart name inside the release (the fullname is then the release alone), and dashes at the cut.
    names += ["alert-history", "prod-alert-history-" + "x" * 34, "a" * 40 + "-" * 12 + "b", "x" * 41 + "-" * 11 + "y"]
    assert all(HELM_RELEASE.match(n) and len(n) <= 53 for n in names), [n for n in names if not HELM_RELEASE.match(n)]
    return names


OVERRIDES = [
    {"nameOverride": "n" * 63},
    {"nameOverride": "cache"},
    {"fullnameOverride": "f" * 63},
    {"fullnameOverride": "f" * 40 + "-" * 22 + "g"},
    {"fullnameOverride": "a"},
    {"nameOverride": "x" * 30, "fullnameOverride": "y" * 62},
]


def _labels_problems(where: str, labels: dict | None) -> list[str]:
    bad = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if prefix and not (len(prefix) <= 253 and DNS1123_SUBDOMAIN.match(prefix)):
            bad.append(f"{where}: label key prefix {prefix!r}")
        if not (len(name) <= 63 and LABEL_NAME.match(name)):
            bad.append(f"{where}: label key {key!r}")
        value = str(value)
        if not (len(value) <= 63 and LABEL_VALUE.match(value)):
            bad.append(f"{where}: label {key}={value!r} ({len(value)} characters)")
    return bad


def _name_problems(kind: str, name: str) -> list[str]:
    bad = []
    if not (len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)):
        bad.append(f"{kind}/{name}: not a DNS-1123 subdomain")
    # Names the chart derives must also be usable as DNS labels (pod hostnames, Service DNS, job labels).
    if not (len(name) <= 63 and DNS1123_LABEL.match(name)):
        bad.append(f"{kind}/{name}: not a DNS-1123 label ({len(name)} characters)")
    if kind == "Service" and not DNS1035_LABEL.match(name):
        bad.append(f"Service/{name}: not a DNS-1035 label (a Service name starts with a letter)")
    return bad


def problems(m: chart.Manifests) -> list[str]:
    bad = []
    names = set()
    for obj in m:
        kind, meta = obj["kind"], obj["metadata"]
        name = meta["name"]
        assert (kind, name) not in names, f"two {kind} objects named {name}"
        names.add((kind, name))
        bad += _name_problems(kind, name)
        bad += _labels_problems(f"{kind}/{name}", meta.get("labels"))
        spec = obj.get("spec", {})
        for path, labels in (("selector", spec.get("selector") if kind == "Service" else None),
                             ("selector.matchLabels", (spec.get("selector") or {}).get("matchLabels")
                              if isinstance(spec.get("selector"), dict) else None),
                             ("podSelector.matchLabels", (spec.get("podSelector") or {}).get("matchLabels"))):
            bad += _labels_problems(f"{kind}/{name} {path}", labels)
        if kind == "Deployment":
            bad += _labels_problems(f"Deployment/{name} template", spec["template"]["metadata"].get("labels"))
        if kind != "StatefulSet":
            continue
        if len(name) > STATEFULSET_MAX:
            bad.append(f"StatefulSet/{name}: {len(name)} characters, over {STATEFULSET_MAX}: its pods' "
                       "controller-revision-hash label would exceed 63")
        template = spec["template"]
        bad += _labels_problems(f"StatefulSet/{name} template", template["metadata"].get("labels"))
        if not (len(spec["serviceName"]) <= 63 and DNS1123_LABEL.match(spec["serviceName"])):
            bad.append(f"StatefulSet/{name}: serviceName {spec['serviceName']!r} is not a DNS label (pod subdomain)")
        for ordinal in range(max(int(spec.get("replicas", 1)), 1)):
            pod = f"{name}-{ordinal}"
            bad += _name_problems("Pod", pod)
            derived = {"controller-revision-hash": f"{name}-{'x' * REVISION_HASH_LEN}",
                       "statefulset.kubernetes.io/pod-name": pod}
            bad += _labels_problems(f"Pod/{pod}", derived)
            for claim in spec.get("volumeClaimTemplates", []):
                pvc = f"{claim['metadata']['name']}-{pod}"
                if not (len(pvc) <= 253 and DNS1123_SUBDOMAIN.match(pvc)):
                    bad.append(f"PersistentVolumeClaim/{pvc}: not a DNS-1123 subdomain")
                bad += _labels_problems(f"PersistentVolumeClaim/{pvc}", claim["metadata"].get("labels"))
    # The chart's own ConfigMap and Secret volumes name objects it renders, under the same (possibly cut) name.
    for obj in m.of_kind("StatefulSet"):
        for vol in obj["spec"]["template"]["spec"].get("volumes", []):
            if vol["name"] not in ("config", "scripts", "secret"):
                continue  # valkey.extraVolumes name the user's own objects
            if "configMap" in vol and ("ConfigMap", vol["configMap"]["name"]) not in names:
                bad.append(f"volume {vol['name']}: no ConfigMap {vol['configMap']['name']}")
            if "secret" in vol and ("Secret", vol["secret"]["secretName"]) not in names:
                bad.append(f"volume {vol['name']}: no Secret {vol['secret']['secretName']}")
        if ("Service", obj["spec"]["serviceName"]) not in names:
            bad.append(f"serviceName {obj['spec']['serviceName']}: no such Service")
    return bad


@pytest.mark.parametrize("release", release_names())
def test_every_name_and_label_is_valid_for_release(render_chart, release):
    m = render_chart(BASE, release=release)
    assert len(m.of_kind("StatefulSet")) == 1 and len(m.of_kind("Service")) == 3
    assert problems(m) == []
    # The release name itself stays the instance label, unchanged.
    assert m.of_kind("StatefulSet")[0]["metadata"]["labels"]["app.kubernetes.io/instance"] == release


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda o: "-".join(f"{k}{len(v)}" for k, v in o.items()))
@pytest.mark.parametrize("release", ["r", "a" * 53, "9" + "z" * 52])
def test_every_name_and_label_is_valid_with_overrides(render_chart, override, release):
    m = render_chart({**BASE, **override}, release=release)
    assert problems(m) == []


def test_full_values_names_are_valid_for_the_longest_release(render_chart):
    """Every optional object (NetworkPolicy, ServiceAccount, dashboard, rules) under a 53-character release."""
    full = load_yaml(CI_DIR / "full-values.yaml")
    full.pop("fullnameOverride")
    m = render_chart(full, release="q" * 53)
    assert m.of_kind("NetworkPolicy") and m.of_kind("ServiceMonitor")
    assert problems(m) == []


REPLICATION = load_yaml(CI_DIR / "replication-values.yaml")


@pytest.mark.parametrize("release", ["r", "q" * 41, "a" * 53, "9" + "z" * 52, "team.cache." + "x" * 42])
def test_replication_names_are_valid_for_any_release(render_chart, release):
    """The HA objects (HAProxy Deployment, Sentinel and HAProxy metrics Services) under the longest releases, and
    the pod names the data pods announce (each label of a DNS name is at most 63 characters)."""
    m = render_chart(REPLICATION, release=release)
    assert m.of_kind("Deployment") and len(m.of_kind("Service")) == 5
    assert problems(m) == []
    sts = m.of_kind("StatefulSet")[0]
    announced = {e["name"]: e["value"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}["HA_NODES"]
    for dns_name in announced.split():
        assert all(DNS1123_LABEL.match(label) and len(label) <= 63 for label in dns_name.split(".")), dns_name
        assert len(dns_name) <= 253


def test_limits_are_the_documented_ones(render_chart):
    """The fullname is cut at 41 characters, so the StatefulSet is at most 47 and the longest name exactly 63."""
    m = render_chart({**BASE, "fullnameOverride": "f" * 63})
    assert m.names("StatefulSet") == ["f" * 41 + "-redis"]
    assert max(len(o["metadata"]["name"]) for o in m) == 63
    assert "f" * 41 + "-redis-test-connection" in m.names("Pod")


def test_short_names_are_not_cut(render_chart):
    m = render_chart(BASE, release="cache")
    assert m.names("StatefulSet") == ["cache-alert-history-redis"]
    assert sorted(m.names("Service")) == ["cache-alert-history-redis", "cache-alert-history-redis-headless",
                                          "cache-alert-history-redis-metrics"]


def test_dots_and_a_leading_digit_become_a_dns_1035_name(render_chart):
    assert render_chart(BASE, release="team.cache").names("StatefulSet") == ["team-cache-alert-history-redis"]
    assert render_chart(BASE, release="1cache").names("StatefulSet") == ["r-1cache-alert-history-redis"]


def test_the_checks_can_fail():
    """A 60-character StatefulSet, a dotted Service and a long label are all reported."""
    long = "s" * 60
    m = chart.Manifests(templates={"x.yaml": f"""
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {long}, labels: {{a: {"v" * 64}}}}}
spec:
  replicas: 1
  serviceName: {long}-headless
  selector: {{matchLabels: {{a: b}}}}
  template: {{metadata: {{labels: {{a: b}}}}, spec: {{containers: []}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: 1a.b}}
spec: {{selector: {{a: b}}}}
"""})
    found = "\n".join(problems(m))
    for expected in ("over 52", "label a=", "serviceName", "Service/1a.b: not a DNS-1035", "no such Service",
                     f"Pod/{long}-0: label controller-revision-hash"):
        assert expected in found, (expected, found)
