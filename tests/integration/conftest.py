"""Fixtures of the integration tests: engines that are really installed, and local stacks that always stop.
The helpers behind them are in tests/helpers (local_stack, servers)."""

from __future__ import annotations

import pytest

from alert_history_cache import chart
from helpers.local_stack import ALL_ENGINES, FAST_PROBES, assert_nothing_left, engine_or_skip, root_or_skip
from helpers.servers import stack_server


@pytest.fixture(params=ALL_ENGINES)
def engine(request):
    return engine_or_skip(request.param)


@pytest.fixture
def needs_root() -> None:
    root_or_skip()


@pytest.fixture
def make_stack(tmp_path, needs_root):
    """make_stack(values=..., engine=..., state_dir=..., fast=True, **LocalStack kwargs) -> a LocalStack (not
    started), with FAST_PROBES under the given values (fast=False: the chart's defaults) and monitoring off
    unless asked; all are stopped at teardown and checked to leave nothing behind."""
    from alert_history_cache.stack import LocalStack

    made = []

    def make(values: dict | None = None, engine: str = "valkey8", state_dir=None, fast: bool = True, **kwargs):
        engine_or_skip(engine)
        kwargs.setdefault("monitoring", False)
        stack = LocalStack(values=chart.deep_merge(FAST_PROBES if fast else {}, values or {}), engine=engine,
                           state_dir=state_dir or tmp_path / f"state{len(made)}", **kwargs)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.stop()
    for stack in made:
        assert_nothing_left(stack.state_dir)


@pytest.fixture
def nothing_left():
    """assert_nothing_left(state_dir), for tests that start stacks through the CLI."""
    return assert_nothing_left


@pytest.fixture(scope="module", params=ALL_ENGINES)
def stack_per_engine(request, tmp_path_factory):
    """One local stack per engine for a module: the rendered pod with config-init, probes and exporter."""
    root_or_skip()
    engine_or_skip(request.param)
    with stack_server(request.param, tmp_path_factory.mktemp(f"stack-{request.param}")) as s:
        yield s
