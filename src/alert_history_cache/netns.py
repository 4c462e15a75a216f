"""The pod's network: a network namespace and a veth pair, with a pod address from 10.244.0.0/16.

Each running pod takes one slot n (1..254): namespace `ahc-<n>`, host interface `ahc<n>` = 10.244.n.1/24,
the pod's `eth0` = 10.244.n.2/24. Slots are allocated under a lock file, and a slot is free only when
neither its namespace nor its host interface exists, so stacks started in parallel never collide.
Allocation goes round-robin from the last slot handed out (like the host-local IPAM plugin), so a pod that
is deleted and created again gets a new address, as in Kubernetes. Pods reach each other through the host,
which routes between the slots' /24s (with net.ipv4.ip_forward on, see service_proxy.ensure_forwarding)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

RUN_DIR = Path("/run/alert-history-cache")
NETNS_DIR = Path("/run/netns")
PREFIX = "ahc"
SLOTS = range(1, 255)


class NetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class PodNetwork:
    slot: int

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.slot}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def host_if(self) -> str:
        return f"{PREFIX}{self.slot}"

    @property
    def host_ip(self) -> str:
        return f"10.244.{self.slot}.1"

    @property
    def pod_ip(self) -> str:
        return f"10.244.{self.slot}.2"

    def to_dict(self) -> dict:
        return {**asdict(self), "netns": self.netns, "host_if": self.host_if, "pod_ip": self.pod_ip,
                "host_ip": self.host_ip}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


@contextlib.contextmanager
def allocation_lock():
    """The machine-wide lock of every local allocation (pod slots, ClusterIPs, ip_forward holders)."""
    RUN_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(RUN_DIR / "alloc.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _next_slots() -> list[int]:
    """All slots, starting after the one handed out last."""
    try:
        last = int((RUN_DIR / "last-slot").read_text())
    except (FileNotFoundError, ValueError):
        last = 0
    slots = list(SLOTS)
    i = slots.index(last) + 1 if last in slots else 0
    return slots[i:] + slots[:i]


_allocation_lock = allocation_lock  # the name service_proxy.py imports


def create(owner: dict) -> PodNetwork:
    """Take a free slot and build its namespace, veth pair and addresses. `owner` is recorded for `ip netns`
    forensics (state dir, pid, pod) in /run/alert-history-cache/slot-<n>.json."""
    with allocation_lock():
        for slot in _next_slots():
            net = PodNetwork(slot)
            if net.netns_path.exists() or _link_exists(net.host_if):
                continue
            _ip("netns", "add", net.netns)
            (RUN_DIR / f"slot-{slot}.json").write_text(json.dumps(owner))
            (RUN_DIR / "last-slot").write_text(str(slot))
            break
        else:
            raise NetworkError("no free pod address: 254 local pods are running (see `ip netns list`)")
    try:
        # The peer is created directly inside the namespace as eth0, so names never clash on the host.
        _ip("link", "add", net.host_if, "type", "veth", "peer", "name", "eth0", "netns", net.netns)
        _ip("addr", "add", f"{net.host_ip}/24", "dev", net.host_if)
        _ip("link", "set", net.host_if, "up")
        _ip("-n", net.netns, "addr", "add", f"{net.pod_ip}/24", "dev", "eth0")
        _ip("-n", net.netns, "link", "set", "lo", "up")
        _ip("-n", net.netns, "link", "set", "eth0", "up")
        _ip("-n", net.netns, "route", "add", "default", "via", net.host_ip)
    except Exception:
        delete(net)
        raise
    return net


def delete(net: PodNetwork | int) -> None:
    """Remove the slot's veth and namespace; idempotent (missing parts are fine)."""
    net = net if isinstance(net, PodNetwork) else PodNetwork(int(net))
    if _link_exists(net.host_if):
        _ip("link", "del", net.host_if, check=False)
    if net.netns_path.exists():
        _ip("netns", "del", net.netns, check=False)
    with contextlib.suppress(FileNotFoundError):
        (RUN_DIR / f"slot-{net.slot}.json").unlink()


def exists(net: PodNetwork) -> bool:
    return net.netns_path.exists() or _link_exists(net.host_if)


def pids_in(net: PodNetwork) -> list[int]:
    """Processes that live in the pod's network namespace."""
    if not net.netns_path.exists():
        return []
    proc = _ip("netns", "pids", net.netns, check=False)
    return [int(p) for p in proc.stdout.split()]


def owners() -> dict[int, dict]:
    """Slot -> owner record of every slot allocated on this machine."""
    out = {}
    for f in RUN_DIR.glob("slot-*.json"):
        with contextlib.suppress(ValueError, OSError):
            out[int(f.stem.split("-")[1])] = json.loads(f.read_text())
    return out


def ensure_tools() -> None:
    for tool in ("ip", "nsenter", "unshare", "setpriv", "mount", "umount", "nft"):
        if not any(os.access(Path(d, tool), os.X_OK) for d in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(":")
                   + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]):
            package = {"ip": "iproute2", "mount": "mount", "umount": "mount", "nft": "nftables"}.get(tool, "util-linux")
            raise NetworkError(f"`{tool}` is not installed: install it with `apt-get install {package}`")
