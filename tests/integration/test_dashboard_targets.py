"""Every target of every panel of the shipped Grafana dashboard returns data from a real Prometheus scraping the
real exporter of a loaded server (replication-only targets excepted: the local stack has no replica)."""

from __future__ import annotations

import contextlib
import sys

import pytest

from alert_history_cache.chart import REPO_ROOT
from alert_history_cache.monitoring_stack import MonitoringOptions
from alert_history_cache.waiting import wait_until

from helpers.traffic import Traffic

sys.path.insert(0, str(REPO_ROOT))
from dashboards import cache_dashboard as cd  # noqa: E402

pytestmark = pytest.mark.integration

VALUES = {
    "valkey": {"exporter": {"serviceMonitor": {"interval": "1s", "scrapeTimeout": "1s"}}},
    "monitoring": {"prometheusRule": {"rateWindow": "10s"}},
}


@pytest.mark.parametrize("engine", ["valkey8", "redis7"])
def test_every_panel_target_returns_data(make_stack, engine) -> None:
    stack = make_stack(values=VALUES, engine=engine, monitoring=True,
                       monitoring_options=MonitoringOptions(evaluation_interval="1s", resend_delay="1s")).start()
    target = stack.wait_target_up(30)
    app = stack.client()

    def hit_and_miss(i: int) -> None:
        app.set(f"dash:{i % 50}", "v" * 100, ex=2)  # short TTLs: keys expire during the load
        app.get(f"dash:{i % 50}")                  # a hit
        app.get(f"dash:missing:{i}")               # a miss

    exprs = cd.panel_exprs(namespace=target["labels"]["namespace"], pod=target["labels"]["pod"],
                           rate_interval="10s", replication=False)
    skipped = [t for t in cd.targets() if t.replication_only]
    assert len(exprs) + len(skipped) == len(cd.targets()) and exprs
    # Excepted by name: only the series that exist only where replication runs (replicas, Sentinel, HAProxy).
    assert all(any(m in t.expr for m in cd.REPLICATION_ONLY_METRICS) for t in skipped), skipped

    seen: dict = {}

    def every_target_has_data() -> bool:
        seen["empty"] = [(title, expr) for title, expr in exprs if not stack.query(expr)]
        # The load really reached the panels: both hits and misses were counted.
        seen["few"] = [m for m in ("redis_keyspace_hits_total", "redis_keyspace_misses_total")
                       if not stack.query(f"{m} > 100")]
        return not seen["empty"] and not seen["few"]

    with Traffic(hit_and_miss, rate=100):
        # rate() panels need two scrapes inside their 10 s window: poll until every target answers.
        with contextlib.suppress(TimeoutError):
            wait_until(every_target_has_data, 60, "every dashboard target to return data", interval=1)
    assert seen["empty"] == [], "dashboard targets without data:\n" + "\n".join(f"{t}: {e}" for t, e in seen["empty"])
    assert seen["few"] == [], f"at most 100 counted: {seen['few']}"
