"""The StatefulSet's pod `<name>-0` on this machine: network namespace, volumes, hosts file, init containers,
then the containers under the kubelet emulation. An honest emulation of one pod, not Kubernetes."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path

from . import netns
from .container import Container, ContainerSpec
from .kube import KubeError, Objects, resolve_env, selector_matches
from .kubelet import Kubelet
from .rootfs import Identity, Mount
from .volumes import Volumes

CLUSTER_DOMAIN = "cluster.local"
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
    def __init__(self, manifests, state: Path, *, bin_dir: Path,
                 root_links: dict[str, str], objects: Objects, backoff: tuple[float, float] = (10.0, 300.0),
                 on_change=None, event_log=None):
        sets = manifests.of_kind("StatefulSet")
        if not sets:
            raise KubeError("the chart rendered no StatefulSet (profile lite, or valkey.enabled false): no pod to run")
        self.sts = sets[0]
        if int(self.sts["spec"].get("replicas", 1)) < 1:
            raise KubeError(f"StatefulSet {self.sts['metadata']['name']} has 0 replicas: no pod to run")
        self.manifests = manifests
        self.state = state
        self.namespace = self.sts["metadata"].get("namespace", "default")
        self.name = f"{self.sts['metadata']['name']}-0"
        template = self.sts["spec"]["template"]
        self.spec = template["spec"]
        self.labels = {**template["metadata"].get("labels", {}), "statefulset.kubernetes.io/pod-name": self.name,
                       "apps.kubernetes.io/pod-index": "0"}
        self.annotations = template["metadata"].get("annotations", {})
        self.grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        self.bin_dir, self.root_links = bin_dir, root_links
        self.objects = objects
        self.backoff = backoff
        self.on_change = on_change
        self.event_log = event_log
        self.volumes = Volumes(state, self.spec, self.sts["spec"].get("volumeClaimTemplates", []), objects)
        self.net: netns.PodNetwork | None = None
        self.kubelet: Kubelet | None = None
        self.uid = str(uuid.uuid4())
        self.generation = 0  # pods created so far on this stack (restart_server creates a new one)
        self.init_results: list[dict] = []

    # -- paths ----------------------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def log_path(self, container: str) -> Path:
        return self.logs / f"{container}.log"

    @property
    def hosts_file(self) -> Path:
        return self.state / "pod" / "hosts"

    @property
    def ip(self) -> str:
        assert self.net, "pod has no network yet"
        return self.net.pod_ip

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
            container_dir=self.state / "containers" / container["name"], bin_dir=self.bin_dir,
            root_links=self.root_links, hosts_file=self.hosts_file,
            hostname=self.name, netns_path=self.net.netns_path, log_path=self.log_path(container["name"]))

    def _write_hosts(self) -> None:
        """/etc/hosts as the kubelet writes it, plus the Service names that cluster DNS would answer."""
        sts_svc = self.sts["spec"].get("serviceName", "")
        fqdn = f"{self.name}.{sts_svc}.{self.namespace}.svc.{CLUSTER_DOMAIN}"
        lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
                 "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix",
                 "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters", f"{self.ip}\t{fqdn}\t{self.name}",
                 "# alert-history-cache: Service names (answered by cluster DNS in Kubernetes)"]
        for svc in self.manifests.of_kind("Service"):
            if selector_matches(svc["spec"].get("selector"), self.labels):
                n = svc["metadata"]["name"]
                names = [f"{n}.{self.namespace}.svc.{CLUSTER_DOMAIN}", f"{n}.{self.namespace}.svc",
                         f"{n}.{self.namespace}", n]
                lines.append(f"{self.ip}\t" + "\t".join(names))
        self.hosts_file.parent.mkdir(parents=True, exist_ok=True)
        self.hosts_file.write_text("\n".join(lines) + "\n")
        self.hosts_file.chmod(0o644)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self, owner: dict) -> None:
        """Network, volumes, init containers, then the containers under the kubelet. Raises on failure
        (the caller stops whatever was started)."""
        self.net = netns.create(owner)
        self._write_hosts()
        self.volumes.prepare()
        self.create()

    def create(self) -> None:
        """A new incarnation of the pod (same name, address and volume): init containers, then containers."""
        self.generation += 1
        self.uid = str(uuid.uuid4())
        paths = self.volumes.paths
        self.init_results = []
        for c in self.spec.get("initContainers", []):
            self._run_init(self._spec_for(c, paths))
        containers = [Container(self._spec_for(c, paths)) for c in self.spec["containers"]]
        self.kubelet = Kubelet(self.ip, containers, self.grace, backoff=self.backoff, on_change=self.on_change,
                               event_log=self.event_log)
        self.kubelet.start()

    def _run_init(self, spec: ContainerSpec, timeout: float = 120.0) -> None:
        c = Container(spec)
        t0 = time.monotonic()
        c.start(note=f" (init container, pod generation {self.generation})")
        while c.poll() is None and time.monotonic() - t0 < timeout:
            time.sleep(0.01)
        code = c.poll()
        if code is None:
            c.stop(0)
        c.reap()
        self.init_results.append({"name": spec.name, "exit_code": code, "seconds": round(time.monotonic() - t0, 3)})
        if code != 0:
            tail = spec.log_path.read_text(errors="replace").splitlines()[-15:] if spec.log_path.exists() else []
            raise PodStartError(f"init container {spec.name} failed (exit {code}); last lines of "
                                f"{spec.log_path}:\n" + "\n".join(tail))

    def delete(self, signals: dict[str, int] | None = None) -> dict:
        """Stop the containers (`signals` first if given, then SIGTERM, SIGKILL after the grace period); the
        network and volume stay."""
        codes = {}
        if self.kubelet:
            codes = self.kubelet.stop(signals)
        self.volumes.reset_ephemeral()
        return codes

    def stop(self) -> None:
        """Everything down: containers, memory volumes, network. Idempotent."""
        try:
            if self.kubelet:
                self.kubelet.stop()
        finally:
            self.volumes.teardown()
            if self.net:
                for pid in netns.pids_in(self.net):  # nothing may outlive the pod in its namespace
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                netns.delete(self.net)

    def container(self, name: str) -> Container:
        assert self.kubelet, "pod not started"
        return self.kubelet.containers[name]

    def snapshot(self) -> dict:
        data = {"name": self.name, "namespace": self.namespace, "uid": self.uid, "generation": self.generation,
                "termination_grace_seconds": self.grace,
                "ip": self.net.pod_ip if self.net else None, "network": self.net.to_dict() if self.net else None,
                "init_containers": self.init_results}
        if self.kubelet:
            data.update(self.kubelet.snapshot())
        return data
