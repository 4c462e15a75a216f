"""The NetworkPolicies (docs/requirements.md), proved with network-config-analyzer on the rendered objects.

Each case asks nca whether the rendered policies permit (or forbid) one connection between the
rendered cache pods (or, with replication, the HAProxy pods) and a sample pod of
tests/security/nca/cluster.yaml; nca answers by exit code.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from alert_history_cache.chart import REPO_ROOT, render

NCA = REPO_ROOT / ".venv-nca" / "bin" / "nca"
CLUSTER = REPO_ROOT / "tests" / "security" / "nca" / "cluster.yaml"
NAMESPACE = "alert-history"
NAME = "alerthistory-redis"
OUTSIDE = "203.0.113.7/32"  # TEST-NET-3: an address outside the cluster

needs_nca = pytest.mark.skipif(not NCA.exists(), reason=f"{NCA} missing (scripts/setup.sh installs it)")


def _values(**np) -> dict:
    return {"fullnameOverride": "alerthistory", "valkey": {"networkPolicy": {"enabled": True, **np}}}


def _render(values: dict):
    return render(values, namespace=NAMESPACE)


# --- render-level shape ------------------------------------------------------------------------


def test_disabled_by_default_renders_no_policy():
    assert _render({"fullnameOverride": "alerthistory"}).of_kind("NetworkPolicy") == []


def test_policy_selects_the_cache_pods_and_restricts_both_directions():
    m = _render(_values())
    np = m.get("NetworkPolicy", NAME)
    sts = m.get("StatefulSet", NAME)
    assert np["spec"]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    client, metrics = np["spec"]["ingress"]
    assert client["ports"] == [{"port": 6379, "protocol": "TCP"}]
    # No namespaceSelector: the application peer is confined to the release namespace.
    assert client["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "application"}}}]
    assert metrics["ports"] == [{"port": 9121, "protocol": "TCP"}]
    # One peer holding both selectors (AND), not two peers (OR).
    assert metrics["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    assert np["spec"]["egress"] == [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]


def test_no_exporter_no_metrics_ingress():
    values = _values()
    values["valkey"]["exporter"] = {"enabled": False}
    values["monitoring"] = {"prometheusEnabled": False}
    np = _render(values).get("NetworkPolicy", NAME)
    assert [r["ports"][0]["port"] for r in np["spec"]["ingress"]] == [6379]


# --- nca proofs ----------------------------------------------------------------------------------

def _peer(namespace: str, labels: dict) -> dict:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": labels},
    }


PROMETHEUS = _peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
GRAFANA = _peer("monitoring", {"app.kubernetes.io/name": "grafana"})
SAME_NS_APP = _peer(NAMESPACE, {"app.kubernetes.io/component": "application"})
SAME_NS_PLAIN = _peer(NAMESPACE, {"app": "debug-shell"})
SAME_NS_FAKE_PROMETHEUS = _peer(NAMESPACE, {"app.kubernetes.io/name": "prometheus"})
OTHER_NS_APP = _peer("other", {"app.kubernetes.io/component": "application"})
OTHER_NS_PROMETHEUS = _peer("other", {"app.kubernetes.io/name": "prometheus"})
BATCH_REPORTER = _peer("batch", {"app": "reporter"})
COREDNS = _peer("kube-system", {"k8s-app": "kube-dns"})
OUTSIDE_IP = {"ipBlock": {"cidr": OUTSIDE}}
CACHE_PODS = _peer(NAMESPACE, {"app.kubernetes.io/component": "redis"})
HAPROXY_PODS = _peer(NAMESPACE, {"app.kubernetes.io/component": "haproxy"})
BACKUP_PODS = _peer(NAMESPACE, {"app.kubernetes.io/component": "backup"})
REPLICATION_EGRESS = {"to": [{"podSelector": CACHE_PODS["podSelector"]}], "ports": [{"port": 6379, "protocol": "TCP"}]}


def _query(direction: str, peer: dict, port: int, protocol: str = "TCP", target: str = "redis") -> dict:
    """A NetworkPolicy that describes one connection to (ingress) or from (egress) the cache pods (target
    "redis", the data pods) or the HAProxy pods (target "haproxy")."""
    rule = {"ports": [{"port": port, "protocol": protocol}], ("from" if direction == "ingress" else "to"): [peer]}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "query", "namespace": NAMESPACE},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": target}},
            "policyTypes": ["Ingress" if direction == "ingress" else "Egress"],
            direction: [rule],
        },
    }


RCLONE = {"enabled": True, "remote": "offsite:alert-history/", "existingSecret": "alert-history-rclone"}
SFTP_HOST = {"ipBlock": {"cidr": "198.51.100.10/32"}}  # TEST-NET-2, inside the narrowed rule's block
REPLICATION = {"extraEgress": [REPLICATION_EGRESS], "extraIngress": [{"podSelector": CACHE_PODS["podSelector"]}]}
VALUE_SETS = {
    "defaults": _values(),
    "extra-ingress": _values(extraIngress=[BATCH_REPORTER]),
    "dns-narrowed": _values(dnsTo=[COREDNS]),
    "replication-egress-only": _values(extraEgress=[REPLICATION_EGRESS]),
    "replication": _values(**REPLICATION),
    "no-exporter": {"fullnameOverride": "alerthistory", "monitoring": {"prometheusEnabled": False},
                    "valkey": {"networkPolicy": {"enabled": True}, "exporter": {"enabled": False}}},
    # Negative control: without the policy the forbidden connections are open, so the proofs can fail.
    "disabled": _values(enabled=False),
    "ha": {**_values(), "valkey": {"architecture": "replication", "replicas": 3, "networkPolicy": {"enabled": True}}},
    # The backup CronJob's pods (backup.enabled), standalone and with replication.
    "backup": {**_values(), "backup": {"enabled": True}},
    "ha-backup": {**_values(), "backup": {"enabled": True},
                  "valkey": {"architecture": "replication", "replicas": 3, "networkPolicy": {"enabled": True}}},
    # Off-site copies (backup.rclone): the default egress (HTTPS anywhere), and one narrowed to an SFTP host.
    "backup-rclone": {**_values(), "backup": {"enabled": True, "rclone": RCLONE}},
    "backup-rclone-sftp": {**_values(), "backup": {"enabled": True, "rclone": {**RCLONE, "egress": [
        {"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"port": 22, "protocol": "TCP"}]}]}}},
}

# (id, value set, direction, peer, port, protocol, permitted)
CASES = [
    ("app-same-ns-to-6379", "defaults", "ingress", SAME_NS_APP, 6379, "TCP", True),
    ("app-same-ns-to-9121", "defaults", "ingress", SAME_NS_APP, 9121, "TCP", False),
    ("unlabelled-same-ns-to-6379", "defaults", "ingress", SAME_NS_PLAIN, 6379, "TCP", False),
    ("app-other-ns-to-6379", "defaults", "ingress", OTHER_NS_APP, 6379, "TCP", False),
    ("prometheus-to-9121", "defaults", "ingress", PROMETHEUS, 9121, "TCP", True),
    ("prometheus-to-6379", "defaults", "ingress", PROMETHEUS, 6379, "TCP", False),
    ("grafana-in-monitoring-to-9121", "defaults", "ingress", GRAFANA, 9121, "TCP", False),
    ("prometheus-label-other-ns-to-9121", "defaults", "ingress", OTHER_NS_PROMETHEUS, 9121, "TCP", False),
    ("prometheus-label-release-ns-to-9121", "defaults", "ingress", SAME_NS_FAKE_PROMETHEUS, 9121, "TCP", False),
    ("outside-ip-to-6379", "defaults", "ingress", OUTSIDE_IP, 6379, "TCP", False),
    ("batch-to-6379", "defaults", "ingress", BATCH_REPORTER, 6379, "TCP", False),
    ("dns-udp-to-coredns", "defaults", "egress", COREDNS, 53, "UDP", True),
    ("dns-tcp-to-coredns", "defaults", "egress", COREDNS, 53, "TCP", True),
    ("dns-to-outside-resolver", "defaults", "egress", OUTSIDE_IP, 53, "UDP", True),
    ("egress-to-outside-ip-443", "defaults", "egress", OUTSIDE_IP, 443, "TCP", False),
    ("egress-to-app-pod", "defaults", "egress", SAME_NS_APP, 8080, "TCP", False),
    ("egress-to-prometheus", "defaults", "egress", PROMETHEUS, 9090, "TCP", False),
    ("egress-to-cache-pods", "defaults", "egress", CACHE_PODS, 6379, "TCP", False),
    # extraIngress admits the batch namespace on the client port only.
    ("extra-ingress-batch-to-6379", "extra-ingress", "ingress", BATCH_REPORTER, 6379, "TCP", True),
    ("extra-ingress-batch-to-9121", "extra-ingress", "ingress", BATCH_REPORTER, 9121, "TCP", False),
    ("extra-ingress-other-ns-app-to-6379", "extra-ingress", "ingress", OTHER_NS_APP, 6379, "TCP", False),
    # dnsTo narrows DNS to the cluster DNS pods: an outside resolver is then refused.
    ("dns-narrowed-to-coredns", "dns-narrowed", "egress", COREDNS, 53, "UDP", True),
    ("dns-narrowed-to-outside-resolver", "dns-narrowed", "egress", OUTSIDE_IP, 53, "UDP", False),
    # Replication between cache pods (later) needs both directions: extraEgress alone is not enough.
    ("replication-egress-only", "replication-egress-only", "egress", CACHE_PODS, 6379, "TCP", False),
    ("replication-both-directions", "replication", "egress", CACHE_PODS, 6379, "TCP", True),
    ("no-exporter-prometheus-to-9121", "no-exporter", "ingress", PROMETHEUS, 9121, "TCP", False),
    ("disabled-app-other-ns-to-6379", "disabled", "ingress", OTHER_NS_APP, 6379, "TCP", True),
    ("disabled-egress-to-outside-ip", "disabled", "egress", OUTSIDE_IP, 443, "TCP", True),
    # Standalone: no Sentinel port between cache pods.
    ("no-sentinel-port-between-cache-pods", "defaults", "ingress", CACHE_PODS, 26379, "TCP", False),
    # Replication (value set "ha"): data pods <-> data pods on the server and Sentinel ports, both directions.
    ("ha-replication-into-data-pods", "ha", "ingress", CACHE_PODS, 6379, "TCP", True),
    ("ha-sentinel-into-data-pods", "ha", "ingress", CACHE_PODS, 26379, "TCP", True),
    ("ha-replication-out-of-data-pods", "ha", "egress", CACHE_PODS, 6379, "TCP", True),
    ("ha-sentinel-out-of-data-pods", "ha", "egress", CACHE_PODS, 26379, "TCP", True),
    ("ha-data-pods-to-other-port", "ha", "egress", CACHE_PODS, 9121, "TCP", False),
    ("ha-data-pods-to-outside-6379", "ha", "egress", OUTSIDE_IP, 6379, "TCP", False),
    ("ha-data-pods-to-haproxy", "ha", "egress", HAPROXY_PODS, 6379, "TCP", False),
    # HAProxy -> data pods: client connections and role checks on 6379, Sentinel checks on 26379.
    ("ha-haproxy-into-data-pods-6379", "ha", "ingress", HAPROXY_PODS, 6379, "TCP", True),
    ("ha-haproxy-into-data-pods-26379", "ha", "ingress", HAPROXY_PODS, 26379, "TCP", True),
    ("ha-haproxy-into-data-pods-9121", "ha", "ingress", HAPROXY_PODS, 9121, "TCP", False),
    # Sentinel-aware application pods reach the Sentinels and the servers; nobody else does.
    ("ha-app-to-sentinel", "ha", "ingress", SAME_NS_APP, 26379, "TCP", True),
    ("ha-app-to-data-pods-6379", "ha", "ingress", SAME_NS_APP, 6379, "TCP", True),
    ("ha-unlabelled-to-sentinel", "ha", "ingress", SAME_NS_PLAIN, 26379, "TCP", False),
    ("ha-app-other-ns-to-sentinel", "ha", "ingress", OTHER_NS_APP, 26379, "TCP", False),
    ("ha-batch-to-sentinel", "ha", "ingress", BATCH_REPORTER, 26379, "TCP", False),
    ("ha-prometheus-to-sentinel-exporter", "ha", "ingress", PROMETHEUS, 9355, "TCP", True),
    ("ha-app-to-sentinel-exporter", "ha", "ingress", SAME_NS_APP, 9355, "TCP", False),
    ("ha-prometheus-to-sentinel", "ha", "ingress", PROMETHEUS, 26379, "TCP", False),
    # The HAProxy pods' own policy: the application in, on the client port; Prometheus on the metrics port.
    ("ha-app-to-haproxy", "ha", "ingress", SAME_NS_APP, 6379, "TCP", True, "haproxy"),
    ("ha-app-to-haproxy-metrics", "ha", "ingress", SAME_NS_APP, 8404, "TCP", False, "haproxy"),
    ("ha-unlabelled-to-haproxy", "ha", "ingress", SAME_NS_PLAIN, 6379, "TCP", False, "haproxy"),
    ("ha-app-other-ns-to-haproxy", "ha", "ingress", OTHER_NS_APP, 6379, "TCP", False, "haproxy"),
    ("ha-outside-to-haproxy", "ha", "ingress", OUTSIDE_IP, 6379, "TCP", False, "haproxy"),
    ("ha-prometheus-to-haproxy-metrics", "ha", "ingress", PROMETHEUS, 8404, "TCP", True, "haproxy"),
    ("ha-fake-prometheus-to-haproxy-metrics", "ha", "ingress", SAME_NS_FAKE_PROMETHEUS, 8404, "TCP", False, "haproxy"),
    ("ha-haproxy-to-data-pods-6379", "ha", "egress", CACHE_PODS, 6379, "TCP", True, "haproxy"),
    ("ha-haproxy-to-data-pods-26379", "ha", "egress", CACHE_PODS, 26379, "TCP", True, "haproxy"),
    ("ha-haproxy-to-data-pods-9121", "ha", "egress", CACHE_PODS, 9121, "TCP", False, "haproxy"),
    ("ha-haproxy-dns", "ha", "egress", COREDNS, 53, "UDP", True, "haproxy"),
    ("ha-haproxy-to-app-pod", "ha", "egress", SAME_NS_APP, 8080, "TCP", False, "haproxy"),
    ("ha-haproxy-to-outside-443", "ha", "egress", OUTSIDE_IP, 443, "TCP", False, "haproxy"),
    ("ha-haproxy-to-haproxy", "ha", "ingress", HAPROXY_PODS, 6379, "TCP", False, "haproxy"),
    # The backup Job's pods reach the servers (the snapshot) and, with replication, the Sentinels; nothing else.
    ("backup-into-data-pods-6379", "backup", "ingress", BACKUP_PODS, 6379, "TCP", True),
    ("backup-into-data-pods-9121", "backup", "ingress", BACKUP_PODS, 9121, "TCP", False),
    ("backup-into-data-pods-26379", "backup", "ingress", BACKUP_PODS, 26379, "TCP", False),
    ("backup-pods-to-data-pods-6379", "backup", "egress", CACHE_PODS, 6379, "TCP", True, "backup"),
    ("backup-pods-to-data-pods-9121", "backup", "egress", CACHE_PODS, 9121, "TCP", False, "backup"),
    ("backup-pods-dns", "backup", "egress", COREDNS, 53, "UDP", True, "backup"),
    ("backup-pods-to-outside-443", "backup", "egress", OUTSIDE_IP, 443, "TCP", False, "backup"),
    ("backup-pods-to-app-pod", "backup", "egress", SAME_NS_APP, 8080, "TCP", False, "backup"),
    ("app-into-backup-pods", "backup", "ingress", SAME_NS_APP, 6379, "TCP", False, "backup"),
    ("ha-backup-into-data-pods-6379", "ha-backup", "ingress", BACKUP_PODS, 6379, "TCP", True),
    ("ha-backup-into-sentinels", "ha-backup", "ingress", BACKUP_PODS, 26379, "TCP", True),
    ("ha-backup-pods-to-sentinels", "ha-backup", "egress", CACHE_PODS, 26379, "TCP", True, "backup"),
    ("ha-backup-pods-to-haproxy", "ha-backup", "egress", HAPROXY_PODS, 6379, "TCP", False, "backup"),
    ("ha-backup-into-haproxy", "ha-backup", "ingress", BACKUP_PODS, 6379, "TCP", False, "haproxy"),
    # backup.rclone: the default egress admits HTTPS to the remote, wherever it is, and nothing more.
    ("rclone-backup-pods-to-outside-443", "backup-rclone", "egress", OUTSIDE_IP, 443, "TCP", True, "backup"),
    ("rclone-backup-pods-to-outside-80", "backup-rclone", "egress", OUTSIDE_IP, 80, "TCP", False, "backup"),
    ("rclone-backup-pods-to-outside-22", "backup-rclone", "egress", OUTSIDE_IP, 22, "TCP", False, "backup"),
    ("rclone-backup-pods-to-data-pods-6379", "backup-rclone", "egress", CACHE_PODS, 6379, "TCP", True, "backup"),
    ("rclone-backup-pods-to-app-pod", "backup-rclone", "egress", SAME_NS_APP, 8080, "TCP", False, "backup"),
    ("rclone-app-into-backup-pods", "backup-rclone", "ingress", SAME_NS_APP, 443, "TCP", False, "backup"),
    ("rclone-data-pods-to-outside-443", "backup-rclone", "egress", OUTSIDE_IP, 443, "TCP", False),
    # backup.rclone.egress narrowed to one SFTP block: port 22 there only, the HTTPS default is gone.
    ("sftp-backup-pods-to-sftp-host-22", "backup-rclone-sftp", "egress", SFTP_HOST, 22, "TCP", True, "backup"),
    ("sftp-backup-pods-to-sftp-host-443", "backup-rclone-sftp", "egress", SFTP_HOST, 443, "TCP", False, "backup"),
    ("sftp-backup-pods-to-outside-22", "backup-rclone-sftp", "egress", OUTSIDE_IP, 22, "TCP", False, "backup"),
    ("sftp-backup-pods-to-outside-443", "backup-rclone-sftp", "egress", OUTSIDE_IP, 443, "TCP", False, "backup"),
]


# What nca reads from the render. Other objects stay out: nca skips a whole file as "templated" when any
# text in it holds `{{` (Prometheus rule annotations, dashboard JSON), and would then see nothing.
NCA_KINDS = {"NetworkPolicy", "StatefulSet", "Deployment", "CronJob", "Pod", "Service"}


def _write_inputs(directory: Path, values: dict) -> tuple[Path, Path]:
    policies, resources = directory / "policies", directory / "resources"
    policies.mkdir(parents=True)
    resources.mkdir()
    rendered = yaml.safe_dump_all([o for o in _render(values) if o["kind"] in NCA_KINDS])
    (policies / "rendered.yaml").write_text(rendered)
    (resources / "rendered.yaml").write_text(rendered)
    (resources / "cluster.yaml").write_text(CLUSTER.read_text())
    return policies, resources


def _run_scheme(set_name: str, cases: list, tmp: Path) -> tuple[str, list, subprocess.CompletedProcess]:
    """One nca run per value set: every case is asked both ways (permits and forbids), with the answer
    that each must give; nca reports each unexpected answer by query name."""
    directory = tmp / set_name
    policies, resources = _write_inputs(directory, VALUE_SETS[set_name])
    configs = [{"name": "base", "networkPolicyList": [str(policies)]}]
    queries = []
    for cid, _set, direction, peer, port, protocol, permitted, *target in cases:
        query = directory / f"{cid}.yaml"
        query.write_text(yaml.safe_dump(_query(direction, peer, port, protocol, *target)))
        configs.append({"name": cid, "networkPolicyList": [str(query)]})
        queries.append({"name": f"{cid}--permits", "permits": ["base", cid], "expected": 0 if permitted else 1})
        queries.append({"name": f"{cid}--forbids", "forbids": ["base", cid], "expected": 1 if permitted else 0})
    scheme = directory / "scheme.yaml"
    scheme.write_text(yaml.safe_dump(
        {"resourceList": [str(resources)], "networkConfigList": configs, "queries": queries}))
    proc = subprocess.run([str(NCA), "--scheme", str(scheme)], capture_output=True, text=True, timeout=120)
    return set_name, queries, proc


@needs_nca
def test_nca_connections(tmp_path):
    """Every case of CASES, answered by nca on the rendered policy and the sample cluster."""
    assert len([c for c in CASES if c[1] == "defaults"]) >= 8
    by_set: dict[str, list] = {}
    for case in CASES:
        by_set.setdefault(case[1], []).append(case)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda item: _run_scheme(item[0], item[1], tmp_path), by_set.items()))
    failures = []
    for set_name, queries, proc in results:
        output = proc.stdout + proc.stderr
        expect_policy = VALUE_SETS[set_name]["valkey"]["networkPolicy"]["enabled"]
        if "Skipping" in output or (expect_policy and "contains no networkPolicies" in output):
            failures.append(f"{set_name}: nca did not read the rendered objects:\n{output[:2000]}")
        for q in queries:
            if f"Running query {q['name']}\n" not in proc.stdout:
                failures.append(f"{q['name']}: not run by nca")
            elif f"Unexpected result for query {q['name']}:" in output:
                failures.append(f"{q['name']}: nca's answer differs from the expected {q['expected']}")
        if proc.returncode != 0 and not failures:
            failures.append(f"nca exit code {proc.returncode}:\n{output[-2000:]}")
    assert not failures, "\n".join(failures)


@needs_nca
def test_nca_connectivity_map_lists_only_the_intended_ingress(tmp_path):
    """The whole map: exactly two sources reach the cache pod, each on its one port."""
    policies, resources = _write_inputs(tmp_path, _values())
    proc = subprocess.run(
        [str(NCA), "--connectivity", str(policies), "-r", str(resources), "-o", "txt_no_fw_rules"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    target = f"{NAMESPACE}/{NAME}[StatefulSet]"
    into = sorted(line for line in proc.stdout.splitlines() if f"=> {target}" in line)
    assert into == [
        f"{NAMESPACE}/alerthistory-redis-test-connection[Pod] => {target} : {{protocols:TCP,dst_ports:6379}}",
        f"{NAMESPACE}/app[Pod] => {target} : {{protocols:TCP,dst_ports:6379}}",
        f"monitoring/prometheus[Pod] => {target} : {{protocols:TCP,dst_ports:9121}}",
    ], proc.stdout
    out_of = [line for line in proc.stdout.splitlines() if line.startswith(f"{target} =>")]
    assert out_of and all(line.endswith("{protocols:TCP, UDP,dst_ports:53}") for line in out_of), out_of
