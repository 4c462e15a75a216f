"""promtool on the PrometheusRule the chart renders: `check rules`, then the committed unit tests.

The rule files are generated from fresh renders on every run and written next to copies of the test files
under the fixed names the tests load, so the tests cannot drift from the chart: RULE_FILE from values.yaml
(standalone, the default), REPLICATION_RULE_FILE from values-replication.yaml (the replication alerts
render only there), TLS_RULE_FILE from values-tls.yaml (the certificate alerts need TLS and its Probe) and
TLS_REPLICATION_RULE_FILE from values-tls-replication.yaml (the Probe dials each Sentinel's port too).
"""

from __future__ import annotations

import functools
import re
import shutil
import sys
import subprocess
from pathlib import Path

import pytest
import yaml

from alert_history_cache import chart

RULES_DIR = Path(__file__).resolve().parent
RULE_FILE = "alert-history-rules.yaml"
REPLICATION_RULE_FILE = "alert-history-rules-replication.yaml"
TLS_RULE_FILE = "alert-history-rules-tls.yaml"
TLS_REPLICATION_RULE_FILE = "alert-history-rules-tls-replication.yaml"
VALUES_OF = {RULE_FILE: "values.yaml", REPLICATION_RULE_FILE: "values-replication.yaml",
             TLS_RULE_FILE: "values-tls.yaml", TLS_REPLICATION_RULE_FILE: "values-tls-replication.yaml"}
RELEASE = "alerthistory"
NAMESPACE = "cache"
TEST_FILES = sorted(RULES_DIR.glob("*.test.yaml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (Debian package prometheus)")

# Known alerting pitfalls (maxmemory 0, eviction by design, no traffic, a never-dropping slowlog, a vanished
# target, new or reset counters): each needs a test group whose name starts like this.
PITFALLS = [
    "RedisHighMemoryUsage: pitfall maxmemory 0",
    "RedisHighMemoryUsage: pitfall allkeys eviction",
    "RedisLowHitRate: pitfall no traffic",
    "RedisLowHitRate: pitfall low traffic",
    "RedisSlowQueries: pitfall full but quiet slowlog",
    "RedisTargetAbsent: pitfall pod disappears",
    "RedisOOMErrors: pitfall first error creates the series",
    "RedisOOMErrors: pitfall old errors after a Prometheus restart",
    "RedisNoPrimary: pitfall the primary pod and its exporter are gone",
    "RedisNoPrimary: pitfall a failover within `for`",
    "RedisMultiplePrimaries: pitfall one scrape interval of overlap after a failover",
    "RedisReplicaLinkDown: pitfall the primary has no link series",
    "RedisReplicaLinkDown: pitfall a failover changes master_host",
    "RedisSentinelQuorumUnreachable: pitfall every Sentinel is gone",
    "RedisSentinelQuorumUnreachable: pitfall the check message changes",
    "RedisHAProxyNoBackend: pitfall a failover within `for`",
    "RedisReplicationLag: pitfall the series ends at repl-timeout",
    "RedisBackupTooOld: pitfall a CronJob that never succeeded",
    "RedisBackupTooOld: pitfall no kube-state-metrics series",
    "RedisTLSProbeFailing: pitfall a failed handshake has no expiry series",
    "RedisTLSProbeFailing: pitfall the blackbox exporter is gone",
]

# Alerts with `for` 0: no pending phase to test, instead a group shows them firing at the first evaluation that
# sees the condition. RedisReplicationLag's value is already the length of the silence, and repl-timeout ends
# its series so soon that a 30 s scrape leaves room for one evaluation (see the runbook).
NO_PENDING = {"RedisReplicationLag"}


@functools.lru_cache(maxsize=None)
def _render(rule_file: str) -> str:
    values = yaml.safe_load((RULES_DIR / VALUES_OF[rule_file]).read_text())
    [rule] = chart.render(values, release=RELEASE, namespace=NAMESPACE).of_kind("PrometheusRule")
    return yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False, width=1000)


def rendered_rules(rule_file: str = RULE_FILE) -> dict:
    return yaml.safe_load(_render(rule_file))


def files_loading(rule_file: str) -> list[Path]:
    return [f for f in TEST_FILES if yaml.safe_load(f.read_text())["rule_files"] == [rule_file]]


@pytest.fixture(scope="module")
def rule_files() -> dict[str, dict]:
    return {name: rendered_rules(name) for name in VALUES_OF}


@pytest.fixture(scope="module")
def rules(rule_files) -> dict:
    """Every rule of the renders (the replication and TLS renders are supersets of the standalone one)."""
    return {"groups": rule_files[REPLICATION_RULE_FILE]["groups"] + rule_files[TLS_RULE_FILE]["groups"]}


@pytest.fixture(params=list(VALUES_OF))
def rule_file(request) -> str:
    return request.param


