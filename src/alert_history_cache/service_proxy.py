"""kube-proxy's job for the local cluster: Service ClusterIPs DNATed to Ready pod addresses with nftables.

One nft table (family ip) per stack holds everything, modelled on kube-proxy's nftables mode:
  nat_prerouting  (hook prerouting, priority dstnat)  traffic from pods (they route via the host)
  nat_output      (hook output, priority -100)        traffic from host processes (this hook refuses `dstnat`)
  services        one verdict map: ClusterIP . protocol . port -> that Service port's chain
  svc-<ns>/<name>/<proto>/<port>           `numgen random mod N` picks one endpoint chain
  ep-<ns>/<name>/<proto>/<port>/<ip>       marks hairpin traffic (the endpoint calling itself), then DNAT
  nat_postrouting masquerades marked packets: without it a pod reaching itself through its Service sees a
                  reply from its own address instead of the ClusterIP and the connection hangs
  filter_forward, filter_output  reject whatever still goes to a ClusterIP after DNAT: a Service without a
                  Ready endpoint, or a port the Service does not have. Connections are refused at once
                  (ICMP port unreachable, like kube-proxy's `reject`) instead of hanging or leaking to the
                  host's default route.
`sync` replaces the whole table in one `nft -f` transaction, so readers never see half a ruleset; it takes
tens of milliseconds (measured here: 90 ms for 20 Services of 3 ports and 3 endpoints each). Established
connections keep their conntrack NAT binding (as with kube-proxy), so removing an endpoint stops new
connections to it, not the open ones.

Pods reach each other and their Services through the host, so `net.ipv4.ip_forward` must be 1 while a stack
runs: `ensure_forwarding()` sets it and returns the previous value; `restore_forwarding()` puts it back once
no stack on the machine needs it any more."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .netns import RUN_DIR, _allocation_lock

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
FORWARDING_DIR = RUN_DIR / "forwarding"  # one file per process that needs ip_forward=1, plus the original value
HAIRPIN_MARK = 0x4000  # the bit kube-proxy uses for "masquerade this packet"
PROTOCOLS = ("TCP", "UDP", "SCTP")
_TABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# Kubernetes names (DNS labels / subdomains, port names) keep nft identifiers unquoted and readable.
_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")


class ProxyError(RuntimeError):
    """nft refused a command; the message carries nft's own error."""


@dataclass(frozen=True)
class ServicePort:
    name: str | None
    port: int
    target_port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class ProxiedService:
    name: str
    namespace: str
    cluster_ip: str  # "None" or "" (headless) is skipped: nothing to proxy
    ports: tuple[ServicePort, ...]
    endpoints: tuple[str, ...]  # Ready pod IPs


def _nft(script: str | None = None, *args: str) -> str:
    argv = ["nft", *args] if script is None else ["nft", *args, "-f", "-"]
    try:
        proc = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ProxyError("`nft` is not installed: install it with `apt-get install nftables`") from None
    if proc.returncode != 0:
        raise ProxyError(f"nft {' '.join(args) or '-f -'}: {proc.stderr.strip()}")
    return proc.stdout


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a Kubernetes name (lower-case letters, digits, '-' and '.')")
    return value


def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError):
        raise ValueError(f"{what} {value!r} is not an IPv4 address") from None


