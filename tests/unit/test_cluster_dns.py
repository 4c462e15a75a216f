"""The local cluster's DNS answers: what a pod's hosts file says, in DNS's wire format (dnslib parses)."""

from __future__ import annotations

from dnslib import QTYPE, RCODE, DNSRecord

from alert_history_cache import hosts
from alert_history_cache.cluster_dns import TTL, answer, lookup

NS = "cache"
PODS = [hosts.PodRecord(name=f"r-{i}", ip=f"10.244.{i + 1}.2", ready=i != 2, hostname=f"r-{i}",
                        subdomain="r-headless", namespace=NS) for i in range(3)]
SERVICES = [hosts.ServiceRecord(name="r", namespace=NS, cluster_ip="10.96.0.7", selector_pods=("r-0", "r-1", "r-2"),
                                publish_not_ready=False),
            hosts.ServiceRecord(name="r-headless", namespace=NS, cluster_ip=None,
                                selector_pods=("r-0", "r-1", "r-2"), publish_not_ready=True)]
TEXT = hosts.render(hosts.hosts_entries(PODS, SERVICES, namespace=NS), own_pod=PODS[0])


def ask(name: str, qtype: str = "A") -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    reply = DNSRecord.parse(answer(query.pack(), TEXT))
    assert reply.header.id == query.header.id and reply.header.qr == 1
    return reply


def addresses(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


def test_a_pod_name_answers_its_address_with_coredns_ttl() -> None:
    reply = ask(f"r-1.r-headless.{NS}.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR and addresses(reply) == ["10.244.2.2"]
    assert {rr.ttl for rr in reply.rr} == {TTL}


def test_names_match_case_insensitively_with_or_without_the_final_dot() -> None:
    assert addresses(ask(f"R-1.R-HEADLESS.{NS}.svc.cluster.local.")) == ["10.244.2.2"]


def test_a_headless_name_answers_every_published_pod_and_a_service_its_clusterip() -> None:
    assert addresses(ask(f"r-headless.{NS}.svc.cluster.local")) == ["10.244.1.2", "10.244.2.2", "10.244.3.2"]
    assert addresses(ask(f"r.{NS}.svc.cluster.local")) == ["10.96.0.7"]


def test_an_unknown_name_is_nxdomain_and_a_known_one_has_no_ipv6_record() -> None:
    assert ask(f"r-7.r-headless.{NS}.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
    aaaa = ask(f"r-1.r-headless.{NS}.svc.cluster.local", "AAAA")
    assert aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr  # NODATA: resolvers then use the A record


def test_lookup_ignores_comments_and_ipv6_lines() -> None:
    assert lookup(TEXT, "localhost") == ["127.0.0.1"]
    assert lookup("# 10.0.0.1 x\n::1 x\n10.0.0.2 x # x\n", "x") == ["10.0.0.2"]


def test_garbage_and_replies_are_not_answered() -> None:
    assert answer(b"\x00\x01garbage", TEXT) is None
    reply = ask(f"r.{NS}.svc.cluster.local")
    assert answer(reply.pack(), TEXT) is None
