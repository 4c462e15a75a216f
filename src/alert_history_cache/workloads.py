"""The controllers' part: which pods the release's StatefulSets and Deployments ask for, and in which order.

A StatefulSet asks for `<sts>-0 .. <sts>-(replicas-1)`, each with the hostname `<pod>`, the subdomain
`serviceName` (its headless Service: `<pod>.<headless>.<ns>.svc.cluster.local`) and its own PVC per
volumeClaimTemplate, named `<claim>-<pod>` as Kubernetes names it; a deleted pod comes back under the same
name with the same PVC. `podManagementPolicy: OrderedReady` starts each pod after the one before it is Ready,
`Parallel` starts them all at once. A Deployment asks for `replicas` pods named `<deploy>-<hash>-<suffix>`
(the pod-template-hash of its template); a deleted one is replaced by a pod with a new name. A CronJob asks for
nothing on its own here: `CronJobController.plan()` is one run of it, as `kubectl create job --from=cronjob/<name>`
makes one (Job `<cronjob>-<minutes since the epoch>`, pod `<job>-<suffix>`)."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from dataclasses import dataclass, field

from .kube import KubeError

_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.String alphabet (no vowels, no 0/1/3)


@dataclass
class PodPlan:
    """What a controller asks the kubelet to run: one pod, before it has an address."""

    name: str
    namespace: str
    owner_kind: str  # StatefulSet | Deployment | Job
    owner: str
    spec: dict  # the pod template's spec
    labels: dict
    annotations: dict
    hostname: str
    subdomain: str | None = None
    claims: list[dict] = field(default_factory=list)  # volumeClaimTemplates (StatefulSet only)
    ordinal: int | None = None

    def claim_name(self, template: str) -> str:
        return f"{template}-{self.name}"


@dataclass
class _Controller:
    """What a StatefulSet's and a Deployment's controller share: the object, its name and replica count."""
    obj: dict

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    @property
    def replicas(self) -> int:
        return int(self.obj["spec"].get("replicas", 1))


class StatefulSetController(_Controller):
    @property
    def ordered(self) -> bool:
        policy = self.obj["spec"].get("podManagementPolicy", "OrderedReady")
        if policy not in ("OrderedReady", "Parallel"):
            raise KubeError(f"StatefulSet {self.name}: podManagementPolicy {policy!r} is neither OrderedReady nor "
                            "Parallel")
        return policy == "OrderedReady"

    def plans(self) -> list[PodPlan]:
        return [self.plan(i) for i in range(self.replicas)]

    def plan(self, ordinal: int) -> PodPlan:
        meta, spec = self.obj["metadata"], self.obj["spec"]
        template = spec["template"]
        name = f"{self.name}-{ordinal}"
        labels = {**template["metadata"].get("labels", {}), "statefulset.kubernetes.io/pod-name": name,
                  "apps.kubernetes.io/pod-index": str(ordinal)}
        return PodPlan(name=name, namespace=meta.get("namespace", "default"), owner_kind="StatefulSet",
                       owner=self.name, spec=copy.deepcopy(template["spec"]), labels=labels,
                       annotations=dict(template["metadata"].get("annotations", {})), hostname=name,
                       subdomain=spec.get("serviceName"), claims=spec.get("volumeClaimTemplates", []),
                       ordinal=ordinal)


class DeploymentController(_Controller):
    ordered = False  # a ReplicaSet creates its pods all at once

    @property
    def template_hash(self) -> str:
        digest = hashlib.sha256(json.dumps(self.obj["spec"]["template"], sort_keys=True).encode()).hexdigest()
        return "".join(_SUFFIX[int(digest[i:i + 2], 16) % len(_SUFFIX)] for i in range(0, 20, 2))

    def plans(self) -> list[PodPlan]:
        return [self.plan() for _ in range(self.replicas)]

    def plan(self, ordinal: int | None = None) -> PodPlan:
        """A new pod of the Deployment: a new random name each time (ordinal is ignored)."""
        meta, template = self.obj["metadata"], self.obj["spec"]["template"]
        suffix = "".join(secrets.choice(_SUFFIX) for _ in range(5))
        name = f"{self.name}-{self.template_hash}-{suffix}"
        labels = {**template["metadata"].get("labels", {}), "pod-template-hash": self.template_hash}
        spec = copy.deepcopy(template["spec"])
        return PodPlan(name=name, namespace=meta.get("namespace", "default"), owner_kind="Deployment",
                       owner=self.name, spec=spec, labels=labels,
                       annotations=dict(template["metadata"].get("annotations", {})),
                       hostname=spec.get("hostname", name), subdomain=spec.get("subdomain"))


class CronJobController(_Controller):
    """The CronJob's Job template as one pod that runs to completion (restartPolicy Never or OnFailure)."""

    def plan(self, ordinal: int | None = None, *, now: float | None = None) -> PodPlan:
        import time

        meta = self.obj["metadata"]
        job = self.obj["spec"]["jobTemplate"]
        template = job["spec"]["template"]
        job_name = f"{self.name}-{int((now or time.time()) // 60)}"
        suffix = "".join(secrets.choice(_SUFFIX) for _ in range(5))
        name = f"{job_name}-{suffix}"
        spec = copy.deepcopy(template["spec"])
        policy = spec.get("restartPolicy", "Always")
        if policy not in ("Never", "OnFailure"):
            raise KubeError(f"CronJob {self.name}: a Job pod's restartPolicy must be Never or OnFailure, not {policy!r}")
        labels = {**template["metadata"].get("labels", {}), "batch.kubernetes.io/job-name": job_name,
                  "job-name": job_name}
        return PodPlan(name=name, namespace=meta.get("namespace", "default"), owner_kind="Job", owner=job_name,
                       spec=spec, labels=labels, annotations=dict(template["metadata"].get("annotations", {})),
                       hostname=spec.get("hostname", name), subdomain=spec.get("subdomain"))


def cronjob(manifests, name: str | None = None) -> CronJobController:
    """The release's CronJob of that name (or its only one)."""
    found = manifests.of_kind("CronJob")
    if name:
        found = [o for o in found if o["metadata"]["name"] == name]
    if len(found) != 1:
        have = [o["metadata"]["name"] for o in manifests.of_kind("CronJob")]
        what = f"CronJob {name}" if name else "CronJob"
        raise KubeError(f"no single {what} in the release: it renders {have or 'none'} (backups need "
                        "backup.enabled: true)")
    return CronJobController(found[0])


def controllers(manifests) -> list[StatefulSetController | DeploymentController]:
    """The workload controllers of the rendered release, StatefulSets first (in render order)."""
    out: list = [StatefulSetController(o) for o in manifests.of_kind("StatefulSet")]
    out += [DeploymentController(o) for o in manifests.of_kind("Deployment")]
    return out

