"""The PrometheusRule at render level: alert set, labels and annotations, values wiring, selector scoping,
pitfall guards. Behaviour over time is proven by promtool in tests/rules/."""

from __future__ import annotations

import re

import pytest
from helpers.values import CI_DIR, load_yaml, with_

from alert_history_cache import chart

BASE = {**load_yaml(CI_DIR / "default-values.yaml"), "fullnameOverride": "alerthistory"}
NS = "cache"
SEL = 'job="alerthistory-redis-metrics",namespace="cache"'
SPEC_ALERTS = [
    "RedisDown", "RedisOutOfMemory", "RedisTooManyConnections", "RedisRejectedConnections",
    "RedisPersistenceFailure", "RedisHighMemoryUsage", "RedisHighConnectionUsage", "RedisSlowQueries",
    "RedisReplicationLag", "RedisLowHitRate",
]  # fmt: skip
EXTRA_ALERTS = ["RedisTargetAbsent", "RedisExporterDown", "RedisAofWriteFailure", "RedisUnsavedChangesGrowing", "RedisOOMErrors"]
REPLICATION_ALERTS = [
    "RedisNoPrimary", "RedisMultiplePrimaries", "RedisReplicaLinkDown", "RedisSentinelQuorumUnreachable",
    "RedisHAProxyNoBackend",
]  # fmt: skip
RUNBOOKS = chart.REPO_ROOT / "docs" / "runbooks"
REPLICATION = with_(BASE, **{"valkey.architecture": "replication", "valkey.replicas": 3})
SENTINEL_SEL = 'job="alerthistory-redis-sentinel",namespace="cache"'
HAPROXY_SEL = 'job="alerthistory-redis-haproxy-metrics",namespace="cache"'
CRONJOB_SEL = 'namespace="cache",cronjob="alerthistory-redis-backup"'
BACKUP = with_(BASE, **{"backup.enabled": True})




def rule_object(render_chart, values=BASE) -> dict:
    [obj] = render_chart(values, namespace=NS).of_kind("PrometheusRule")
    return obj


def alerts(render_chart, values=BASE) -> dict[str, dict]:
    obj = rule_object(render_chart, values)
    return {r["alert"]: r for g in obj["spec"]["groups"] for r in g["rules"] if "alert" in r}


def key_of(alert: str) -> str:
    return alert[0].lower() + alert[1:]


@pytest.fixture(scope="module")
def default(render_chart):
    return alerts(render_chart)


@pytest.fixture(scope="module")
def replication(render_chart):
    return alerts(render_chart, REPLICATION)


@pytest.fixture(scope="module")
def backup(render_chart):
    return alerts(render_chart, BACKUP)


def test_the_required_alerts_and_the_extras_render_by_default(default):
    assert sorted(default) == sorted(SPEC_ALERTS + EXTRA_ALERTS)


def test_replication_alerts_render_only_with_replication(default, replication):
    assert sorted(replication) == sorted(SPEC_ALERTS + EXTRA_ALERTS + REPLICATION_ALERTS)
    assert not set(REPLICATION_ALERTS) & set(default)


@pytest.mark.parametrize("render", ["default", "replication", "backup"])
def test_labels_and_annotations_of_every_alert(request, render):
    base = "https://github.com/alert-history/alert-history-cache/blob/main/docs/runbooks"
    # Alerts about the whole release, not one pod: they name the namespace instead.
    release_wide = {"RedisNoPrimary", "RedisMultiplePrimaries", "RedisBackupTooOld"}
    for name, rule in request.getfixturevalue(render).items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["labels"]["component"] == "redis", name
        ann = rule["annotations"]
        assert set(ann) == {"summary", "description", "runbook_url"}, name
        assert ann["summary"].endswith(".") and "{{" not in ann["summary"], name
        # Prometheus templates survive Helm (escaped in the chart), pod and value in every description.
        assert ("{{ $labels.namespace }}" if name in release_wide else "{{ $labels.pod }}") in ann["description"], name
        assert re.search(r"\{\{ \$value( \| \w+)? \}\}", ann["description"]), name
        assert ann["runbook_url"] == f"{base}/{name}.md", name


