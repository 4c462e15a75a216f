"""The local cluster: every pod the release renders, its Services with real endpoints, and faults on demand.

    cluster = LocalCluster(manifests, state_dir, bin_dir=..., objects=...)
    cluster.start()                  # pods in podManagementPolicy order, Services, proxy, DNS
    cluster.delete_pod("x-0")        # graceful; the StatefulSet controller recreates it with a new address
    cluster.partition("x-1", ["x-0"]); cluster.heal("x-1")
    cluster.stop()

The pieces, each in its own module: the controllers' pod plans (workloads.py), one pod's lifecycle (pod.py,
kubelet.py), ClusterIPs and endpoints (services.py), kube-proxy's rules (service_proxy.py), cluster DNS as
hosts files (hosts.py) and a DNS server that answers from them (cluster_dns.py), partitions (partition.py). This module is the control
loop that ties them: whenever a pod's readiness or address changes (the kubelets report every probe result),
it recomputes the endpoints and reprograms the proxy (within a fraction of a second), and rewrites every
pod's hosts file when a DNS record changed.

State layout: a release with one pod keeps the pod's folders at the state dir's top (configmaps/, secrets/,
emptydirs/, containers/, pod/hosts, pvc/, logs/<container>.log). With several pods each has its own folder
STATE/pods/<pod>/ and PVC folders STATE/pvcs/<claim>-<pod>/ (the PVC names Kubernetes gives), and logs
STATE/logs/<pod>.<container>.log."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from . import hosts, netns, partition as partitions, services as svcs
from .cluster_dns import ClusterDNS
from .kube import KubeError, Objects
from .pod import LocalPod, PodStartError
from .service_proxy import ProxiedService, ServicePort, ServiceProxy, ensure_forwarding, restore_forwarding
from .volumes import unmount_all
from .waiting import wait_until
from .workloads import DeploymentController, PodPlan, StatefulSetController, controllers, cronjob as cronjob_of

TABLE_PREFIX = "ahc_"


def proxy_table(state_dir: Path) -> str:
    """The nft table of the stack of `state_dir` (derived from it, so crash cleanup finds it)."""
    return TABLE_PREFIX + hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:12]


class ClusterError(KubeError):
    pass


def partitions_pids(pod: LocalPod) -> list[int]:
    """Every process of the pod: the ones in its network namespace (containers, their children, exec probes)."""
    return netns.pids_in(pod.net) if pod.net else []


class LocalCluster:
    def __init__(self, manifests, state_dir: Path, *, bin_dir: Path, objects: Objects,
                 root_links: dict[str, str] | None = None, backoff: tuple[float, float] = (10.0, 300.0),
                 on_change: Callable[[], None] | None = None, on_addresses: Callable[[], None] | None = None,
                 event_log=None, owner: dict | None = None, on_dns: Callable[[], None] | None = None):
        self.manifests = manifests
        self.state_dir = Path(state_dir).resolve()
        self.bin_dir, self.root_links = bin_dir, root_links or {}
        self.objects = objects
        self.backoff = backoff
        self.on_change = on_change or (lambda: None)
        self.on_addresses = on_addresses or (lambda: None)
        self.on_dns = on_dns or (lambda: None)  # after the hosts files were rewritten (DNS records changed)
        self.event_log = event_log
        self.owner = owner or {"state_dir": str(self.state_dir)}
        self.controllers = controllers(manifests)
        if not self.controllers:
            raise ClusterError("the chart rendered no StatefulSet or Deployment (profile lite, or valkey.enabled "
                               "false): no pod to run")
        self.plans: list[PodPlan] = [p for c in self.controllers for p in c.plans()]
        if not self.plans:
            raise ClusterError("every workload of the release has 0 replicas: no pod to run")
        self.single = len(self.plans) == 1
        namespace = self.plans[0].namespace
        self.services = [svcs.Service.from_manifest(o, namespace) for o in manifests.of_kind("Service")]
        self.pods: dict[str, LocalPod] = {}
        self.proxy = ServiceProxy(proxy_table(self.state_dir))
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._sync_lock = threading.RLock()
        self._loop: threading.Thread | None = None
        self._programmed: dict[str, tuple[str, ...]] | None = None
        self._dns: tuple | None = None
        self.dns = ClusterDNS()
        self._addresses: tuple | None = None
        self._forwarding: bool | None = None  # ip_forward before this stack asked for it
        self.started = False
        self.endpoint_history: list[tuple[float, dict[str, tuple[str, ...]]]] = []  # (monotonic, programmed)

    # -- layout ---------------------------------------------------------------------------------------
    def pod_dir(self, name: str) -> Path:
        return self.state_dir if self.single else self.state_dir / "pods" / name

    def log_path(self, pod: str, container: str) -> Path:
        logs = self.state_dir / "logs"
        return logs / (f"{container}.log" if self.single else f"{pod}.{container}.log")

    def _claim_dir(self, plan: PodPlan):
        if self.single:
            return None  # Volumes' own layout: STATE/pvc (first claim), STATE/pvc-<claim>
        return lambda claim: self.state_dir / "pvcs" / plan.claim_name(claim)

    def _pod_list(self) -> list[LocalPod]:
        """A copy: a Deployment's replacement changes the dict while the control loop reads it."""
        return list(self.pods.values())

    def _make_pod(self, plan: PodPlan) -> LocalPod:
        pod = LocalPod(plan, pod_dir=self.pod_dir(plan.name), claim_dir=self._claim_dir(plan),
                       log_path=lambda c, n=plan.name: self.log_path(n, c), bin_dir=self.bin_dir,
                       root_links=self.root_links, objects=self.objects, backoff=self.backoff,
                       on_change=self._changed, event_log=self.event_log, hosts_text=self.hosts_text,
                       owner=self.owner, dns=self.dns)
        self.pods[plan.name] = pod
        return pod

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self, ready_timeout: float = 120.0) -> None:
        """Services (ClusterIPs, proxy rules), then the pods in their controllers' order. Raises on failure;
        the caller stops what was started (stop() is safe after a partial start)."""
        self.started = True
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._forwarding = ensure_forwarding()  # counted per process: this one lives as long as the stack
        for svc in self.services:
            if not svc.headless:
                svc.cluster_ip = svcs.allocate(str(self.state_dir), f"{svc.namespace}/{svc.name}", svc.wanted_ip)
        self.sync(force=True)
        self._loop = threading.Thread(target=self._control_loop, name="cluster-control", daemon=True)
        self._loop.start()
        for controller in self.controllers:
            plans = [p for p in self.plans if p.owner == controller.name and p.owner_kind == (
                "StatefulSet" if isinstance(controller, StatefulSetController) else "Deployment")]
            if controller.ordered:
                for plan in plans:  # OrderedReady: pod n+1 only once pod n is Running and Ready
                    pod = self._make_pod(plan)
                    pod.create()
                    self.sync()
                    self.wait_pod_ready(pod, ready_timeout, during_start=True)
            else:
                self._create_parallel([self._make_pod(p) for p in plans])
            self.sync()

    def _create_parallel(self, pods: list[LocalPod]) -> None:
        errors: list[BaseException] = []

        def create(pod: LocalPod) -> None:
            try:
                pod.create()
            except BaseException as exc:  # noqa: BLE001 - re-raised below in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=create, args=(p,), name=f"create-{p.name}") for p in pods]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def wait_pod_ready(self, pod: LocalPod, timeout: float, *, during_start: bool = False) -> None:
        def ready() -> bool:
            if during_start:
                self._raise_if_crash_looping(pod)
            return pod.ready
        try:
            wait_until(ready, timeout, f"pod {pod.name} Ready", interval=0.02)
        except TimeoutError:
            probes = [f"  {name} {kind}: {p.result} ({p.runs} runs) {p.last_output[:200]}"
                      for name, st in (pod.kubelet.status.items() if pod.kubelet else [])
                      for kind, p in st.probes.items()]
            raise TimeoutError(f"pod {pod.name} not Ready after {timeout:.0f}s; see {self.state_dir / 'logs'}\n"
                               + "\n".join(probes)) from None

    def _raise_if_crash_looping(self, pod: LocalPod) -> None:
        if not pod.kubelet:
            return
        for name, st in pod.kubelet.status.items():
            if st.restarts >= 3:
                log = pod.log_path(name)
                tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
                raise PodStartError(f"container {name} of pod {pod.name} keeps failing ({st.restarts} restarts, "
                                    f"last exit {st.last_exit}); last lines of {log}:\n" + "\n".join(tail))

    def wait_all_ready(self, timeout: float) -> None:
        for pod in self._pod_list():
            self.wait_pod_ready(pod, timeout, during_start=True)
        self.sync()

    def stop(self) -> None:
        """Every pod down (in parallel, each within its grace period), then the proxy rules, the ClusterIPs
        and ip_forward. Idempotent."""
        self._stop.set()
        self._dirty.set()
        try:
            threads = [threading.Thread(target=p.stop, name=f"stop-{p.name}") for p in self._pod_list()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            if self._loop:
                self._loop.join(timeout=10)
            with contextlib.suppress(Exception):
                self.proxy.delete()
            self.dns.close()
            for svc in self.services:
                if svc.cluster_ip:
                    svcs.release(svc.cluster_ip)
            if self._forwarding is not None:
                restore_forwarding(self._forwarding)
                self._forwarding = None
            unmount_all(self.state_dir)  # the PVCs' filesystems and loop devices go with the cluster

    # -- the control loop -----------------------------------------------------------------------------
    def _changed(self) -> None:
        self._dirty.set()

    def _control_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(0.5)
            self._dirty.clear()
            if self._stop.is_set():
                return
            try:
                self.sync()
                self.on_change()
            except Exception as exc:  # noqa: BLE001 - keep reconciling; the next change retries
                if self.event_log:
                    self.event_log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} cluster SyncFailed: {exc}\n")
                    self.event_log.flush()

    def endpoints(self, svc: svcs.Service) -> list[LocalPod]:
        """The pods a Service's traffic goes to: selected, Ready and not terminating (pod.ready says both).
        publishNotReadyAddresses only widens DNS (hosts.py keeps every selected pod with an address then,
        terminating ones included, as the endpoints controller does)."""
        return [p for p in self._pod_list() if svc.selects(p.labels) and p.ip is not None and p.ready]

    def _target_port(self, svc: svcs.Service, port: svcs.Port) -> int | None:
        candidates = [p.spec for p in self.plans if svc.selects(p.labels)] or [p.spec for p in self.plans]
        for spec in candidates:
            number = svc.target_port(port, spec.get("containers", []))
            if number:
                return number
        return None

    def proxied(self) -> list[ProxiedService]:
        out = []
        for svc in self.services:
            if svc.headless or not svc.cluster_ip:
                continue
            ports = tuple(ServicePort(p.name, p.port, t, p.protocol) for p in svc.ports
                          if (t := self._target_port(svc, p)))
            out.append(ProxiedService(svc.name, svc.namespace, svc.cluster_ip, ports, svc.endpoints))
        return out

    def sync(self, force: bool = False) -> None:
        """Endpoints -> proxy rules; DNS records -> every pod's hosts file, then on_dns; addresses -> on_addresses."""
        with self._sync_lock:
            for svc in self.services:
                svc.endpoints = tuple(sorted(p.ip for p in self.endpoints(svc)))
            programmed = {s.name: s.endpoints for s in self.services}
            if force or programmed != self._programmed:
                self.proxy.sync(self.proxied())
                self._programmed = programmed
                self.endpoint_history.append((time.monotonic(), programmed))
                del self.endpoint_history[:-200]
            dns = (tuple(self.pod_records()), tuple(self.service_records()))
            if force or dns != self._dns:
                for pod in self._pod_list():
                    pod.write_hosts()
                self._dns = dns
                self.on_dns()
            addresses = tuple((p.name, p.ip) for p in self._pod_list())
            if addresses != self._addresses:
                self._addresses = addresses
                self.on_addresses()

    # -- DNS --------------------------------------------------------------------------------------------
    def pod_records(self) -> list[hosts.PodRecord]:
        return [hosts.PodRecord(name=p.name, ip=p.ip, ready=p.ready,
                                hostname=p.plan.hostname, subdomain=p.plan.subdomain, namespace=p.namespace)
                for p in self._pod_list()]

    def service_records(self) -> list[hosts.ServiceRecord]:
        return [hosts.ServiceRecord(name=s.name, namespace=s.namespace, cluster_ip=s.cluster_ip,
                                    selector_pods=tuple(p.name for p in self._pod_list() if s.selects(p.labels)),
                                    publish_not_ready=s.publish_not_ready)
                for s in self.services]

    def namespace_hosts_text(self, namespace: str) -> str:
        """The cluster's names as a program outside every pod sees them from `namespace` (no own pod line)."""
        entries = hosts.hosts_entries(self.pod_records(), self.service_records(), namespace=namespace)
        return hosts.render(entries, own_pod=hosts.PodRecord(name="", ip=None, ready=False, hostname="",
                                                             subdomain=None, namespace=namespace))

    def hosts_text(self, pod: LocalPod) -> str:
        own = hosts.PodRecord(name=pod.name, ip=pod.ip, ready=pod.ready, hostname=pod.plan.hostname,
                              subdomain=pod.plan.subdomain, namespace=pod.namespace)
        entries = hosts.hosts_entries(self.pod_records(), self.service_records(), namespace=pod.namespace)
        return hosts.render(entries, own_pod=own)

    # -- objects ----------------------------------------------------------------------------------------
    def pod(self, name: str) -> LocalPod:
        if name not in self.pods:
            raise ClusterError(f"no pod {name!r}; the pods are {sorted(self.pods)}")
        return self.pods[name]

    def service(self, name: str) -> svcs.Service:
        for s in self.services:
            if s.name == name:
                return s
        raise ClusterError(f"no Service {name!r}; the Services are {[s.name for s in self.services]}")

    def _controller_of(self, pod: LocalPod):
        for c in self.controllers:
            if c.name == pod.plan.owner and pod.plan.owner_kind == (
                    "StatefulSet" if isinstance(c, StatefulSetController) else "Deployment"):
                return c
        raise ClusterError(f"pod {pod.name} has no controller")

    # -- faults and disruptions -----------------------------------------------------------------------
    def kill(self, pod: str, container: str | None = None, sig: int = 9) -> dict:
        """Signal one container's main process; the kubelet restarts it per restartPolicy Always."""
        p = self.pod(pod)
        name = container or p.spec["containers"][0]["name"]
        if not p.container(name).signal(sig):
            raise ClusterError(f"container {name} of pod {pod} is not running")
        return {"pod": pod, "container": name, "signal": sig}

    def delete_pod(self, pod: str, *, force: bool = False, signals: dict[str, int] | None = None,
                   recreate: bool = True) -> dict:
        """Delete a pod (graceful: preStop, SIGTERM, SIGKILL after the grace period; `force`: SIGKILL at once).
        With `recreate` its controller replaces it, as a StatefulSet (same name and PVC, new address) or a
        Deployment (a new name) does."""
        p = self.pod(pod)
        old_ip = p.ip
        codes = p.delete(signals, force=force)
        self.sync()
        result = {"pod": pod, "exit_codes": codes, "old_address": old_ip}
        if recreate:
            new = self.create_pod(pod)
            result.update({"new_pod": new.name, "new_address": new.ip})
        return result

    def create_pod(self, pod: str) -> LocalPod:
        """The controller's replacement for a deleted pod."""
        p = self.pod(pod)
        if p.running:
            raise ClusterError(f"pod {pod} is running: delete it first")
        controller = self._controller_of(p)
        if isinstance(controller, DeploymentController):
            del self.pods[pod]
            p.stop()
            p = self._make_pod(controller.plan())
        try:
            p.create()
        finally:
            self.sync()
        return p

    def partition(self, pod: str, peers: Iterable[str] | None = None) -> dict:
        """Drop the pod's traffic, to and from everything (peers None) or only the named pods, inside its netns."""
        p = self.pod(pod)
        if p.net is None:
            raise ClusterError(f"pod {pod} has no network (deleted?)")
        ips = None
        if peers is not None:
            ips = []
            for name in peers:
                peer = self.pod(name)
                if peer.ip is None:
                    raise ClusterError(f"peer {name} has no address")
                ips.append(peer.ip)
        partitions.partition(p.net.netns, ips)
        p.partition = {"from": "everything" if peers is None else list(peers), "addresses": ips}
        self._changed()
        return {"pod": pod, "peers": None if peers is None else list(peers), "addresses": ips}

    def freeze(self, pod: str) -> dict:
        """A lost node: the pod is partitioned from everything, its kubelet stops (no probes, no restarts) and
        every process of the pod is stopped with SIGSTOP: it keeps its processes and answers nothing. Only a
        (forced) delete ends it, as on a node that never comes back."""
        p = self.pod(pod)
        if p.net is None or p.kubelet is None:
            raise ClusterError(f"pod {pod} is not running (deleted?)")
        result = self.partition(pod)
        p.kubelet.freeze()
        frozen = []
        for pid in partitions_pids(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)
        p.frozen = True
        self._changed()
        return {**result, "frozen_pids": frozen}

    def heal(self, pod: str | None = None) -> list[str]:
        healed = []
        for p in ([self.pod(pod)] if pod else self._pod_list()):
            if p.net is not None:
                partitions.heal(p.net.netns)
                healed.append(p.name)
            p.partition = None
        self._changed()
        return healed

    def claim_folder(self, pod: str, claim: str | None = None) -> tuple[str, Path]:
        """One of the pod's PVCs (default: its first volumeClaimTemplate, the data volume): its name and host folder."""
        p = self.pod(pod)
        names = [c["metadata"]["name"] for c in p.volumes.claims] + [
            v["persistentVolumeClaim"]["claimName"] for v in p.spec.get("volumes", []) if "persistentVolumeClaim" in v]
        if not names:
            raise ClusterError(f"pod {pod} has no PersistentVolumeClaim")
        claim = claim or names[0]
        if claim not in names:
            raise ClusterError(f"pod {pod} has no claim {claim!r}; its claims are {names}")
        return claim, p.volumes.claim_path(claim)

    def fill_disk(self, pod: str, claim: str | None = None, leave: int = 0) -> dict:
        """The pod's volume full (at most `leave` bytes free) with a root-owned file; free_disk() removes it."""
        from .volumes import fill_disk

        claim, folder = self.claim_folder(pod, claim)
        return {"pod": pod, "claim": claim, **fill_disk(folder, leave)}

    def free_disk(self, pod: str, claim: str | None = None) -> dict:
        from .volumes import free_disk

        claim, folder = self.claim_folder(pod, claim)
        return {"pod": pod, "claim": claim, **free_disk(folder)}

    # -- status ---------------------------------------------------------------------------------------
    def run_job(self, cronjob: str | None = None, timeout: float | None = None) -> dict:
        """One run of the release's CronJob, as `kubectl create job --from=cronjob/<name>`: its pod in its own
        namespaces with the rendered command, until it exits (within activeDeadlineSeconds, or `timeout`).
        Its PVCs are STATE/pvcs/<claim>/ and stay; the pod's folder and network go."""
        controller = cronjob_of(self.manifests, cronjob)
        plan = controller.plan()
        deadline = controller.obj["spec"]["jobTemplate"]["spec"].get("activeDeadlineSeconds")
        pod = LocalPod(plan, pod_dir=self.state_dir / "pods" / plan.name,
                       claim_dir=lambda claim: self.state_dir / "pvcs" / claim,
                       log_path=lambda c, n=plan.name: self.state_dir / "logs" / f"{n}.{c}.log",
                       bin_dir=self.bin_dir, root_links=self.root_links, objects=self.objects,
                       event_log=self.event_log, hosts_text=self.hosts_text, owner=self.owner, dns=self.dns)
        result = pod.run_to_completion(float(timeout or deadline or 3600))
        result.update(job=plan.owner, cronjob=controller.name)
        return result

    def snapshot(self) -> dict:
        pods = []
        for p in self._pod_list():
            data = p.snapshot()
            data["address"] = p.ip
            data["partition"] = p.partition
            data["frozen"] = p.frozen
            pods.append(data)
        services = []
        for s in self.services:
            data = s.to_dict()
            for port, out in zip(s.ports, data["ports"]):
                out["target_port"] = self._target_port(s, port)  # the number (named ports resolved)
                if not str(port.target_port).isdigit():
                    out["target_port_name"] = port.target_port
            services.append(data)
        return {"pods": pods, "services": services}
