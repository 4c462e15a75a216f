"""Prometheus and Alertmanager for the local cluster, configured from the rendered monitoring objects.

The ServiceMonitor becomes the scrape job the Prometheus Operator would generate for it: job name
`serviceMonitor/<ns>/<name>/<i>`, the endpoint's interval, scrapeTimeout, path and scheme, and the operator's
relabelings (Service selector, port name, namespace, service, pod, container, job, endpoint) followed by the
ServiceMonitor's own relabelings and metricRelabelings. Kubernetes service discovery is replaced by a static
target per endpoint (each pod a selected Service picks) carrying the `__meta_kubernetes_*` labels discovery
would set (pod name and address, port, node = this machine's hostname), so every pod is a target with its
own `pod` label and everything after discovery runs in Prometheus exactly as in a cluster. When pods come,
go or change address, the config is rewritten and Prometheus reloaded. Each PrometheusRule's groups become a
rule file. Both programs listen on 127.0.0.1 only.

A Probe (valkey.tls.expiryProbe) becomes the operator's probe job `probe/<ns>/<name>` for a blackbox exporter
the local stack runs on 127.0.0.1 in place of the Probe's prober URL: its module is a `tcp` prober with TLS
and the stack's CA (and client pair), as docs/security.md tells users to configure theirs. The exporter runs in
a mount namespace of its own with a hosts file of the cluster's names bind-mounted over /etc/hosts, so it dials
the Probe's targets by the pod names their certificates carry."""

from __future__ import annotations

import re
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import port_for
import yaml
from mirakuru import HTTPExecutor

from . import engines
from .credentials import TlsFiles
from .hosts import write_in_place
from .kube import container_port, selector_matches
from .promapi import Prometheus
from .units import duration_seconds

_RELABEL_KEYS = {"sourceLabels": "source_labels", "targetLabel": "target_label", "separator": "separator",
                 "regex": "regex", "modulus": "modulus", "replacement": "replacement", "action": "action"}


def sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def relabel(rules: list[dict] | None) -> list[dict]:
    """ServiceMonitor (camelCase) relabelings -> Prometheus relabel_configs, like the operator writes them."""
    out = []
    for r in rules or []:
        item = {_RELABEL_KEYS[k]: v for k, v in r.items() if k in _RELABEL_KEYS}
        if "action" in item:
            item["action"] = str(item["action"]).lower()
        out.append(item)
    return out


@dataclass
class PodInfo:
    name: str
    namespace: str
    ip: str
    labels: dict
    containers: list[dict]


@dataclass
class MonitoringOptions:
    evaluation_interval: str = "30s"  # the operator's default
    scrape_interval: str = "30s"  # the operator's default for endpoints without an interval
    resend_delay: str | None = None  # Prometheus --rules.alert.resend-delay (default 1m); lower it in tests
    alertmanager_config: dict | None = None  # default: one receiver without notifications
    extra_prometheus_args: list[str] = field(default_factory=list)


