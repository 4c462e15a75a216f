"""Every rendered core object is valid for Kubernetes 1.29 to 1.33 (kubernetes-validate, strict mode).

CRD kinds (ServiceMonitor, PrometheusRule, Certificate) have no schema here; they are validated against the
vendored CRDs in test_monitoring_crds.py.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

KUBE_VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33"]
CRD_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/")


def core_objects(manifests) -> list[dict]:
    return [o for o in manifests if not o["apiVersion"].startswith(CRD_GROUPS)]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_is_valid(ci_set, version):
    errors = []
    for obj in core_objects(ci_set.manifests):
        try:
            used = kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
        else:
            assert used == version, f"validated against {used}, wanted {version}"
    assert errors == []


def test_strict_mode_catches_an_unknown_field():
    """The check above can fail: a misspelt field is refused in strict mode."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"selctor": {"a": "b"}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(svc, "1.29", strict=True)
