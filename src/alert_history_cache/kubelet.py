"""The kubelet's part for one pod: probe workers, restarts with crash-loop back-off, and the pod's status.

Follows the kubelet's rules: one worker per container and probe; liveness and readiness wait until the
startup probe has passed; a probe that outlasts timeoutSeconds fails; failureThreshold consecutive
failures of liveness (or startup) kill the container (SIGTERM, SIGKILL after terminationGracePeriodSeconds)
and it is restarted (restartPolicy Always): at once the first time, then after 10 s, 20 s, ... up to 300 s,
the back-off resetting after 10 minutes without a crash. Readiness needs successThreshold consecutive
successes and is re-run as soon as the startup probe passes. Exec probes run inside the container; httpGet and
tcpSocket probes go to the pod address, as from the node. Stopping the pod runs each container's preStop
hook (exec or httpGet) first, then SIGTERM; the hook's time counts against the grace period."""

from __future__ import annotations

import collections
import contextlib
import http.client
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .container import Container
from .kube import container_port
from .waiting import wait_until

KINDS = ("startup", "readiness", "liveness")


@dataclass
class ProbeState:
    kind: str
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int
    result: str = "unknown"  # unknown | success | failure
    successes: int = 0  # consecutive
    failures: int = 0  # consecutive
    runs: int = 0
    last_output: str = ""
    last_ok: bool | None = None
    last_at: float | None = None
    last_duration: float | None = None

    @classmethod
    def from_spec(cls, kind: str, spec: dict) -> "ProbeState":
        return cls(kind=kind, period=float(spec.get("periodSeconds", 10)), timeout=float(spec.get("timeoutSeconds", 1)),
                   failure_threshold=int(spec.get("failureThreshold", 3)),
                   success_threshold=int(spec.get("successThreshold", 1)),
                   result="failure" if kind == "readiness" else ("success" if kind == "liveness" else "unknown"))

    def reset(self) -> None:
        fresh = ProbeState.from_spec(self.kind, {"periodSeconds": self.period, "timeoutSeconds": self.timeout,
                                                 "failureThreshold": self.failure_threshold,
                                                 "successThreshold": self.success_threshold})
        self.__dict__.update(fresh.__dict__)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class ContainerStatus:
    name: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    restarts: int = 0
    started: bool = False  # startup probe passed (or none)
    ready: bool = False
    pid: int | None = None
    started_at: float | None = None
    last_exit: dict | None = None
    probes: dict[str, ProbeState] = field(default_factory=dict)
    incarnation: int = 0  # bumps on every (re)start; workers reset their counters on a change
    killing: bool = False

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "probes"}
        d["probes"] = {k: p.to_dict() for k, p in self.probes.items()}
        return d


class Backoff:
    """The kubelet's crash-loop back-off (flowcontrol.Backoff: 10 s initial, 300 s max)."""

    def __init__(self, initial: float = 10.0, maximum: float = 300.0):
        self.initial, self.maximum = initial, maximum
        self.delay: float | None = None
        self.last: float | None = None

    def next_start(self, finished_at: float) -> float:
        """When a container that ended at `finished_at` may start again; records this restart."""
        if self.delay is None or (self.last is not None and finished_at - self.last > 2 * self.maximum):
            due = finished_at  # first crash (or the back-off expired): restart at once
            self.delay = self.initial
        else:
            due = finished_at + self.delay
            self.delay = min(self.delay * 2, self.maximum)
        self.last = finished_at
        return due


