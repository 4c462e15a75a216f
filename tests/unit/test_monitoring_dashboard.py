"""The Grafana dashboard: the committed JSON is exactly what dashboards/cache_dashboard.py generates, the
chart ships it in a sidecar-labelled ConfigMap, and its structure is what docs/requirements.md asks for."""

from __future__ import annotations

import json
import re
import sys

import pytest
from helpers.values import CI_DIR, load_yaml, with_

from alert_history_cache import chart

sys.path.insert(0, str(chart.REPO_ROOT))
from dashboards import cache_dashboard  # noqa: E402

BASE = {**load_yaml(CI_DIR / "default-values.yaml"), "fullnameOverride": "alerthistory"}
CM = "alerthistory-redis-dashboard"
SPEC_PANELS = {
    "uptime": "Uptime",
    "clients": "Connected clients",
    "memory": "Memory",
    "commands/s": "Commands per second",
    "hit rate": "Hit rate",
    "network I/O": "Network I/O",
    "keyspace": "Keyspace",
    "evicted/expired": "Evicted and expired keys",
    "persistence": "Persistence",
    "slow queries": "Slow queries",
    "fragmentation": "Memory fragmentation",
    "connection churn": "Connection churn",
}


@pytest.fixture(scope="module")
def board() -> dict:
    return json.loads(cache_dashboard.OUTPUT.read_text())




def test_committed_json_matches_a_fresh_generation():
    fresh = cache_dashboard.render_json()
    assert cache_dashboard.OUTPUT.read_text() == fresh, (
        "charts/alert-history/files/dashboards/alert-history-cache.json is stale: "
        "run `.venv/bin/python -m dashboards.cache_dashboard` and commit it"
    )
    assert cache_dashboard.render_json() == fresh, "generation is not stable"
    assert cache_dashboard.main(["--check"]) == 0


def test_check_mode_notices_a_stale_file(tmp_path):
    stale = tmp_path / "d.json"
    stale.write_text(cache_dashboard.render_json().replace("Uptime", "Uptime!"))
    assert cache_dashboard.main(["--check", "--output", str(stale)]) == 1


def test_configmap_ships_the_json_with_the_sidecar_label(render_chart):
    cm = render_chart(BASE).get("ConfigMap", CM)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(key, text)] = cm["data"].items()
    assert key.endswith(".json")
    assert json.loads(text) == json.loads(cache_dashboard.OUTPUT.read_text())


def test_configmap_label_namespace_and_annotations_from_values(render_chart):
    values = with_(
        BASE,
        **{
            "monitoring.dashboard.labelKey": "grafana.example.com/dashboard",
            "monitoring.dashboard.labelValue": "cache",
            "monitoring.dashboard.namespace": "grafana",
            "monitoring.dashboard.annotations": {"grafana_folder": "Cache"},
        },
    )
    cm = render_chart(values).get("ConfigMap", CM)
    assert cm["metadata"]["labels"]["grafana.example.com/dashboard"] == "cache"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Cache"}


@pytest.mark.parametrize(
    "dotted", [{"monitoring.dashboard.enabled": False}, {"monitoring.prometheusEnabled": False}, {"profile": "lite"}]
)
def test_no_dashboard_configmap_when_off(render_chart, dotted):
    assert CM not in render_chart(with_(BASE, **dotted)).names("ConfigMap")


def test_a_chart_label_key_is_refused(render_chart):
    with pytest.raises(chart.RenderError, match="labelKey"):
        render_chart(with_(BASE, **{"monitoring.dashboard.labelKey": "app.kubernetes.io/name"}))


def test_uid_variables_and_spec_panels(board):
    assert board["uid"] == "alert-history-cache"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "pod"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["query"] == "label_values(redis_up, namespace)"
    assert variables["pod"]["query"] == (
        'label_values({__name__=~"redis_up|haproxy_process_uptime_seconds",namespace="$namespace"}, pod)')
    assert variables["pod"]["includeAll"] and variables["pod"]["allValue"] == ".*"
    titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
    assert len(titles) == len(set(titles)) >= 12
    for what, title in SPEC_PANELS.items():
        assert title in titles, what
    ids = [p["id"] for p in board["panels"]]
    assert ids == list(range(1, len(ids) + 1))


