"""The local cluster's network, for real: three throwaway pod networks (netns + veth) each running valkey-server,
the Service proxy's nftables rules, partitions inside a pod's netns, and the generated hosts file seen through
glibc (getent) inside a pod's mount namespace.

Each server holds the key `who` = its pod name, so a client that asks `GET who` through a ClusterIP learns which
endpoint the kernel picked. Every wait polls; every fixture removes what it made, also on failure."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alert_history_cache import engines, netns, partition, service_proxy
from alert_history_cache.hosts import PodRecord, ServiceRecord, hosts_entries, render, resolv_conf, write_in_place
from alert_history_cache.service_proxy import ProxiedService, ServicePort, ServiceProxy
from alert_history_cache.waiting import wait_until

pytestmark = pytest.mark.integration

PORT = 6379
NS = "default"
HEADLESS = "alerthistory-redis-headless"
# A ClusterIP block of this test run only, so a stack running beside it never shares an address.
VIP_NET = f"10.99.{random.randrange(256)}"
DROP_TIMEOUT = 1.0  # a dropped connection attempt gives up after this; refusals and answers come far sooner

# Connects `count` times to ip:port and asks `GET who`: the pod name, "refused", "timeout" or "error:<errno>".
PROBE = r"""
import json, socket, sys
ip, port, timeout, count = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
out = []
for _ in range(count):
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(b"GET who\r\n")
            data = b""
            while not (data.endswith(b"\r\n") and (data[:1] != b"$" or data[:2] == b"$-" or data.count(b"\r\n") >= 2)):
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            out.append(data.split(b"\r\n")[1].decode() if data[:1] == b"$" else "reply:" + data.decode())
    except ConnectionRefusedError:
        out.append("refused")
    except (socket.timeout, TimeoutError):
        out.append("timeout")
    except OSError as exc:
        out.append(f"error:{exc.errno}")