def _port(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{what} {value!r} is not a port number (1-65535)")
    return value


def _headless(cluster_ip: str | None) -> bool:
    return cluster_ip in (None, "", "None")


class ServiceProxy:
    """The Service rules of one stack, in nft table `table` (family ip)."""

    def __init__(self, table: str):
        if not _TABLE_RE.fullmatch(table or ""):
            raise ValueError(f"nft table name {table!r}: use letters, digits and '_' (e.g. ahc_<stack id>)")
        self.table = table

    def ruleset(self, services: Iterable[ProxiedService]) -> str:
        """The nft script that replaces the table with rules for `services` (pure: no nft call)."""
        verdicts: list[str] = []  # "ip . proto . port : goto chain"
        chains: list[tuple[str, list[str]]] = []
        cluster_ips: set[str] = set()
        seen: set[tuple[str, str, int]] = set()
        for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
            _check_name(svc.namespace, "Service namespace")
            _check_name(svc.name, "Service name")
            if _headless(svc.cluster_ip):
                continue
            where = f"Service {svc.namespace}/{svc.name}"
            vip = _ipv4(svc.cluster_ip, f"{where}: clusterIP")
            cluster_ips.add(vip)
            endpoints = sorted({_ipv4(ip, f"{where}: endpoint") for ip in svc.endpoints},
                               key=ipaddress.IPv4Address)
            for sp in svc.ports:
                proto = str(sp.protocol).upper()
                if proto not in PROTOCOLS:
                    raise ValueError(f"{where}: port {sp.port}: protocol {sp.protocol!r} is not one of "
                                     f"{', '.join(PROTOCOLS)}")
                port = _port(sp.port, f"{where}: port")
                target = _port(sp.target_port, f"{where}: port {port}: targetPort")
                if (vip, proto, port) in seen:
                    raise ValueError(f"{where}: {vip}:{port}/{proto} is served twice")
                seen.add((vip, proto, port))
                if not endpoints:
                    continue  # no verdict: filter_* reject it (no Ready endpoint)
                l4 = proto.lower()
                label = _check_name(sp.name, f"{where}: port name") if sp.name else str(port)
                svc_chain = f"svc-{svc.namespace}/{svc.name}/{l4}/{label}"
                if any(name == svc_chain for name, _ in chains):
                    raise ValueError(f"{where}: two ports named {label!r} ({proto})")
                verdicts.append(f"{vip} . {l4} . {port} : goto {svc_chain}")
                ep_chains = []
                for ip in endpoints:
                    ep_chain = f"{svc_chain.replace('svc-', 'ep-', 1)}/{ip}"
                    ep_chains.append(ep_chain)
                    chains.append((ep_chain, [
                        f"ip saddr {ip} meta mark set meta mark | {HAIRPIN_MARK:#x}",
                        f"meta l4proto {l4} dnat to {ip}:{target}",
                    ]))
                picks = ", ".join(f"{i} : goto {c}" for i, c in enumerate(ep_chains))
                chains.append((svc_chain, [f"numgen random mod {len(ep_chains)} vmap {{ {picks} }}"]))

        t = self.table
        out = ["# Service proxy of one local stack; replaced as a whole by each sync.",
               f"table ip {t}", f"delete table ip {t}", f"table ip {t} {{"]
        if cluster_ips:
            elements = ", ".join(sorted(cluster_ips, key=ipaddress.IPv4Address))
            out += ["\tset cluster_ips {", "\t\ttype ipv4_addr", f"\t\telements = {{ {elements} }}", "\t}"]

        def chain(name: str, rules: list[str], hook: str | None = None) -> None:
            out.append(f"\tchain {name} {{")
            if hook:
                out.append(f"\t\t{hook}; policy accept;")
            out.extend(f"\t\t{r}" for r in rules)
            out.append("\t}")

        chain("nat_prerouting", ["jump services"], "type nat hook prerouting priority dstnat")
        chain("nat_output", ["jump services"], "type nat hook output priority -100")
        chain("nat_postrouting", [f"meta mark & {HAIRPIN_MARK:#x} == {HAIRPIN_MARK:#x} "
                                  f"meta mark set meta mark ^ {HAIRPIN_MARK:#x} masquerade"],
              "type nat hook postrouting priority srcnat")
        # After DNAT (prerouting for pods, output -100 for the host) only unserved ClusterIP traffic is left.
        reject = ["ip daddr @cluster_ips reject"] if cluster_ips else []
        chain("filter_forward", reject, "type filter hook forward priority filter")
        chain("filter_output", reject, "type filter hook output priority filter")
        services_rules = ([f"ip daddr . meta l4proto . th dport vmap {{ {', '.join(verdicts)} }}"]
                          if verdicts else [])
        chain("services", services_rules)
        for name, rules in chains:
            chain(name, rules)
        out.append("}")
        return "\n".join(out) + "\n"

    def sync(self, services: Iterable[ProxiedService]) -> None:
        """Replace all of the table's rules with those for `services`, atomically (one nft transaction)."""
        _nft(self.ruleset(list(services)))

    def delete(self) -> None:
        """Remove the table; idempotent (adding an existing table is a no-op, so the delete always finds it)."""
        _nft(f"table ip {self.table}\ndelete table ip {self.table}\n")

    def exists(self) -> bool:
        return self.table in tables_with_prefix(self.table)


def check(script: str) -> None:
    """nft's own syntax and semantic check of a script (`nft -c -f`), without applying it; needs root."""
    _nft(script, "-c")


def tables_with_prefix(prefix: str) -> list[str]:
    """Names of the family-ip nft tables starting with `prefix` (proxies left behind by a crashed stack)."""
    data = json.loads(_nft(None, "-j", "list", "tables") or "{}")
    return sorted(item["table"]["name"] for item in data.get("nftables", [])
                  if "table" in item and item["table"].get("family") == "ip"
                  and item["table"]["name"].startswith(prefix))


def _holders() -> dict[int, int]:
    """Live processes that asked for forwarding -> how many times (files of dead processes are dropped)."""
    FORWARDING_DIR.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in FORWARDING_DIR.glob("[0-9]*"):
        pid = int(f.name)
        try:
            os.kill(pid, 0)
            out[pid] = int(f.read_text() or 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except (PermissionError, ValueError):
            out[pid] = 1
    return {pid: n for pid, n in out.items() if n > 0}


def ensure_forwarding() -> bool:
    """Set net.ipv4.ip_forward=1 (pods and Services are routed through the host); return the previous value.

    The setting is global to the host and stacks run in parallel, so each caller is counted (one file per
    process under /run/alert-history-cache/forwarding/) and the value found by the first one is kept:
    `restore_forwarding` puts it back when the last caller is done, whatever value it is given. Call both from
    the process that lives as long as the stack (its supervisor): a caller whose process died no longer counts."""
    with _allocation_lock():
        holders = _holders()
        previous = IP_FORWARD.read_text().strip() == "1"
        if not holders:
            (FORWARDING_DIR / "original").write_text("1" if previous else "0")
        me = os.getpid()
        (FORWARDING_DIR / str(me)).write_text(str(holders.get(me, 0) + 1))
        if not previous:
            IP_FORWARD.write_text("1\n")
        return previous


def restore_forwarding(previous: bool) -> None:
    """Undo one `ensure_forwarding`: when no other caller (here or in another process) still needs it, put
    net.ipv4.ip_forward back to the value the first caller found (`previous` if that record is missing)."""
    with _allocation_lock():
        holders = _holders()
        me = os.getpid()
        left = holders.pop(me, 0) - 1
        mine = FORWARDING_DIR / str(me)
        if left > 0:
            mine.write_text(str(left))
        else:
            mine.unlink(missing_ok=True)
        if left > 0 or holders:
            return
        original = FORWARDING_DIR / "original"
        try:
            value = original.read_text().strip() == "1"
        except FileNotFoundError:
            value = previous
        IP_FORWARD.write_text("1\n" if value else "0\n")
        original.unlink(missing_ok=True)
