"""The NetworkPolicy (spec 4.1), proved with network-config-analyzer on the rendered objects.

Each case asks nca whether the rendered policies permit (or forbid) one connection between the
rendered cache pod and a sample pod of tests/security/nca/cluster.yaml; nca answers by exit code.
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
REPLICATION_EGRESS = {"to": [{"podSelector": CACHE_PODS["podSelector"]}], "ports": [{"port": 6379, "protocol": "TCP"}]}


def _query(direction: str, peer: dict, port: int, protocol: str = "TCP") -> dict:
    """A NetworkPolicy that describes one connection to (ingress) or from (egress) the cache pods."""
    rule = {"ports": [{"port": port, "protocol": protocol}], ("from" if direction == "ingress" else "to"): [peer]}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "query", "namespace": NAMESPACE},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "redis"}},
            "policyTypes": ["Ingress" if direction == "ingress" else "Egress"],
            direction: [rule],
        },
    }


# (id, values, direction, peer, port, protocol, permitted)
CASES = [
    ("app-same-ns-to-6379", _values(), "ingress", SAME_NS_APP, 6379, "TCP", True),
    ("app-same-ns-to-9121", _values(), "ingress", SAME_NS_APP, 9121, "TCP", False),
    ("unlabelled-same-ns-to-6379", _values(), "ingress", SAME_NS_PLAIN, 6379, "TCP", False),
    ("app-other-ns-to-6379", _values(), "ingress", OTHER_NS_APP, 6379, "TCP", False),
    ("prometheus-to-9121", _values(), "ingress", PROMETHEUS, 9121, "TCP", True),
    ("prometheus-to-6379", _values(), "ingress", PROMETHEUS, 6379, "TCP", False),
    ("grafana-in-monitoring-to-9121", _values(), "ingress", GRAFANA, 9121, "TCP", False),
    ("prometheus-label-other-ns-to-9121", _values(), "ingress", OTHER_NS_PROMETHEUS, 9121, "TCP", False),
    ("prometheus-label-release-ns-to-9121", _values(), "ingress", SAME_NS_FAKE_PROMETHEUS, 9121, "TCP", False),
    ("outside-ip-to-6379", _values(), "ingress", OUTSIDE_IP, 6379, "TCP", False),
    ("dns-udp-to-coredns", _values(), "egress", COREDNS, 53, "UDP", True),
    ("dns-tcp-to-coredns", _values(), "egress", COREDNS, 53, "TCP", True),
    ("egress-to-outside-ip-443", _values(), "egress", OUTSIDE_IP, 443, "TCP", False),
    ("egress-to-app-pod", _values(), "egress", SAME_NS_APP, 8080, "TCP", False),
    ("egress-to-prometheus", _values(), "egress", PROMETHEUS, 9090, "TCP", False),
    # extraIngress admits the batch namespace on the client port only.
    ("extra-ingress-to-6379", _values(extraIngress=[BATCH_REPORTER]), "ingress", BATCH_REPORTER, 6379, "TCP", True),
    ("extra-ingress-to-9121", _values(extraIngress=[BATCH_REPORTER]), "ingress", BATCH_REPORTER, 9121, "TCP", False),
    ("no-extra-ingress-to-6379", _values(), "ingress", BATCH_REPORTER, 6379, "TCP", False),
    # Replication between cache pods (later) needs both directions: extraEgress alone is not enough.
    ("replication-egress-only", _values(extraEgress=[REPLICATION_EGRESS]), "egress", CACHE_PODS, 6379, "TCP", False),
    (
        "replication-egress-and-ingress",
        _values(extraEgress=[REPLICATION_EGRESS], extraIngress=[{"podSelector": CACHE_PODS["podSelector"]}]),
        "egress", CACHE_PODS, 6379, "TCP", True,
    ),
    ("no-replication-by-default", _values(), "egress", CACHE_PODS, 6379, "TCP", False),
    # Negative control: without the policy the forbidden connections above are open, so the proofs can fail.
    ("disabled-app-other-ns-to-6379", _values(enabled=False), "ingress", OTHER_NS_APP, 6379, "TCP", True),
    ("disabled-egress-to-outside-ip", _values(enabled=False), "egress", OUTSIDE_IP, 443, "TCP", True),
]


def _nca(query: dict, values: dict, tmp: Path, expect_permitted: bool) -> subprocess.CompletedProcess:
    tmp.mkdir(parents=True)
    policies, resources = tmp / "policies", tmp / "resources"
    policies.mkdir()
    resources.mkdir()
    rendered = _render(values).to_yaml()
    (policies / "rendered.yaml").write_text(rendered)
    (resources / "rendered.yaml").write_text(rendered)
    (resources / "cluster.yaml").write_text(CLUSTER.read_text())
    (tmp / "query.yaml").write_text(yaml.safe_dump(query))
    mode = "--permits" if expect_permitted else "--forbids"
    return subprocess.run(
        [str(NCA), mode, str(tmp / "query.yaml"), "-b", str(policies), "-r", str(resources)],
        capture_output=True, text=True, timeout=120,
    )


@needs_nca
def test_nca_connections(tmp_path):
    """All cases in one test, run in parallel: each nca call is a fresh process of ~0.4 s."""
    assert len([c for c in CASES if not c[0].startswith("disabled")]) >= 8

    def run(case):
        cid, values, direction, peer, port, protocol, permitted = case
        return case, _nca(_query(direction, peer, port, protocol), values, tmp_path / cid, permitted)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, CASES))
    failures = []
    for (cid, _v, _d, _p, _port, _proto, permitted), proc in results:
        if proc.returncode != 0:
            verdict = "permitted" if permitted else "forbidden"
            failures.append(f"{cid}: expected {verdict}, nca said otherwise:\n{proc.stdout[-800:]}{proc.stderr[-800:]}")
    assert not failures, "\n\n".join(failures)


@needs_nca
def test_nca_connectivity_map_lists_only_the_intended_ingress(tmp_path):
    """The whole map: exactly two sources reach the cache pod, each on its one port."""
    policies = tmp_path / "policies"
    resources = tmp_path / "resources"
    policies.mkdir()
    resources.mkdir()
    rendered = _render(_values()).to_yaml()
    (policies / "rendered.yaml").write_text(rendered)
    (resources / "rendered.yaml").write_text(rendered)
    (resources / "cluster.yaml").write_text(CLUSTER.read_text())
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
