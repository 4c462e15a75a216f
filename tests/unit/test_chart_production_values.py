"""The values chart users expect from a production chart (Bitnami's names): image registries, extra env, volumes,
sidecars and init containers, the ServiceAccount, overridable security contexts, config-init resources and the
exporter's probes. Each renders where it should, the defaults render what they always did, and every rendered
object stays valid (kubernetes-validate strict) and within the restricted Pod Security Standard."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
from helpers.values import CI_DIR, load_yaml, with_
from test_chart_pod_security import pod_specs, violations

BASE = load_yaml(CI_DIR / "default-values.yaml")
STS = "alerthistory-alert-history-redis"
RESTRICTED_SC = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def pod(m) -> dict:
    return m.get("StatefulSet", STS)["spec"]["template"]["spec"]


def container(m, name: str) -> dict:
    spec = pod(m)
    [c] = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    return c


def assert_valid(m, version: str = "1.29"):
    for obj in m:
        if not obj["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(obj, version, strict=True)
    assert [v for p in pod_specs(m) for v in violations(*p)] == []


# --- images ---------------------------------------------------------------------------------------


def test_default_images_have_no_registry(render_chart):
    m = render_chart(BASE)
    assert container(m, "valkey")["image"] == "valkey/valkey:8.1"
    assert container(m, "config-init")["image"] == "valkey/valkey:8.1"
    assert container(m, "exporter")["image"] == "oliver006/redis_exporter:v1.55.0"
    assert m.of_kind("Pod")[0]["spec"]["containers"][0]["image"] == "valkey/valkey:8.1"


def test_each_image_has_its_own_registry(render_chart):
    m = render_chart(with_(BASE, **{"valkey.image.registry": "mirror.example.com",
                                    "valkey.exporter.image.registry": "quay.io"}))
    assert container(m, "valkey")["image"] == "mirror.example.com/valkey/valkey:8.1"
    assert container(m, "exporter")["image"] == "quay.io/oliver006/redis_exporter:v1.55.0"
    # The engine still comes from the repository, not the registry.
    assert container(m, "valkey")["command"][0] == "valkey-server"


def test_global_image_registry_wins_for_every_image(render_chart):
    digest = "sha256:" + "ab" * 32
    m = render_chart(with_(BASE, **{"global.imageRegistry": "registry.local:5000/mirror",
                                    "valkey.image.registry": "ignored.example.com",
                                    "valkey.exporter.image.digest": digest}))
    images = {c["name"]: c["image"] for c in pod(m)["initContainers"] + pod(m)["containers"]}
    assert images == {"config-init": "registry.local:5000/mirror/valkey/valkey:8.1",
                      "valkey": "registry.local:5000/mirror/valkey/valkey:8.1",
                      "exporter": f"registry.local:5000/mirror/oliver006/redis_exporter@{digest}"}
    assert m.of_kind("Pod")[0]["spec"]["containers"][0]["image"] == "registry.local:5000/mirror/valkey/valkey:8.1"


# --- extra env, volumes, sidecars, init containers -------------------------------------------------


def test_extra_env_vars_go_to_the_server_only(render_chart):
    env = [{"name": "TZ", "value": "UTC"},
           {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    m = render_chart(with_(BASE, **{"valkey.extraEnvVars": env}))
    assert container(m, "valkey")["env"] == [{"name": "VALKEY_PORT", "value": "6379"}, *env]
    assert "TZ" not in {e["name"] for e in container(m, "exporter")["env"]}
    assert_valid(m)


def test_extra_volumes_and_mounts(render_chart):
    volumes = [{"name": "modules", "configMap": {"name": "valkey-modules"}}, {"name": "scratch", "emptyDir": {}}]
    mounts = [{"name": "modules", "mountPath": "/opt/modules", "readOnly": True},
              {"name": "scratch", "mountPath": "/scratch"}]
    m = render_chart(with_(BASE, **{"valkey.extraVolumes": volumes, "valkey.extraVolumeMounts": mounts}))
    assert pod(m)["volumes"][-2:] == volumes
    assert container(m, "valkey")["volumeMounts"][-2:] == mounts
    assert all(v["name"] not in ("modules", "scratch") for v in container(m, "exporter").get("volumeMounts", []))
    assert_valid(m)


def test_sidecars_and_init_containers_are_appended(render_chart):
    sidecar = {"name": "shipper", "image": "fluent/fluent-bit:3.1", "securityContext": RESTRICTED_SC,
               "volumeMounts": [{"name": "tmp", "mountPath": "/logs", "readOnly": True}]}
    init = {"name": "wait", "image": "busybox:1.36", "command": ["true"], "securityContext": RESTRICTED_SC}
    m = render_chart(with_(BASE, **{"valkey.sidecars": [sidecar], "valkey.initContainers": [init]}))
    assert [c["name"] for c in pod(m)["containers"]] == ["valkey", "exporter", "shipper"]
    # After config-init: the ACL file exists before a user's init container runs.
    assert [c["name"] for c in pod(m)["initContainers"]] == ["config-init", "wait"]
    assert container(m, "shipper") == sidecar
    assert_valid(m)


# --- ServiceAccount -------------------------------------------------------------------------------


def test_no_service_account_by_default(render_chart):
    m = render_chart(BASE)
    assert m.of_kind("ServiceAccount") == []
    assert "serviceAccountName" not in pod(m)
    assert pod(m)["automountServiceAccountToken"] is False


def test_an_existing_service_account_by_name(render_chart):
    m = render_chart(with_(BASE, **{"valkey.serviceAccount.name": "cache-reader"}))
    assert m.of_kind("ServiceAccount") == []
    assert pod(m)["serviceAccountName"] == "cache-reader"


@pytest.mark.parametrize("name, expected", [("", STS), ("cache-sa", "cache-sa")])
def test_a_created_service_account(render_chart, name, expected):
    m = render_chart(with_(BASE, **{"valkey.serviceAccount.create": True, "valkey.serviceAccount.name": name,
                                    "valkey.serviceAccount.annotations": {"iam.example.com/role": "cache"}}))
    [sa] = m.of_kind("ServiceAccount")
    assert sa["metadata"]["name"] == expected
    assert sa["metadata"]["annotations"] == {"iam.example.com/role": "cache"}
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"
    assert pod(m)["serviceAccountName"] == expected
    assert_valid(m)


def test_token_automount_applies_to_account_and_pod(render_chart):
    m = render_chart(with_(BASE, **{"valkey.serviceAccount.create": True,
                                    "valkey.serviceAccount.automountServiceAccountToken": True}))
    assert m.of_kind("ServiceAccount")[0]["automountServiceAccountToken"] is True
    assert pod(m)["automountServiceAccountToken"] is True


# --- security contexts ----------------------------------------------------------------------------


def test_pod_security_context_overrides(render_chart):
    m = render_chart(with_(BASE, **{
        "valkey.podSecurityContext.runAsUser": 1001, "valkey.podSecurityContext.runAsGroup": 1002,
        "valkey.podSecurityContext.fsGroup": 1003, "valkey.podSecurityContext.fsGroupChangePolicy": "Always",
        "valkey.podSecurityContext.supplementalGroups": [4000],
        "valkey.podSecurityContext.sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "120"}],
        "valkey.podSecurityContext.seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/valkey.json"},
    }))
    assert pod(m)["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 1002, "fsGroup": 1003, "fsGroupChangePolicy": "Always",
        "supplementalGroups": [4000], "sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "120"}],
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/valkey.json"},
    }
    # The helm test pod has no volumes: no fsGroup, the same identity.
    test_pod = m.of_kind("Pod")[0]["spec"]["securityContext"]
    assert "fsGroup" not in test_pod and test_pod["runAsUser"] == 1001
    assert_valid(m)


def test_container_security_context_overrides_reach_every_chart_container(render_chart):
    m = render_chart(with_(BASE, **{
        "valkey.containerSecurityContext.runAsUser": 1001, "valkey.containerSecurityContext.runAsGroup": 1002,
        "valkey.containerSecurityContext.capabilities.add": ["NET_BIND_SERVICE"],
        "valkey.containerSecurityContext.seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
    }))
    expected = {"runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 1002, "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True, "privileged": False,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}
    for name in ("config-init", "valkey", "exporter"):
        assert container(m, name)["securityContext"] == expected, name
    assert m.of_kind("Pod")[0]["spec"]["containers"][0]["securityContext"] == expected
    assert_valid(m)


def test_a_writable_root_filesystem_is_allowed_but_not_default(render_chart):
    """readOnlyRootFilesystem is our hardening, not part of the restricted standard: users may turn it off."""
    m = render_chart(with_(BASE, **{"valkey.containerSecurityContext.readOnlyRootFilesystem": False}))
    assert container(m, "valkey")["securityContext"]["readOnlyRootFilesystem"] is False
    assert container(m, "valkey")["securityContext"]["allowPrivilegeEscalation"] is False


def test_default_security_contexts_are_unchanged(render_chart):
    m = render_chart(BASE)
    assert pod(m)["securityContext"] == {"runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                                         "fsGroupChangePolicy": "OnRootMismatch",
                                         "seccompProfile": {"type": "RuntimeDefault"}}
    assert container(m, "valkey")["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999, "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True, "privileged": False, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}


# --- config-init resources and exporter probes ------------------------------------------------------


def test_config_init_resources(render_chart):
    assert container(render_chart(BASE), "config-init")["resources"] == {
        "requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}}
    m = render_chart(with_(BASE, **{"valkey.configInit.resources": {"requests": {"cpu": "20m", "memory": "24Mi"},
                                                                     "limits": {"cpu": "200m", "memory": "48Mi"}}}))
    assert container(m, "config-init")["resources"] == {
        "requests": {"cpu": "20m", "memory": "24Mi"}, "limits": {"cpu": "200m", "memory": "48Mi"}}
    assert_valid(m)


def test_exporter_probes(render_chart):
    defaults = container(render_chart(BASE), "exporter")
    assert {k: defaults["readinessProbe"][k] for k in ("periodSeconds", "timeoutSeconds", "failureThreshold",
                                                        "successThreshold")} == {
        "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3, "successThreshold": 1}
    assert {k: defaults["livenessProbe"][k] for k in ("periodSeconds", "timeoutSeconds", "failureThreshold")} == {
        "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 6}
    probes = {"readiness": {"periodSeconds": 7, "timeoutSeconds": 2, "failureThreshold": 4, "successThreshold": 2},
              "liveness": {"periodSeconds": 31, "timeoutSeconds": 3, "failureThreshold": 9}}
    c = container(render_chart(with_(BASE, **{"valkey.exporter.probes": copy.deepcopy(probes)})), "exporter")
    assert c["readinessProbe"] == {"httpGet": {"path": "/metrics", "port": "metrics"}, **probes["readiness"]}
    assert c["livenessProbe"] == {"httpGet": {"path": "/metrics", "port": "metrics"}, **probes["liveness"]}
