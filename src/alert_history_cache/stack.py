"""The local stack: the chart's pod on this machine (pod.py) plus Prometheus and Alertmanager
(monitoring_stack.py), with a Python API for drills and tests and a state file for `status` and `down`.

    with LocalStack(values={...}, engine="valkey8", state_dir=tmp) as stack:
        stack.client("default").set("k", "v")      # the application: password-only AUTH
        stack.kill_server(signal.SIGKILL); stack.wait_ready(60)  # seconds from the kill to readiness

State dir: pvc/ (kept), configmaps/, secrets/, emptydirs/, containers/<name>/start.sh, bin/ (the image's
binary names -> this engine), pod/hosts, monitoring/, logs/, stack.json (pids, addresses, probe status)."""

from __future__ import annotations

import atexit
import contextlib
import copy
import fcntl
import json
import os
import shutil
import signal
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import redis

from . import chart, engines, netns
from .kube import Objects, read_secret_files
from .monitoring_stack import Monitoring, MonitoringOptions, PodInfo
from .pod import LocalPod, PodStartError
from .volumes import unmount_all

DEFAULT_STATE_DIR = Path(".state")
STATE_FILE = "stack.json"
SERVER_CONTAINER = "valkey"
EXPORTER_CONTAINER = "exporter"
IMAGE_ROOT_LINKS = {"/redis_exporter": "/usr/local/bin/redis_exporter"}


class StackError(RuntimeError):
    """The stack cannot start or act; the message says why and what to do."""


def base_values(engine: str) -> dict:
    """The layer under the user's values: the spec's names and the engine's image."""
    return {"fullnameOverride": "alerthistory", "valkey": {"image": dict(engines.ENGINE_IMAGES[engine])}}


def require_root() -> None:
    if os.geteuid() != 0:
        raise StackError("the local stack needs root: it creates network and mount namespaces, veth "
                         "interfaces and tmpfs mounts, and runs the pod as its own user. Run it with sudo (or as "
                         "root in a VM or CI job).")


def read_state(state_dir: Path) -> dict:
    try:
        return json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _lock_path(state_dir: Path) -> Path:
    return Path(state_dir) / ".lock"


def is_running(state_dir: Path) -> bool:
    """A stack process holds the state dir's lock."""
    path = _lock_path(state_dir)
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def _proc_record(pid: int) -> dict:
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
    """Processes whose root is one of this state dir's container roots (container and probe processes)."""
    prefix = str((Path(state_dir) / "containers").resolve()) + "/"
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
    processes, the pod's network namespace and veth, mounts. Idempotent; returns what it did."""
    state_dir = Path(state_dir).resolve()
    data = read_state(state_dir)
    done: list[str] = []
    victims = {p.pid: p for p in processes_of(state_dir)}
    for rec in data.get("processes", []):
        p = _same_process(rec)
        if p and p.pid != os.getpid():
            victims[p.pid] = p
    # The pod's network: from stack.json, and from the slot records (they survive a lost stack.json).
    slots = {int(s) for s, owner in netns.owners().items() if owner.get("state_dir") == str(state_dir.resolve())}
    recorded = ((data.get("pod") or {}).get("network") or {}).get("slot")
    if recorded:
        slots.add(int(recorded))
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
        if netns.exists(net):
            netns.delete(net)
            done.append(f"deleted network namespace {net.netns} and veth {net.host_if}")
    for target in unmount_all(state_dir):
        done.append(f"unmounted {target}")
    if data and data.get("phase") not in ("stopped", None):
        data["phase"] = "stopped"
        _write_json(state_dir / STATE_FILE, data)
    return done


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
    dest.chmod(0o755)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