print(json.dumps(out))
"""


class Pod:
    def __init__(self, index: int, net: netns.PodNetwork):
        self.index, self.net = index, net
        self.name = f"alerthistory-redis-{index}"
        self.server: subprocess.Popen | None = None

    @property
    def ip(self) -> str:
        return self.net.pod_ip

    def enter(self) -> list[str]:
        return ["nsenter", f"--net={self.net.netns_path}", "--"]


def probe(ip: str, *, via: Pod | list[str] | None = None, count: int = 1, timeout: float = 5.0) -> list[str]:
    """Results of `count` new connections to ip:PORT from the host (via=None), a pod, or an argv prefix."""
    prefix = via.enter() if isinstance(via, Pod) else (via or [])
    proc = subprocess.run([*prefix, sys.executable, "-c", PROBE, ip, str(PORT), str(timeout), str(count)],
                          capture_output=True, text=True, timeout=count * timeout + 30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def one(ip: str, **kw) -> str:
    return probe(ip, **kw)[0]


@pytest.fixture(scope="module")
def root():
    if os.geteuid() != 0:
        pytest.skip("network namespaces and nftables need root")
    for tool in ("nft", "nsenter", "unshare", "setpriv", "getent"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed (nftables, util-linux, libc-bin)")


@pytest.fixture(scope="module")
def forwarding(root):
    before = service_proxy.IP_FORWARD.read_text().strip()
    previous = service_proxy.ensure_forwarding()
    yield
    service_proxy.restore_forwarding(previous)
    if not service_proxy._holders():  # else a stack running beside the tests still needs it
        assert service_proxy.IP_FORWARD.read_text().strip() == before


@pytest.fixture(scope="module")
def pods(root, forwarding, tmp_path_factory):
    """Three pod networks, each with a valkey-server on 0.0.0.0:6379 running as nobody."""
    server = engines.get("valkey8").server
    logs = tmp_path_factory.mktemp("network-emulation")
    made: list[Pod] = []
    try:
        for index in range(3):
            pod = Pod(index, netns.create({"state_dir": str(logs), "pid": os.getpid(), "test": __name__}))
            made.append(pod)
            with open(logs / f"{pod.name}.log", "wb") as log:
                pod.server = subprocess.Popen(
                    [*pod.enter(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                     str(server), "--save", "", "--appendonly", "no", "--port", str(PORT), "--bind", "0.0.0.0",
                     "--protected-mode", "no"],
                    cwd="/", stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        for pod in made:
            cli = [str(engines.get("valkey8").cli), "-h", pod.ip, "-p", str(PORT)]
            wait_until(lambda: subprocess.run([*cli, "SET", "who", pod.name], capture_output=True,
                                              text=True).stdout.strip() == "OK",
                       10, f"valkey-server in {pod.net.netns}")
        yield made
    finally:
        for pod in made:
            if pod.server and pod.server.poll() is None:
                pod.server.terminate()
                try:
                    pod.server.wait(10)
                except subprocess.TimeoutExpired:
                    pod.server.kill()
                    pod.server.wait()
            netns.delete(pod.net)
            assert not netns.exists(pod.net), f"{pod.net.netns} left behind"


@pytest.fixture
def proxy(pods):
    p = ServiceProxy(f"ahc_test_{os.getpid()}")
    yield p
    p.delete()
    assert not p.exists(), f"nft table {p.table} left behind"


@pytest.fixture
def healed(pods):
    """Heal every pod after the test, also when it fails half-way."""
    yield
    for pod in pods:
        partition.heal(pod.net.netns)
        assert partition.partitioned_peers(pod.net.netns) is False


def service(name: str, vip_host: int, endpoints, port_name="redis") -> ProxiedService:
    return ProxiedService(name, NS, f"{VIP_NET}.{vip_host}", (ServicePort(port_name, PORT, PORT),),
                          tuple(p.ip for p in endpoints))


def seen_from(vip: str, via, expected: set[str]) -> set[str]:
    """Endpoints hit by new connections until all of `expected` answered (random choice: poll)."""
    seen: set[str] = set()

    def all_seen():
        seen.update(probe(vip, via=via, count=10))
        return seen >= expected

    wait_until(all_seen, 20, f"connections to {vip} reaching {sorted(expected)}")
    return seen


def test_cluster_ip_balances_over_both_endpoints_from_host_and_pod(proxy, pods):
    a, b, c = pods
    svc = service("alerthistory-redis", 10, [a, b])
    proxy.sync([svc])
    assert seen_from(svc.cluster_ip, None, {a.name, b.name}) == {a.name, b.name}
    assert seen_from(svc.cluster_ip, c, {a.name, b.name}) == {a.name, b.name}


def test_removing_an_endpoint_stops_new_connections_to_it_within_a_second(proxy, pods):
    a, b, c = pods
    vip = f"{VIP_NET}.11"
    proxy.sync([service("alerthistory-redis", 11, [a, b])])
    seen_from(vip, c, {a.name, b.name})
    proxy.sync([service("alerthistory-redis", 11, [a])])
    wait_until(lambda: set(probe(vip, via=c, count=20)) == {a.name}, 1.0, f"only {a.name} behind {vip}",
               interval=0.05)
    wait_until(lambda: set(probe(vip, count=20)) == {a.name}, 1.0, f"only {a.name} behind {vip} from the host",
               interval=0.05)


def test_no_ready_endpoint_is_refused_not_hanging(proxy, pods):
    a, b, c = pods
    proxy.sync([service("alerthistory-redis", 12, []), service("alerthistory-redis-metrics", 13, [a])])
    assert one(f"{VIP_NET}.12") == "refused"
    assert one(f"{VIP_NET}.12", via=c) == "refused"
    # A port the Service does not have is refused too, instead of leaving through the host's default route.
    other_port = ProxiedService("alerthistory-redis-metrics", NS, f"{VIP_NET}.13",
                                (ServicePort("http-metrics", 9121, 9121),), (a.ip,))
    proxy.sync([other_port])
    assert one(f"{VIP_NET}.13", via=c) == "refused"


def test_hairpin_a_pod_reaches_itself_through_its_service(proxy, pods):
    a, b, c = pods
    proxy.sync([service("alerthistory-redis", 14, [a])])
    assert one(f"{VIP_NET}.14", via=a) == a.name


def test_full_partition_cuts_the_pod_off_and_heal_restores_it(pods, healed):
    a, b, c = pods
    partition.partition(a.net.netns)
    assert partition.partitioned_peers(a.net.netns) is None
    assert one(a.ip, timeout=DROP_TIMEOUT) == "timeout"  # host -> pod
    assert one(a.ip, via=b, timeout=DROP_TIMEOUT) == "timeout"  # pod -> pod
    assert one(b.ip, via=a, timeout=DROP_TIMEOUT) == "timeout"  # pod -> out
    assert one("127.0.0.1", via=a) == a.name  # its containers still share localhost
    partition.heal(a.net.netns)
    assert partition.partitioned_peers(a.net.netns) is False
    assert wait_until(lambda: one(a.ip, via=b) == a.name, 5, "b reaching a after heal")
    assert one(b.ip, via=a) == b.name and one(a.ip) == a.name


def test_peer_partition_cuts_only_that_peer_both_ways(pods, healed):
    a, b, c = pods
    partition.partition(a.net.netns, [b.ip])
    assert partition.partitioned_peers(a.net.netns) == [b.ip]
    assert one(a.ip, via=b, timeout=DROP_TIMEOUT) == "timeout"
    assert one(b.ip, via=a, timeout=DROP_TIMEOUT) == "timeout"
    assert one(a.ip, via=c) == a.name and one(c.ip, via=a) == c.name and one(a.ip) == a.name
    partition.heal(a.net.netns)
    assert wait_until(lambda: one(a.ip, via=b) == a.name, 5, "b reaching a after heal")


def test_peer_partition_and_service_ips(proxy, pods, healed):
    a, b, c = pods
    vip = f"{VIP_NET}.15"
    proxy.sync([service("alerthistory-redis", 15, [a])])
    partition.partition(c.net.netns, [a.ip])
    assert one(a.ip, via=c, timeout=DROP_TIMEOUT) == "timeout"
    # The documented gap: inside c the packet goes to the ClusterIP; the host DNATs it to a afterwards.
    assert one(vip, via=c) == a.name
    partition.partition(c.net.netns, [a.ip], service_ips=[vip])
    assert partition.partitioned_peers(c.net.netns) == sorted([a.ip, vip], key=lambda s: tuple(map(int, s.split("."))))
    assert one(vip, via=c, timeout=DROP_TIMEOUT) == "timeout"
    assert one(b.ip, via=c) == b.name


@pytest.fixture
def pod_mount_ns(pods, tmp_path):
    """A process in pod 0's network namespace and a private mount namespace with the generated hosts file and
    resolv.conf bind-mounted over /etc, as in the pod's containers. Yields (hosts file, argv prefix that
    enters both namespaces)."""
    hosts_file, resolv = tmp_path / "hosts", tmp_path / "resolv.conf"
    write_in_place(hosts_file, "127.0.0.1\tlocalhost\n")
    write_in_place(resolv, resolv_conf())
    holder = subprocess.Popen(
        [*pods[0].enter(), "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
         'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && echo mounted && exec sleep 3600',
         str(hosts_file), str(resolv)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "mounted", holder.stderr.read()
        yield hosts_file, ["nsenter", f"--target={holder.pid}", "--mount", "--net", "--"]
    finally:
        holder.kill()
        holder.wait()
    assert str(tmp_path) not in Path("/proc/mounts").read_text()


def getent(prefix: list[str], database: str, name: str) -> list[str]:
    """Addresses glibc returns for `name` (first column of getent; empty when not found)."""
    # Names the file lacks (and `hosts`' IPv6 query) reach resolv_conf()'s dead nameserver: quick, no hang.
    proc = subprocess.run([*prefix, "getent", database, name], capture_output=True, text=True, timeout=10)
    return list(dict.fromkeys(line.split()[0] for line in proc.stdout.splitlines()))


def test_getent_in_a_pod_resolves_service_headless_and_pod_names(proxy, pods, pod_mount_ns):
    a, b, c = pods
    hosts_file, inside = pod_mount_ns
    vip = f"{VIP_NET}.16"
    proxy.sync([service("alerthistory-redis", 16, [a, b])])
    records = [PodRecord(p.name, p.ip, p is not c, p.name, HEADLESS, NS) for p in pods]
    services = [ServiceRecord("alerthistory-redis", NS, vip, tuple(p.name for p in pods), False),
                ServiceRecord(HEADLESS, NS, None, tuple(p.name for p in pods), False)]
    write_in_place(hosts_file, render(hosts_entries(records, services, namespace=NS), own_pod=records[0]))

    for name in ("alerthistory-redis", "alerthistory-redis.default", "alerthistory-redis.default.svc",
                 "alerthistory-redis.default.svc.cluster.local"):
        assert getent(inside, "hosts", name) == [vip], name
    # Several lines for one name: glibc returns them all (Debian's /etc/host.conf has `multi on`).
    assert sorted(getent(inside, "ahostsv4", HEADLESS)) == sorted([a.ip, b.ip])
    assert sorted(getent(inside, "ahostsv4", f"{HEADLESS}.default.svc.cluster.local")) == sorted([a.ip, b.ip])
    assert getent(inside, "hosts", f"{b.name}.{HEADLESS}") == [b.ip]
    assert getent(inside, "hosts", f"{b.name}.{HEADLESS}.default.svc.cluster.local") == [b.ip]
    assert getent(inside, "hosts", f"{c.name}.{HEADLESS}") == []  # not Ready: no record
    assert getent(inside, "hosts", a.name) == [a.ip]  # the pod's own line
    # A Service name reaches the Service from inside the pod.
    assert one("alerthistory-redis", via=inside) in {a.name, b.name}

    # c becomes Ready: the file is rewritten in place and the bind mount shows the new content at once.
    records[2] = PodRecord(c.name, c.ip, True, c.name, HEADLESS, NS)
    write_in_place(hosts_file, render(hosts_entries(records, services, namespace=NS), own_pod=records[0]))
    assert sorted(getent(inside, "ahostsv4", HEADLESS)) == sorted([a.ip, b.ip, c.ip])
    assert getent(inside, "hosts", f"{c.name}.{HEADLESS}.default") == [c.ip]


def test_tables_are_found_by_prefix_and_delete_is_idempotent(proxy, pods):
    proxy.sync([service("alerthistory-redis", 17, [pods[0]])])
    assert proxy.table in service_proxy.tables_with_prefix("ahc_test_")
    assert one(f"{VIP_NET}.17") == pods[0].name
    proxy.delete()
    proxy.delete()
    assert proxy.table not in service_proxy.tables_with_prefix("ahc_test_")


def test_forwarding_is_counted_and_restored_by_the_last_caller(forwarding):
    first = service_proxy.ensure_forwarding()
    second = service_proxy.ensure_forwarding()
    assert first is True and second is True  # the module's fixture already holds it
    service_proxy.restore_forwarding(second)
    assert service_proxy.IP_FORWARD.read_text().strip() == "1"
    service_proxy.restore_forwarding(first)
    assert service_proxy.IP_FORWARD.read_text().strip() == "1"  # the fixture still needs it
    assert service_proxy._holders().get(os.getpid()) == 1
