"""The local cluster's DNS server: what CoreDNS answers in Kubernetes, from each pod's own hosts file.

Every pod's resolv.conf names 127.0.0.1 (hosts.resolv_conf). This module puts a UDP socket on 127.0.0.1:53
inside each pod's network namespace, all served by one thread of the supervising process, and answers a
query for a name with the addresses the pod's hosts file (hosts.py, rewritten in place on every record
change) gives that name: A records with CoreDNS's default TTL of 5 s, an empty answer (NODATA) for other
types of a known name, NXDOMAIN for an unknown one. Programs that ask DNS themselves instead of reading
/etc/hosts (HAProxy's run-time `resolvers`) so see a recreated pod's new address as they would in a cluster.

A socket is made in another namespace by a short-lived thread that enters it (setns applies to the calling
thread only) and leaves with the socket; the socket stays in that namespace. It must be closed before the
namespace is deleted, or the namespace (and its veth) would live on."""

from __future__ import annotations

import ctypes
import os
import selectors
import socket
import threading
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord, DNSError

CLONE_NEWNET = 0x40000000
TTL = 5  # CoreDNS's kubernetes plugin default
_libc = ctypes.CDLL(None, use_errno=True)


def lookup(hosts_text: str, name: str) -> list[str]:
    """The IPv4 addresses the hosts file gives `name` (case-insensitive, trailing dot ignored), in file order."""
    name = name.rstrip(".").lower()
    out: list[str] = []
    for line in hosts_text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) > 1 and "." in fields[0] and ":" not in fields[0] \
                and name in (f.lower() for f in fields[1:]) and fields[0] not in out:
            out.append(fields[0])
    return out


def answer(query: bytes, hosts_text: str) -> bytes | None:
    """The reply to one DNS query packet (None for a packet that is not a query)."""
    try:
        request = DNSRecord.parse(query)
    except DNSError:
        return None
    if request.header.qr or not request.questions:
        return None
    reply = request.reply()
    reply.header.ra = 1
    q = request.q
    addresses = lookup(hosts_text, str(q.qname))
    if not addresses:
        reply.header.rcode = RCODE.NXDOMAIN
    elif q.qtype in (QTYPE.A, QTYPE.ANY):
        for ip in addresses:
            reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
    return reply.pack()


def _socket_in(netns_path: Path) -> socket.socket:
    """A UDP socket on 127.0.0.1:53 inside the namespace at `netns_path`."""
    result: dict = {}

    def enter_and_bind() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns_path}")
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 53))
            s.setblocking(False)
            result["socket"] = s
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=enter_and_bind, name="cluster-dns-bind", daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["socket"]


class ClusterDNS:
    """One responder for every pod of a local cluster: `serve(pod, netns, hosts file)`, `forget(pod)`."""

    def __init__(self):
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._sockets: dict[str, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread: threading.Thread | None = None
        self._closing = False

    def serve(self, pod: str, netns_path: Path, hosts_file: Path) -> None:
        s = _socket_in(netns_path)
        with self._lock:
            self._forget_locked(pod)
            self._sockets[pod] = s
            self._selector.register(s, selectors.EVENT_READ, Path(hosts_file))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cluster-dns", daemon=True)
                self._thread.start()
        self._wake_w.send(b"x")

    def forget(self, pod: str) -> None:
        with self._lock:
            self._forget_locked(pod)

    def _forget_locked(self, pod: str) -> None:
        s = self._sockets.pop(pod, None)
        if s is not None:
            self._selector.unregister(s)
            s.close()

    def close(self) -> None:
        """Every socket closed and the thread ended. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            for pod in list(self._sockets):
                self._forget_locked(pod)
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while True:
            events = self._selector.select(timeout=1.0)
            with self._lock:
                if self._closing:
                    return
                for key, _ in events:
                    if key.data is None:  # the wake-up pair: the set of sockets changed
                        self._wake_r.recv(4096)
                        continue
                    if key.fileobj not in self._sockets.values():  # forgotten since select returned
                        continue
                    self._reply(key.fileobj, key.data)

    @staticmethod
    def _reply(s: socket.socket, hosts_file: Path) -> None:
        try:
            packet, peer = s.recvfrom(4096)
            text = hosts_file.read_text()
        except (BlockingIOError, OSError):
            return
        reply = answer(packet, text)
        if reply is not None:
            try:
                s.sendto(reply, peer)
            except OSError:
                pass
