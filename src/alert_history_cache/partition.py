"""Network faults for the local cluster: cut a pod off, from inside its own network namespace.

A partition is one nftables table (family inet) named `ahc_partition` in the pod's netns; deleting it heals.
  partition(ns)          drops everything in and out except loopback: the pod's containers still talk to
                         each other on localhost (exec probes keep working), nothing else reaches it or leaves
                         it, including the host (Prometheus scrapes, host clients). Open connections stall.
  partition(ns, peers)   drops only packets from and to those addresses (both directions); the rest flows.
Packets are dropped, not rejected, as on a real partition: clients see timeouts, not refusals.

What a peer partition does not cover: when the pod connects to a ClusterIP, the host DNATs the packet after it
left the pod, so inside the netns it is addressed to the ClusterIP, not to the peer behind it. To cut that
path too, list the Service's ClusterIP among the peers (`service_ips=`): that cuts the pod from the whole
Service, every endpoint of it, not only the peer. Traffic from a peer that reaches the pod through a Service
is still cut, since the host does not masquerade it (the pod sees the peer's own address).
No latency or loss injection: this kernel has no `netem` qdisc."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Iterable

from .netns import NETNS_DIR, NetworkError

TABLE = "ahc_partition"


def _nft(netns: str, *args: str, script: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    path = NETNS_DIR / netns
    if "/" in netns or not Path(path).exists():
        raise NetworkError(f"network namespace {netns!r} does not exist (see `ip netns list`)")
    argv = ["nsenter", f"--net={path}", "--", "nft", *args, *(["-f", "-"] if script is not None else [])]
    proc = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetworkError(f"nft {' '.join(args) or '-f -'} in {netns}: {proc.stderr.strip()}")
    return proc


def _addresses(values: Iterable[str], what: str) -> list[str]:
    out = set()
    for value in values:
        try:
            out.add(ipaddress.IPv4Address(value))
        except (ipaddress.AddressValueError, ValueError):
            raise ValueError(f"{what}: {value!r} is not an IPv4 address") from None
    return [str(a) for a in sorted(out)]


def ruleset(peers: list[str] | None) -> str:
    """The script that (re)creates the partition table: all but loopback, or only `peers` (pure)."""
    head = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    if peers is None:
        body = ["\tchain input {", "\t\ttype filter hook input priority filter; policy drop;", '\t\tiif "lo" accept',
                "\t}", "\tchain output {", "\t\ttype filter hook output priority filter; policy drop;",
                '\t\toif "lo" accept', "\t}"]
    else:
        elements = f"\t\telements = {{ {', '.join(peers)} }}" if peers else None
        body = ["\tset peers {", "\t\ttype ipv4_addr", *([elements] if elements else []), "\t}",
                "\tchain input {", "\t\ttype filter hook input priority filter; policy accept;",
                "\t\tip saddr @peers drop", "\t}",
                "\tchain output {", "\t\ttype filter hook output priority filter; policy accept;",
                "\t\tip daddr @peers drop", "\t}"]
    return "\n".join([*head, *body, "}"]) + "\n"


def partition(netns: str, peers: Iterable[str] | None = None, *, service_ips: Iterable[str] = ()) -> None:
    """Cut the pod in `netns` off: from everything but loopback (`peers` None), or only from and to `peers`
    (pod IPs) and `service_ips` (ClusterIPs the pod must not reach). Replaces any earlier partition at once."""
    if peers is None:
        if list(service_ips):
            raise ValueError("service_ips only narrows a peer partition; a full partition already cuts them")
        chosen = None
    else:
        chosen = _addresses([*peers, *service_ips], "partition peers")
        if not chosen:
            raise ValueError("partition peers: give at least one address (or peers=None to cut everything)")
    _nft(netns, script=ruleset(chosen))


def heal(netns: str) -> None:
    """Remove the partition; idempotent."""
    _nft(netns, script=f"table inet {TABLE}\ndelete table inet {TABLE}\n")


def partitioned_peers(netns: str) -> list[str] | None | bool:
    """False: not partitioned; None: cut from everything; else the cut-off addresses (sorted)."""
    proc = _nft(netns, "-j", "list", "table", "inet", TABLE, check=False)
    if proc.returncode != 0:
        if "No such file" in proc.stderr:
            return False
        raise NetworkError(f"nft list table inet {TABLE} in {netns}: {proc.stderr.strip()}")
    for item in json.loads(proc.stdout).get("nftables", []):
        if "set" in item and item["set"].get("name") == "peers":
            elements = item["set"].get("elem", [])
            return [str(e) for e in sorted(map(ipaddress.IPv4Address, elements))]
    return None
