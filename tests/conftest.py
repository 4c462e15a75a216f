"""Shared fixtures: render each values set once per session (Helm renders are cached by their values).

The helpers behind them live in tests/helpers; test modules import them from there, not from here."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from alert_history_cache import chart
from helpers.values import CI_DIR, CI_SETS, load_yaml, render


@dataclass(frozen=True)
class CiSet:
    name: str
    values: dict
    manifests: chart.Manifests


@pytest.fixture(scope="session", params=CI_SETS)
def ci_set(request) -> CiSet:
    """Each charts/alert-history/ci/<name>-values.yaml, rendered once."""
    values = load_yaml(CI_DIR / f"{request.param}-values.yaml")
    return CiSet(request.param, values, render(values))


@pytest.fixture(scope="session")
def render_chart():
    """The cached render function: render_chart(values, release=..., namespace=...)."""
    return render
