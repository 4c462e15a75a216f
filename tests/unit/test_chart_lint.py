"""`helm lint --strict` through helm_python: every ci values set, every supported Kubernetes version."""

from __future__ import annotations

import pytest
from helpers.values import CI_DIR, CI_SETS, load_yaml

from alert_history_cache import chart

KUBE_VERSIONS = ["v1.29.0", "v1.30.0", "v1.31.0", "v1.32.0", "v1.33.0"]
INFO = 1  # helm_python severities: 1 info, 2 warning, 3 error


def test_the_required_ci_sets_exist():
    assert {"default", "lite", "full", "existing-secret", "monitoring-off", "redis7"} <= set(CI_SETS)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", CI_SETS)
def test_lint_strict_is_clean(name, kube_version):
    report = chart.lint(load_yaml(CI_DIR / f"{name}-values.yaml"), kube_version=kube_version)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Info findings (such as "icon is recommended") are advice; warnings and errors are not allowed.
    assert [m for m in report["messages"] if m["severity"] > INFO] == []


def test_lint_reports_a_bad_value():
    """The lint call above can fail: a value the schema refuses is an error finding."""
    report = chart.lint({"valkey": {"settings": {"maxmemory": "lots"}}})
    assert any("/valkey/settings/maxmemory" in e for e in report["errors"]), report