@pytest.fixture
def workdir(tmp_path, rule_file) -> Path:
    """The rendered rule file and the test files that load it, each render checked on its own."""
    (tmp_path / rule_file).write_text(_render(rule_file))
    for f in files_loading(rule_file):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def alerts(rules: dict) -> dict[str, dict]:
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration))


def test_files_load_the_generated_rules():
    assert TEST_FILES, "no tests/rules/*.test.yaml"
    standalone = set(alerts(rendered_rules(RULE_FILE)))
    for f in TEST_FILES:
        [loaded] = yaml.safe_load(f.read_text())["rule_files"]
        assert loaded in VALUES_OF, f.name
        # An alert that renders without replication is tested on the standalone render, the chart's default.
        name = f.name.removesuffix(".test.yaml")
        if name in standalone:
            assert loaded == RULE_FILE, f.name


def test_replication_render_adds_alerts_and_keeps_the_standalone_ones(rule_files):
    standalone, replication = (set(alerts(rule_files[n])) for n in (RULE_FILE, REPLICATION_RULE_FILE))
    assert standalone < replication
    assert replication - standalone == {
        "RedisNoPrimary", "RedisMultiplePrimaries", "RedisReplicaLinkDown", "RedisSentinelQuorumUnreachable",
        "RedisHAProxyNoBackend",
    }


def test_tls_render_adds_the_certificate_alerts_and_keeps_the_standalone_ones(rule_files):
    standalone, tls = (set(alerts(rule_files[n])) for n in (RULE_FILE, TLS_RULE_FILE))
    assert tls - standalone == {"RedisTLSCertificateExpiringSoon", "RedisTLSProbeFailing"}
    assert standalone < tls


