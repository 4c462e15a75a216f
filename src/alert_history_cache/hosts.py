"""The local cluster's "DNS": each pod's generated /etc/hosts, with the names cluster DNS would answer.

  <svc>, <svc>.<ns>, <svc>.<ns>.svc, <svc>.<ns>.svc.<domain>   -> the ClusterIP
  the same names of a headless Service                          -> every Ready selected pod's address (all
                                                                   selected pods with publishNotReadyAddresses)
  <pod>.<svc>, <pod>.<svc>.<ns>, <pod>.<svc>.<ns>.svc, <pod>.<svc>.<ns>.svc.<domain>
                                                                -> the pod's address, for pods whose hostname
                                                                   and subdomain (a StatefulSet's serviceName)
                                                                   name that headless Service, under the same
                                                                   Ready rule (the records come from endpoints)
The forms without a namespace (`<svc>`, `<pod>.<svc>`) resolve in Kubernetes only from the same namespace
(through the search path); `hosts_entries(..., namespace=)` keeps them to that namespace.

A headless name with several pods becomes several lines with the same name. glibc's files backend returns all
of them only with `multi on` in /etc/host.conf (Debian's default, so in Debian-based images; checked here
with getent and getaddrinfo on glibc 2.36); with `multi off` (or RESOLV_MULTI=off) it returns the first line's
address only. A rewritten file is seen by the next lookup.

A lookup the hosts file cannot answer goes on to DNS (nsswitch `hosts: files dns`), and some programs only ask
DNS (HAProxy's run-time resolvers). `resolv_conf()` is the file mounted over /etc/resolv.conf: its nameserver
is the pod's own loopback, where the local cluster's DNS server (cluster_dns.py) answers from this same file,
with a short timeout so a lookup never hangs (without it, the host's resolv.conf would send a pod's queries
through the host unmasqueraded, never answered)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

CLUSTER_DOMAIN = "cluster.local"

# What the kubelet writes above the pod's own line.
KUBELET_HEADER = [
    "# Kubernetes-managed hosts file.",
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "fe00::0\tip6-mcastprefix",
    "fe00::1\tip6-allnodes",
    "fe00::2\tip6-allrouters",
]


@dataclass(frozen=True)
class PodRecord:
    name: str
    ip: str | None
    ready: bool
    hostname: str
    subdomain: str | None
    namespace: str


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    namespace: str
    cluster_ip: str | None  # None (or "None") = headless
    selector_pods: tuple[str, ...]  # names of the pods its selector matches, in the namespace
    publish_not_ready: bool


def _headless(svc: ServiceRecord) -> bool:
    return svc.cluster_ip in (None, "", "None")


def _names(base: str, namespace: str, domain: str, *, short: bool) -> list[str]:
    """`<base>.<ns>.svc.<domain>` and its shorter forms, longest first (the first is the canonical name)."""
    names = [f"{base}.{namespace}.svc.{domain}", f"{base}.{namespace}.svc", f"{base}.{namespace}"]
    return names + [base] if short else names


def hosts_entries(pods: Iterable[PodRecord], services: Iterable[ServiceRecord], domain: str = CLUSTER_DOMAIN,
                  *, namespace: str | None = None) -> list[tuple[str, list[str]]]:
    """(address, names) lines for the Services and the pods' stable identities, in a stable order.

    `namespace`: the namespace of the pod that reads the file; the names without a namespace are written for
    that namespace only (None: for every namespace, fine for a release in one namespace)."""
    by_key = {(p.namespace, p.name): p for p in pods}
    entries: list[tuple[str, list[str]]] = []
    identities: list[tuple[str, list[str]]] = []
    for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
        short = namespace is None or svc.namespace == namespace
        names = _names(svc.name, svc.namespace, domain, short=short)
        if not _headless(svc):
            entries.append((svc.cluster_ip, names))
            continue
        for pod_name in svc.selector_pods:
            pod = by_key.get((svc.namespace, pod_name))
            if pod is None or not pod.ip or not (pod.ready or svc.publish_not_ready):
                continue
            entries.append((pod.ip, names))
            if pod.subdomain == svc.name and pod.hostname:
                identities.append((pod.ip, _names(f"{pod.hostname}.{svc.name}", svc.namespace, domain,
                                                  short=short)))
    return entries + identities


def own_line(pod: PodRecord, domain: str = CLUSTER_DOMAIN) -> str | None:
    """The kubelet's line for the pod itself: `<ip> <hostname>.<subdomain>.<ns>.svc.<domain> <hostname>`."""
    if not pod.ip:
        return None
    names = [pod.hostname]
    if pod.subdomain:
        names.insert(0, f"{pod.hostname}.{pod.subdomain}.{pod.namespace}.svc.{domain}")
    return f"{pod.ip}\t" + "\t".join(names)


def render(entries: Iterable[tuple[str, list[str]]], *, own_pod: PodRecord, domain: str = CLUSTER_DOMAIN) -> str:
    """The whole hosts file: the kubelet's lines (localhost, the pod's own name), then the cluster's names."""
    lines = list(KUBELET_HEADER)
    own = own_line(own_pod, domain)
    if own:
        lines.append(own)
    lines.append("# alert-history-cache: Service and pod names (answered by cluster DNS in Kubernetes)")
    lines += [f"{ip}\t" + "\t".join(names) for ip, names in entries if names]
    return "\n".join(lines) + "\n"


def resolv_conf() -> str:
    """/etc/resolv.conf for a pod: the local cluster's DNS server on the pod's loopback, failing fast."""
    return ("# alert-history-cache: cluster DNS answers on 127.0.0.1:53 from this pod's /etc/hosts (cluster_dns.py)\n"
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")


def write_in_place(path: str | os.PathLike, text: str) -> bool:
    """Write `text` into the file itself (same inode), not by rename: the file is bind-mounted over
    /etc/hosts in the containers, and a rename would leave the mounts on the old inode. The new bytes are
    written over the old ones in one write, then the rest is cut off, so a reader never finds an empty file.
    Returns False (and writes nothing) when the content is already `text`."""
    data = text.encode()
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.fchmod(fd, 0o644)  # readable by the containers' users whatever the umask
        with os.fdopen(fd, "r+b", closefd=False) as f:
            if f.read() == data:
                return False
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], done)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return True
