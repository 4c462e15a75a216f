"""Chart values for tests: the CI values sets, a cached render, and copies of values with dotted keys set."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import yaml

from alert_history_cache import chart

CI_DIR = chart.CHART_DIR / "ci"
CI_SETS = sorted(p.name.removesuffix("-values.yaml") for p in CI_DIR.glob("*-values.yaml"))


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@functools.lru_cache(maxsize=None)
def _render(values_json: str, release: str, namespace: str) -> chart.Manifests:
    return chart.render(json.loads(values_json), release=release, namespace=namespace)


def render(
    values: dict | None = None, *, release: str = chart.DEFAULT_RELEASE, namespace: str = chart.DEFAULT_NAMESPACE
) -> chart.Manifests:
    """chart.render, cached by value: callers share the result, so they must not modify it."""
    return _render(json.dumps(values or {}, sort_keys=True), release, namespace)


def with_(base: dict, **dotted) -> dict:
    """A copy of base with dotted keys set: with_(BASE, **{"valkey.replicas": 0})."""
    out = copy.deepcopy(base)
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