@needs_promtool
def test_promtool_check_rules(workdir, rule_file):
    proc = subprocess.run([PROMTOOL, "check", "rules", rule_file], cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = sum(len(g["rules"]) for g in rendered_rules(rule_file)["groups"])
    assert f"SUCCESS: {count} rules found" in proc.stdout, proc.stdout


@needs_promtool
def test_promtool_test_rules(workdir, rule_file):
    names = [f.name for f in files_loading(rule_file)]
    assert names, rule_file
    proc = subprocess.run([PROMTOOL, "test", "rules", *names], cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(names), proc.stdout


@functools.lru_cache(maxsize=1)
def _groups() -> list[dict]:
    return [g for f in TEST_FILES for g in yaml.safe_load(f.read_text())["tests"]]


def _cases(alert: str) -> list[dict]:
    """Per test group that checks `alert`: its name, [(eval seconds, fires?)], and when it asserts pending."""
    pending = re.compile(r'^ALERTS\{alertname="%s",alertstate="pending"\}$' % re.escape(alert))
    out = []
    for group in _groups():
        evals = sorted(
            (seconds(t["eval_time"]), bool(t.get("exp_alerts")))
            for t in group.get("alert_rule_test", [])
            if t["alertname"] == alert
        )
        pending_at = [
            seconds(t["eval_time"])
            for t in group.get("promql_expr_test", [])
            if pending.match(t["expr"].strip()) and t.get("exp_samples")
        ]
        no_pending_at = [
            seconds(t["eval_time"])
            for t in group.get("promql_expr_test", [])
            if pending.match(t["expr"].strip()) and not t.get("exp_samples")
        ]
        if evals or pending_at or no_pending_at:
            out.append({"name": group["name"], "evals": evals, "pending_at": pending_at, "no_pending_at": no_pending_at})
    return out


def test_every_alert_has_firing_pending_and_not_firing_cases(rule_file):
    """Per render: the standalone alerts, then the ones only the replication or the TLS render adds."""
    rules = alerts(rendered_rules(rule_file))
    if rule_file != RULE_FILE:
        rules = {k: v for k, v in rules.items() if k not in alerts(rendered_rules(RULE_FILE))}
    for name, rule in rules.items():
        cases = _cases(name)
        hold = seconds(rule["for"])
        if name in NO_PENDING:
            assert hold == 0, f"{name}: NO_PENDING says its `for` is 0"
            # No pending phase: the first evaluation that sees the condition fires, and ALERTS has no pending sample.
            assert any(
                any(fires for _, fires in c["evals"]) and any(t in c["no_pending_at"] for t, fires in c["evals"] if fires)
                for c in cases
            ), f"{name}: no group that shows the alert firing with no pending sample at the same time"
        else:
            assert hold > 0, f"{name}: a `for` of 0 leaves no pending phase to test"
        # Pending: ALERTS{alertstate="pending"} holds and the alert is not reported yet; later the same input fires.
        assert name in NO_PENDING or any(
            any(
                (t1, False) in c["evals"] and any(fires and t2 > t1 for t2, fires in c["evals"])
                for t1 in c["pending_at"]
            )
            for c in cases
        ), f"{name}: no group that shows the alert pending (ALERTS, no exp_alerts) and then firing"
        # Not firing: a group that evaluates beyond `for` and never expects the alert.
        assert any(
            c["evals"] and not any(f for _, f in c["evals"]) and max(t for t, _ in c["evals"]) > hold for c in cases
        ), f"{name}: no group that stays silent beyond `for` ({rule['for']})"


def test_pitfall_cases_exist():
    groups = [g["name"] for g in _groups()]
    for pitfall in PITFALLS:
        assert any(g.startswith(pitfall) for g in groups), f"missing test group {pitfall!r}"


def test_every_test_file_matches_an_alert(rules):
    """RedisDown.test.yaml tests RedisDown: a renamed alert cannot leave its tests behind."""
    names = set(alerts(rules)) | {"selectors", "records", "replication-selectors", "replication-records",
                                  "tls-replication"}
    for f in TEST_FILES:
        assert f.name.removesuffix(".test.yaml") in names, f.name


@needs_promtool
def test_every_dashboard_target_is_valid_promql(tmp_path):
    """Each panel query, with Grafana's variables resolved, passes promtool's PromQL parser."""
    sys.path.insert(0, str(chart.REPO_ROOT))
    from dashboards import cache_dashboard

    exprs = cache_dashboard.panel_exprs(namespace=NAMESPACE, pod=f"{RELEASE}-redis-0", rate_interval="1m")
    rules = {"groups": [{"name": "panels", "rules": [{"record": f"panel:{i}", "expr": e} for i, (_, e) in enumerate(exprs)]}]}
    (tmp_path / "panels.yaml").write_text(yaml.safe_dump(rules))
    proc = subprocess.run([PROMTOOL, "check", "rules", "panels.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_replication_alert_drills_cover_every_replication_alert(rule_files):
    """tests/rules/replication-alert-drills.yaml, the plan of the end-to-end firings, names every alert that
    only a replication release can fire, and only existing alerts."""
    plan = yaml.safe_load((RULES_DIR / "replication-alert-drills.yaml").read_text())
    replication_only = set(alerts(rule_files[REPLICATION_RULE_FILE])) - set(alerts(rule_files[RULE_FILE]))
    assert set(plan["alerts"]) == replication_only | {"RedisReplicationLag"}
    for name, drill in plan["alerts"].items():
        assert {"induce", "expect", "watch", "remove"} <= set(drill) <= {"induce", "expect", "watch", "remove", "also"}, name
        # expect (and each of also's) is a non-empty list of label sets: label -> value (a string, a number, or
        # null for "absent"), for alerts that exist.
        for alert, label_sets in {name: drill["expect"], **drill.get("also", {})}.items():
            assert alert in replication_only | {"RedisReplicationLag"}, (name, alert)
            assert isinstance(label_sets, list) and label_sets, (name, alert)
            for labels in label_sets:
                assert isinstance(labels, dict) and labels, (name, alert, labels)
                assert all(v is None or isinstance(v, (str, int)) for v in labels.values()), (name, alert, labels)
    assert set(plan["values"]["monitoring"]["rules"]) == {a[0].lower() + a[1:] for a in plan["alerts"]}
    # The drill values render, and shorten every `for` they name.
    [rule] = chart.render(plan["values"], release=RELEASE, namespace=NAMESPACE).of_kind("PrometheusRule")
    got = alerts({"groups": rule["spec"]["groups"]})
    assert {name: got[name]["for"] for name in plan["alerts"]} == {name: "5s" for name in plan["alerts"]}


@needs_promtool
def test_replication_alert_drill_queries_are_valid_promql(tmp_path):
    plan = yaml.safe_load((RULES_DIR / "replication-alert-drills.yaml").read_text())
    records = [{"record": f"drill:{i}", "expr": d["watch"].replace("<ns>", NAMESPACE)}
               for i, d in enumerate(plan["alerts"].values())]
    (tmp_path / "drills.yaml").write_text(yaml.safe_dump({"groups": [{"name": "drills", "rules": records}]}))
    proc = subprocess.run([PROMTOOL, "check", "rules", "drills.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_queries_under_promtool_are_the_dashboards():
    """records.test.yaml tests panel queries ("Dashboard: ..." groups): they must be the dashboard's own."""
    sys.path.insert(0, str(chart.REPO_ROOT))
    from dashboards import cache_dashboard

    panels = dict(cache_dashboard.panel_exprs(namespace=NAMESPACE))
    groups = [g for g in yaml.safe_load((RULES_DIR / "records.test.yaml").read_text())["tests"]
              if g["name"].startswith("Dashboard: replication offset lag")]
    assert groups
    for group in groups:
        assert {t["expr"] for t in group["promql_expr_test"]} == {panels["Replication offset lag"]}