class LocalStack:
    def __init__(self, values: dict | None = None, *, engine: str = engines.DEFAULT_ENGINE,
                 state_dir: str | Path = DEFAULT_STATE_DIR, secret_files: dict[str, str | Path] | None = None,
                 monitoring: bool | None = None, monitoring_options: MonitoringOptions | None = None,
                 backoff: tuple[float, float] = (10.0, 300.0), release: str = chart.DEFAULT_RELEASE,
                 namespace: str = chart.DEFAULT_NAMESPACE, ready_timeout: float | None = None,
                 wait_for_scrape: bool = False):
        self.engine_name = engine
        self.engine = engines.get(engine)
        self.state_dir = Path(state_dir).resolve()  # /proc/<pid>/root shows resolved paths
        self.user_values = copy.deepcopy(values or {})
        self.values = chart.deep_merge(base_values(engine), self.user_values)
        self.secret_files = dict(secret_files or {})
        self.monitoring_wanted = monitoring
        self.monitoring_options = monitoring_options or MonitoringOptions()
        self.backoff = backoff
        self.release, self.namespace = release, namespace
        self.ready_timeout = ready_timeout
        self.wait_for_scrape = wait_for_scrape
        self.monitoring_summary: dict = {}
        self.manifests: chart.Manifests | None = None
        self.full_values: dict = {}
        self.pod: LocalPod | None = None
        self.monitoring: Monitoring | None = None
        self.phase = "new"
        self.started_at: float | None = None
        self._disrupted_at: float | None = None
        self._lock_file = None
        self._state_lock = threading.Lock()
        self._event_log = None
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> "LocalStack":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "LocalStack":
        require_root()
        netns.ensure_tools()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        t0 = time.monotonic()
        try:
            cleanup(self.state_dir)  # leftovers of a stack of this state dir that died without stopping
            self._render()
            self._check_binaries()
            self.phase = "starting"
            self._write_state()
            atexit.register(self.stop)
            self._start_pod()
            if self.monitoring_enabled:
                self._start_monitoring()
            self.wait_ready(self._ready_budget(), since=t0, what="start")
            if self.monitoring and self.wait_for_scrape:
                self._await_first_scrape()
            self.started_at = time.time()
            self.phase = "running"
            self._write_state()
        except BaseException as exc:
            self.phase = "failed"
            self._write_state(error=str(exc))
            self.stop(final_phase="failed", error=str(exc))
            raise
        return self

    def stop(self, final_phase: str = "stopped", error: str | None = None) -> None:
        """Stop everything (SIGTERM, then SIGKILL after terminationGracePeriodSeconds); idempotent."""
        if self._stopped or self._lock_file is None:
            return
        self._stopped = True
        if self.phase != "failed":
            self.phase = "stopping"
            self._write_state()
        try:
            if self.monitoring:
                self.monitoring.stop()
        finally:
            try:
                if self.pod:
                    self.pod.stop()
            finally:
                unmount_all(self.state_dir)
                self.phase = final_phase
                self._write_state(error=error)
                if self._event_log:
                    self._event_log.close()
                    self._event_log = None
                self._release_lock()
                with contextlib.suppress(Exception):
                    atexit.unregister(self.stop)

    def _take_lock(self) -> None:
        self._lock_file = open(_lock_path(self.state_dir), "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            pid = (read_state(self.state_dir).get("supervisor") or {}).get("pid")
            raise StackError(f"a stack is already running on {self.state_dir} (pid {pid}): stop it with "
                             f"`alert-history-cache down --state-dir {self.state_dir}`") from None

    def _release_lock(self) -> None:
        if self._lock_file:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _render(self) -> None:
        self.manifests = chart.render(self.values, release=self.release, namespace=self.namespace)
        self.full_values = chart.deep_merge(chart.default_values(), self.values)
        if self.secret_files and not self.full_values["valkey"]["password"]["existingSecret"]:
            raise StackError("--secret-file is for valkey.password.existingSecret: the chart renders its own "
                             "Secret otherwise")

    @property
    def monitoring_enabled(self) -> bool:
        if self.monitoring_wanted is not None:
            return self.monitoring_wanted
        return bool(self.full_values.get("monitoring", {}).get("prometheusEnabled"))

    def _check_binaries(self) -> None:
        self.engine.check()
        sts = self.manifests.of_kind("StatefulSet")
        commands = [c.get("command", [""])[0] for s in sts for c in s["spec"]["template"]["spec"]["containers"]]
        if "/redis_exporter" in commands:
            engines.EXPORTER.binary  # noqa: B018 - raises MissingBinary naming the package
        if self.monitoring_enabled:
            engines.PROMETHEUS.binary, engines.ALERTMANAGER.binary  # noqa: B018

    def _bin_dir(self) -> Path:
        """STATE/bin: the image's binary names -> this engine's binaries (mounted at /usr/local/bin)."""
        bin_dir = self.state_dir / "bin"
        bin_dir.mkdir(exist_ok=True)
        for old in bin_dir.iterdir():
            old.unlink()
        mapping = {name: path for name, path in self.engine.image_binaries().items()}
        if engines.EXPORTER.path.exists():
            mapping["redis_exporter"] = engines.EXPORTER.path
        for name, target in mapping.items():
            real = Path(os.path.realpath(target))
            if str(real).startswith("/usr/"):
                (bin_dir / name).symlink_to(target)  # /usr is mounted in every container
            else:
                # A hard link (or a copy) rather than a symlink into the venv: the venv's folders may be
                # unreachable for the pod's user (a checkout under a mode-700 dir) or hidden inside the
                # container by a volume mounted over a parent (an emptyDir at /tmp over a checkout in /tmp).
                _link_or_copy(real, bin_dir / name)
        bin_dir.chmod(0o755)
        return bin_dir

    def _start_pod(self) -> None:
        bin_dir = self._bin_dir()
        external = {}
        existing = self.full_values["valkey"]["password"]["existingSecret"]
        if existing:
            if not self.secret_files:
                raise StackError(f"valkey.password.existingSecret is {existing!r}: give its keys with --secret-file "
                                 f"KEY=PATH (keys {self._secret_keys()})")
            external[existing] = read_secret_files(self.secret_files)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self._event_log = open(self.state_dir / "logs" / "kubelet.log", "a")
        self.pod = LocalPod(self.manifests, self.state_dir, bin_dir=bin_dir,
                            root_links=IMAGE_ROOT_LINKS, objects=Objects(self.manifests, external),
                            backoff=self.backoff, on_change=self._write_state, event_log=self._event_log)
        self.pod.start(owner={"state_dir": str(self.state_dir), "pid": os.getpid()})

    def _start_monitoring(self) -> None:
        info = PodInfo(name=self.pod.name, namespace=self.pod.namespace, ip=self.pod.ip, labels=self.pod.labels,
                       containers=self.pod.spec["containers"])
        self.monitoring = Monitoring(self.manifests, info, self.state_dir, self.monitoring_options)
        self.monitoring.start()

    def _await_first_scrape(self) -> None:
        """Until Prometheus has scraped the exporter (new targets reach the scrapers every 5 s, then the first
        scrape comes within one interval); records the target and the loaded rules for stack.json."""
        summary: dict = {"rules": sum(len(g["rules"]) for g in self.prometheus_api("rules")["groups"]),
                         "notes": self.monitoring.notes}
        interval = self.monitoring.longest_scrape_interval()
        if interval:
            target = self.wait_target_up(interval + 20)
            summary["target"] = {"health": target["health"], "labels": target["labels"],
                                 "scrape_url": target["scrapeUrl"]}
        self.monitoring_summary = summary

    def _ready_budget(self) -> float:
        if self.ready_timeout:
            return self.ready_timeout
        budget = 0.0
        for c in self.pod.spec["containers"]:
            s, r = c.get("startupProbe") or {}, c.get("readinessProbe") or {}
            b = s.get("initialDelaySeconds", 0) + s.get("periodSeconds", 10) * s.get("failureThreshold", 3) \
                + r.get("periodSeconds", 10) * r.get("successThreshold", 1)
            budget = max(budget, b)
        return budget + 15

    # -- state file -----------------------------------------------------------------------------------
    def _secret_keys(self) -> list[str]:
        p = self.full_values["valkey"]["password"]
        return [p["secretKey"], p["exporterSecretKey"], p["adminSecretKey"]]

    @property
    def secret_name(self) -> str:
        for vol in self.pod.spec.get("volumes", []):
            if "secret" in vol:
                return vol["secret"]["secretName"]
        raise StackError("the pod mounts no Secret")

    @property
    def secret_dir(self) -> Path:
        return self.state_dir / "secrets" / self.secret_name

    def processes(self) -> dict[str, int]:
        out = {"supervisor": os.getpid()}
        if self.pod and self.pod.kubelet:
            out.update({n: c.pid for n, c in self.pod.kubelet.containers.items() if c.pid})
        if self.monitoring:
            out.update(self.monitoring.pids())
        return out

    def _write_state(self, error: str | None = None) -> None:
        if self._lock_file is None:
            return
        with self._state_lock:
            data = {"phase": self.phase, "updated_at": time.time(), "state_dir": str(self.state_dir),
                    "engine": {"name": self.engine_name, "title": self.engine.title,
                               "version": self.engine.version if self.engine_name else None,
                               "cli_note": self.engine.cli_note},
                    "supervisor": _proc_record(os.getpid()), "started_at": self.started_at}
            if error:
                data["error"] = error
            if self.monitoring_summary:
                data["monitoring"] = self.monitoring_summary
            if self.pod:
                data["pod"] = self.pod.snapshot()
                data["processes"] = [{"name": n, **_proc_record(pid)} for n, pid in self.processes().items()
                                     if n != "supervisor"]
                if self.pod.net:
                    data["endpoints"] = self.endpoints()
            _write_json(self.state_dir / STATE_FILE, data)

    def endpoints(self) -> dict:
        out = {"server": f"{self.pod_ip}:{self.port}"}
        exporter = next((c for c in self.pod.spec["containers"] if c["name"] == EXPORTER_CONTAINER), None)
        if exporter:
            port = next((p["containerPort"] for p in exporter.get("ports", [])), 9121)
            out["metrics"] = f"http://{self.pod_ip}:{port}/metrics"
        if self.monitoring and self.monitoring.prometheus_port:
            out["prometheus"] = self.prometheus_url
            out["alertmanager"] = self.alertmanager_url
        out["logs"] = str(self.state_dir / "logs")
        out["secret_dir"] = str(self.secret_dir)
        out["cli"] = str(self.state_dir / "bin" / "valkey-cli")
        out["users"] = self.users  # ACL user -> key of its password in the Secret (never the password)
        out["admin_user"] = self.full_values["valkey"]["acl"]["adminUser"]
        return out

    # -- API: addresses, users, clients ---------------------------------------------------------------
    @property
    def pod_ip(self) -> str:
        return self.pod.ip

    @property
    def port(self) -> int:
        return int(self.full_values["valkey"]["service"]["port"])

    @property
    def prometheus_url(self) -> str | None:
        return self.monitoring.prometheus_url if self.monitoring else None

    @property
    def alertmanager_url(self) -> str | None:
        return self.monitoring.alertmanager_url if self.monitoring else None

    @property
    def server_log_path(self) -> Path:
        return self.state_dir / "logs" / f"{SERVER_CONTAINER}.log"

    def log_path(self, container: str) -> Path:
        return self.state_dir / "logs" / f"{container}.log"

    @property
    def data_dir(self) -> Path:
        """The persistent volume (STATE/pvc), mounted at /data in the server container."""
        return self.pod.volumes.claim_path("data")

    @property
    def users(self) -> dict[str, str]:
        """ACL user -> key of its password in the Secret."""
        acl, p = self.full_values["valkey"]["acl"], self.full_values["valkey"]["password"]
        return {"default": p["secretKey"], acl["applicationUser"]: p["secretKey"],
                acl["exporterUser"]: p["exporterSecretKey"], acl["adminUser"]: p["adminSecretKey"]}

    def _user(self, user: str) -> str:
        acl = self.full_values["valkey"]["acl"]
        aliases = {"app": "default", "application": "default", "admin": acl["adminUser"],
                   "exporter": acl["exporterUser"]}
        user = aliases.get(user, user)
        if user not in self.users:
            raise StackError(f"unknown user {user!r}; the chart's users are {sorted(self.users)}")
        return user

    def password(self, key: str) -> str:
        """A key of the pod's Secret (as written to STATE/secrets/<name>/<key>)."""
        return (self.secret_dir / key).read_text()

    def user_password(self, user: str) -> str:
        return self.password(self.users[self._user(user)])

    def client(self, user: str = "default", **kwargs) -> redis.Redis:
        """redis-py client at the pod address. `default` (alias `app`) sends AUTH <password> only, like
        alert-history; other users (`admin`, `exporter`, the named application user) send a username."""
        name = self._user(user)
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis(host=self.pod_ip, port=self.port, username=None if name == "default" else name,
                           password=self.user_password(name), **kwargs)

    def cli_argv(self, user: str = "default") -> list[str]:
        """valkey-cli/redis-cli of this engine, at the pod address; pair with cli_env() for the password."""
        name = self._user(user)
        argv = [str(self.engine.cli), "-h", self.pod_ip, "-p", str(self.port), "--no-auth-warning"]
        return argv if name == "default" else [*argv, "--user", name]

    def cli_env(self, user: str = "default") -> dict[str, str]:
        return {**os.environ, "REDISCLI_AUTH": self.user_password(user)}

    # -- API: processes and disruptions ---------------------------------------------------------------
    def container(self, name: str = SERVER_CONTAINER):
        return self.pod.container(name)

    @property
    def server_pid(self) -> int | None:
        return self.container(SERVER_CONTAINER).pid

    def exec(self, argv: list[str], container: str = SERVER_CONTAINER, timeout: float = 30,
             env: dict[str, str] | None = None):
        """Run a command inside a container (its namespaces, root, user and env), like `kubectl exec`."""
        return self.container(container).exec(argv, timeout=timeout, env=env)

    def kill_server(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the server container's main process (a crash, OOM kill, SIGSTOP hang...). The kubelet
        emulation restarts it as Kubernetes would (crash-loop back-off after the first restart)."""
        self._disrupted_at = time.monotonic()
        if not self.container(SERVER_CONTAINER).signal(sig):
            raise StackError("the server container is not running")

    def delete_pod(self, sig: int = signal.SIGTERM) -> dict:
        """Delete the pod: SIGTERM and the grace period (or `sig`, e.g. SIGKILL, sent to the server first), the
        emptyDirs emptied. The volume, address and state dir stay; create_pod() brings up its successor."""
        self._disrupted_at = time.monotonic()
        codes = self.pod.delete({SERVER_CONTAINER: sig} if sig != signal.SIGTERM else None)
        if self.monitoring:
            self.monitoring.set_pod_present(False)
        self._write_state()
        return codes

    def create_pod(self) -> None:
        """The StatefulSet's replacement pod: init containers again, then the containers."""
        self.pod.create()
        if self.monitoring:
            self.monitoring.set_pod_present(True)
        self._write_state()

    def restart_server(self, sig: int = signal.SIGTERM) -> dict:
        """delete_pod(sig) + create_pod(); measure recovery with wait_ready()."""
        codes = self.delete_pod(sig)
        self.create_pod()
        return codes

    def wait_ready(self, timeout: float = 60, *, since: float | None = None, what: str = "recovery") -> float:
        """Wait until the pod is ready again (the rendered readiness probe passed, after the last disruption)
        and return the seconds from that disruption (or `since`, a time.monotonic()) to readiness."""
        start = since if since is not None else (self._disrupted_at or time.monotonic())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kubelet = self.pod.kubelet
            if kubelet:
                for at, ready in reversed(kubelet.ready_transitions):
                    if at < start:
                        break
                    if ready and kubelet.pod_ready:
                        return at - start
            self._raise_if_crash_looping(what)
            time.sleep(0.02)
        raise TimeoutError(f"pod not ready {timeout:.0f}s after the {what}; see {self.state_dir / 'logs'} and "
                           f"`alert-history-cache status --state-dir {self.state_dir}`\n{self._probe_summary()}")

    def _raise_if_crash_looping(self, what: str) -> None:
        if what != "start" or not self.pod.kubelet:
            return
        for name, st in self.pod.kubelet.status.items():
            if st.restarts >= 3:
                tail = self.log_path(name).read_text(errors="replace").splitlines()[-20:]
                raise PodStartError(f"container {name} keeps failing ({st.restarts} restarts, last exit "
                                    f"{st.last_exit}); last lines of {self.log_path(name)}:\n" + "\n".join(tail))

    def _probe_summary(self) -> str:
        lines = []
        for name, st in (self.pod.kubelet.status.items() if self.pod and self.pod.kubelet else []):
            for kind, p in st.probes.items():
                lines.append(f"  {name} {kind}: {p.result} ({p.runs} runs) {p.last_output[:200]}")
        return "\n".join(lines)

    def status(self) -> dict:
        """What `alert-history-cache status` shows: phase, endpoints, containers with probes and restarts."""
        if self.pod:
            self._write_state()
        return read_state(self.state_dir)

    # -- API: monitoring ------------------------------------------------------------------------------
    def prometheus_api(self, path: str, **params) -> dict:
        """GET Prometheus' HTTP API (e.g. "query", query="redis_up") and return its `data`."""
        if not self.prometheus_url:
            raise StackError("monitoring is not running (monitoring.prometheusEnabled false or --no-monitoring)")
        url = f"{self.prometheus_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise StackError(f"Prometheus {path}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """Instant query; the result vector."""
        return self.prometheus_api("query", query=promql)["result"]

    def wait_target_up(self, timeout: float = 30) -> dict:
        """Wait until Prometheus has scraped the exporter successfully; returns that active target.
        (Prometheus hands new targets to its scrapers every 5 s, so the first scrape comes a few s after start.)"""
        deadline = time.monotonic() + timeout
        targets: list = []
        while time.monotonic() < deadline:
            targets = self.prometheus_api("targets", state="active")["activeTargets"]
            up = [t for t in targets if t["health"] == "up" and t["labels"].get("pod") == self.pod.name]
            if up:
                return up[0]
            time.sleep(0.2)
        raise TimeoutError(f"no healthy scrape target for pod {self.pod.name} after {timeout}s: {targets}")

    def alertmanager_alerts(self) -> list[dict]:
        """Alerts Alertmanager has received (API v2)."""
        with urllib.request.urlopen(f"{self.alertmanager_url}/api/v2/alerts", timeout=10) as resp:
            return json.load(resp)

    @property
    def events(self) -> list[dict]:
        return list(self.pod.kubelet.events) if self.pod and self.pod.kubelet else []

    def versions(self) -> dict:
        out = {"engine": self.engine_name, "server": f"{self.engine.title} {self.engine.version}",
               "exporter": engines.EXPORTER.version if engines.EXPORTER.path.exists() else None}
        if self.monitoring:
            out["prometheus"] = engines.PROMETHEUS.version
            out["alertmanager"] = engines.ALERTMANAGER.version
        return out

