"""One pod of the release on this machine: its network namespace, volumes, hosts file, init containers, then
the containers under the kubelet emulation. An honest emulation of a pod, not Kubernetes.

A LocalPod is one name of a controller (`<sts>-<n>`, or a Deployment's pod) and lives through several
incarnations: `create()` builds a new one (a new network namespace, so a new address; init containers
again; new emptyDirs), `delete()` ends it (preStop, SIGTERM, SIGKILL after the grace period, then the
namespace goes). The PVC folders and the pod's state folder stay."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Callable

from . import netns
from .cluster_dns import ClusterDNS
from .container import Container, ContainerSpec
from .kube import KubeError, Objects, resolve_env
from .kubelet import Kubelet
from .rootfs import Identity, Mount
from .volumes import Volumes
from .waiting import wait_until
from .workloads import PodPlan

# WORKDIR of the images (the chart sets no workingDir); everything else starts in /.
IMAGE_WORKDIR = {"valkey/valkey": "/data", "redis": "/data", "docker.io/valkey/valkey": "/data",
                 "docker.io/library/redis": "/data"}


class PodStartError(RuntimeError):
    pass


def image_repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


def image_workdir(image: str) -> str:
    """WORKDIR of a known image, also behind a registry or mirror path (global.imageRegistry, image.registry)."""
    repository = image_repository(image)
    if repository in IMAGE_WORKDIR:
        return IMAGE_WORKDIR[repository]
    parts = repository.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        for i in range(1, len(parts)):
            if "/".join(parts[i:]) in IMAGE_WORKDIR:
                return IMAGE_WORKDIR["/".join(parts[i:])]
    return "/"


class LocalPod:
    def __init__(self, plan: PodPlan, *, pod_dir: Path, claim_dir: Callable[[str], Path],
                 log_path: Callable[[str], Path], bin_dir: Path, root_links: dict[str, str], objects: Objects,
                 backoff: tuple[float, float] = (10.0, 300.0), on_change=None, event_log=None,
                 hosts_text: Callable[["LocalPod"], str] | None = None, owner: dict | None = None,
                 dns: ClusterDNS | None = None):
        if not plan.spec.get("containers"):
            raise KubeError(f"pod {plan.name}: no containers")
        self.plan = plan
        self.name, self.namespace = plan.name, plan.namespace
        self.spec = plan.spec
        self.labels, self.annotations = plan.labels, plan.annotations
        self.dir = pod_dir
        self._log_path = log_path
        self.grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        self.bin_dir, self.root_links = bin_dir, root_links
        self.objects = objects
        self.backoff = backoff
        self.on_change = on_change or (lambda: None)
        self.event_log = event_log
        self.hosts_text = hosts_text
        self.dns = dns
        self.owner = owner or {}
        self.volumes = Volumes(pod_dir, self.spec, plan.claims, objects, claim_dir=claim_dir)
        self.net: netns.PodNetwork | None = None
        self.kubelet: Kubelet | None = None
        self.uid = str(uuid.uuid4())
        self.generation = 0  # incarnations so far (a delete and create makes a new one)
        self.terminating = False
        self.partition: dict | None = None  # a fault's partition (a new incarnation's netns has none)
        self.frozen = False  # a node-loss fault stopped every process (a new incarnation runs again)
        self.init_results: list[dict] = []
        self.created_at: float | None = None
        self.created_monotonic: float | None = None

    # -- paths ----------------------------------------------------------------------------------------
    def log_path(self, container: str) -> Path:
        return self._log_path(container)

    @property
    def hosts_file(self) -> Path:
        return self.dir / "pod" / "hosts"

    @property
    def resolv_file(self) -> Path:
        return self.dir / "pod" / "resolv.conf"

    @property
    def ip(self) -> str | None:
        return self.net.pod_ip if self.net else None

    @property
    def ready(self) -> bool:
        return bool(self.kubelet and self.kubelet.pod_ready and not self.terminating and self.net)

    @property
    def running(self) -> bool:
        return self.kubelet is not None and self.net is not None and not self.terminating

    # -- build ----------------------------------------------------------------------------------------
    def _fields(self) -> dict[str, str]:
        f = {"metadata.name": self.name, "metadata.namespace": self.namespace, "metadata.uid": self.uid,
             "spec.nodeName": socket.gethostname(), "spec.serviceAccountName": self.spec.get("serviceAccountName",
                                                                                            "default"),
             "status.podIP": self.ip, "status.podIPs": self.ip, "status.hostIP": self.net.host_ip,
             "status.hostIPs": self.net.host_ip}
        f.update({f"labels:{k}": v for k, v in self.labels.items()})
        f.update({f"annotations:{k}": v for k, v in self.annotations.items()})
        return f

    def _identity(self, container: dict) -> tuple[Identity, bool]:
        psc, csc = self.spec.get("securityContext", {}), container.get("securityContext", {})
        merged = {**psc, **csc}
        uid, gid = int(merged.get("runAsUser", 0)), int(merged.get("runAsGroup", 0))
        if merged.get("runAsNonRoot") and uid == 0:
            raise KubeError(f"container {container['name']}: runAsNonRoot is set but it would run as root")
        groups = [int(psc["fsGroup"])] if psc.get("fsGroup") is not None else []
        groups += [int(g) for g in psc.get("supplementalGroups", []) if int(g) not in groups]
        caps = csc.get("capabilities", {})
        identity = Identity(uid=uid, gid=gid, groups=groups,
                            drop_all_caps="ALL" in caps.get("drop", []) or uid != 0,
                            no_new_privs=csc.get("allowPrivilegeEscalation") is False)
        return identity, bool(csc.get("readOnlyRootFilesystem"))

    def _mounts(self, container: dict, paths: dict[str, Path]) -> list[Mount]:
        kinds = {v["name"]: v for v in self.spec.get("volumes", [])}
        out = []
        for vm in container.get("volumeMounts", []):
            if vm["name"] not in paths:
                raise KubeError(f"container {container['name']}: volumeMount {vm['name']!r} has no volume")
            source = paths[vm["name"]] / vm.get("subPath", "")
            vol = kinds.get(vm["name"], {})
            read_only = bool(vm.get("readOnly")) or "configMap" in vol or "secret" in vol  # always RO in Kubernetes
            out.append(Mount(path=vm["mountPath"], source=source, read_only=read_only))
        return out

    def _spec_for(self, container: dict, paths: dict[str, Path]) -> ContainerSpec:
        identity, ro_root = self._identity(container)
        env = resolve_env(container, self.objects, self._fields())
        return ContainerSpec.from_rendered(
            container, env=env, identity=identity, mounts=self._mounts(container, paths), read_only_root=ro_root,
            workdir=image_workdir(container.get("image", "")),
            container_dir=self.dir / "containers" / container["name"], bin_dir=self.bin_dir,
            root_links=self.root_links, hosts_file=self.hosts_file, resolv_file=self.resolv_file,
            hostname=self.plan.hostname, netns_path=self.net.netns_path, log_path=self.log_path(container["name"]))

    def write_hosts(self) -> None:
        """The pod's /etc/hosts (bind-mounted in every container), rewritten in place when an address changes."""
        from .hosts import resolv_conf, write_in_place

        if self.net is None or self.hosts_text is None:
            return
        self.hosts_file.parent.mkdir(parents=True, exist_ok=True)
        write_in_place(self.hosts_file, self.hosts_text(self))
        self.hosts_file.chmod(0o644)
        if not self.resolv_file.exists():
            self.resolv_file.write_text(resolv_conf())
            self.resolv_file.chmod(0o644)

    # -- lifecycle ------------------------------------------------------------------------------------
    def create(self) -> None:
        """A new incarnation: a new network namespace (a new address), the hosts file, volumes, the init
        containers, then the containers under the kubelet. Raises on failure (the caller deletes the pod)."""
        self.generation += 1
        self.uid = str(uuid.uuid4())
        self.terminating = False
        self.partition = None
        self.frozen = False
        self.init_results = []
        self.created_at, self.created_monotonic = time.time(), time.monotonic()
        self.net = netns.create({**self.owner, "pod": self.name})
        self.write_hosts()
        if self.dns:
            self.dns.serve(self.name, self.net.netns_path, self.hosts_file)
        paths = self.volumes.prepare()
        self.on_change()
        for c in self.spec.get("initContainers", []):
            self._run_init(self._spec_for(c, paths))
        containers = [Container(self._spec_for(c, paths)) for c in self.spec["containers"]]
        self.kubelet = Kubelet(self.ip, containers, self.grace, backoff=self.backoff, on_change=self.on_change,
                               event_log=self.event_log, pod=self.name)
        self.kubelet.start()

    def run_to_completion(self, timeout: float) -> dict:
        """A Job's pod (restartPolicy Never): network, hosts file and volumes as create() does, then each init
        container in turn and every container until it exits, all within `timeout` seconds (the Job's
        activeDeadlineSeconds), and the pod is gone again. An init container that fails fails the pod: the ones
        after it and the containers never start (their exit code is None). Returns each container's exit code
        (init containers first), the pod's volume folders and the containers' logs."""
        self.generation += 1
        self.created_at, self.created_monotonic = time.time(), time.monotonic()
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        logs: dict[str, str] = {}
        try:
            self.net = netns.create({**self.owner, "pod": self.name})
            self.write_hosts()
            if self.dns:
                self.dns.serve(self.name, self.net.netns_path, self.hosts_file)
            paths = self.volumes.prepare()
            steps = [[c] for c in self.spec.get("initContainers", [])] + [self.spec["containers"]]
            for step in steps:
                containers = [Container(self._spec_for(c, paths)) for c in step]
                if any(code != 0 for code in codes.values()):
                    codes.update({c.spec.name: None for c in containers})
                    continue
                for c in containers:
                    logs[c.spec.name] = str(c.spec.log_path)
                    c.start(note=f" (Job pod {self.name})")
                try:
                    wait_until(lambda: all(c.poll() is not None for c in containers),
                               max(0.0, deadline - time.monotonic()), f"Job pod {self.name} to finish", interval=0.05)
                except TimeoutError:
                    for c in containers:  # activeDeadlineSeconds: the Job controller kills the pod
                        c.stop(self.grace)
                codes.update({c.spec.name: c.poll() for c in containers})
                for c in containers:
                    c.reap()
            return {"pod": self.name, "exit_codes": codes, "deadline_exceeded": time.monotonic() >= deadline,
                    "volumes": {k: str(v) for k, v in paths.items()}, "logs": logs}
        finally:
            self._delete_network()
            self.volumes.teardown()

    def _run_init(self, spec: ContainerSpec, timeout: float = 120.0) -> None:
        c = Container(spec)
        t0 = time.monotonic()
        c.start(note=f" (init container, pod generation {self.generation})")
        try:
            wait_until(lambda: c.poll() is not None, timeout, f"init container {spec.name}", interval=0.01)
        except TimeoutError:
            c.stop(0)
        code = c.poll()
        c.reap()
        self.init_results.append({"name": spec.name, "exit_code": code, "seconds": round(time.monotonic() - t0, 3)})
        if code != 0:
            tail = spec.log_path.read_text(errors="replace").splitlines()[-15:] if spec.log_path.exists() else []
            raise PodStartError(f"init container {spec.name} failed (exit {code}) in pod {self.name}; last lines of "
                                f"{spec.log_path}:\n" + "\n".join(tail))

    def delete(self, signals: dict[str, int] | None = None, *, force: bool = False) -> dict:
        """End this incarnation: it leaves its Services at once (terminating), then preStop hooks, SIGTERM and
        SIGKILL after the grace period (`force`: SIGKILL at once, no hook; `signals`: container -> signal sent
        first), emptyDirs emptied, and the network namespace removed. The PVC and the pod folder stay."""
        self.terminating = True
        self.on_change()
        codes: dict = {}
        try:
            if self.kubelet:
                if force:
                    signals = {name: signal.SIGKILL for name in self.kubelet.containers}
                codes = self.kubelet.stop(signals, run_pre_stop=not force)
        finally:
            self.volumes.reset_ephemeral()
            self._delete_network()
            self.on_change()
        return codes

    def _delete_network(self) -> None:
        if self.net is None:
            return
        if self.dns:
            self.dns.forget(self.name)  # its socket would keep the namespace alive
        for pid in netns.pids_in(self.net):  # nothing may outlive the pod in its namespace
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        netns.delete(self.net)
        self.net = None

    def stop(self) -> None:
        """Everything of the pod down: containers, network, memory volumes. Idempotent."""
        try:
            if self.kubelet and not self.kubelet.stopped:
                self.delete()
        finally:
            self._delete_network()
            self.volumes.teardown()

    def container(self, name: str) -> Container:
        if not self.kubelet:
            raise KubeError(f"pod {self.name} is not running")
        if name not in self.kubelet.containers:
            raise KubeError(f"pod {self.name} has no container {name!r}; it has {sorted(self.kubelet.containers)}")
        return self.kubelet.containers[name]

    def snapshot(self) -> dict:
        data = {"name": self.name, "namespace": self.namespace, "uid": self.uid, "generation": self.generation,
                "owner": {"kind": self.plan.owner_kind, "name": self.plan.owner}, "ordinal": self.plan.ordinal,
                "hostname": self.plan.hostname, "subdomain": self.plan.subdomain,
                "termination_grace_seconds": self.grace, "terminating": self.terminating,
                "ip": self.ip, "network": self.net.to_dict() if self.net else None,
                "init_containers": self.init_results, "dir": str(self.dir), "ready": self.ready}
        if self.kubelet:
            data.update(self.kubelet.snapshot())
            data["ready"] = self.ready
        return data