@pytest.mark.parametrize("render", ["default", "replication", "backup"])
def test_every_alert_has_a_runbook_with_the_four_sections(request, render):
    for name in request.getfixturevalue(render):
        path = RUNBOOKS / f"{name}.md"
        assert path.is_file(), f"missing {path}"
        headings = re.findall(r"^## (\w+)", path.read_text(), flags=re.M)
        assert headings[:4] == ["Meaning", "Impact", "Diagnosis", "Mitigation"], (name, headings)


@pytest.mark.parametrize("values", [BASE, REPLICATION, BACKUP], ids=["standalone", "replication", "backup"])
def test_every_selector_is_scoped_to_the_release(render_chart, values):
    obj = rule_object(render_chart, values)
    for group in obj["spec"]["groups"]:
        for rule in group["rules"]:
            expr = re.sub(r'"[^"]*"', lambda m: m.group(0).replace("{", "").replace("}", ""), rule["expr"])
            selectors = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr)
            assert selectors, rule
            for metric, matchers in selectors:
                # Sentinel's and HAProxy's series come from their own scrape jobs.
                own = {"redis_sentinel": [SENTINEL_SEL], "haproxy": [HAPROXY_SEL], "up": [SEL, HAPROXY_SEL],
                       "kube_cronjob": [CRONJOB_SEL]}  # kube-state-metrics: any job, this CronJob
                want = next((v for k, v in own.items() if metric.startswith(k)), [SEL])
                assert matchers.startswith(tuple(want)), (rule.get("alert") or rule.get("record"), metric, matchers)
            # No metric without a selector: every redis_* or haproxy_* name and `up` is followed by `{`.
            bare = re.findall(r"\b(redis_[a-z0-9_]+|haproxy_[a-z0-9_]+|up)\b(?!\{)", expr)
            assert bare == [], (rule.get("alert"), bare)


def test_guards_against_the_pitfalls(default):
    assert f"(redis_memory_max_bytes{{{SEL}}} > 0)" in default["RedisHighMemoryUsage"]["expr"]
    assert 'maxmemory_policy!~"allkeys-.*"' in default["RedisHighMemoryUsage"]["expr"]
    for name in ("RedisTooManyConnections", "RedisHighConnectionUsage"):
        assert f"(redis_config_maxclients{{{SEL}}} > 0)" in default[name]["expr"]
    assert default["RedisSlowQueries"]["expr"].startswith(f"increase(redis_slowlog_last_id{{{SEL}}}[5m])")
    assert "slowlog_length" not in default["RedisSlowQueries"]["expr"]
    assert default["RedisRejectedConnections"]["expr"].startswith("increase(redis_rejected_connections_total")
    low = default["RedisLowHitRate"]["expr"]
    assert re.search(r"\) > 10$", low), "the hit rate needs a minimum request rate"
    assert default["RedisExporterDown"]["expr"] == f"up{{{SEL}}} == 0"
    assert default["RedisTargetAbsent"]["expr"] == f'absent(up{{{SEL},pod="alerthistory-redis-0"}})'
    assert 'err="OOM"' in default["RedisOOMErrors"]["expr"]


def test_rss_is_judged_against_the_rendered_container_limit(render_chart):
    for quantity, number in [("512Mi", 536870912), ("1Gi", 1073741824), ("1G", 1000000000)]:
        # The request moves with the limit: Kubernetes refuses a request above its limit, and so does the chart.
        values = with_(BASE, **{"valkey.resources.limits.memory": quantity, "valkey.resources.requests.memory": quantity,
                                "valkey.settings.maxmemory": "100mb"})
        obj = rule_object(render_chart, values)
        oom = {r["alert"]: r for g in obj["spec"]["groups"] for r in g["rules"] if "alert" in r}["RedisOutOfMemory"]
        assert oom["expr"] == f"redis_memory_used_rss_bytes{{{SEL}}} / {number} > 0.9"
        assert quantity in oom["annotations"]["description"]
        [record] = [r for g in obj["spec"]["groups"] for r in g["rules"]
                    if r.get("record") == "alerthistory:redis_container_memory_limit_bytes"]
        assert record["expr"] == f"up{{{SEL}}} * 0 + {number}"


