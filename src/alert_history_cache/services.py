"""The release's Services: ClusterIPs from the Service range, and the endpoints their selectors pick.

ClusterIPs come from 10.96.0.0/16 (kubeadm's default Service range). Each allocation is a record file
/run/alert-history-cache/clusterip-<ip>.json naming its stack (state dir) and Service, written under the
machine-wide allocation lock, so two stacks side by side never share an address; a stack frees its records
on stop, and crash cleanup frees those that name its state dir. An explicit `clusterIP` in the Service is
honoured when free. The endpoints of a Service are the Ready, not terminating pods its selector matches
(all matching pods with an address for `publishNotReadyAddresses`, which only DNS uses)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

from .kube import KubeError, container_port, selector_matches
from .netns import RUN_DIR, allocation_lock

SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/16")
# .1 is the `kubernetes` Service, .10 cluster DNS in kubeadm clusters: never handed out.
RESERVED = {SERVICE_RANGE.network_address + 1, SERVICE_RANGE.network_address + 10}


class ServiceError(KubeError):
    pass


def _record(ip: str) -> Path:
    return RUN_DIR / f"clusterip-{ip}.json"


def allocate(owner: str, service: str, wanted: str | None = None) -> str:
    """A free ClusterIP for `service` of the stack `owner` (its state dir)."""
    with allocation_lock():
        if wanted:
            if _record(wanted).exists():
                raise ServiceError(f"Service {service}: clusterIP {wanted} is already allocated "
                                   f"({_record(wanted).read_text()})")
            candidates = [ipaddress.ip_address(wanted)]
        else:
            candidates = (ip for ip in SERVICE_RANGE.hosts() if ip not in RESERVED)
        for ip in candidates:
            path = _record(str(ip))
            if not path.exists():
                path.write_text(json.dumps({"state_dir": owner, "service": service}))
                return str(ip)
    raise ServiceError(f"no free ClusterIP in {SERVICE_RANGE}")


def release(ip: str) -> None:
    with allocation_lock(), contextlib.suppress(FileNotFoundError):
        _record(ip).unlink()


def allocations(owner: str) -> list[str]:
    """The ClusterIPs allocated to the stack of state dir `owner`."""
    out = []
    for f in RUN_DIR.glob("clusterip-*.json"):
        with contextlib.suppress(ValueError, OSError):
            if json.loads(f.read_text()).get("state_dir") == owner:
                out.append(f.name.removeprefix("clusterip-").removesuffix(".json"))
    return sorted(out)


@dataclass(frozen=True)
class Port:
    name: str | None
    port: int
    target_port: int | str
    protocol: str = "TCP"


@dataclass
class Service:
    """One rendered Service as the cluster emulates it."""

    name: str
    namespace: str
    selector: dict | None
    ports: tuple[Port, ...]
    headless: bool
    publish_not_ready: bool
    wanted_ip: str | None = None
    cluster_ip: str | None = None  # allocated on start (None for a headless Service)
    endpoints: tuple[str, ...] = field(default_factory=tuple)  # Ready pod addresses, as the proxy programs

    @classmethod
    def from_manifest(cls, obj: dict, namespace: str) -> "Service":
        spec = obj.get("spec", {})
        kind = spec.get("type", "ClusterIP")
        if kind not in ("ClusterIP", "NodePort", "LoadBalancer"):
            raise ServiceError(f"Service {obj['metadata']['name']}: type {kind} is not emulated")
        ip = spec.get("clusterIP")
        ports = tuple(Port(p.get("name"), int(p["port"]), p.get("targetPort", p["port"]), p.get("protocol", "TCP"))
                      for p in spec.get("ports", []))
        return cls(name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace", namespace),
                   selector=spec.get("selector"), ports=ports, headless=ip == "None",
                   publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
                   wanted_ip=ip if ip and ip != "None" else None)

    def selects(self, labels: dict) -> bool:
        return selector_matches(self.selector, labels)

    def target_port(self, port: Port, containers: list[dict]) -> int | None:
        """The container port a Service port leads to on a pod with these containers (named or numbered)."""
        if isinstance(port.target_port, int) or str(port.target_port).isdigit():
            return int(port.target_port)
        for c in containers:
            with contextlib.suppress(KubeError):
                return container_port(c, port.target_port)
        return None

    def to_dict(self) -> dict:
        return {"name": self.name, "namespace": self.namespace, "cluster_ip": self.cluster_ip,
                "headless": self.headless, "publish_not_ready_addresses": self.publish_not_ready,
                "ports": [{"name": p.name, "port": p.port, "target_port": p.target_port, "protocol": p.protocol}
                          for p in self.ports],
                "endpoints": list(self.endpoints)}
