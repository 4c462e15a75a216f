"""The Service proxy's nft script: what it contains, and that real nft accepts it (`nft -c -f`, no change)."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from alert_history_cache import partition
from alert_history_cache.service_proxy import ProxiedService, ServicePort, ServiceProxy, check

REDIS = ServicePort("redis", 6379, 6379)
CLIENT = ProxiedService("alerthistory-redis", "default", "10.96.0.10", (REDIS,), ("10.244.2.2", "10.244.1.2"))
METRICS = ProxiedService("alerthistory-redis-metrics", "default", "10.96.0.11",
                         (ServicePort("http-metrics", 9121, 9121),), ("10.244.1.2",))
HEADLESS = ProxiedService("alerthistory-redis-headless", "default", "None", (REDIS,), ("10.244.1.2",))
EMPTY = ProxiedService("alerthistory-redis-replicas", "default", "10.96.0.12", (REDIS,), ())


@pytest.fixture
def nft_check():
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed: apt-get install nftables")
    if os.geteuid() != 0:
        pytest.skip("nft -c needs root (CAP_NET_ADMIN)")
    return check


def chain(script: str, name: str) -> str:
    match = re.search(r"\tchain " + re.escape(name) + r" \{\n(.*?)\n\t\}", script, re.S)
    assert match, f"chain {name} not in the script"
    return match.group(1)


def test_ruleset_dnats_each_service_port_to_its_endpoints_at_random():
    script = ServiceProxy("ahc_unit").ruleset([CLIENT, METRICS])
    assert "10.96.0.10 . tcp . 6379 : goto svc-default/alerthistory-redis/tcp/redis" in chain(script, "services")
    pick = chain(script, "svc-default/alerthistory-redis/tcp/redis")
    # Endpoints in address order, whatever order they came in.
    assert ("numgen random mod 2 vmap { 0 : goto ep-default/alerthistory-redis/tcp/redis/10.244.1.2, "
            "1 : goto ep-default/alerthistory-redis/tcp/redis/10.244.2.2 }") in pick
    assert "numgen random mod 1" in chain(script, "svc-default/alerthistory-redis-metrics/tcp/http-metrics")
    ep = chain(script, "ep-default/alerthistory-redis/tcp/redis/10.244.2.2")
    assert "meta l4proto tcp dnat to 10.244.2.2:6379" in ep


def test_target_port_and_protocol_are_honoured():
    svc = ProxiedService("dns", "kube-system", "10.96.0.53",
                         (ServicePort(None, 53, 5353, "UDP"), ServicePort("dns-tcp", 53, 5354, "TCP")), ("10.244.9.2",))
    script = ServiceProxy("ahc_unit").ruleset([svc])
    assert "10.96.0.53 . udp . 53 : goto svc-kube-system/dns/udp/53" in script
    assert "meta l4proto udp dnat to 10.244.9.2:5353" in chain(script, "ep-kube-system/dns/udp/53/10.244.9.2")
    assert "meta l4proto tcp dnat to 10.244.9.2:5354" in chain(script, "ep-kube-system/dns/tcp/dns-tcp/10.244.9.2")


def test_hairpin_traffic_is_marked_in_the_endpoint_chain_and_masqueraded():
    script = ServiceProxy("ahc_unit").ruleset([CLIENT])
    ep = chain(script, "ep-default/alerthistory-redis/tcp/redis/10.244.1.2")
    mark, dnat = ep.strip().splitlines()
    assert mark.strip() == "ip saddr 10.244.1.2 meta mark set meta mark | 0x4000"
    assert dnat.strip().startswith("meta l4proto tcp dnat")  # mark first: DNAT ends the chain
    post = chain(script, "nat_postrouting")
    assert "hook postrouting" in post and "meta mark & 0x4000 == 0x4000" in post and "masquerade" in post


def test_nat_chains_hook_prerouting_and_output():
    script = ServiceProxy("ahc_unit").ruleset([CLIENT])
    assert "type nat hook prerouting priority dstnat" in chain(script, "nat_prerouting")
    # The output hook refuses the `dstnat` keyword; -100 is its value.
    assert "type nat hook output priority -100" in chain(script, "nat_output")


def test_service_without_endpoints_is_rejected_not_routed():
    script = ServiceProxy("ahc_unit").ruleset([CLIENT, EMPTY])
    assert "10.96.0.12" not in chain(script, "services")
    assert "svc-default/alerthistory-redis-replicas" not in script
    assert re.search(r"elements = \{ 10\.96\.0\.10, 10\.96\.0\.12 \}", script)
    for name in ("filter_forward", "filter_output"):
        assert "ip daddr @cluster_ips reject" in chain(script, name)


def test_headless_services_get_no_rules():
    script = ServiceProxy("ahc_unit").ruleset([HEADLESS])
    assert "headless" not in script and "cluster_ips" not in script
    assert "dnat" not in script


def test_the_script_replaces_the_table_in_one_transaction():
    script = ServiceProxy("ahc_unit").ruleset([CLIENT])
    lines = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert lines[:3] == ["table ip ahc_unit", "delete table ip ahc_unit", "table ip ahc_unit {"]
    assert script.count("table ip ahc_unit {") == 1


def test_ruleset_is_deterministic():
    proxy = ServiceProxy("ahc_unit")
    reordered = ProxiedService(CLIENT.name, CLIENT.namespace, CLIENT.cluster_ip, CLIENT.ports,
                               tuple(reversed(CLIENT.endpoints)))
    assert proxy.ruleset([CLIENT, METRICS]) == proxy.ruleset([METRICS, reordered])


@pytest.mark.parametrize("services", [[], [HEADLESS], [EMPTY], [CLIENT, METRICS, HEADLESS, EMPTY]],
                         ids=["none", "headless", "no-endpoints", "all"])
def test_real_nft_accepts_the_ruleset(nft_check, services):
    nft_check(ServiceProxy("ahc_unit_check").ruleset(services))


@pytest.mark.parametrize("peers", [None, ["10.244.2.2"], ["10.244.2.2", "10.96.0.10"]], ids=["all", "one", "two"])
def test_real_nft_accepts_the_partition_ruleset(nft_check, peers):
    nft_check(partition.ruleset(peers))


@pytest.mark.parametrize("bad, message", [
    (ProxiedService("Bad_Name", "default", "10.96.0.1", (REDIS,), ()), "Service name 'Bad_Name'"),
    (ProxiedService("svc", "default", "10.96.0.300", (REDIS,), ()), "clusterIP '10.96.0.300'"),
    (ProxiedService("svc", "default", "10.96.0.1", (REDIS,), ("pod-a",)), "endpoint 'pod-a'"),
    (ProxiedService("svc", "default", "10.96.0.1", (ServicePort("p", 0, 1),), ()), "port 0"),
    (ProxiedService("svc", "default", "10.96.0.1", (ServicePort("p", 80, 70000),), ()), "targetPort 70000"),
    (ProxiedService("svc", "default", "10.96.0.1", (ServicePort("p", 80, 80, "ICMP"),), ()), "protocol 'ICMP'"),
    (ProxiedService("svc", "default", "10.96.0.1", (REDIS, REDIS), ()), "served twice"),
])
def test_bad_input_names_the_field(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ServiceProxy("ahc_unit").ruleset([bad])


def test_bad_table_name_is_refused():
    with pytest.raises(ValueError, match="nft table name"):
        ServiceProxy("ahc-1; flush ruleset")