def test_without_a_memory_limit_there_is_no_rss_alert_and_no_limit_record(render_chart):
    values = with_(BASE, **{"valkey.resources.limits.memory": None})  # null removes a default in Helm
    obj = rule_object(render_chart, values)
    assert "RedisOutOfMemory" not in alerts(render_chart, values)
    records = [r["record"] for g in obj["spec"]["groups"] for r in g["rules"] if "record" in r]
    assert records == ["alerthistory:redis_is_primary"]


def test_conditional_alerts(render_chart):
    assert "RedisTargetAbsent" not in alerts(render_chart, with_(BASE, **{"valkey.replicas": 0}))
    no_rdb = with_(BASE, **{"valkey.settings.save": [], "valkey.settings.appendonly": True})
    assert "RedisUnsavedChangesGrowing" not in alerts(render_chart, no_rdb)


@pytest.mark.parametrize("alert", SPEC_ALERTS + EXTRA_ALERTS)
def test_each_alert_can_be_switched_off(render_chart, default, alert):
    got = alerts(render_chart, with_(BASE, **{f"monitoring.rules.{key_of(alert)}.enabled": False}))
    assert sorted(got) == sorted(set(default) - {alert})


@pytest.mark.parametrize("alert", REPLICATION_ALERTS)
def test_each_replication_alert_can_be_switched_off(render_chart, replication, alert):
    got = alerts(render_chart, with_(REPLICATION, **{f"monitoring.rules.{key_of(alert)}.enabled": False}))
    assert sorted(got) == sorted(set(replication) - {alert})


def test_replication_alerts_guard_against_the_pitfalls(replication):
    master = f'redis_instance_info{{{SEL},role="master"}}'
    # A dead primary's exporter dies with it: absent(), since count() of nothing is nothing, not 0.
    assert replication["RedisNoPrimary"]["expr"] == f"absent({master})"
    assert replication["RedisMultiplePrimaries"]["expr"] == f"count by (job, namespace) ({master}) > 1"
    # Only replicas have the link series; the master_host label changes on a failover.
    assert replication["RedisReplicaLinkDown"]["expr"] == (
        f"min without (master_host, master_port) (redis_master_link_up{{{SEL}}}) == 0")
    quorum = replication["RedisSentinelQuorumUnreachable"]["expr"]
    assert "min without (message)" in quorum and "or vector(0)) < 2," in quorum and "or on (namespace)" in quorum
    haproxy = replication["RedisHAProxyNoBackend"]["expr"]
    # Per HAProxy pod, not per backend: only the primary's backends have live servers on a healthy release.
    assert haproxy.startswith(f'max by (job, namespace, pod, instance) (haproxy_backend_active_servers{{{HAPROXY_SEL},'
                              f'proxy=~"node_[0-9]+"}}) * 0\nunless on (job, namespace, pod, instance)\n')
    assert f'proxy=~"sentinels_name_node_[0-9]+"}} >= 2' in haproxy and "or on (namespace)" in haproxy
    assert f"(count(up{{{HAPROXY_SEL}}} == 1) or vector(0)) == 0" in haproxy


@pytest.mark.parametrize("replicas, quorum, needed", [(3, None, 2), (5, None, 3), (5, 4, 4), (5, 1, 3)])
def test_sentinel_quorum_alert_needs_the_quorum_and_a_majority(render_chart, replicas, quorum, needed):
    dotted = {"valkey.replicas": replicas}
    if quorum is not None:
        dotted["valkey.sentinel.quorum"] = quorum
    rule = alerts(render_chart, with_(REPLICATION, **dotted))["RedisSentinelQuorumUnreachable"]
    assert f"or vector(0)) < {needed}," in rule["expr"]
    assert f"a failover needs {needed}:" in rule["annotations"]["description"]