class Kubelet:
    def __init__(self, pod_ip: str, containers: list[Container], grace: float, *,
                 backoff: tuple[float, float] = (10.0, 300.0), on_change: Callable[[], None] | None = None,
                 event_log=None, pod: str = ""):
        self.pod_ip = pod_ip
        self.pod = pod
        self.containers = {c.spec.name: c for c in containers}
        self.grace = grace
        self.backoff_args = backoff
        self.status = {name: ContainerStatus(name=name, probes={k: ProbeState.from_spec(k, spec)
                       for k, spec in c.spec.probes.items()}) for name, c in self.containers.items()}
        self._backoffs = {name: Backoff(*backoff) for name in self.containers}
        self._restart_due: dict[str, float] = {}
        self._killers: dict[str, threading.Thread] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._triggers = {(n, k): threading.Event() for n in self.containers for k in KINDS}
        self._threads: list[threading.Thread] = []
        self._on_change = on_change or (lambda: None)
        self._event_log = event_log
        self.events: collections.deque = collections.deque(maxlen=2000)
        self.ready_transitions: list[tuple[float, bool]] = []  # (time.monotonic(), pod ready)
        self._pod_ready = False
        self._frozen = threading.Event()  # a lost node: no probes, no restarts, status as last reported

    # -- public ---------------------------------------------------------------------------------------
    def start(self) -> None:
        for name, c in self.containers.items():
            self._start_container(name, note="")
        self._spawn(self._sync_loop, "kubelet-sync")
        for name, c in self.containers.items():
            for kind in c.spec.probes:
                self._spawn(self._probe_worker, f"probe-{name}-{kind}", name, kind)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self, signals: dict[str, int] | None = None, *, run_pre_stop: bool = True) -> dict[str, int | None]:
        """Stop probing and restarting, send `signals` (container -> signal, e.g. a hard kill) if given, then
        stop every container in parallel within the grace period (after its preStop hook, unless told not)."""
        self._stop.set()
        for trigger in self._triggers.values():  # wake the workers sleeping until their next period
            trigger.set()
        for t in self._threads:
            t.join(timeout=max(10.0, max((p.timeout for s in self.status.values() for p in s.probes.values()),
                                         default=1) + 5))
        for name, sig in (signals or {}).items():
            c = self.containers[name]
            if c.signal(sig) and sig == signal.SIGKILL:
                with contextlib.suppress(TimeoutError):
                    wait_until(lambda c=c: c.poll() is not None, 5, f"container {name} killed", interval=0.005)
        codes: dict[str, int | None] = {}

        def stop_one(name: str) -> None:
            grace = self.grace
            hook = (self.containers[name].spec.raw.get("lifecycle") or {}).get("preStop")
            if hook and run_pre_stop and self.containers[name].poll() is None:
                t0 = time.monotonic()
                ok, output = self._run_probe(self.containers[name], hook, max(grace, 1.0))
                self._event(name, "PreStop", f"preStop hook {'succeeded' if ok else 'failed'}: {output.strip()[:300]}")
                grace = max(0.0, grace - (time.monotonic() - t0))
            codes[name] = self.containers[name].stop(grace)
            self.containers[name].reap()

        threads = [threading.Thread(target=stop_one, args=(n,)) for n in self.containers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with self._lock:
            for name, st in self.status.items():
                st.state, st.reason, st.ready, st.pid = "terminated", "PodDeleted", False, None
            self._update_ready()
        self._event("pod", "Killing", f"stopped containers (exit codes {codes})")
        return codes

    def freeze(self) -> None:
        """The node is gone: this kubelet stops probing and restarting (its last report stands, as the API
        server keeps a lost node's pod status until the node controller acts)."""
        self._frozen.set()
        self._event("pod", "NodeLost", "kubelet frozen: no probes, no restarts")

    @property
    def frozen(self) -> bool:
        return self._frozen.is_set()

    @property
    def pod_ready(self) -> bool:
        return self._pod_ready

    def snapshot(self) -> dict:
        with self._lock:
            return {"ready": self._pod_ready, "containers": {n: s.to_dict() for n, s in self.status.items()}}

    def kill_container(self, name: str, reason: str) -> None:
        """Kill as the kubelet does after a failed liveness/startup probe (in the background)."""
        with self._lock:
            st = self.status[name]
            if st.killing:
                return
            st.killing = True
        self._event(name, "Killing", f"Container {name} {reason}, will be restarted")
        killer = threading.Thread(target=self.containers[name].stop, args=(self.grace,), daemon=True,
                                  name=f"kill-{name}")
        self._killers[name] = killer
        killer.start()

    def trigger(self, name: str, kind: str) -> None:
        self._triggers[(name, kind)].set()

    # -- internals ------------------------------------------------------------------------------------
    def _spawn(self, fn, name: str, *args) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _event(self, obj: str, reason: str, message: str) -> None:
        entry = {"time": time.time(), "pod": self.pod, "object": obj, "reason": reason, "message": message}
        self.events.append(entry)
        if self._event_log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(entry["time"]))
            where = f"{self.pod}/{obj}" if self.pod else obj
            self._event_log.write(f"{stamp} {where} {reason}: {message}\n")
            self._event_log.flush()

    def _start_container(self, name: str, note: str) -> None:
        c = self.containers[name]
        c.start(note=note)
        with self._lock:
            st = self.status[name]
            st.state, st.reason, st.pid, st.started_at = "waiting", "ContainerCreating", c.pid, c.started_at
            st.incarnation += 1
            st.started = "startup" not in c.spec.probes
            st.ready = False
            st.killing = False
            for p in st.probes.values():
                p.reset()
            self._update_ready()
        self._event(name, "Started", f"Started container {name} (pid {c.pid}){note}")
        self._on_change()

    def _sync_loop(self) -> None:
        while not self._stop.wait(0.05):
            if self._frozen.is_set():
                continue
            for name, c in self.containers.items():
                changed = False
                with self._lock:
                    st = self.status[name]
                    code = c.poll()
                    if st.state == "waiting" and st.reason == "ContainerCreating" and code is None and c.running:
                        st.state, st.reason = "running", ""
                        changed = True
                    elif code is not None and st.state != "terminated":
                        finished = time.time()
                        st.last_exit = {"exit_code": code if code >= 0 else 128 - code,
                                        "signal": -code if code < 0 else None,
                                        "reason": "Completed" if code == 0 else "Error",
                                        "started_at": st.started_at, "finished_at": finished}
                        st.state, st.reason, st.ready, st.started, st.pid = "terminated", "Error" if code else \
                            "Completed", False, False, None
                        self._restart_due[name] = self._backoffs[name].next_start(finished)
                        changed = True
                        self._event(name, "Died", f"container exited: {st.last_exit}")
                    elif st.state == "terminated" and name in self._restart_due:
                        due = self._restart_due[name]
                        killer = self._killers.get(name)
                        if killer is not None and killer.is_alive():
                            continue  # the kill (SIGKILL of stray children) is still finishing
                        if time.time() >= due:
                            del self._restart_due[name]
                            c.reap()
                            st.restarts += 1
                            restart_no = st.restarts
                        else:
                            st.reason = "CrashLoopBackOff"
                            continue
                    else:
                        continue
                    self._update_ready()
                if st.state == "terminated" and name not in self._restart_due and not self._stop.is_set():
                    try:
                        self._start_container(name, note=f" (restart {restart_no})")
                    except Exception as exc:  # noqa: BLE001 - retried with back-off, like a failed CreateContainer
                        self._event(name, "Failed", f"could not start container {name}: {exc}")
                        with self._lock:
                            self._restart_due[name] = self._backoffs[name].next_start(time.time())
                elif changed:
                    self._on_change()

    def _update_ready(self) -> None:
        ready = all(s.ready for s in self.status.values())
        if ready != self._pod_ready:
            self._pod_ready = ready
            self.ready_transitions.append((time.monotonic(), ready))
            self._event("pod", "Ready" if ready else "NotReady", f"pod ready={ready}")

    def _probe_worker(self, name: str, kind: str) -> None:
        c = self.containers[name]
        spec = c.spec.probes[kind]
        trigger = self._triggers[(name, kind)]
        period = float(spec.get("periodSeconds", 10))
        initial_delay = float(spec.get("initialDelaySeconds", 0))
        next_run = time.monotonic()
        while not self._stop.is_set():
            if trigger.wait(max(0.0, next_run - time.monotonic())):
                trigger.clear()
            if self._stop.is_set():
                return
            next_run = time.monotonic() + period
            if self._frozen.is_set():
                next_run = time.monotonic() + 0.1
                continue
            with self._lock:
                st = self.status[name]
                probe = st.probes[kind]
                if st.state != "running" or st.killing:
                    next_run = time.monotonic() + min(period, 0.1)  # probe as soon as the container runs
                    continue
                if kind == "startup" and st.started:
                    continue
                if kind != "startup" and not st.started:
                    continue
                if st.started_at and time.time() - st.started_at < initial_delay:
                    continue
                incarnation = st.incarnation
            t0 = time.monotonic()
            ok, output = self._run_probe(c, spec, probe.timeout)
            duration = time.monotonic() - t0
            self._record(name, kind, incarnation, ok, output, duration)

    def _record(self, name: str, kind: str, incarnation: int, ok: bool, output: str, duration: float) -> None:
        kill_reason = None
        with self._lock:
            st = self.status[name]
            if st.incarnation != incarnation or st.killing or self._frozen.is_set():
                return  # the container was restarted meanwhile: this result is stale
            p = st.probes[kind]
            p.runs += 1
            p.last_ok, p.last_output, p.last_at, p.last_duration = ok, output.strip(), time.time(), duration
            before = p.result
            if ok:
                p.successes, p.failures = p.successes + 1, 0
                if p.successes >= (p.success_threshold if kind == "readiness" else 1):
                    p.result = "success"
            else:
                p.failures, p.successes = p.failures + 1, 0
                if p.failures >= p.failure_threshold:
                    p.result = "failure"
            if not ok:
                self._event(name, "Unhealthy", f"{kind.capitalize()} probe failed: {output.strip()[:500]}")
            if kind == "startup" and p.result == "success" and not st.started:
                st.started = True
                self.trigger(name, "readiness")
            elif kind == "startup" and p.result == "failure":
                kill_reason = "failed startup probe"
            elif kind == "liveness" and p.result == "failure":
                kill_reason = "failed liveness probe"
            elif kind == "readiness":
                st.ready = p.result == "success"
            if "readiness" not in st.probes and st.started and st.state == "running":
                st.ready = True
            self._update_ready()
            changed = before != p.result or not ok or kind == "readiness"
        if kill_reason:
            self.kill_container(name, kill_reason)
        if changed:
            self._on_change()

    def _run_probe(self, c: Container, spec: dict, timeout: float) -> tuple[bool, str]:
        try:
            if "exec" in spec:
                proc = c.exec(spec["exec"]["command"], timeout=timeout)
                return proc.returncode == 0, proc.stdout.decode(errors="replace")
            if "httpGet" in spec:
                h = spec["httpGet"]
                port = container_port(c.spec.raw, h["port"])
                conn_cls = http.client.HTTPSConnection if h.get("scheme") == "HTTPS" else http.client.HTTPConnection
                conn = conn_cls(h.get("host") or self.pod_ip, port, timeout=timeout)
                try:
                    headers = {x["name"]: x["value"] for x in h.get("httpHeaders", [])}
                    conn.request("GET", h.get("path", "/"), headers={"User-Agent": "kube-probe/1.30", **headers})
                    resp = conn.getresponse()
                    resp.read()
                    return 200 <= resp.status < 400, f"HTTP {resp.status}"
                finally:
                    conn.close()
            if "tcpSocket" in spec:
                port = container_port(c.spec.raw, spec["tcpSocket"]["port"])
                with socket.create_connection((spec["tcpSocket"].get("host") or self.pod_ip, port), timeout=timeout):
                    return True, ""
            return False, f"unsupported probe {sorted(spec)}"
        except TimeoutError as exc:
            return False, f"probe timed out: {exc}"
        except (OSError, http.client.HTTPException, ProcessLookupError) as exc:
            return False, f"probe error: {exc}"
