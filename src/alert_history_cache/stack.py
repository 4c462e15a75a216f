"""The local stack: the alert-history release as a local cluster (cluster.py: every pod, the Services and their
endpoints, faults) plus Prometheus and Alertmanager (monitoring_stack.py), with a Python API for drills and
tests and a state file for `status`, `fault` and `down`.

    with LocalStack(values={...}, engine="valkey8", state_dir=tmp) as stack:
        stack.client("default").set("k", "v")      # the application: the client Service, password-only AUTH
        stack.kill_server(signal.SIGKILL); stack.wait_ready(60)  # seconds from the kill to readiness

Clients go through the client Service's ClusterIP, as the application does in a cluster; `pod_ip` is the
primary pod's own address (for debugging, scraping, and tests that look at one pod). The single-pod API
(`pod`, `kill_server`, `delete_pod`/`create_pod`, `wait_ready`, ...) acts on the release's first pod,
`<sts>-0`; `cluster` has every pod.

State dir (one pod): pvc/ (kept), configmaps/, secrets/, emptydirs/, containers/<name>/start.sh, bin/ (the
image's binary names -> this engine), pod/hosts, monitoring/, logs/, stack.json; with several pods see
cluster.py."""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import redis

from . import chart, control, engines, netns
from .cluster import LocalCluster
from .credentials import Credentials, CredentialsError, TlsFiles
from .local_certs import LocalCA
from .kube import Objects, read_secret_files
from .monitoring_stack import Monitoring, MonitoringOptions, PodInfo
from .pod import LocalPod
from .promapi import Alertmanager, Prometheus
from .stack_state import (STATE_FILE, cleanup, is_running, proc_record, processes_of, read_state,
                          release_lock, take_lock, write_json)
from .volumes import unmount_all
from .waiting import wait_until

__all__ = ["DEFAULT_STATE_DIR", "STATE_FILE", "LocalStack", "StackError", "cleanup", "is_running", "processes_of",
           "read_state", "require_root", "base_values"]

DEFAULT_STATE_DIR = Path(".state")
SERVER_CONTAINER = "valkey"
EXPORTER_CONTAINER = "exporter"
IMAGE_ROOT_LINKS = {"/redis_exporter": "/usr/local/bin/redis_exporter"}


class StackError(RuntimeError):
    """The stack cannot start or act; the message says why and what to do."""


REPLICATION_REPLICAS = 3
LOCAL_ISSUER = "local-stack-ca"
LOCAL_PROBER = "blackbox-exporter.local-stack:9115"  # replaced by the local blackbox exporter's address


def base_values(engine: str, user_values: dict | None = None) -> dict:
    """The layer under the user's values: the release's names and the engine's image; with
    `valkey.architecture: replication` and no `valkey.replicas`, 3 data pods (a primary and two replicas, the
    smallest set the chart accepts), so `up --set valkey.architecture=replication` runs as it reads."""
    valkey: dict = {"image": dict(engines.ENGINE_IMAGES[engine])}
    user = (user_values or {}).get("valkey") or {}
    # TLS with neither a Secret nor an issuer: the chart renders its Certificate for this issuer name, and the
    # local stack plays cert-manager for it (local_certs.py), so `--set valkey.tls.enabled=true` is enough.
    tls = user.get("tls") or {}
    if tls.get("enabled") and not tls.get("existingSecret") and not ((tls.get("certManager") or {}).get(
            "issuerRef") or {}).get("name"):
        valkey["tls"] = {"certManager": {"issuerRef": {"name": LOCAL_ISSUER}}}
    # TLS: the local stack also plays the blackbox exporter that the chart's expiry Probe needs (a program the
    # user runs in a cluster), unless the user says otherwise.
    if tls.get("enabled") and "expiryProbe" not in tls:
        valkey.setdefault("tls", {})["expiryProbe"] = {"enabled": True, "proberUrl": LOCAL_PROBER}
    if user.get("architecture") == "replication" and "replicas" not in user:
        valkey["replicas"] = REPLICATION_REPLICAS
    return {"fullnameOverride": "alerthistory", "valkey": valkey}


