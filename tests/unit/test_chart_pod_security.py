"""The "restricted" Pod Security Standard (plus our own hardening) on every rendered pod and container.

Rules follow https://kubernetes.io/docs/concepts/security/pod-security-standards/ (restricted includes
baseline). Each check returns the violations it finds, so a failure lists all of them.
"""

from __future__ import annotations

import pytest

from alert_history_cache import chart

# Volume types the restricted policy allows.
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def pod_specs(manifests) -> list[tuple[str, dict, dict]]:
    """(where, pod metadata, pod spec) of every Pod and every workload's pod template."""
    out = []
    for obj in manifests:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Pod":
            out.append((where, obj["metadata"], obj["spec"]))
        elif obj["kind"] in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"):
            out.append((where, obj["spec"]["template"]["metadata"], obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "CronJob":
            t = obj["spec"]["jobTemplate"]["spec"]["template"]
            out.append((where, t["metadata"], t["spec"]))
    return out


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec.get("containers", []) + spec.get("ephemeralContainers", [])


def violations(where: str, meta: dict, spec: dict) -> list[str]:
    bad = []
    psc = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is True:
            bad.append(f"{where}: {key} is true")
    for vol in spec.get("volumes", []):
        kinds = set(vol) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            bad.append(f"{where}: volume {vol['name']} has type {sorted(kinds)}")
    for sysctl in psc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            bad.append(f"{where}: unsafe sysctl {sysctl['name']}")
    if psc.get("seLinuxOptions", {}).get("user") or psc.get("seLinuxOptions", {}).get("role"):
        bad.append(f"{where}: pod seLinuxOptions user/role set")
    if spec.get("automountServiceAccountToken") is not False:
        bad.append(f"{where}: automountServiceAccountToken is not false")
    if psc.get("runAsUser") == 0 or psc.get("runAsGroup") == 0:
        bad.append(f"{where}: pod runs as root user or group")
    for key, value in meta.get("annotations", {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            bad.append(f"{where}: AppArmor {key}={value}")

    for c in containers(spec):
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            bad.append(f"{cw}: runAsNonRoot is not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            bad.append(f"{cw}: runAsUser is 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{cw}: allowPrivilegeEscalation is not false")
        if sc.get("privileged") is True:
            bad.append(f"{cw}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{cw}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{cw}: adds capabilities {caps['add']}")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{cw}: seccompProfile is {seccomp!r}")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{cw}: procMount {sc['procMount']}")
        if sc.get("windowsOptions", {}).get("hostProcess") is True:
            bad.append(f"{cw}: hostProcess")
        if sc.get("appArmorProfile", {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            bad.append(f"{cw}: appArmorProfile {sc['appArmorProfile']}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{cw}: hostPort")
        # Our hardening on top of restricted.
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{cw}: readOnlyRootFilesystem is not true")
    return bad


def test_every_pod_meets_restricted(ci_set):
    pods = pod_specs(ci_set.manifests)
    if ci_set.values.get("profile") == "lite":
        assert pods == []
        return
    assert any(w.startswith("StatefulSet/") for w, _, _ in pods)
    assert [v for p in pods for v in violations(*p)] == []


def test_the_checks_can_fail():
    """A privileged, root, hostPath pod trips the checks above."""
    spec = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "initContainers": [{"name": "i", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
        "containers": [{"name": "c", "ports": [{"containerPort": 1, "hostPort": 1}], "securityContext": {"runAsUser": 0}}],
    }
    found = "\n".join(violations("Pod/x", {}, spec))
    for expected in ("hostNetwork", "volume h", "automountServiceAccountToken", "container i: adds capabilities",
                     "container c: runAsUser is 0", "container c: hostPort", "container i: seccompProfile",
                     "container c: readOnlyRootFilesystem", "container i: allowPrivilegeEscalation"):
        assert expected in found


def test_default_identity_is_999(render_chart):
    m = render_chart({"valkey": {"password": {"application": "x" * 16, "exporter": "y" * 16, "admin": "z" * 16}}})
    for where, _, spec in pod_specs(m):
        assert spec["securityContext"]["runAsUser"] == 999, where
        assert spec["securityContext"]["runAsGroup"] == 999, where
        for c in containers(spec):
            assert c["securityContext"]["runAsUser"] == 999, f"{where} {c['name']}"
    sts = m.of_kind("StatefulSet")[0]["spec"]["template"]["spec"]
    assert sts["securityContext"]["fsGroup"] == 999
    assert {c["name"] for c in containers(sts)} == {"config-init", "valkey", "exporter"}


def test_writable_paths_are_emptydirs_or_the_data_volume(ci_set):
    """With a read-only root filesystem, every writable mount must be an emptyDir or a PVC."""
    for where, _, spec in pod_specs(ci_set.manifests):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(spec):
            for mount in c.get("volumeMounts", []):
                if mount.get("readOnly"):
                    continue
                vol = volumes.get(mount["name"])
                # The PVCs: the data volume (a claim template) and the backup CronJob's own claim.
                assert vol is None and mount["name"] == "data" or vol and (
                    "emptyDir" in vol or "persistentVolumeClaim" in vol), (
                    f"{where} {c['name']} writes to {mount['mountPath']} ({vol})"
                )


def test_root_is_refused():
    with pytest.raises(chart.RenderError, match="/valkey/containerSecurityContext/runAsUser"):
        chart.render({"valkey": {"containerSecurityContext": {"runAsUser": 0}}})
