"""The container's resource limits enforced on a local-pod process through cgroups, as the kubelet would.

The local pod runs its containers without cgroups, so the chart's `resources.limits` are not enforced there.
A drill that wants them (a 500m CPU quota throttling the server, a 512Mi memory limit that OOM-kills it when
a fork's copy-on-write outgrows it) puts the server into a fresh cgroup with `ContainerLimits`: CPU as a CFS
quota per 100 ms period, memory as the cgroup's hard limit (page cache included, reclaimable first, as in a
pod). Fork children inherit the cgroup, so BGSAVE and AOF rewrite children are charged with the server, as in
Kubernetes. cgroup v1 (cpu and memory hierarchies) and v2 (unified, with both controllers) are supported; the
cgroups are removed on exit, after moving any process still in them back to the parent.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..units import cpu_millis, memory_bytes

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


class LimitsUnavailable(RuntimeError):
    pass


def _v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()


class ContainerLimits:
    def __init__(self, name: str, cpu_millicores: int | None, memory_limit: int | None):
        self.name = name
        self.cpu = cpu_millicores
        self.memory = memory_limit
        self.dirs: dict[str, Path] = {}

    def __enter__(self) -> "ContainerLimits":
        try:
            if _v2():
                d = ROOT / self.name
                d.mkdir()
                self.dirs = {"cpu": d, "memory": d}
                if self.cpu:
                    (d / "cpu.max").write_text(f"{self.cpu * PERIOD_US // 1000} {PERIOD_US}\n")
                if self.memory:
                    (d / "memory.max").write_text(f"{self.memory}\n")
                    (d / "memory.swap.max").exists() and (d / "memory.swap.max").write_text("0\n")
            else:
                for ctl in ("cpu", "memory"):
                    if not (ROOT / ctl).is_dir():
                        raise LimitsUnavailable(f"no cgroup v1 {ctl} hierarchy under {ROOT}")
                    d = ROOT / ctl / self.name
                    d.mkdir()
                    self.dirs[ctl] = d
                if self.cpu:
                    (self.dirs["cpu"] / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
                    (self.dirs["cpu"] / "cpu.cfs_quota_us").write_text(f"{self.cpu * PERIOD_US // 1000}\n")
                if self.memory:
                    (self.dirs["memory"] / "memory.limit_in_bytes").write_text(f"{self.memory}\n")
                    with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                        (self.dirs["memory"] / "memory.memsw.limit_in_bytes").write_text(f"{self.memory}\n")
        except OSError as exc:
            self.__exit__()
            raise LimitsUnavailable(f"cannot create cgroups under {ROOT} ({exc}): run as root on a host with the "
                                    "cpu and memory controllers") from exc
        return self

    def add(self, pid: int) -> None:
        for d in set(self.dirs.values()):
            (d / "cgroup.procs").write_text(f"{pid}\n")

    def stats(self) -> dict:
        """OOM kills, peak memory (page cache included) and CPU throttling so far."""
        out: dict = {"cpu_millicores": self.cpu, "memory_limit": self.memory}
        mem, cpu = self.dirs.get("memory"), self.dirs.get("cpu")
        with contextlib.suppress(OSError):
            if _v2():
                events = dict(line.split() for line in (mem / "memory.events").read_text().splitlines())
                out["oom_kills"] = int(events.get("oom_kill", 0))
                out["memory_peak"] = int((mem / "memory.peak").read_text()) if (mem / "memory.peak").exists() else None
                st = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())
                out["nr_periods"], out["nr_throttled"] = int(st.get("nr_periods", 0)), int(st.get("nr_throttled", 0))
                out["throttled_seconds"] = int(st.get("throttled_usec", 0)) / 1e6
            else:
                ctl = dict(line.split() for line in (mem / "memory.oom_control").read_text().splitlines())
                out["oom_kills"] = int(ctl.get("oom_kill", 0))
                out["memory_peak"] = int((mem / "memory.max_usage_in_bytes").read_text())
                out["memory_failcnt"] = int((mem / "memory.failcnt").read_text())
                st = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())
                out["nr_periods"], out["nr_throttled"] = int(st.get("nr_periods", 0)), int(st.get("nr_throttled", 0))
                out["throttled_seconds"] = int(st.get("throttled_time", 0)) / 1e9
        return out

    def __exit__(self, *exc) -> None:
        for d in set(self.dirs.values()):
            parent = d.parent
            with contextlib.suppress(OSError):
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (parent / "cgroup.procs").write_text(f"{pid}\n")
            with contextlib.suppress(OSError):
                os.rmdir(d)
        self.dirs = {}


def container_limits(spec: dict) -> tuple[int | None, int | None]:
    """(CPU millicores, memory bytes) of the limits in a rendered container spec."""
    limits = (spec.get("resources") or {}).get("limits") or {}
    return cpu_millis(limits.get("cpu")), memory_bytes(limits.get("memory"))


def server_limits(stack, container: str = "valkey") -> tuple[int | None, int | None]:
    """(CPU millicores, memory bytes) of the rendered server container's limits."""
    return container_limits(next(c for c in stack.pod.spec["containers"] if c["name"] == container))


@contextlib.contextmanager
def enforced_containers(stacks: dict, containers: tuple[str, ...], prefix: str):
    """Every running `containers` container of every pod of `stacks` ({label: stack}) in a cgroup of its own
    with its rendered limits, as the kubelet would; yields {"<label> <pod>/<container>": ContainerLimits}. For a
    drill whose processes run side by side on one host but stand for pods with their own CPU."""
    with contextlib.ExitStack() as ctx:
        groups: dict[str, ContainerLimits] = {}
        for label, stack in stacks.items():
            for pod in list(stack.cluster.pods.values()):
                specs = {c["name"]: c for c in pod.spec["containers"]}
                for name, c in (pod.kubelet.containers.items() if pod.kubelet else []):
                    if name not in containers or not c.pid or not any(lim := container_limits(specs[name])):
                        continue
                    cg = ctx.enter_context(ContainerLimits(f"{prefix}-{label}-{pod.name}-{name}", *lim))
                    cg.add(c.pid)
                    groups[f"{label} {pod.name}/{name}"] = cg
        yield groups
