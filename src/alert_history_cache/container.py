"""One container of the local pod as a process: its rendered command, env and mounts, started through
rootfs.py's script in the pod's network namespace, stopped the kubelet's way, and `exec` into it for probes.

Start: nsenter --net=/run/netns/<pod> -- unshare --mount --uts --propagation private -- /bin/sh start.sh CMD...
The start script execs the command, so the process mirakuru watches is the container's main process.
Stop: SIGTERM to that process only, then SIGKILL to the whole process group after the grace period."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from mirakuru import SimpleExecutor
from mirakuru.base import ENV_UUID

from .kube import expand
from .rootfs import IMAGE_PATH, Identity, Mount, RootFs
from .waiting import wait_until

MAX_PROBE_OUTPUT = 10 * 1024  # the kubelet keeps at most 10 KiB of an exec probe's output


class ContainerExecutor(SimpleExecutor):
    """mirakuru's executor with the container's environment only: the host's variables stay out of the pod."""

    @property
    def envvars(self) -> dict[str, str]:
        # mirakuru's marker lets it find stray children on kill; it is the only variable not from the pod.
        return {**self._envvars, ENV_UUID: self._uuid}


@dataclass
class ContainerSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    rootfs: RootFs
    netns_path: Path
    log_path: Path
    probes: dict[str, dict] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_rendered(cls, container: dict, *, env: dict[str, str], identity: Identity, mounts: list[Mount],
                      read_only_root: bool, workdir: str, container_dir: Path, bin_dir: Path,
                      root_links: dict[str, str], hosts_file: Path, hostname: str,
                      netns_path: Path, log_path: Path, resolv_file: Path | None = None) -> "ContainerSpec":
        full_env = {"PATH": IMAGE_PATH, "HOSTNAME": hostname, "HOME": "/", **env}
        argv = [expand(a, full_env) for a in [*container.get("command", []), *container.get("args", [])]]
        if not argv:
            raise ValueError(f"container {container['name']!r} has no command: the chart must spell it out")
        rootfs = RootFs(container_dir=container_dir, bin_dir=bin_dir,
                        root_links=root_links, hosts_file=hosts_file, hostname=hostname, mounts=mounts,
                        identity=identity, workdir=container.get("workingDir") or workdir,
                        read_only_root=read_only_root, resolv_file=resolv_file)
        probes = {kind: container[f"{kind}Probe"] for kind in ("startup", "readiness", "liveness")
                  if container.get(f"{kind}Probe")}
        ports = {p.get("name", str(p["containerPort"])): int(p["containerPort"]) for p in container.get("ports", [])}
        return cls(name=container["name"], argv=argv, env=full_env, rootfs=rootfs, netns_path=netns_path,
                   log_path=log_path, probes=probes, ports=ports, raw=container)


class Container:
    """One incarnation after another of a container (the kubelet restarts it; restarts are counted above)."""

    def __init__(self, spec: ContainerSpec):
        self.spec = spec
        self.executor: ContainerExecutor | None = None
        self._proc: subprocess.Popen | None = None  # kept after mirakuru lets go of it, for the exit status
        self.started_at: float | None = None
        self._log = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self, note: str = "") -> None:
        script = self.spec.rootfs.write()
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.spec.log_path, "ab", buffering=0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._log.write(f"---- alert-history-cache: container {self.spec.name} started {stamp}{note}\n".encode())
        argv = ["nsenter", f"--net={self.spec.netns_path}", "--", "unshare", "--mount", "--uts",
                "--propagation", "private", "--", "/bin/sh", str(script), *self.spec.argv]
        self.executor = ContainerExecutor(argv, envvars=self.spec.env, stdin=subprocess.DEVNULL, stdout=self._log,
                                          stderr=subprocess.STDOUT, timeout=30)
        self.executor.start()
        self._proc = self.executor.process
        self.started_at = time.time()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def poll(self) -> int | None:
        """Exit status once the process has ended (negative: killed by that signal), else None."""
        return self._proc.poll() if self._proc else None

    @property
    def running(self) -> bool:
        """Alive and past its start script: its root is the container's root filesystem."""
        pid = self.pid
        if pid is None or self.poll() is not None:
            return False
        try:
            return os.readlink(f"/proc/{pid}/root") == str(self.spec.rootfs.root)
        except OSError:
            return False

    def signal(self, sig: int) -> bool:
        """Send `sig` to the container's main process (like `kill` inside it)."""
        pid = self.pid
        if pid is None or self.poll() is not None:
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def stop(self, grace: float) -> int | None:
        """SIGTERM to the main process; SIGKILL to the whole container after `grace` seconds."""
        proc, executor = self._proc, self.executor  # this incarnation, even if a restart replaces them meanwhile
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: proc.poll() is not None, grace, f"container {self.spec.name} to exit", interval=0.02)
        if executor:
            # SIGKILL to the process group and to any stray child that carries mirakuru's marker.
            executor.kill(wait=True, sig=signal.SIGKILL)
        proc.wait()
        return proc.poll()

    def reap(self) -> None:
        """Forget an ended incarnation: stray children are killed, the log is closed."""
        if self.executor:
            self.executor.kill(wait=True, sig=signal.SIGKILL)
        if self._proc:
            self._proc.wait()
        self.executor = None
        if self._log:
            self._log.close()
            self._log = None

    # -- exec -----------------------------------------------------------------------------------------
    def exec_argv(self, argv: list[str]) -> list[str]:
        pid = self.pid
        return ["nsenter", f"--target={pid}", "--mount", "--uts", "--net", "--root", "--wd", "--",
                *self.spec.rootfs.identity.setpriv(), "--", *argv]

    def exec(self, argv: list[str], timeout: float, env: dict[str, str] | None = None,
             input: bytes | None = None) -> subprocess.CompletedProcess:
        """Run `argv` inside the container (its namespaces, root, user and env), like `kubectl exec`.
        On timeout the whole command is killed and TimeoutError raised."""
        if not self.running:
            raise ProcessLookupError(f"container {self.spec.name} is not running")
        proc = subprocess.Popen(self.exec_argv(argv), env={**self.spec.env, **(env or {})},
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise TimeoutError(f"timed out after {timeout}s") from None
        return subprocess.CompletedProcess(argv, proc.returncode, out[:MAX_PROBE_OUTPUT], b"")