def require_root() -> None:
    if os.geteuid() != 0:
        raise StackError("the local stack needs root: it creates network and mount namespaces, veth "
                         "interfaces, nftables rules and tmpfs mounts, and runs the pods as their own user. Run it "
                         "with sudo (or as root in a VM or CI job).")


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
    dest.chmod(0o755)


def make_bin_dir(state_dir: Path, engine: engines.Engine) -> Path:
    """STATE/bin: the image's binary names -> this engine's binaries (mounted at /usr/local/bin)."""
    bin_dir = state_dir / "bin"
    bin_dir.mkdir(exist_ok=True)
    for old in bin_dir.iterdir():
        old.unlink()
    mapping = dict(engine.image_binaries())
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


def cronjob_pod_spec(manifests, name: str) -> dict:
    return manifests.get("CronJob", name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]


class LocalStack:
    def __init__(self, values: dict | None = None, *, engine: str = engines.DEFAULT_ENGINE,
                 state_dir: str | Path = DEFAULT_STATE_DIR, secret_files: dict[str, str | Path] | None = None,
                 monitoring: bool | None = None, monitoring_options: MonitoringOptions | None = None,
                 backoff: tuple[float, float] = (10.0, 300.0), release: str = chart.DEFAULT_RELEASE,
                 namespace: str = chart.DEFAULT_NAMESPACE, ready_timeout: float | None = None,
                 wait_for_scrape: bool = False, serve_control: bool = False):
        self.engine_name = engine
        self.engine = engines.get(engine)
        self.state_dir = Path(state_dir).resolve()  # /proc/<pid>/root shows resolved paths
        self.user_values = copy.deepcopy(values or {})
        self.values = chart.deep_merge(base_values(engine, self.user_values), self.user_values)
        self.secret_files = dict(secret_files or {})
        self.monitoring_wanted = monitoring
        self.monitoring_options = monitoring_options or MonitoringOptions()
        self.backoff = backoff
        self.release, self.namespace = release, namespace
        self.ready_timeout = ready_timeout
        self.wait_for_scrape = wait_for_scrape
        self.serve_control = serve_control
        self.monitoring_summary: dict = {}
        self.manifests: chart.Manifests | None = None
        self.full_values: dict = {}
        self.cluster: LocalCluster | None = None
        self.monitoring: Monitoring | None = None
        self.credentials: Credentials | None = None
        self.local_ca: LocalCA | None = None  # with valkey.tls and a rendered Certificate
        self._given_tls: dict[str, bytes] = {}  # with valkey.tls.existingSecret from --secret-file
        self._tls_keys: set[str] = set()  # keys of --secret-file that belong to that TLS Secret
        self.tls_files: TlsFiles | None = None  # how this stack's clients speak TLS, once started
        self.phase = "new"
        self.started_at: float | None = None
        self._disrupted_at: float | None = None
        self._lock_file = None
        self._state_lock = threading.Lock()
        self._event_log = None
        self._control: control.ControlServer | None = None
        self._control_lock = threading.Lock()
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
            self._start_cluster()
            if self.monitoring_enabled:
                self._start_monitoring()
            self.wait_ready(self._ready_budget(), since=t0, what="start")
            self.cluster.wait_all_ready(self._ready_budget())
            if self.monitoring and self.wait_for_scrape:
                self._await_first_scrape()
            if self.serve_control:
                self._control = control.ControlServer(self.state_dir, self.handle_control)
                self._control.start()
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
            if self._control:
                self._control.stop()
            if self.monitoring:
                self.monitoring.stop()
        finally:
            try:
                if self.cluster:
                    self.cluster.stop()
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
        self._lock_file = take_lock(self.state_dir)
        if self._lock_file is None:
            pid = (read_state(self.state_dir).get("supervisor") or {}).get("pid")
            raise StackError(f"a stack is already running on {self.state_dir} (pid {pid}): stop it with "
                             f"`alert-history-cache down --state-dir {self.state_dir}`")

    def _release_lock(self) -> None:
        if self._lock_file:
            release_lock(self._lock_file)
            self._lock_file = None

    def _render(self) -> None:
        self.manifests = chart.render(self.values, release=self.release, namespace=self.namespace)
        self.full_values = chart.deep_merge(chart.default_values(), self.values)
        tls = self.full_values["valkey"]["tls"]
        if tls["enabled"] and not self.engine.tls:
            raise StackError(f"valkey.tls.enabled: the {self.engine_name} engine's server is built without TLS "
                             f"(no OpenSSL in its wheel); TLS runs on the redis7 engine: --engine redis7")
        self._tls_keys = tls_keys = self._tls_secret_keys()
        password_files = {k: v for k, v in self.secret_files.items() if k not in tls_keys}
        if password_files and not self.full_values["valkey"]["password"]["existingSecret"]:
            raise StackError("--secret-file is for valkey.password.existingSecret (and, with "
                             "valkey.tls.existingSecret and no issuer, for the keys "
                             f"{', '.join(sorted(tls_keys)) or 'of the TLS Secret'}): the chart renders its own "
                             "Secret otherwise")

    @property
    def monitoring_enabled(self) -> bool:
        if self.monitoring_wanted is not None:
            return self.monitoring_wanted
        return bool(self.full_values.get("monitoring", {}).get("prometheusEnabled"))

    def _check_binaries(self) -> None:
        self.engine.check()
        workloads = self.manifests.of_kind("StatefulSet") + self.manifests.of_kind("Deployment")
        commands = [c.get("command", [""])[0] for w in workloads for c in w["spec"]["template"]["spec"]["containers"]]
        if "/redis_exporter" in commands:
            engines.EXPORTER.binary  # noqa: B018 - raises MissingBinary naming the package
        if "haproxy" in commands:
            engines.HAPROXY.binary  # noqa: B018
        if self.monitoring_enabled:
            engines.PROMETHEUS.binary, engines.ALERTMANAGER.binary  # noqa: B018
            if self.manifests.of_kind("Probe"):
                engines.BLACKBOX.binary  # noqa: B018

    def _start_cluster(self) -> None:
        bin_dir = make_bin_dir(self.state_dir, self.engine)
        external = {}
        existing = self.full_values["valkey"]["password"]["existingSecret"]
        if existing:
            if not self.secret_files:
                raise StackError(f"valkey.password.existingSecret is {existing!r}: give its keys with --secret-file "
                                 f"KEY=PATH (keys {self._secret_keys()})")
            external[existing] = read_secret_files({k: v for k, v in self.secret_files.items()
                                                    if k not in self._tls_keys})
        external.update(self._tls_secrets())
        self.tls_files = self._client_tls_files()
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self._event_log = open(self.state_dir / "logs" / "kubelet.log", "a")
        self.cluster = LocalCluster(self.manifests, self.state_dir, bin_dir=bin_dir, root_links=IMAGE_ROOT_LINKS,
                                    objects=Objects(self.manifests, external), backoff=self.backoff,
                                    on_change=self._write_state, on_addresses=self._addresses_changed,
                                    on_dns=self._dns_changed,
                                    event_log=self._event_log,
                                    owner={"state_dir": str(self.state_dir), "pid": os.getpid()})
        self.credentials = Credentials(self.full_values, self.secret_dir, self.tls_files)
        self.cluster.start(ready_timeout=self._ready_budget())

    # -- TLS (valkey.tls): the local stack plays cert-manager ------------------------------------------
    def _tls_secret_keys(self) -> set[str]:
        """Keys of --secret-file that belong to the TLS Secret (valkey.tls.existingSecret without an issuer)."""
        tls = self.full_values["valkey"]["tls"]
        if tls["enabled"] and tls["existingSecret"] and not tls["certManager"]["issuerRef"]["name"]:
            return {tls["certKey"], tls["keyKey"], tls["caKey"]}
        return set()

    @property
    def tls_enabled(self) -> bool:
        return bool(self.full_values["valkey"]["tls"]["enabled"])

    def _tls_secrets(self) -> dict[str, dict[str, bytes]]:
        """The TLS Secret: issued for each rendered Certificate by a throwaway CA (STATE/tls/), or read from
        --secret-file for a given valkey.tls.existingSecret."""
        if not self.tls_enabled:
            return {}
        tls = self.full_values["valkey"]["tls"]
        certificates = self.manifests.of_kind("Certificate")
        if certificates:
            self.local_ca = LocalCA(self.state_dir / "tls")
            return self.local_ca.issue_all(certificates)
        keys = self._tls_keys
        missing = sorted(keys - set(self.secret_files))
        if missing:
            raise StackError(f"valkey.tls.existingSecret is {tls['existingSecret']!r}: give its keys with "
                             f"--secret-file KEY=PATH (missing {', '.join(missing)})")
        # PEM files byte for byte (read_secret_files drops a trailing newline, meant for passwords).
        self._given_tls = {k: Path(self.secret_files[k]).read_bytes() for k in keys}
        return {tls["existingSecret"]: self._given_tls}

    def _client_tls_files(self) -> TlsFiles | None:
        """How this stack's clients speak TLS: the CA, and the local client certificate when the server asks for
        one (only with the local CA: a given Secret's CA cannot sign one here)."""
        if not self.tls_enabled:
            return None
        tls = self.full_values["valkey"]["tls"]
        ca = self.local_ca
        if ca:
            cert, key = ca.client_pair() if tls["authClients"] != "no" else (None, None)
            return TlsFiles(ca=ca.cert, cert=cert, key=key)
        folder = self.state_dir / "tls"
        folder.mkdir(mode=0o700, exist_ok=True)
        (folder / "ca.crt").write_bytes(self._given_tls[tls["caKey"]])
        return TlsFiles(ca=folder / "ca.crt")

    def update_secret(self, name: str, data: dict[str, bytes]) -> None:
        """Change a Secret and sync it into every running pod's volumes the kubelet's way (a new timestamped
        folder, then one rename of the ..data link), as a renewal by cert-manager reaches the pods."""
        self.cluster.objects.external_secrets[name] = dict(data)
        for pod in list(self.cluster.pods.values()):
            pod.volumes.update_secret(name)

    def renew_certificate(self, *, days: int | None = None) -> dict[str, bytes]:
        """Issue the rendered Certificate anew (a new key and serial, same names) and sync it into the pods, as
        cert-manager's renewal would; returns the new Secret data."""
        if not self.local_ca:
            raise StackError("no Certificate is issued by the local stack (valkey.tls with an existingSecret?)")
        [certificate] = self.manifests.of_kind("Certificate")
        data = self.local_ca.issue(certificate, days=days)
        self.update_secret(certificate["spec"]["secretName"], data)
        return data

    def _pod_infos(self) -> list[PodInfo]:
        return [PodInfo(name=p.name, namespace=p.namespace, ip=p.ip, labels=p.labels, containers=p.spec["containers"])
                for p in list(self.cluster.pods.values()) if p.ip and not p.terminating]

    def _addresses_changed(self) -> None:
        if self.monitoring:
            self.monitoring.set_pods(self._pod_infos())

    def _start_monitoring(self) -> None:
        self.monitoring = Monitoring(self.manifests, self._pod_infos(), self.state_dir, self.monitoring_options,
                                     tls_files=self.tls_files,
                                     hosts_text=lambda: self.cluster.namespace_hosts_text(self.namespace))
        self.monitoring.start()

    def _dns_changed(self) -> None:
        if self.monitoring:
            self.monitoring.write_hosts()

    def _await_first_scrape(self) -> None:
        """Until Prometheus has scraped the exporter (new targets reach the scrapers every 5 s, then the first
        scrape comes within one interval); records the target and the loaded rules for stack.json."""
        summary: dict = {"rules": len(self.prometheus.rules()), "notes": self.monitoring.notes}
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
        spec = self.cluster.plans[0].spec if self.cluster else self.manifests.of_kind("StatefulSet")[0]["spec"][
            "template"]["spec"]
        for c in spec["containers"]:
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
        spec = self.cluster.plans[0].spec if self.cluster else {}
        for vol in spec.get("volumes", []):
            if "secret" in vol:
                return vol["secret"]["secretName"]
        raise StackError("the pod mounts no Secret")

    @property
    def secret_dir(self) -> Path:
        """The primary pod's Secret volume folder (every pod has its own copy)."""
        return self.cluster.pod_dir(self.primary_name) / "secrets" / self.secret_name

    def processes(self) -> dict[str, int]:
        out = {"supervisor": os.getpid()}
        if self.cluster:
            for pod in list(self.cluster.pods.values()):
                if pod.kubelet:
                    prefix = "" if self.cluster.single else f"{pod.name}/"
                    out.update({prefix + n: c.pid for n, c in pod.kubelet.containers.items() if c.pid})
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
                    "supervisor": proc_record(os.getpid()), "started_at": self.started_at,
                    "control": str(self.state_dir / control.CONTROL_DIR) if self._control else None}
            if error:
                data["error"] = error
            if self.monitoring_summary:
                data["monitoring"] = self.monitoring_summary
            if self.cluster and self.cluster.started:
                data.update(self.cluster.snapshot())
                pod = self.pod
                if pod:
                    data["pod"] = pod.snapshot()  # the primary pod, as the single-pod API knows it
                data["processes"] = [{"name": n, **proc_record(pid)} for n, pid in self.processes().items()
                                     if n != "supervisor"]
                data["secrets"] = self._secrets_info()
                if self.credentials.tls:
                    data["tls"] = self.credentials.tls.as_dict()
                data["prometheus"], data["alertmanager"] = self.prometheus_url, self.alertmanager_url
                data["server"] = {"container": SERVER_CONTAINER, "port": self.port,
                                  "auth_user": self.credentials.admin_user,
                                  "auth_password_file": str(self.credentials.password_file("admin"))}
                if pod and pod.ip:
                    data["endpoints"] = self.endpoints()
            write_json(self.state_dir / STATE_FILE, data)

    def _secrets_info(self) -> dict:
        """Where each pod's Secret files are (never their content)."""
        try:
            name = self.secret_name
        except StackError:
            return {}
        pods = list(self.cluster.pods)
        return {"name": name, "dir": str(self.secret_dir), "keys": self.users,
                "pods": {p: str(self.cluster.pod_dir(p) / "secrets" / name) for p in pods}}

    def endpoints(self) -> dict:
        out = {"server": f"{self.service_host}:{self.port}", "service": self.client_service,
               "pod_server": f"{self.pod_ip}:{self.port}"}
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

    # -- control requests (`alert-history-cache fault`, served while `up` runs) ---------------------------
    def handle_control(self, request: dict) -> dict:
        if request.get("action") == "exec":  # changes nothing: need not wait behind a fault or a restore
            args = request.get("args") or {}
            return self.exec_plan(args["pod"], args.get("container"), list(args["argv"]))
        with self._control_lock:  # one fault at a time
            return self._handle_control(request)

    def exec_plan(self, pod: str, container: str | None, argv: list[str]) -> dict:
        """How to run `argv` in a running container as `kubectl exec` does (its namespaces, root, user, env):
        the same entry the probes use (Container.exec_argv). `alert-history-cache exec` runs it with its own
        stdin/stdout/stderr; the default container is the pod's first, as kubectl's."""
        p = self.cluster.pod(pod)
        name = container or p.spec["containers"][0]["name"]
        c = p.container(name)
        if not c.running:
            raise StackError(f"container {name} of pod {pod} is not running (restarting or stopped): "
                             f"see `alert-history-cache status --state-dir {self.state_dir}`")
        return {"pod": pod, "container": name, "argv": c.exec_argv(argv), "env": c.spec.env}

    def _handle_control(self, request: dict) -> dict:
        action, args = request.get("action"), request.get("args") or {}
        c = self.cluster
        if action == "kill":
            result = c.kill(args["pod"], args.get("container"), int(args.get("signal", signal.SIGKILL)))
        elif action == "delete":
            result = c.delete_pod(args["pod"], force=bool(args.get("force")))
        elif action == "partition":
            result = c.partition(args["pod"], args.get("peers"))
        elif action == "freeze":
            result = c.freeze(args["pod"])
        elif action == "heal":
            result = {"healed": c.heal(args.get("pod"))}
        elif action == "fill-disk":
            result = c.fill_disk(args["pod"], args.get("claim"), int(args.get("leave") or 0))
        elif action == "free-disk":
            result = c.free_disk(args["pod"], args.get("claim"))
        elif action == "run-job":
            result = self.run_job(args.get("cronjob"))
        elif action == "restore":
            result = self.restore(Path(args["file"]))
        else:
            raise StackError(f"unknown control action {action!r}")
        self._write_state()
        return result

    # -- Jobs (`alert-history-cache backup`) ----------------------------------------------------------
    def run_job(self, cronjob: str | None = None) -> dict:
        """One run of the release's CronJob (the backup): its pod's exit codes, and the host paths of the files
        its container printed (the last line of its log, a path in the pod, mapped to the PVC folder)."""
        result = self.cluster.run_job(cronjob)
        pod = cronjob_pod_spec(self.manifests, result["cronjob"])
        mounts = {m["mountPath"]: result["volumes"][m["name"]]
                  for c in [*pod.get("initContainers", []), *pod["containers"]]
                  for m in c.get("volumeMounts", []) if m["name"] in result["volumes"]}
        written = []
        for log in result["logs"].values():
            lines = [line for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
            last = lines[-1].strip() if lines else ""
            for mount_path, host in mounts.items():
                if last.startswith(mount_path.rstrip("/") + "/"):
                    written.append(str(Path(host) / last[len(mount_path.rstrip("/")) + 1:]))
        result["files"] = written
        # Every container ran (an init container's failure leaves the rest at None) and exited 0.
        result["succeeded"] = all(code == 0 for code in result["exit_codes"].values())
        return result

    def restore(self, backup: Path) -> dict:
        """Restore an RDB backup into the running release (restore.py: the documented procedure)."""
        from .restore import restore

        return restore(self, backup)

    # -- API: addresses, users, clients ---------------------------------------------------------------
    @property
    def primary_name(self) -> str:
        return self.cluster.plans[0].name

    @property
    def pod(self) -> LocalPod | None:
        """The release's first pod (`<sts>-0`)."""
        return self.cluster.pods.get(self.primary_name) if self.cluster else None

    @property
    def pod_ip(self) -> str:
        """The first pod's own address (changes when the pod is recreated)."""
        return self.pod.ip

    @property
    def client_service(self) -> str:
        """The Service the application dials: the one named after the StatefulSet, else the first ClusterIP
        Service with the server's port."""
        sts = self.cluster.plans[0].owner
        candidates = [s for s in self.cluster.services if not s.headless]
        for s in candidates:
            if s.name == sts:
                return s.name
        for s in candidates:
            if any(p.port == self.port for p in s.ports):
                return s.name
        raise StackError("the release renders no client Service")

    @property
    def service_host(self) -> str:
        """The client Service's ClusterIP: the address the application uses."""
        return self.cluster.service(self.client_service).cluster_ip

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
    def prometheus(self) -> Prometheus:
        if not self.prometheus_url:
            raise StackError("monitoring is not running (monitoring.prometheusEnabled false or --no-monitoring)")
        return Prometheus(self.prometheus_url)

    @property
    def server_log_path(self) -> Path:
        return self.log_path(SERVER_CONTAINER)

    def log_path(self, container: str, pod: str | None = None) -> Path:
        return self.cluster.log_path(pod or self.primary_name, container)

    @property
    def data_dir(self) -> Path:
        """The first pod's persistent volume, mounted at /data in the server container."""
        return self.pod.volumes.claim_path("data")

    @property
    def users(self) -> dict[str, str]:
        """ACL user -> key of its password in the Secret."""
        return Credentials(self.full_values, Path()).users

    def _user(self, user: str) -> str:
        try:
            return self.credentials.user(user)
        except CredentialsError as exc:
            raise StackError(str(exc)) from None

    def password(self, key: str) -> str:
        """A key of the pod's Secret (as written to STATE/secrets/<name>/<key>)."""
        return self.credentials.password(key)

    def user_password(self, user: str) -> str:
        return self.credentials.user_password(self._user(user))

    def client(self, user: str = "default", *, pod: str | None = None, **kwargs) -> redis.Redis:
        """redis-py client through the client Service's ClusterIP (or at one pod's own address with `pod`).
        `default` (alias `app`) sends AUTH <password> only, like alert-history; other users (`admin`,
        `exporter`, the named application user) send a username."""
        host = self.cluster.pod(pod).ip if pod else self.service_host
        return self.credentials.client(host, self.port, self._user(user), **kwargs)

    def cli_argv(self, user: str = "default") -> list[str]:
        """valkey-cli/redis-cli of this engine, at the client Service; pair with cli_env() for the password."""
        return self.credentials.cli_argv(self.engine.cli, self.service_host, self.port, self._user(user))

    def cli_env(self, user: str = "default") -> dict[str, str]:
        return self.credentials.cli_env(self._user(user))

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
        """Delete the first pod: SIGTERM and the grace period (or `sig`, e.g. SIGKILL, sent to the server
        first), the emptyDirs emptied, its address gone. The volume and state dir stay; create_pod() brings up
        its successor (at a new address)."""
        self._disrupted_at = time.monotonic()
        result = self.cluster.delete_pod(self.primary_name, recreate=False,
                                         signals={SERVER_CONTAINER: sig} if sig != signal.SIGTERM else None)
        self._write_state()
        return result["exit_codes"]

    def create_pod(self) -> None:
        """The StatefulSet's replacement pod: a new address, init containers again, then the containers."""
        self.cluster.create_pod(self.primary_name)
        self._write_state()

    def restart_server(self, sig: int = signal.SIGTERM) -> dict:
        """delete_pod(sig) + create_pod(); measure recovery with wait_ready()."""
        codes = self.delete_pod(sig)
        self.create_pod()
        return codes

    def wait_ready(self, timeout: float = 60, *, since: float | None = None, what: str = "recovery") -> float:
        """Wait until the first pod is ready again (the rendered readiness probe passed, after the last
        disruption) and serves behind its Services; return the seconds from that disruption (or `since`, a
        time.monotonic()) to readiness."""
        start = since if since is not None else (self._disrupted_at or time.monotonic())

        def ready_at() -> float | None:
            pod = self.pod
            if what == "start" and pod:
                self.cluster._raise_if_crash_looping(pod)
            kubelet = pod.kubelet if pod else None
            if kubelet and pod.ready:
                for at, ready in reversed(kubelet.ready_transitions):
                    if at < start:
                        break
                    if ready:
                        return at
            return None

        try:
            at = wait_until(ready_at, timeout, f"pod {self.primary_name} ready after the {what}", interval=0.02)
            self.cluster.sync()
        except TimeoutError:
            raise TimeoutError(f"pod not ready {timeout:.0f}s after the {what}; see {self.state_dir / 'logs'} and "
                               f"`alert-history-cache status --state-dir {self.state_dir}`\n{self._probe_summary()}") \
                from None
        return at - start

    def _probe_summary(self) -> str:
        lines = []
        for pod in (list(self.cluster.pods.values()) if self.cluster else []):
            for name, st in (pod.kubelet.status.items() if pod.kubelet else []):
                for kind, p in st.probes.items():
                    lines.append(f"  {pod.name} {name} {kind}: {p.result} ({p.runs} runs) {p.last_output[:200]}")
        return "\n".join(lines)

    def status(self) -> dict:
        """What `alert-history-cache status --json` shows (without the live replication roles)."""
        if self.cluster:
            self._write_state()
        return read_state(self.state_dir)

    # -- API: monitoring ------------------------------------------------------------------------------
    def prometheus_api(self, path: str, **params) -> dict:
        """GET Prometheus' HTTP API (e.g. "query", query="redis_up") and return its `data`."""
        return self.prometheus.api(path, **params)

    def query(self, promql: str) -> list[dict]:
        """Instant query; the result vector."""
        return self.prometheus.query(promql)

    def wait_target_up(self, timeout: float = 30, pod: str | None = None) -> dict:
        """Wait until Prometheus has scraped the exporter of the first pod (or `pod`) successfully; returns
        that active target."""
        return self.prometheus.wait_target_up(pod or self.primary_name, timeout)

    def alertmanager_alerts(self) -> list[dict]:
        """Alerts Alertmanager has received (API v2)."""
        if not self.alertmanager_url:
            raise StackError("monitoring is not running (monitoring.prometheusEnabled false or --no-monitoring)")
        return Alertmanager(self.alertmanager_url).alerts()

    @property
    def events(self) -> list[dict]:
        pod = self.pod
        return list(pod.kubelet.events) if pod and pod.kubelet else []

    def versions(self) -> dict:
        out = {"engine": self.engine_name, "server": f"{self.engine.title} {self.engine.version}",
               "exporter": engines.EXPORTER.version if engines.EXPORTER.path.exists() else None}
        if self.monitoring:
            out["prometheus"] = engines.PROMETHEUS.version
            out["alertmanager"] = engines.ALERTMANAGER.version
        return out