def test_replication_alerts_for_and_severity_from_values(render_chart, replication):
    defaults = {a: (replication[a]["for"], replication[a]["labels"]["severity"]) for a in REPLICATION_ALERTS}
    assert defaults == {
        "RedisNoPrimary": ("1m", "critical"), "RedisMultiplePrimaries": ("1m", "critical"),
        "RedisReplicaLinkDown": ("2m", "warning"), "RedisSentinelQuorumUnreachable": ("1m", "critical"),
        "RedisHAProxyNoBackend": ("1m", "critical"),
    }  # fmt: skip
    # A values key overrides its default alone; the others keep theirs.
    got = alerts(render_chart, with_(REPLICATION, **{"monitoring.rules.redisReplicaLinkDown.for": "5m"}))
    assert (got["RedisReplicaLinkDown"]["for"], got["RedisReplicaLinkDown"]["labels"]["severity"]) == ("5m", "warning")


def test_thresholds_for_and_severity_come_from_values(render_chart):
    rules = {
        "redisOutOfMemory": 0.8, "redisHighMemoryUsage": 0.7, "redisTooManyConnections": 0.99,
        "redisHighConnectionUsage": 0.6, "redisRejectedConnections": 3, "redisUnsavedChangesGrowing": 7200,
        "redisOOMErrors": 2, "redisSlowQueries": 25, "redisReplicationLag": 45, "redisLowHitRate": 0.25,
    }  # fmt: skip
    dotted = {f"monitoring.rules.{k}.threshold": v for k, v in rules.items()}
    dotted["monitoring.rules.redisLowHitRate.minRequestRate"] = 50
    dotted["monitoring.rules.redisDown.for"] = "3m"
    dotted["monitoring.rules.redisDown.severity"] = "warning"
    dotted["monitoring.prometheusRule.rateWindow"] = "10m"
    dotted["monitoring.prometheusRule.alertLabels"] = {"team": "alert-history"}
    got = alerts(render_chart, with_(BASE, **dotted))
    for key, value in rules.items():
        alert = key[0].upper() + key[1:]
        assert re.search(rf"[<>] {re.escape(str(value))}(\n|$)", got[alert]["expr"]), (alert, got[alert]["expr"])
    assert got["RedisLowHitRate"]["expr"].endswith("> 50")
    assert (got["RedisDown"]["for"], got["RedisDown"]["labels"]["severity"]) == ("3m", "warning")
    assert "[10m]" in got["RedisSlowQueries"]["expr"] and "[5m]" not in got["RedisSlowQueries"]["expr"]
    assert "offset 10m" in got["RedisOOMErrors"]["expr"]
    assert all(r["labels"]["team"] == "alert-history" for r in got.values())


def test_rule_object_metadata_from_values(render_chart):
    values = with_(
        BASE,
        **{
            "monitoring.prometheusRule.namespace": "monitoring",
            "monitoring.prometheusRule.labels": {"release": "kube-prometheus-stack"},
            "monitoring.prometheusRule.evaluationInterval": "15s",
            "monitoring.runbookBaseUrl": "https://runbooks.example.com/cache/",
        },
    )
    obj = rule_object(render_chart, values)
    assert obj["metadata"]["namespace"] == "monitoring"
    assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert {g["interval"] for g in obj["spec"]["groups"]} == {"15s"}
    rule = obj["spec"]["groups"][0]["rules"][0]
    assert rule["annotations"]["runbook_url"] == f"https://runbooks.example.com/cache/{rule['alert']}.md"
    # Whatever namespace the rule object lives in, the expressions select the release namespace.
    assert SEL in rule["expr"]


@pytest.mark.parametrize(
    "dotted, message",
    [
        ({"monitoring.prometheusRule.rateWindow": "45s"}, "rateWindow"),
        ({"monitoring.rules.redisDown.severity": "page"}, "severity"),
        ({"monitoring.rules.redisLowHitRate.threshold": 1.5}, "threshold"),
        ({"monitoring.rules.redisDown.threshold": 1}, "threshold"),
        ({"monitoring.rules.redisDown.for": "1 minute"}, "for"),
        ({"monitoring.prometheusRule.alertLabels": {"severity": "page"}}, "severity"),
        ({"monitoring.runbookBaseUrl": "docs/runbooks"}, "runbookBaseUrl"),
    ],
)
def test_bad_values_fail_the_render(render_chart, dotted, message):
    with pytest.raises(chart.RenderError, match=message):
        rule_object(render_chart, with_(BASE, **dotted))


