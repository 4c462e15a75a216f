"""A release with 3 replicas on the local cluster (the test chart tests/charts/valkey-trio: a StatefulSet of the
same engine as the alert-history chart, which refuses replicas > 1 until replication lands): the pods start in
order, each resolves the others' headless names, the client Service balances over them, a partition of one
pod cuts exactly its traffic and heals, and a deleted pod comes back at a new address with its PVC data, the
other pods' hosts files following. Every test ends with nothing left (namespaces, veths, nft tables,
ClusterIPs, ip_forward hold, mounts, processes).

The cleanup checks (assert_cluster_gone) are in tests/helpers/cluster.py."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from alert_history_cache import chart, engines
from alert_history_cache.cluster import LocalCluster
from alert_history_cache.kube import Objects
from alert_history_cache.stack import make_bin_dir
from alert_history_cache.volumes import unmount_all
from helpers.cluster import assert_cluster_gone
from helpers.local_stack import assert_nothing_left, engine_or_skip

TRIO_CHART = Path(__file__).resolve().parents[1] / "charts" / "valkey-trio"
NAMESPACE = "cache"


@contextlib.contextmanager
def trio_cluster(state_dir: Path, values: dict | None = None, engine: str = "valkey8") -> Iterator[LocalCluster]:
    """The test chart's release `trio` as a started LocalCluster; stopped and checked clean afterwards."""
    engine_or_skip(engine)
    manifests = chart.render(values or {}, release="trio", namespace=NAMESPACE, chart_dir=TRIO_CHART)
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "events.log", "a")
    cluster = LocalCluster(manifests, state_dir, bin_dir=make_bin_dir(state_dir, engines.get(engine)),
                           objects=Objects(manifests), event_log=log)
    try:
        cluster.start(ready_timeout=60)
        yield cluster
    finally:
        cluster.stop()
        unmount_all(state_dir)
        log.close()
    assert_nothing_left(state_dir)
    assert_cluster_gone(state_dir)


def exec_in(cluster: LocalCluster, pod: str, script: str, timeout: float = 15) -> str:
    proc = cluster.pod(pod).container("valkey").exec(["/bin/sh", "-c", script], timeout=timeout)
    return proc.stdout.decode()


def pod_reaches(cluster: LocalCluster, pod: str, host: str) -> bool:
    """PING from inside `pod` to host:6379 (a name or an address); a dropped packet times out in 2 s."""
    return exec_in(cluster, pod, f"timeout 2 valkey-cli -h {host} -p 6379 ping 2>&1 || true").strip() == "PONG"


def host_reaches(ip: str) -> bool:
    try:
        return redis.Redis(host=ip, port=6379, socket_connect_timeout=1, socket_timeout=1).ping()
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def resolve_in(cluster: LocalCluster, pod: str, name: str) -> list[str]:
    """IPv4 addresses `name` resolves to inside `pod` (getaddrinfo through the pod's /etc/hosts)."""
    out = exec_in(cluster, pod, f"getent ahostsv4 {name} || true")
    return sorted({line.split()[0] for line in out.splitlines() if "STREAM" in line})


def dns_answer_in(cluster: LocalCluster, pod: str, name: str) -> tuple[str, list[str]]:
    """(rcode, A addresses) the cluster DNS server answers inside `pod`'s network namespace (where HAProxy's
    run-time resolvers ask), queried over UDP at 127.0.0.1:53 as any resolver would."""
    code = ("import sys; from dnslib import DNSRecord, QTYPE, RCODE; "
            "r = DNSRecord.parse(DNSRecord.question(sys.argv[1]).send('127.0.0.1', 53, timeout=2)); "
            "print(RCODE.get(r.header.rcode), *[str(a.rdata) for a in r.rr if a.rtype == QTYPE.A])")
    out = subprocess.run(["ip", "netns", "exec", cluster.pod(pod).net.netns, sys.executable, "-c", code, name],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], sorted(out[1:])


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


# -- tests ------------------------------------------------------------------------------------------------
pytestmark = pytest.mark.integration
PODS = ["trio-0", "trio-1", "trio-2"]
HEADLESS = f"trio-headless.{NAMESPACE}.svc.cluster.local"