def test_every_target_is_scoped_and_uses_the_datasource_variable(board):
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            selectors = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", t["expr"])
            assert selectors, (panel["title"], t["expr"])
            for metric, matchers in selectors:
                # The variables first; a panel may narrow further (a state, a role).
                assert re.fullmatch(r'namespace="\$namespace",pod=~"\$pod"(,\w+=~?"[^"]*")*', matchers), (panel["title"], metric)


def test_memory_panel_shows_rss_against_the_container_limit(render_chart, board):
    [memory] = [p for p in board["panels"] if p["title"] == "Memory"]
    exprs = [t["expr"] for t in memory["targets"]]
    assert any(e.startswith("redis_memory_used_rss_bytes{") for e in exprs)
    limit = [e for e in exprs if e.startswith(cache_dashboard.LIMIT_RECORD)]
    assert limit, exprs
    # The series comes from the chart's own recording rule.
    [rule] = render_chart(BASE).of_kind("PrometheusRule")
    records = [r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r]
    assert cache_dashboard.LIMIT_RECORD in records


def test_panel_exprs_api_for_end_to_end_tests():
    raw = cache_dashboard.panel_exprs()
    assert raw == [(t.panel, t.expr) for t in cache_dashboard.targets()]
    resolved = cache_dashboard.panel_exprs(namespace="cache", pod="alerthistory-redis-0", rate_interval="30s")
    assert len(resolved) == len(raw)
    for (panel, expr), (_, original) in zip(resolved, raw):
        assert "$" not in expr, (panel, expr)
        assert 'namespace="cache",pod=~"alerthistory-redis-0"' in expr
        assert ("[30s]" in expr) == ("$__rate_interval" in original)
    without = cache_dashboard.panel_exprs(namespace="cache", replication=False)
    dropped = {e for _, e in raw} - {e for _, e in cache_dashboard.panel_exprs(replication=False)}
    # The lag pair of "Replication", the Sentinel's primary (Failovers), offset lag, link status, quorum, and
    # the two HAProxy queries.
    assert len(without) == len(raw) - 8
    assert all(any(m in e for m in cache_dashboard.REPLICATION_ONLY_METRICS) for e in dropped)


def test_replication_panels(board):
    """Role per pod, offset lag, link status, failovers and HAProxy backend state, each on its metric."""
    panels = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in board["panels"]}
    row = [p["title"] for p in board["panels"]]
    assert row.index("Replication and failover") < row.index("Role per pod")
    wanted = {
        "Role per pod": [cache_dashboard.PRIMARY_RECORD],
        "Failovers": [f"changes({cache_dashboard.PRIMARY_RECORD}", "redis_sentinel_master_status"],
        "Replication offset lag": ["redis_master_repl_offset", "redis_connected_slave_offset_bytes", "clamp_min("],
        "Replica link status": ["redis_master_link_up"],
        "Sentinel quorum": ["redis_sentinel_master_ckquorum_status"],
        "HAProxy backend state": ['haproxy_backend_active_servers{namespace="$namespace",pod=~"$pod",proxy=~"node_[0-9]+"}',
                                  'proxy=~"sentinels_name_node_[0-9]+"'],
    }
    for title, needles in wanted.items():
        text = "\n".join(panels[title])
        for needle in needles:
            assert needle in text, (title, needle)
    [timeline] = [p for p in board["panels"] if p["title"] == "Role per pod"]
    assert timeline["type"] == "state-timeline"
    texts = {o["text"] for m in timeline["fieldConfig"]["defaults"]["mappings"] for o in m["options"].values()}
    assert texts == {"primary", "replica"}


@pytest.mark.parametrize("architecture", ["standalone", "replication"])
def test_role_record_of_the_panels_is_rendered(render_chart, architecture):
    """The role record renders in both architectures, so the role and failover panels work on standalone too."""
    values = with_(BASE, **{"valkey.architecture": architecture, "valkey.replicas": 3})
    if architecture == "standalone":
        values = BASE  # the default values, without the key
    [rule] = render_chart(values).of_kind("PrometheusRule")
    records = [r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r]
    assert cache_dashboard.PRIMARY_RECORD in records