def test_replication_lag_for_must_fit_before_repl_timeout(render_chart):
    """The lag series end at repl-timeout: the scrapes sure to fall between lag > threshold and then must cover
    `for` plus one evaluation interval. A faster scrape and evaluation, or a longer repl-timeout, make room."""
    lag_for = {"monitoring.rules.redisReplicationLag.for": "15s"}
    fast = {"valkey.exporter.serviceMonitor.interval": "15s", "monitoring.prometheusRule.evaluationInterval": "15s"}
    # floor((60 - 20 - 1) / 15) = 2 scrapes, 30 s: `for` 15s plus one 15 s evaluation fit.
    assert alerts(render_chart, with_(REPLICATION, **lag_for, **fast))["RedisReplicationLag"]["for"] == "15s"
    # The same with 30 s evaluations (or, with evaluationInterval empty, 30 s scrapes) does not.
    for slow in ({**fast, "monitoring.prometheusRule.evaluationInterval": "30s"}, {}):
        with pytest.raises(chart.RenderError, match=r"redisReplicationLag.for \(15s\) can never fire"):
            render_chart(with_(REPLICATION, **lag_for, **slow), namespace=NS)
    # repl-timeout 120 through valkey.extraConfig: floor(99 / 30) = 3 scrapes, 90 s, cover 15 s plus 30 s.
    longer = {"valkey.extraConfig": "repl-timeout 120\n"}
    assert alerts(render_chart, with_(REPLICATION, **lag_for, **longer))["RedisReplicationLag"]["for"] == "15s"
    # Standalone has no lag series, and a disabled alert nothing to fire: neither is checked.
    assert "RedisReplicationLag" in alerts(render_chart, with_(BASE, **{"monitoring.rules.redisReplicationLag.for": "5m"}))
    off = {"monitoring.rules.redisReplicationLag.enabled": False, "monitoring.rules.redisReplicationLag.for": "5m"}
    assert "RedisReplicationLag" not in alerts(render_chart, with_(REPLICATION, **off))


def test_the_backup_alert_renders_only_with_backups_and_reads_kube_state_metrics(render_chart, default, backup):
    assert "RedisBackupTooOld" not in default
    assert sorted(backup) == sorted(SPEC_ALERTS + EXTRA_ALERTS + ["RedisBackupTooOld"])
    rule = backup["RedisBackupTooOld"]
    assert (rule["for"], rule["labels"]["severity"]) == ("15m", "warning")
    expr = rule["expr"]
    # Too old; never succeeded since creation (no last_successful_time series yet); no series at all.
    assert f"kube_cronjob_status_last_successful_time{{{CRONJOB_SEL}}}) > 93600" in expr
    assert f"kube_cronjob_created{{{CRONJOB_SEL}}}) > 93600\n  unless on (namespace, cronjob)" in expr
    assert expr.endswith(f"absent(kube_cronjob_created{{{CRONJOB_SEL}}})")
    hourly = alerts(render_chart, with_(BACKUP, **{"backup.alert.maxAge": "2h", "backup.schedule": "0 * * * *",
                                                   "monitoring.rules.redisBackupTooOld.severity": "critical"}))
    assert "> 7200" in hourly["RedisBackupTooOld"]["expr"]
    assert hourly["RedisBackupTooOld"]["labels"]["severity"] == "critical"
    off = alerts(render_chart, with_(BACKUP, **{"monitoring.rules.redisBackupTooOld.enabled": False}))
    assert "RedisBackupTooOld" not in off


def test_a_max_age_within_the_run_deadlines_is_refused(render_chart):
    with pytest.raises(chart.RenderError, match=r"backup.alert.maxAge: 1h is not above backup.startingDeadlineSeconds"):
        render_chart(with_(BACKUP, **{"backup.alert.maxAge": "1h"}))
