"""A stack's state dir: stack.json (what `status` and `down` read), the lock a running stack holds, and the
cleanup that removes whatever a stack of that dir left behind after a crash."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

import psutil

from . import netns, services
from .volumes import unmount_all

STATE_FILE = "stack.json"
LOCK_FILE = ".lock"


def read_state(state_dir: Path) -> dict:
    try:
        return json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def lock_path(state_dir: Path) -> Path:
    return Path(state_dir) / LOCK_FILE


def take_lock(state_dir: Path):
    """The open lock file, or None if another process holds it."""
    f = open(lock_path(state_dir), "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def release_lock(f) -> None:
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()


def is_running(state_dir: Path) -> bool:
    """A stack process holds the state dir's lock."""
    path = lock_path(state_dir)
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def proc_record(pid: int) -> dict:
    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    except psutil.NoSuchProcess:
        return {"pid": pid, "create_time": None}


def _same_process(rec: dict) -> psutil.Process | None:
    try:
        p = psutil.Process(rec["pid"])
        if rec.get("create_time") is None or abs(p.create_time() - rec["create_time"]) < 0.01:
            return p
    except (psutil.NoSuchProcess, KeyError, TypeError):
        pass
    return None


def processes_of(state_dir: Path) -> list[psutil.Process]:
    """Processes whose root is inside this state dir (its pods' container and probe processes)."""
    prefix = str(Path(state_dir).resolve()) + "/"
    found = []
    for p in psutil.process_iter():
        try:
            if os.readlink(f"/proc/{p.pid}/root").startswith(prefix):
                found.append(p)
        except OSError:
            continue
    return found


def cleanup(state_dir: Path) -> list[str]:
    """Remove whatever a stack of this state dir left behind (after a crash or SIGKILL of its process):
    processes, the pods' network namespaces and veths, the Service proxy's nft table, the ClusterIPs,
    its hold on ip_forward, mounts. Idempotent; returns what it did."""
    from .cluster import proxy_table
    from .service_proxy import (FORWARDING_DIR, IP_FORWARD, ProxyError, ServiceProxy, restore_forwarding,
                                tables_with_prefix)

    state_dir = Path(state_dir).resolve()
    data = read_state(state_dir)
    done: list[str] = []
    victims = {p.pid: p for p in processes_of(state_dir)}
    for rec in data.get("processes", []):
        p = _same_process(rec)
        if p and p.pid != os.getpid():
            victims[p.pid] = p
    # The pods' networks: from the slot records (they survive a lost stack.json) and from stack.json.
    slots = {int(s) for s, owner in netns.owners().items() if owner.get("state_dir") == str(state_dir)}
    for pod in data.get("pods") or ([data["pod"]] if data.get("pod") else []):
        slot = (pod.get("network") or {}).get("slot")
        owner = netns.owners().get(int(slot), {}) if slot else {}
        if slot and (not owner or owner.get("state_dir") == str(state_dir)):
            slots.add(int(slot))
    nets = [netns.PodNetwork(s) for s in sorted(slots)]
    for net in nets:
        for pid in netns.pids_in(net):
            with contextlib.suppress(psutil.NoSuchProcess):
                victims.setdefault(pid, psutil.Process(pid))
    for p in victims.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
            done.append(f"killed pid {p.pid}")
    psutil.wait_procs(list(victims.values()), timeout=5)
    for net in nets:
        existed = netns.exists(net)
        netns.delete(net)
        if existed:
            done.append(f"deleted network namespace {net.netns} and veth {net.host_if}")
    table = proxy_table(state_dir)
    with contextlib.suppress(ProxyError, FileNotFoundError, ValueError):
        if table in tables_with_prefix(table):
            ServiceProxy(table).delete()
            done.append(f"deleted nft table ip {table}")
    for ip in services.allocations(str(state_dir)):
        services.release(ip)
        done.append(f"released ClusterIP {ip}")
    # A crashed supervisor no longer counts as a holder of ip_forward. Only with no live holder left (another
    # stack's process, or this one running a stack of another state dir), restore_forwarding puts back the value
    # the first stack found (or the current one if there is no record: then nothing changes).
    live = [f for f in FORWARDING_DIR.glob("[0-9]*") if psutil.pid_exists(int(f.name))]
    before = IP_FORWARD.read_text().strip()
    if not live:
        restore_forwarding(before == "1")
    if IP_FORWARD.read_text().strip() != before:
        done.append(f"restored net.ipv4.ip_forward={IP_FORWARD.read_text().strip()}")
    for target in unmount_all(state_dir):
        done.append(f"unmounted {target}")
    if data and data.get("phase") not in ("stopped", None):
        data["phase"] = "stopped"
        write_json(state_dir / STATE_FILE, data)
    return done