class Monitoring:
    def __init__(self, manifests, pods: list[PodInfo], state: Path, options: MonitoringOptions | None = None,
                 *, tls_files: TlsFiles | None = None, hosts_text: Callable[[], str] | None = None):
        self.manifests = manifests
        self.tls_files = tls_files  # what the blackbox module trusts and presents
        self.hosts_text = hosts_text  # the cluster's names, for the blackbox exporter's /etc/hosts
        self.pods = list(pods)
        self.namespace = self.pods[0].namespace if self.pods else "default"
        self.dir = state / "monitoring"
        self.logs = state / "logs"
        self.options = options or MonitoringOptions()
        self.notes: list[str] = []
        self.prometheus: HTTPExecutor | None = None
        self.alertmanager: HTTPExecutor | None = None
        self.blackbox: HTTPExecutor | None = None
        self.blackbox_port: int | None = None
        self.prometheus_port: int | None = None
        self.alertmanager_port: int | None = None
        self._logs = []

    # -- configuration --------------------------------------------------------------------------------
    def _service_targets(self, sm: dict, endpoint: dict) -> list[dict]:
        ns_sel = sm["spec"].get("namespaceSelector", {})
        sm_ns = sm["metadata"].get("namespace", self.namespace)
        if not ns_sel.get("any") and self.namespace not in ns_sel.get("matchNames", [sm_ns]):
            note = (f"ServiceMonitor {sm['metadata']['name']}: namespaceSelector excludes namespace "
                    f"{self.namespace}: no target (as in a cluster)")
            if note not in self.notes:
                self.notes.append(note)
            return []
        return [t for pod in self.pods for t in self._pod_targets(pod, endpoint)]

    def _pod_targets(self, pod: PodInfo, endpoint: dict) -> list[dict]:
        """The endpoints SD targets of one pod: one per selecting Service and matching port."""
        targets = []
        for svc in self.manifests.of_kind("Service"):
            if not selector_matches(svc["spec"].get("selector"), pod.labels):
                continue  # no endpoints on this pod
            for sp in svc["spec"].get("ports", []):
                if "port" in endpoint and sp.get("name") != endpoint["port"]:
                    continue
                if "targetPort" in endpoint and str(sp.get("targetPort")) != str(endpoint["targetPort"]):
                    continue
                target_port = sp.get("targetPort", sp["port"])
                container, number = self._container_port(pod, target_port)
                if container is None:
                    continue
                labels = {
                    "__meta_kubernetes_namespace": pod.namespace,
                    "__meta_kubernetes_service_name": svc["metadata"]["name"],
                    "__meta_kubernetes_endpoint_port_name": sp.get("name", ""),
                    "__meta_kubernetes_endpoint_port_protocol": sp.get("protocol", "TCP"),
                    "__meta_kubernetes_endpoint_ready": "true",
                    "__meta_kubernetes_endpoint_address_target_kind": "Pod",
                    "__meta_kubernetes_endpoint_address_target_name": pod.name,
                    "__meta_kubernetes_pod_name": pod.name,
                    "__meta_kubernetes_pod_ip": pod.ip,
                    "__meta_kubernetes_pod_ready": "true",
                    "__meta_kubernetes_pod_phase": "Running",
                    "__meta_kubernetes_pod_node_name": socket.gethostname(),
                    "__meta_kubernetes_pod_host_ip": pod.ip,
                    "__meta_kubernetes_pod_container_name": container["name"],
                    "__meta_kubernetes_pod_container_port_name": _port_name(container, number),
                    "__meta_kubernetes_pod_container_port_number": str(number),
                    "__meta_kubernetes_pod_container_port_protocol": "TCP",
                }
                for kind, meta in (("service", svc["metadata"]), ("pod", {"labels": pod.labels})):
                    for k, v in (meta.get("labels") or {}).items():
                        labels[f"__meta_kubernetes_{kind}_label_{sanitize(k)}"] = str(v)
                        labels[f"__meta_kubernetes_{kind}_labelpresent_{sanitize(k)}"] = "true"
                    for k, v in (meta.get("annotations") or {}).items():
                        labels[f"__meta_kubernetes_{kind}_annotation_{sanitize(k)}"] = str(v)
                        labels[f"__meta_kubernetes_{kind}_annotationpresent_{sanitize(k)}"] = "true"
                targets.append({"targets": [f"{pod.ip}:{number}"], "labels": labels})
        return targets

    def _container_port(self, pod: PodInfo, target_port) -> tuple[dict | None, int | None]:
        for c in pod.containers:
            try:
                number = container_port(c, target_port)
            except ValueError:
                continue
            if any(int(p["containerPort"]) == number for p in c.get("ports", [])):
                return c, number
        return None, None

    def _operator_relabels(self, sm: dict, endpoint: dict) -> list[dict]:
        spec = sm["spec"]
        rules: list[dict] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
        for k, v in (spec.get("selector", {}).get("matchLabels") or {}).items():
            rules.append({"action": "keep", "source_labels": [f"__meta_kubernetes_service_label_{sanitize(k)}",
                          f"__meta_kubernetes_service_labelpresent_{sanitize(k)}"], "regex": f"({v});true"})
        for expr in spec.get("selector", {}).get("matchExpressions") or []:
            k = sanitize(expr["key"])
            if expr["operator"] == "In":
                rules.append({"action": "keep", "source_labels": [f"__meta_kubernetes_service_label_{k}",
                              f"__meta_kubernetes_service_labelpresent_{k}"],
                              "regex": f"({'|'.join(expr['values'])});true"})
            elif expr["operator"] == "NotIn":
                rules.append({"action": "drop", "source_labels": [f"__meta_kubernetes_service_label_{k}",
                              f"__meta_kubernetes_service_labelpresent_{k}"],
                              "regex": f"({'|'.join(expr['values'])});true"})
            elif expr["operator"] == "Exists":
                rules.append({"action": "keep", "source_labels": [f"__meta_kubernetes_service_labelpresent_{k}"],
                              "regex": "true"})
            elif expr["operator"] == "DoesNotExist":
                rules.append({"action": "drop", "source_labels": [f"__meta_kubernetes_service_labelpresent_{k}"],
                              "regex": "true"})
        if "port" in endpoint:
            rules.append({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                          "regex": endpoint["port"]})
        for kind in ("Node", "Pod"):
            rules.append({"source_labels": ["__meta_kubernetes_endpoint_address_target_kind",
                                            "__meta_kubernetes_endpoint_address_target_name"],
                          "separator": ";", "regex": f"{kind};(.*)", "replacement": "${1}",
                          "target_label": kind.lower()})
        rules += [
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
        ]
        for label in spec.get("targetLabels") or []:
            rules.append({"source_labels": [f"__meta_kubernetes_service_label_{sanitize(label)}"],
                          "target_label": sanitize(label), "regex": "(.+)", "replacement": "${1}"})
        for label in spec.get("podTargetLabels") or []:
            rules.append({"source_labels": [f"__meta_kubernetes_pod_label_{sanitize(label)}"],
                          "target_label": sanitize(label), "regex": "(.+)", "replacement": "${1}"})
        rules.append({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job",
                      "replacement": "${1}"})
        if spec.get("jobLabel"):
            rules.append({"source_labels": [f"__meta_kubernetes_service_label_{sanitize(spec['jobLabel'])}"],
                          "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
        rules.append({"target_label": "endpoint", "replacement": str(endpoint.get("port", endpoint.get("targetPort")))})
        rules += relabel(endpoint.get("relabelings"))
        return rules

    def scrape_configs(self) -> list[dict]:
        jobs = []
        monitors = self.manifests.of_kind("ServiceMonitor")
        note = "the chart rendered no ServiceMonitor: Prometheus has no scrape job for the exporter"
        if not monitors and note not in self.notes:
            self.notes.append(note)
        for sm in monitors:
            ns = sm["metadata"].get("namespace", self.namespace)
            for i, ep in enumerate(sm["spec"].get("endpoints", [])):
                job = {
                    "job_name": f"serviceMonitor/{ns}/{sm['metadata']['name']}/{i}",
                    "honor_labels": bool(ep.get("honorLabels", False)),
                    "scrape_interval": ep.get("interval", self.options.scrape_interval),
                    "metrics_path": ep.get("path", "/metrics"),
                    "scheme": ep.get("scheme", "http"),
                    "static_configs": self._service_targets(sm, ep),
                    "relabel_configs": self._operator_relabels(sm, ep),
                }
                if ep.get("scrapeTimeout"):
                    job["scrape_timeout"] = ep["scrapeTimeout"]
                if ep.get("params"):
                    job["params"] = ep["params"]
                if ep.get("metricRelabelings"):
                    job["metric_relabel_configs"] = relabel(ep["metricRelabelings"])
                if sm["spec"].get("sampleLimit"):
                    job["sample_limit"] = sm["spec"]["sampleLimit"]
                jobs.append(job)
        return jobs

    # -- Probe (blackbox exporter) ------------------------------------------------------------------------
    def probe_configs(self) -> list[dict]:
        """Each Probe with static targets as the operator's scrape job; the prober is the local blackbox exporter."""
        jobs = []
        for probe in self.manifests.of_kind("Probe"):
            spec, ns = probe["spec"], probe["metadata"].get("namespace", self.namespace)
            static = spec["targets"]["staticConfig"]
            prober = spec["prober"]
            rules: list[dict] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
            if spec.get("jobName"):
                rules.append({"target_label": "job", "replacement": spec["jobName"]})
            rules += [{"source_labels": ["__address__"], "target_label": "__param_target"},
                      {"source_labels": ["__param_target"], "target_label": "instance"},
                      {"target_label": "__address__", "replacement": f"127.0.0.1:{self.blackbox_port}"}]
            rules += relabel(static.get("relabelingConfigs"))
            job = {"job_name": f"probe/{ns}/{probe['metadata']['name']}", "honor_timestamps": True,
                   "metrics_path": prober.get("path", "/probe"), "scheme": prober.get("scheme", "http"),
                   "scrape_interval": spec.get("interval", self.options.scrape_interval),
                   "static_configs": [{"targets": static.get("static", []),
                                       "labels": {"namespace": ns, **(static.get("labels") or {})}}],
                   "relabel_configs": rules}
            if spec.get("scrapeTimeout"):
                job["scrape_timeout"] = spec["scrapeTimeout"]
            if spec.get("module"):
                job["params"] = {"module": [spec["module"]]}
            jobs.append(job)
        return jobs

    def blackbox_config(self) -> dict:
        """The module each Probe names: a TCP connect with a verified TLS handshake, as docs/security.md says."""
        modules = {}
        for probe in self.manifests.of_kind("Probe"):
            tls_config: dict = {"ca_file": str(self.tls_files.ca)} if self.tls_files else {}
            if self.tls_files and self.tls_files.cert:
                tls_config.update(cert_file=str(self.tls_files.cert), key_file=str(self.tls_files.key))
            modules[probe["spec"].get("module", "tcp_tls")] = {
                "prober": "tcp", "tcp": {"preferred_ip_protocol": "ip4", "tls": True, "tls_config": tls_config}}
        return {"modules": modules}

    def write_hosts(self) -> None:
        """The blackbox exporter's /etc/hosts, rewritten in place (it is bind-mounted) when DNS records change."""
        if self.hosts_text:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_in_place(self.dir / "hosts", self.hosts_text())

    def rule_files(self) -> list[Path]:
        rules_dir = self.dir / "rules"
        rules_dir.mkdir(parents=True, exist_ok=True)
        for old in rules_dir.glob("*.yaml"):
            old.unlink()
        files = []
        rules = self.manifests.of_kind("PrometheusRule")
        note = "the chart rendered no PrometheusRule: Prometheus runs without alerting rules"
        if not rules and note not in self.notes:
            self.notes.append(note)
        for pr in rules:
            path = rules_dir / f"{pr['metadata'].get('namespace', 'default')}-{pr['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump({"groups": pr["spec"].get("groups", [])}, sort_keys=False))
            files.append(path)
        return files

    def prometheus_config(self) -> dict:
        return {
            "global": {"scrape_interval": self.options.scrape_interval,
                       "evaluation_interval": self.options.evaluation_interval},
            "rule_files": [str(p) for p in self.rule_files()],
            "alerting": {"alertmanagers": [{"api_version": "v2",
                                            "static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}]},
            "scrape_configs": self.scrape_configs() + self.probe_configs(),
        }

    def alertmanager_config(self) -> dict:
        return self.options.alertmanager_config or {
            "route": {"receiver": "default", "group_by": ["alertname", "namespace", "pod"]},
            "receivers": [{"name": "default"}],
        }

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def prometheus_url(self) -> str | None:
        return f"http://127.0.0.1:{self.prometheus_port}" if self.prometheus_port else None

    @property
    def alertmanager_url(self) -> str | None:
        return f"http://127.0.0.1:{self.alertmanager_port}" if self.alertmanager_port else None

    def _log(self, name: str):
        self.logs.mkdir(parents=True, exist_ok=True)
        f = open(self.logs / f"{name}.log", "ab", buffering=0)
        self._logs.append(f)
        return f

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        am_bin, prom_bin = engines.ALERTMANAGER.binary, engines.PROMETHEUS.binary
        self.alertmanager_port = port_for.select_random()
        self.prometheus_port = port_for.select_random(exclude_ports=[self.alertmanager_port])
        if self.manifests.of_kind("Probe"):
            self.blackbox_port = port_for.select_random(exclude_ports=[self.alertmanager_port, self.prometheus_port])
        (self.dir / "alertmanager.yml").write_text(yaml.safe_dump(self.alertmanager_config(), sort_keys=False))
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self.prometheus_config(), sort_keys=False))
        self.alertmanager = HTTPExecutor(
            [str(am_bin), f"--config.file={self.dir / 'alertmanager.yml'}",
             f"--storage.path={self.dir / 'alertmanager-data'}",
             f"--web.listen-address=127.0.0.1:{self.alertmanager_port}", "--cluster.listen-address="],
            url=f"{self.alertmanager_url}/-/ready", method="GET", timeout=60,
            stdout=self._log("alertmanager"), stderr=subprocess.STDOUT)
        self.alertmanager.start()
        if self.manifests.of_kind("Probe"):
            self._start_blackbox()
        args = [str(prom_bin), f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}", "--web.enable-lifecycle"]
        if self.options.resend_delay:
            args.append(f"--rules.alert.resend-delay={self.options.resend_delay}")
        args += self.options.extra_prometheus_args
        self.prometheus = HTTPExecutor(args, url=f"{self.prometheus_url}/-/ready", method="GET", timeout=60,
                                       stdout=self._log("prometheus"), stderr=subprocess.STDOUT)
        self.prometheus.start()

    def _start_blackbox(self) -> None:
        (self.dir / "blackbox.yml").write_text(yaml.safe_dump(self.blackbox_config(), sort_keys=False))
        self.write_hosts()
        hosts_file = self.dir / "hosts"
        if not hosts_file.exists():
            hosts_file.write_text("127.0.0.1\tlocalhost\n")
        # Its own mount namespace, where the cluster's hosts file is /etc/hosts; the host's stays untouched.
        argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                'mount --bind -o ro "$0" /etc/hosts && exec "$@"', str(hosts_file),
                str(engines.BLACKBOX.binary), f"--config.file={self.dir / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{self.blackbox_port}"]
        self.blackbox = HTTPExecutor(argv, url=f"http://127.0.0.1:{self.blackbox_port}/-/healthy", method="GET",
                                     timeout=60, stdout=self._log("blackbox-exporter"), stderr=subprocess.STDOUT)
        self.blackbox.start()

    def set_pods(self, pods: list[PodInfo]) -> None:
        """The pods behind the Services changed (a pod deleted, recreated with a new address): a deleted pod
        leaves the Endpoints, so service discovery drops its targets (and `up` goes stale rather than 0), its
        successor brings them back at its new address. Rewrites the config and reloads Prometheus."""
        if [(p.name, p.ip) for p in pods] == [(p.name, p.ip) for p in self.pods]:
            return
        self.pods = list(pods)
        if not self.prometheus:
            return
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self.prometheus_config(), sort_keys=False))
        Prometheus(self.prometheus_url).reload()

    def longest_scrape_interval(self) -> float:
        jobs = self.scrape_configs()
        return max((duration_seconds(j["scrape_interval"]) for j in jobs), default=0.0)

    def pids(self) -> dict[str, int]:
        return {name: ex.process.pid for name, ex in (("prometheus", self.prometheus),
                                                        ("alertmanager", self.alertmanager),
                                                        ("blackbox-exporter", self.blackbox))
                if ex is not None and ex.process is not None}

    def stop(self) -> None:
        for ex in (self.prometheus, self.alertmanager, self.blackbox):  # SIGTERM, SIGKILL after the 60 s timeout
            if ex is not None and ex.running():
                try:
                    ex.stop()
                except Exception:  # noqa: BLE001 - a non-zero exit on shutdown must not block the rest
                    ex.kill()
        for f in self._logs:
            f.close()
        self._logs.clear()


def _port_name(container: dict, number: int) -> str:
    for p in container.get("ports", []):
        if int(p["containerPort"]) == number:
            return p.get("name", "")
    return ""