def first_ready(pod) -> float:
    return next(at for at, ready in pod.kubelet.ready_transitions if ready)


def test_three_replicas_start_in_order_and_find_each_other(tmp_path, needs_root) -> None:
    with trio_cluster(tmp_path / "state") as cluster:
        assert list(cluster.pods) == PODS
        pods = [cluster.pod(n) for n in PODS]
        # OrderedReady: each pod is created only after the one before it is Ready.
        for before, after in zip(pods, pods[1:]):
            assert after.created_monotonic >= first_ready(before), (before.name, after.name)
        ips = [p.ip for p in pods]
        assert len(set(ips)) == 3 and all(ip.startswith("10.244.") for ip in ips)
        # Each pod has its own folder and PVC folder (named as Kubernetes names the PVC).
        assert [p.volumes.claim_path("data") for p in pods] == [tmp_path / "state" / "pvcs" / f"data-{n}" for n in PODS]
        assert len({p.dir for p in pods}) == 3

        for pod in PODS:
            for other, ip in zip(PODS, ips):
                assert resolve_in(cluster, pod, f"{other}.{HEADLESS}") == [ip]
                assert resolve_in(cluster, pod, f"{other}.trio-headless") == [ip]
            assert resolve_in(cluster, pod, "trio-headless") == sorted(ips)
            client = cluster.service("trio")
            assert resolve_in(cluster, pod, f"trio.{NAMESPACE}.svc.cluster.local") == [client.cluster_ip]
            # Pod to pod directly, and through the Service (hairpin included: a pod may land on itself).
            assert all(pod_reaches(cluster, pod, f"{other}.trio-headless") for other in PODS)
            assert pod_reaches(cluster, pod, "trio")

        # The client Service's ClusterIP balances over the three Ready endpoints, from the host.
        assert sorted(cluster.service("trio").endpoints) == sorted(ips)
        seen = set()
        for _ in range(60):
            c = redis.Redis(host=cluster.service("trio").cluster_ip, port=6379, socket_timeout=2)
            seen.add(c.info("server")["run_id"])
            c.close()
            if len(seen) == 3:
                break
        assert len(seen) == 3, f"only {len(seen)} of 3 endpoints answered through the ClusterIP"


def test_partition_cuts_exactly_that_pods_traffic_and_heals(tmp_path, needs_root) -> None:
    with trio_cluster(tmp_path / "state") as cluster:
        ip = {n: cluster.pod(n).ip for n in PODS}
        # Only between trio-2 and trio-0, both directions; everything else flows.
        cluster.partition("trio-2", ["trio-0"])
        assert not pod_reaches(cluster, "trio-0", ip["trio-2"])
        assert not pod_reaches(cluster, "trio-2", ip["trio-0"])
        assert pod_reaches(cluster, "trio-1", ip["trio-2"]) and pod_reaches(cluster, "trio-2", ip["trio-1"])
        assert pod_reaches(cluster, "trio-0", ip["trio-1"])
        assert host_reaches(ip["trio-2"])
        assert cluster.snapshot()["pods"][2]["partition"]["addresses"] == [ip["trio-0"]]

        # Everything: trio-2 reaches nobody and nobody reaches it; its own localhost still works, the others
        # still talk to each other.
        cluster.partition("trio-2")
        assert not host_reaches(ip["trio-2"])
        assert not any(pod_reaches(cluster, n, ip["trio-2"]) for n in ("trio-0", "trio-1"))
        assert not pod_reaches(cluster, "trio-2", ip["trio-1"])
        assert pod_reaches(cluster, "trio-2", "127.0.0.1")
        assert pod_reaches(cluster, "trio-0", ip["trio-1"]) and host_reaches(ip["trio-0"])

        assert cluster.heal("trio-2") == ["trio-2"]
        assert host_reaches(ip["trio-2"])
        assert all(pod_reaches(cluster, n, ip["trio-2"]) for n in ("trio-0", "trio-1"))
        assert pod_reaches(cluster, "trio-2", ip["trio-0"])
        assert cluster.snapshot()["pods"][2]["partition"] is None


