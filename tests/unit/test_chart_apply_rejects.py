"""Values that Kubernetes itself would refuse at apply time are refused at render time, naming the key.

One row per input: the values, the key that the error must name (a JSON pointer for schema errors, a dotted
key for validateValues), and what Kubernetes would do with the rendered object. The "restricted" rows are
what the Pod Security admission controller refuses in a namespace that enforces the restricted standard.
"""

from __future__ import annotations

import pytest

from alert_history_cache import chart

SC = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def sidecar(**extra) -> dict:
    return {"valkey": {"sidecars": [{"name": "side", "image": "busybox:1.36", "securityContext": dict(SC), **extra}]}}


def valkey(**values) -> dict:
    return {"valkey": values}


# (id, values, key named in the error, why Kubernetes refuses the rendered object)
ROWS = [
    # --- quantities
    ("storage-zero", valkey(storage={"requestedSize": "0"}), "valkey.storage.requestedSize",
     "PVC: spec.resources.requests[storage] must be greater than zero"),
    ("storage-zero-gi", valkey(storage={"requestedSize": "0Gi"}), "valkey.storage.requestedSize",
     "PVC: a zero request in any unit"),
    ("storage-zero-decimal", valkey(storage={"requestedSize": "0.0"}), "valkey.storage.requestedSize",
     "PVC: a zero request written as a decimal"),
    ("storage-not-a-quantity", valkey(storage={"requestedSize": "5 GB"}), "/valkey/storage/requestedSize",
     "quantities must match the regular expression of resource.Quantity"),
    ("memory-request-above-limit", valkey(resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}),
     "valkey.resources.requests.memory", "requests must be less than or equal to the limit"),
    ("cpu-request-above-limit", valkey(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}),
     "valkey.resources.requests.cpu", "requests must be less than or equal to the limit"),
    ("exporter-cpu-request-above-limit",
     valkey(exporter={"resources": {"requests": {"cpu": "0.5"}, "limits": {"cpu": "100m"}}}),
     "valkey.exporter.resources.requests.cpu", "requests must be less than or equal to the limit"),
    ("config-init-memory-request-above-limit",
     valkey(configInit={"resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "32Mi"}}}),
     "valkey.configInit.resources.requests.memory", "requests must be less than or equal to the limit"),
    ("cpu-not-a-quantity", valkey(resources={"requests": {"cpu": "lots"}}), "/valkey/resources/requests/cpu",
     "quantities must match the regular expression of resource.Quantity"),
    ("memory-unit-unknown", valkey(resources={"limits": {"memory": "1Gb"}}), "/valkey/resources/limits/memory",
     "Gb is no Kubernetes suffix"),
    ("emptydir-size-in-sidecar-mount-volume-unknown",
     valkey(extraVolumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}, "secret": {"secretName": "x"}}]),
     "/valkey/extraVolumes/0", "a volume has exactly one source"),
    # --- names
    ("fullname-override-over-63", {"fullnameOverride": "f" * 64}, "/fullnameOverride",
     "object names are DNS labels of at most 63 characters"),
    ("fullname-override-leading-digit", {"fullnameOverride": "1cache"}, "/fullnameOverride",
     "Service names are DNS-1035 labels: they start with a letter"),
    ("fullname-override-uppercase", {"fullnameOverride": "Cache"}, "/fullnameOverride",
     "object names are lower case"),
    ("name-override-with-dot", {"nameOverride": "alert.history"}, "/nameOverride",
     "the name goes into DNS-1035 Service names"),
    ("existing-secret-name-invalid", valkey(password={"existingSecret": "My_Secret"}),
     "/valkey/password/existingSecret", "a Secret name is a DNS-1123 subdomain"),
    ("service-account-name-invalid", valkey(serviceAccount={"name": "Cache Account"}), "/valkey/serviceAccount/name",
     "a ServiceAccount name is a DNS-1123 subdomain"),
    ("storage-class-invalid", valkey(storage={"className": "Fast SSD"}), "/valkey/storage/className",
     "storageClassName is a DNS-1123 subdomain"),
    ("priority-class-invalid", valkey(priorityClassName="High"), "/valkey/priorityClassName",
     "priorityClassName is a DNS-1123 subdomain"),
    ("image-pull-secret-invalid", valkey(imagePullSecrets=["registry credentials"]), "/valkey/imagePullSecrets/0",
     "a Secret name is a DNS-1123 subdomain"),
    ("servicemonitor-namespace-invalid", valkey(exporter={"serviceMonitor": {"namespace": "Observability"}}),
     "/valkey/exporter/serviceMonitor/namespace", "a namespace name is a DNS-1123 label"),
    ("sidecar-named-like-the-server", {"valkey": {"sidecars": [{"name": "valkey", "image": "x", "securityContext": SC}]}},
     "valkey.sidecars[0].name", "container names are unique in a pod"),
    ("init-container-named-like-config-init",
     {"valkey": {"initContainers": [{"name": "config-init", "image": "x", "securityContext": SC}]}},
     "valkey.initContainers[0].name", "container names are unique across init and regular containers"),
    ("sidecar-name-invalid", {"valkey": {"sidecars": [{"name": "Log_Shipper", "image": "x", "securityContext": SC}]}},
     "/valkey/sidecars/0/name", "a container name is a DNS-1123 label"),
    ("sidecar-without-image", {"valkey": {"sidecars": [{"name": "side", "securityContext": SC}]}},
     "/valkey/sidecars/0", "a container needs an image"),
    ("extra-volume-named-like-chart-volume", valkey(extraVolumes=[{"name": "config", "emptyDir": {}}]),
     "valkey.extraVolumes[0].name", "volume names are unique in a pod"),
    ("extra-volumes-duplicate",
     valkey(extraVolumes=[{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]),
     "valkey.extraVolumes[1].name", "volume names are unique in a pod"),
    ("extra-volume-name-invalid", valkey(extraVolumes=[{"name": "My Volume", "emptyDir": {}}]),
     "/valkey/extraVolumes/0/name", "a volume name is a DNS-1123 label"),
    ("extra-mount-of-unknown-volume", valkey(extraVolumeMounts=[{"name": "nope", "mountPath": "/x"}]),
     "valkey.extraVolumeMounts[0].name", "a volumeMount must name a volume of the pod"),
    ("extra-mount-over-data", valkey(extraVolumeMounts=[{"name": "tmp", "mountPath": "/data"}]),
     "valkey.extraVolumeMounts[0].mountPath", "mountPath must be unique in a container"),
    ("sidecar-mount-of-unknown-volume", sidecar(volumeMounts=[{"name": "nope", "mountPath": "/x"}]),
     "valkey.sidecars[0].volumeMounts[0].name", "a volumeMount must name a volume of the pod"),
    ("sidecar-mount-path-twice",
     sidecar(volumeMounts=[{"name": "tmp", "mountPath": "/x"}, {"name": "run", "mountPath": "/x/"}]),
     "valkey.sidecars[0].volumeMounts[1].mountPath", "mountPath must be unique in a container"),
    ("extra-mount-relative-path", valkey(extraVolumeMounts=[{"name": "tmp", "mountPath": "relative"}]),
     "/valkey/extraVolumeMounts/0/mountPath", "the kubelet needs an absolute mountPath"),
    ("extra-mount-subpath-escapes", valkey(extraVolumeMounts=[{"name": "tmp", "mountPath": "/x", "subPath": "../etc"}]),
     "/valkey/extraVolumeMounts/0/subPath", "subPath must not contain '..'"),
    ("extra-mount-subpath-and-expr",
     valkey(extraVolumeMounts=[{"name": "tmp", "mountPath": "/x", "subPath": "a", "subPathExpr": "$(POD)"}]),
     "/valkey/extraVolumeMounts/0", "subPath and subPathExpr are mutually exclusive"),
    ("env-name-invalid", valkey(extraEnvVars=[{"name": "1BAD=NAME", "value": "x"}]), "/valkey/extraEnvVars/0/name",
     "an env var name is a C identifier-like token on every supported version"),
    ("env-value-and-value-from",
     valkey(extraEnvVars=[{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]),
     "/valkey/extraEnvVars/0", "valueFrom may not be given with a value"),
    # --- ports
    ("service-port-zero", valkey(service={"port": 0}), "/valkey/service/port", "ports are 1 to 65535"),
    ("service-port-too-high", valkey(service={"port": 70000}), "/valkey/service/port", "ports are 1 to 65535"),
    ("exporter-port-zero", valkey(exporter={"port": 0}), "/valkey/exporter/port", "ports are 1 to 65535"),
    ("exporter-port-is-server-port", valkey(exporter={"port": 6379}), "valkey.exporter.port",
     "the two containers share the pod's network: the second cannot listen"),
    ("sidecar-port-zero", sidecar(ports=[{"containerPort": 0}]), "/valkey/sidecars/0/ports/0/containerPort",
     "containerPort is 1 to 65535"),
    ("sidecar-port-name-too-long", sidecar(ports=[{"containerPort": 8080, "name": "a-very-long-port-name"}]),
     "/valkey/sidecars/0/ports/0/name", "a port name is an IANA service name of at most 15 characters"),
    # --- durations
    ("grace-period-negative", valkey(terminationGracePeriodSeconds=-1), "/valkey/terminationGracePeriodSeconds",
     "terminationGracePeriodSeconds must be non-negative"),
    ("scrape-interval-not-a-duration", valkey(exporter={"serviceMonitor": {"interval": "30 seconds"}}),
     "/valkey/exporter/serviceMonitor/interval", "the ServiceMonitor CRD's Duration pattern"),
    ("scrape-timeout-above-interval", valkey(exporter={"serviceMonitor": {"interval": "10s", "scrapeTimeout": "20s"}}),
     "valkey.exporter.serviceMonitor.scrapeTimeout", "the operator drops a scrape config whose timeout exceeds its interval"),
    ("rule-for-not-a-duration", {"monitoring": {"rules": {"redisDown": {"for": "5 minutes"}}}},
     "/monitoring/rules/redisDown/for", "the PrometheusRule CRD's Duration pattern"),
    ("evaluation-interval-not-a-duration", {"monitoring": {"prometheusRule": {"evaluationInterval": "1x"}}},
     "/monitoring/prometheusRule/evaluationInterval", "the PrometheusRule CRD's Duration pattern"),
    ("rate-window-units-out-of-order", {"monitoring": {"prometheusRule": {"rateWindow": "30s5m"}}},
     "/monitoring/prometheusRule/rateWindow", "the CRD wants units in descending order"),
    # --- probe settings
    ("server-readiness-period-negative", valkey(probes={"readiness": {"periodSeconds": -1}}),
     "/valkey/probes/readiness/periodSeconds", "probe fields must be non-negative"),
    ("server-liveness-timeout-negative", valkey(probes={"liveness": {"timeoutSeconds": -1}}),
     "/valkey/probes/liveness/timeoutSeconds", "probe fields must be non-negative"),
    ("server-startup-failure-threshold-negative", valkey(probes={"startup": {"failureThreshold": -1}}),
     "/valkey/probes/startup/failureThreshold", "probe fields must be non-negative"),
    ("exporter-readiness-success-negative", valkey(exporter={"probes": {"readiness": {"successThreshold": -1}}}),
     "/valkey/exporter/probes/readiness/successThreshold", "probe fields must be non-negative"),
    ("exporter-liveness-period-negative", valkey(exporter={"probes": {"liveness": {"periodSeconds": -1}}}),
     "/valkey/exporter/probes/liveness/periodSeconds", "probe fields must be non-negative"),
    ("exporter-liveness-success-threshold", valkey(exporter={"probes": {"liveness": {"successThreshold": 2}}}),
     "/valkey/exporter/probes/liveness", "a liveness probe's successThreshold must be 1: the chart has no such option"),
    # --- label syntax
    ("pod-label-value-with-space", valkey(podLabels={"tier": "cache layer"}), "/valkey/podLabels/tier",
     "label values are [A-Za-z0-9_.-] and begin and end alphanumeric"),
    ("pod-label-value-too-long", valkey(podLabels={"tier": "x" * 64}), "/valkey/podLabels/tier",
     "label values are at most 63 characters"),
    ("common-label-key-with-space", {"commonLabels": {"my team": "sre"}}, "/commonLabels",
     "label keys are [prefix/]name"),
    ("common-label-reserved", {"commonLabels": {"app.kubernetes.io/name": "other"}}, "/commonLabels",
     "a duplicate key breaks the immutable selector"),
    ("node-selector-key-invalid", valkey(nodeSelector={"-pool": "cache"}), "/valkey/nodeSelector",
     "label keys begin alphanumeric"),
    ("application-selector-value-invalid", valkey(networkPolicy={"applicationPodSelector": {"app": "a b"}}),
     "/valkey/networkPolicy/applicationPodSelector/app", "matchLabels values are label values"),
    ("dashboard-label-value-invalid", {"monitoring": {"dashboard": {"labelValue": "-1"}}},
     "/monitoring/dashboard/labelValue", "label values begin alphanumeric"),
    ("pod-annotation-key-invalid", valkey(podAnnotations={"bad key": "x"}), "/valkey/podAnnotations",
     "annotation keys are [prefix/]name like label keys"),
    # --- other apply-time rules
    ("toleration-exists-with-value", valkey(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
     "/valkey/tolerations/0/value", "value must be empty when operator is Exists"),
    ("toleration-seconds-without-noexecute",
     valkey(tolerations=[{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule",
                          "tolerationSeconds": 30}]),
     "/valkey/tolerations/0/effect", "tolerationSeconds needs effect NoExecute"),
    ("read-write-once-pod-with-another-mode", valkey(storage={"accessModes": ["ReadWriteOncePod", "ReadWriteOnce"]}),
     "/valkey/storage/accessModes", "ReadWriteOncePod may not be combined with other access modes"),
    ("spread-max-skew-zero",
     valkey(topologySpreadConstraints=[{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
     "/valkey/topologySpreadConstraints/0/maxSkew", "maxSkew must be greater than zero"),
    ("partition-negative", valkey(updateStrategy={"partition": -1}), "/valkey/updateStrategy/partition",
     "partition must be non-negative"),
    ("replicas-negative", valkey(replicas=-1), "/valkey/replicas", "replicas must be non-negative"),
    ("pdb-max-unavailable-negative", valkey(pdb={"maxUnavailable": -1}), "/valkey/pdb/maxUnavailable",
     "maxUnavailable must be non-negative"),
    ("seccomp-localhost-without-profile", valkey(podSecurityContext={"seccompProfile": {"type": "Localhost"}}),
     "/valkey/podSecurityContext/seccompProfile", "localhostProfile must be set with type Localhost"),
    ("seccomp-profile-without-localhost",
     valkey(containerSecurityContext={"seccompProfile": {"type": "RuntimeDefault", "localhostProfile": "p.json"}}),
     "/valkey/containerSecurityContext/seccompProfile/localhostProfile", "localhostProfile only with type Localhost"),
    ("mount-propagation-bidirectional",
     valkey(extraVolumeMounts=[{"name": "tmp", "mountPath": "/x", "mountPropagation": "Bidirectional"}]),
     "/valkey/extraVolumeMounts/0/mountPropagation", "Bidirectional propagation is for privileged containers only"),
    # --- the restricted Pod Security Standard
    ("privileged", valkey(containerSecurityContext={"privileged": True}),
     "/valkey/containerSecurityContext/privileged", "restricted: privileged containers are forbidden"),
    ("container-run-as-root", valkey(containerSecurityContext={"runAsUser": 0}),
     "/valkey/containerSecurityContext/runAsUser", "restricted: runAsUser must not be 0"),
    ("pod-run-as-root", valkey(podSecurityContext={"runAsUser": 0}), "/valkey/podSecurityContext/runAsUser",
     "restricted: runAsUser must not be 0"),
    ("privilege-escalation", valkey(containerSecurityContext={"allowPrivilegeEscalation": True}),
     "/valkey/containerSecurityContext/allowPrivilegeEscalation", "restricted: allowPrivilegeEscalation must be false"),
    ("run-as-non-root-false", valkey(podSecurityContext={"runAsNonRoot": False}),
     "/valkey/podSecurityContext/runAsNonRoot", "restricted: runAsNonRoot must be true"),
    ("capability-added", valkey(containerSecurityContext={"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}),
     "/valkey/containerSecurityContext/capabilities/add/0", "restricted: only NET_BIND_SERVICE may be added"),
    ("capabilities-not-dropped", valkey(containerSecurityContext={"capabilities": {"drop": ["NET_RAW"]}}),
     "/valkey/containerSecurityContext/capabilities/drop", "restricted: capabilities must drop ALL"),
    ("seccomp-unconfined", valkey(containerSecurityContext={"seccompProfile": {"type": "Unconfined"}}),
     "/valkey/containerSecurityContext/seccompProfile/type", "restricted: seccomp RuntimeDefault or Localhost"),
    ("sysctl-unsafe", valkey(podSecurityContext={"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}),
     "/valkey/podSecurityContext/sysctls/0/name", "baseline: only the safe sysctls"),
    ("extra-volume-host-path", valkey(extraVolumes=[{"name": "host", "hostPath": {"path": "/"}}]),
     "/valkey/extraVolumes/0", "restricted: hostPath volumes are forbidden"),
    ("sidecar-without-security-context", {"valkey": {"sidecars": [{"name": "side", "image": "x"}]}},
     "/valkey/sidecars/0", "restricted: allowPrivilegeEscalation must be set to false"),
    ("sidecar-privileged", sidecar(securityContext={**SC, "privileged": True}),
     "/valkey/sidecars/0/securityContext/privileged", "restricted: privileged containers are forbidden"),
    ("sidecar-run-as-root", sidecar(securityContext={**SC, "runAsUser": 0}),
     "/valkey/sidecars/0/securityContext/runAsUser", "restricted: runAsUser must not be 0"),
    ("sidecar-host-port", sidecar(ports=[{"containerPort": 8080, "hostPort": 8080}]),
     "/valkey/sidecars/0/ports/0/hostPort", "baseline: host ports are forbidden"),
    ("init-container-privilege-escalation",
     {"valkey": {"initContainers": [{"name": "i", "image": "x", "securityContext": {**SC,
                                                                                    "allowPrivilegeEscalation": True}}]}},
     "/valkey/initContainers/0/securityContext/allowPrivilegeEscalation",
     "restricted: allowPrivilegeEscalation must be false"),
    ("sidecar-restart-policy", sidecar(restartPolicy="Always"), "/valkey/sidecars/0",
     "restartPolicy may not be set for non-init containers"),
    ("init-container-probe-without-restart-policy",
     {"valkey": {"initContainers": [{"name": "i", "image": "x", "securityContext": SC,
                                     "readinessProbe": {"exec": {"command": ["true"]}}}]}},
     "/valkey/initContainers/0/readinessProbe", "probes need restartPolicy Always on an init container"),
    ("sidecar-proc-mount-unmasked", sidecar(securityContext={**SC, "procMount": "Unmasked"}),
     "/valkey/sidecars/0/securityContext/procMount", "baseline: procMount must be Default"),
]


def test_rows_are_distinct():
    ids = [row[0] for row in ROWS]
    assert len(ids) == len(set(ids)) and len(ROWS) >= 60


@pytest.mark.parametrize("values, key, why", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_refused_at_render_time_naming_the_key(values, key, why):
    with pytest.raises(chart.RenderError) as exc:
        chart.render(values)
    assert key in str(exc.value), f"{why}: the error does not name {key}:\n{exc.value}"


def test_a_valid_neighbour_of_each_kind_renders():
    """The rows fail for their one wrong input: the same shapes with valid values render."""
    ok = {"valkey": {
        "storage": {"requestedSize": "1Gi", "accessModes": ["ReadWriteOncePod"]},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}},
        "extraVolumes": [{"name": "scratch", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch", "subPath": "a/b"}],
        "extraEnvVars": [{"name": "_A.b-c", "value": "x"}],
        "sidecars": [{"name": "side", "image": "busybox:1.36", "securityContext": SC,
                      "ports": [{"containerPort": 8080, "name": "http"}],
                      "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
        "initContainers": [{"name": "native", "image": "busybox:1.36", "restartPolicy": "Always", "securityContext": SC,
                            "readinessProbe": {"exec": {"command": ["true"]}}}],
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
        "podSecurityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
                               "sysctls": [{"name": "net.ipv4.tcp_fin_timeout", "value": "30"}]},
        "containerSecurityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
    }}
    m = chart.render(ok)
    [sts] = m.of_kind("StatefulSet")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
