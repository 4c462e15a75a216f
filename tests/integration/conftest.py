"""Fixtures of the integration tests: engines that are really installed, and local stacks that always stop."""

from __future__ import annotations

import os

import pytest

from alert_history_cache import engines

ALL_ENGINES = list(engines.ENGINES)


def engine_or_skip(name: str) -> engines.Engine:
    """The engine, or a skip naming the missing package (CI installs them all, so nothing skips there)."""
    engine = engines.get(name)
    try:
        engine.check()
    except engines.MissingBinary as exc:
        pytest.skip(str(exc))
    return engine


@pytest.fixture(params=ALL_ENGINES)
def engine(request) -> engines.Engine:
    return engine_or_skip(request.param)


@pytest.fixture
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the local stack needs root (network and mount namespaces)")