def test_deleted_pod_comes_back_at_a_new_address_with_its_data(tmp_path, needs_root) -> None:
    with trio_cluster(tmp_path / "state") as cluster:
        old = cluster.pod("trio-1").ip
        direct = redis.Redis(host=old, port=6379, socket_timeout=5)
        assert direct.set("alert:1", "firing")
        result = cluster.delete_pod("trio-1")  # graceful: preStop, SIGTERM (the AOF is flushed), grace period
        assert result["exit_codes"] == {"valkey": 0}
        new = cluster.pod("trio-1").ip
        assert new != old and result["new_address"] == new
        assert cluster.pod("trio-1").generation == 2
        # The preStop hook ran inside the container, into the PVC that stays.
        pvc = cluster.pod("trio-1").volumes.claim_path("data")
        assert (pvc / "prestop.log").read_text().split() == ["trio-1"]
        cluster.wait_pod_ready(cluster.pod("trio-1"), 30)
        assert redis.Redis(host=new, port=6379, socket_timeout=5).get("alert:1") == b"firing"
        # Every pod's hosts file follows the new address; the Service's endpoints too.
        for pod in PODS:
            assert resolve_in(cluster, pod, f"trio-1.{HEADLESS}") == [new]
        # The DNS server answers the same from the pods' files; a name no record has is NXDOMAIN.
        assert dns_answer_in(cluster, "trio-0", f"trio-1.{HEADLESS}") == ("NOERROR", [new])
        assert dns_answer_in(cluster, "trio-0", HEADLESS) == ("NOERROR", sorted(cluster.pod(p).ip for p in PODS))
        assert dns_answer_in(cluster, "trio-0", f"trio-9.{HEADLESS}")[0] == "NXDOMAIN"
        cluster.sync()
        assert old not in cluster.service("trio").endpoints and new in cluster.service("trio").endpoints

        # --force: SIGKILL at once, no preStop.
        result = cluster.delete_pod("trio-2", force=True)
        assert result["exit_codes"]["valkey"] == -signal.SIGKILL
        assert not (cluster.pod("trio-2").volumes.claim_path("data") / "prestop.log").exists()
        cluster.wait_pod_ready(cluster.pod("trio-2"), 30)


def test_parallel_policy_starts_all_pods_at_once(tmp_path, needs_root) -> None:
    t0 = time.monotonic()
    with trio_cluster(tmp_path / "state", {"podManagementPolicy": "Parallel"}) as cluster:
        pods = [cluster.pod(n) for n in PODS]
        cluster.wait_all_ready(30)
        # Parallel: every pod was created before any of them was Ready.
        assert max(p.created_monotonic for p in pods) < min(first_ready(p) for p in pods)
        assert all(p.created_monotonic >= t0 for p in pods)


def test_deployment_pods_run_beside_the_statefulset_and_are_replaced_under_new_names(tmp_path, needs_root) -> None:
    with trio_cluster(tmp_path / "state", {"cache": {"enabled": True}}) as cluster:
        cache = [n for n in cluster.pods if n.startswith("trio-cache-")]
        assert len(cache) == 2 and set(PODS) <= set(cluster.pods)
        cluster.wait_all_ready(30)
        service = cluster.service("trio-cache")
        assert sorted(service.endpoints) == sorted(cluster.pod(n).ip for n in cache)
        # The Service maps its port 6379 to the pods' named port `cache` (6380).
        assert redis.Redis(host=service.cluster_ip, port=6379, socket_timeout=5).ping()
        assert pod_reaches(cluster, "trio-0", "trio-cache")  # the Service's port 6379 -> 6380 in the pod

        result = cluster.delete_pod(cache[0])
        replacement = result["new_pod"]
        assert replacement not in cache and replacement.startswith("trio-cache-") and cache[0] not in cluster.pods
        cluster.wait_pod_ready(cluster.pod(replacement), 30)
        cluster.sync()
        assert sorted(service.endpoints) == sorted(cluster.pod(n).ip for n in (cache[1], replacement))
