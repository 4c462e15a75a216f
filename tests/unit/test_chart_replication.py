"""valkey.architecture: replication renders the HA objects the way docs/ha-design.md describes them, and standalone
renders none of them.

Render-level checks only; tests/integration/test_chart_ha_configs.py runs the same objects with real servers,
Sentinels and HAProxy, and tests/unit/test_chart_kube_validate.py, test_chart_pod_security.py and
tests/security/test_checkov.py cover them through ci/replication-values.yaml.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from helpers.values import CI_DIR, load_yaml, with_

from alert_history_cache import chart

BASE = {**load_yaml(CI_DIR / "replication-values.yaml"), "fullnameOverride": "alerthistory"}
NAME = "alerthistory-redis"
NAMES = [f"{NAME}-{i}.{NAME}-headless.default.svc.cluster.local" for i in range(3)]


@pytest.fixture(scope="module")
def ha(render_chart):
    return render_chart(BASE)


def pod_spec(m, kind="StatefulSet", name=NAME) -> dict:
    return m.get(kind, name)["spec"]["template"]["spec"]


def containers(m, kind="StatefulSet", name=NAME) -> dict[str, dict]:
    spec = pod_spec(m, kind, name)
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_replication_renders_the_ha_objects(ha):
    names = {(o["kind"], o["metadata"]["name"]) for o in ha}
    assert {
        ("StatefulSet", NAME), ("Deployment", f"{NAME}-haproxy"), ("ConfigMap", f"{NAME}-haproxy"),
        ("PodDisruptionBudget", NAME), ("PodDisruptionBudget", f"{NAME}-haproxy"),
        ("Service", NAME), ("Service", f"{NAME}-headless"), ("Service", f"{NAME}-sentinel"),
        ("Service", f"{NAME}-metrics"), ("Service", f"{NAME}-haproxy-metrics"),
    } <= names
    assert ha.get("StatefulSet", NAME)["spec"]["replicas"] == 3
    assert ha.get("Deployment", f"{NAME}-haproxy")["spec"]["replicas"] == 2
    assert set(containers(ha)) == {"config-init", "valkey", "exporter", "sentinel", "sentinel-exporter"}


def test_standalone_renders_none_of_them(render_chart):
    m = render_chart(with_(BASE, **{"valkey.architecture": "standalone", "valkey.replicas": 1}))
    assert m.of_kind("Deployment") == []
    assert sorted(m.names("Service")) == [NAME, f"{NAME}-headless", f"{NAME}-metrics"]
    assert set(containers(m)) == {"config-init", "valkey", "exporter"}
    conf = m.get("ConfigMap", f"{NAME}-config")["data"]
    assert "include" not in conf["valkey.conf"] and "min-replicas" not in conf["valkey.conf"]
    assert "sentinel-users.acl.tpl" not in conf
    assert set(m.get("Secret", NAME)["data"]) == {"password", "exporter-password", "admin-password"}


def test_client_service_selects_haproxy_and_sentinel_service_the_data_pods(ha):
    haproxy_labels = ha.get("Deployment", f"{NAME}-haproxy")["spec"]["template"]["metadata"]["labels"]
    data_labels = ha.get("StatefulSet", NAME)["spec"]["template"]["metadata"]["labels"]
    client = ha.get("Service", NAME)["spec"]
    assert client["selector"].items() <= haproxy_labels.items()
    assert not client["selector"].items() <= data_labels.items(), "the client Service must never select the servers"
    haproxy_ports = {p["name"] for p in containers(ha, "Deployment", f"{NAME}-haproxy")["haproxy"]["ports"]}
    assert [(p["port"], p["targetPort"]) for p in client["ports"]] == [(6379, "redis")] and "redis" in haproxy_ports

    sentinel = ha.get("Service", f"{NAME}-sentinel")["spec"]
    assert sentinel["selector"].items() <= data_labels.items()
    assert [(p["name"], p["port"]) for p in sentinel["ports"]] == [("sentinel", 26379), ("sentinel-metrics", 9355)]
    # The headless Service lists not-ready pods: a starting pod must resolve for the bootstrap and Sentinel.
    assert ha.get("Service", f"{NAME}-headless")["spec"]["publishNotReadyAddresses"] is True


def test_server_and_sentinel_commands_are_spelt_out(ha, render_chart):
    c = containers(ha)
    assert c["valkey"]["command"] == ["/bin/sh", "/scripts/ha-bootstrap.sh", "valkey-server", "/etc/valkey/valkey.conf"]
    assert c["sentinel"]["command"] == ["/bin/sh", "/scripts/ha-sentinel.sh", "valkey-server",
                                        "/run/valkey/sentinel.conf", "--sentinel"]
    # Sentinel rewrites its config: it lives in the memory-backed run dir, never in a ConfigMap.
    volumes = {v["name"]: v for v in pod_spec(ha)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["sentinel"]["volumeMounts"]}
    assert volumes[mounts["/run/valkey"]]["emptyDir"]["medium"] == "Memory"
    assert "/etc/valkey" not in mounts
    # The HA scripts' passwords only: the server and Sentinel containers never see the admin password.
    for container in ("valkey", "sentinel"):
        secret_mount = next(m for m in c[container]["volumeMounts"] if m["mountPath"] == "/etc/valkey-secret")
        items = volumes[secret_mount["name"]]["secret"]["items"]
        assert sorted(i["key"] for i in items) == ["replication-password", "replication-password-next",
                                                   "sentinel-password", "sentinel-password-next"]
    redis7 = containers(render_chart(with_(BASE, **{"valkey.image.repository": "redis", "valkey.image.tag": "7.0"})))
    assert redis7["valkey"]["command"][2] == "redis-server" and redis7["sentinel"]["command"][2] == "redis-server"


def test_ha_environment(ha):
    c = containers(ha)
    server, sentinel = env(c["valkey"]), env(c["sentinel"])
    for e in (server, sentinel):
        assert e["HA_NODES"] == " ".join(NAMES)
        assert e["HA_SENTINEL_USER"] == "sentinel"
        assert e["HA_SENTINEL_PASSWORD_FILE"] == "/etc/valkey-secret/sentinel-password"
        assert e["SENTINEL_PORT"] == "26379" and e["HA_MASTER_SET"] == "alerthistory"
    assert server["HA_REPLICATION_PASSWORD_FILE"] == "/etc/valkey-secret/replication-password"
    assert server["HA_WRITE_PAUSE_SECONDS"] == str(pod_spec(ha)["terminationGracePeriodSeconds"])
    assert sentinel["HA_QUORUM"] == "2"
    assert (sentinel["HA_SENTINEL_DOWN_AFTER_MS"], sentinel["HA_SENTINEL_FAILOVER_TIMEOUT_MS"],
            sentinel["HA_SENTINEL_PARALLEL_SYNCS"]) == ("12000", "20000", "1")
    # No password in any environment variable of any container.
    secret_values = set(BASE["valkey"]["password"].values())
    for container in c.values():
        assert not secret_values & set(env(container).values()), container["name"]


@pytest.mark.parametrize("replicas, quorum, expected", [(3, 0, "2"), (4, 0, "3"), (5, 0, "3"), (5, 2, "2")])
def test_quorum_is_a_majority_by_default(render_chart, replicas, quorum, expected):
    m = render_chart(with_(BASE, **{"valkey.replicas": replicas, "valkey.sentinel.quorum": quorum}))
    assert env(containers(m)["sentinel"])["HA_QUORUM"] == expected
    assert len(env(containers(m)["sentinel"])["HA_NODES"].split()) == replicas


def test_server_config_guards_against_split_brain_and_includes_the_role_last(ha):
    conf = ha.get("ConfigMap", f"{NAME}-config")["data"]["valkey.conf"].splitlines()
    assert "min-replicas-to-write 1" in conf and "min-replicas-max-lag 10" in conf
    assert [line for line in conf if line.strip()][-1] == "include /run/valkey/replication.conf"


def test_acl_users_are_least_privilege(ha):
    data = ha.get("ConfigMap", f"{NAME}-config")["data"]
    users = {line.split()[1]: line for line in data["users.acl.tpl"].splitlines()}
    assert users["replication"] == ("user replication on @secret:replication-password@ resetkeys resetchannels "
                                    "-@all +psync +replconf +ping")
    assert users["sentinel"].startswith("user sentinel on @secret:sentinel-password@ resetkeys resetchannels "
                                        "&__sentinel__:hello -@all ")
    assert users["haproxy"] == "user haproxy on @secret:haproxy-password@ resetkeys resetchannels -@all +ping +info"
    sentinel_users = {line.split()[1]: line for line in data["sentinel-users.acl.tpl"].splitlines()}
    assert set(sentinel_users) == {"haproxy", "exporter"}
    for line in sentinel_users.values():
        rules = line.split()
        assert "-@all" in rules and not any(r in rules for r in ("+@all", "+sentinel", "~*", "&*")), line
        assert not any(r.startswith(("+sentinel|failover", "+sentinel|set", "+sentinel|monitor", "+sentinel|remove",
                                     "+sentinel|reset", "+sentinel|config")) for r in rules), line


def test_secret_has_the_new_keys_with_rotation(render_chart):
    m = render_chart(with_(BASE, **{"valkey.password.sentinelNext": "a-next-sentinel-password-001"}))
    keys = set(m.get("Secret", NAME)["data"])
    assert {"replication-password", "sentinel-password", "haproxy-password", "sentinel-password-next"} <= keys
    assert "replication-password-next" not in keys


def test_prestop_and_grace_period(ha, render_chart):
    server = containers(ha)["valkey"]
    assert server["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sh", "/scripts/ha-prestop.sh"]
    sentinel = containers(ha)["sentinel"]
    assert sentinel["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sh", "/scripts/ha-sentinel-prestop.sh"]
    assert env(sentinel)["HA_PRESTOP_TIMEOUT"] == env(server)["HA_PRESTOP_TIMEOUT"]
    grace = pod_spec(ha)["terminationGracePeriodSeconds"]
    e = env(server)
    assert int(e["HA_PRESTOP_TIMEOUT"]) + BASE.get("valkey", {}).get("settings", {}).get("shutdownTimeout", 10) < grace
    # The same check at render time, naming the keys.
    with pytest.raises(chart.RenderError, match="valkey.terminationGracePeriodSeconds: 45 must be greater than "
                                                r"valkey.replication.preStopTimeout \(40\)"):
        chart.render(with_(BASE, **{"valkey.terminationGracePeriodSeconds": 45,
                                    "valkey.replication.preStopTimeout": 40}))


def test_probes(ha):
    server = containers(ha)["valkey"]
    assert server["readinessProbe"]["exec"]["command"] == ["/bin/sh", "/scripts/ha-replica-ready.sh"]
    assert server["livenessProbe"]["exec"]["command"] == ["/bin/sh", "/scripts/liveness.sh"]
    sentinel = containers(ha)["sentinel"]
    budget = sentinel["startupProbe"]["periodSeconds"] * sentinel["startupProbe"]["failureThreshold"]
    assert budget > int(env(sentinel)["HA_BOOTSTRAP_TIMEOUT"])
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > int(env(server)["HA_BOOTSTRAP_TIMEOUT"]) + 30


def test_disruption_budgets_and_anti_affinity(ha, render_chart):
    assert ha.get("PodDisruptionBudget", NAME)["spec"]["maxUnavailable"] == 1
    assert ha.get("PodDisruptionBudget", f"{NAME}-haproxy")["spec"]["maxUnavailable"] == 1
    affinity = pod_spec(ha)["affinity"]["podAntiAffinity"]
    assert list(affinity) == ["preferredDuringSchedulingIgnoredDuringExecution"]
    required = pod_spec(render_chart(with_(BASE, **{"valkey.podAntiAffinity": "required"})))["affinity"]
    term = required["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == ha.get("StatefulSet", NAME)["spec"]["selector"]["matchLabels"]
    haproxy_affinity = pod_spec(ha, "Deployment", f"{NAME}-haproxy")["affinity"]["podAntiAffinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in haproxy_affinity


def test_haproxy_pod_gets_only_its_password_through_a_file(ha):
    spec = pod_spec(ha, "Deployment", f"{NAME}-haproxy")
    c = containers(ha, "Deployment", f"{NAME}-haproxy")
    assert c["haproxy"]["command"] == ["haproxy", "-db", "-f", "/run/haproxy/haproxy.cfg"]
    assert c["config-init"]["command"] == ["/bin/sh", "/scripts/haproxy-init.sh"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["secret"]["secret"]["items"] == [{"key": "haproxy-password", "path": "password"}]
    assert volumes["run"]["emptyDir"]["medium"] == "Memory"
    assert [m["name"] for m in c["haproxy"]["volumeMounts"]] == ["run"], "HAProxy itself sees no Secret"
    assert spec["automountServiceAccountToken"] is False


def test_haproxy_routes_only_with_an_exclusive_sentinel_majority(render_chart):
    for replicas in (3, 5):
        m = render_chart(with_(BASE, **{"valkey.replicas": replicas}))
        cfg = m.get("ConfigMap", f"{NAME}-haproxy")["data"]["haproxy.cfg.tpl"]
        majority = replicas // 2 + 1
        rules = re.findall(r"^\s*use_backend (node_\d+) if (.+)$", cfg, re.M)
        assert [b for b, _ in rules] == [f"node_{i}" for i in range(replicas)]
        for i, (_, cond) in enumerate(rules):
            others = sorted(f"!node_{j}_named" for j in range(replicas) if j != i)
            assert sorted(cond.split()) == sorted([f"node_{i}_up", f"node_{i}_named", *others])
            assert re.search(rf"acl node_{i}_named nbsrv\(sentinels_name_node_{i}\) ge {majority}$", cfg, re.M)
        assert re.search(r"^\s*default_backend no_primary$", cfg, re.M)
        assert re.search(r"^backend no_primary\n?\Z", cfg.strip() + "\n", re.M), "no_primary has no server"
        for i in range(replicas):
            name = f"{NAME}-{i}.{NAME}-headless.default.svc.cluster.local"
            block = cfg.split(f"backend sentinels_name_node_{i}\n")[1].split("\nbackend ")[0]
            # min-recv: the whole name, its framing and the +OK before it have arrived, so a mismatch is final
            assert f"tcp-check expect string {name} min-recv {len(name) + 16}\n" in block
            assert len(re.findall(r"^\s*server sentinel_\d+ \S+:26379 ", block, re.M)) == replicas
            node = cfg.split(f"backend node_{i}\n")[1].split("\nbackend ")[0]
            assert "tcp-check expect string role:master min-recv 64\n" in node and "on-marked-down shutdown-sessions" in node
        assert "@auth-hex@" in cfg and "AUTH" not in cfg, "the login is filled in by config-init, from the Secret"


def test_a_new_haproxy_pod_starts_only_once_it_routes_to_a_primary(render_chart):
    """/started answers 200 under the same rule that picks the backend (the real HAProxy runs it in
    tests/integration/test_chart_ha_configs.py); the startup probe asks it once a second for startupTimeout."""
    m = render_chart(with_(BASE, **{"valkey.haproxy.startupTimeout": 90}))
    cfg = m.get("ConfigMap", f"{NAME}-haproxy")["data"]["haproxy.cfg.tpl"]
    routes = [cond for _, cond in re.findall(r"^\s*use_backend (node_\d+) if (.+)$", cfg, re.M)]
    [started] = re.findall(r'^\s*http-request return status 200 .* if (.+)$', cfg, re.M)
    assert started.split(" || ") == [f"{{ path /started }} {route}" for route in routes]
    metrics = cfg.split("frontend metrics\n")[1].split("\nfrontend ")[0]
    assert 'http-request return status 503 content-type text/plain string "no primary found yet" if { path /started }' in metrics
    probe = containers(m, "Deployment", f"{NAME}-haproxy")["haproxy"]["startupProbe"]
    assert probe == {"httpGet": {"path": "/started", "port": "metrics"}, "periodSeconds": 1, "timeoutSeconds": 2,
                     "failureThreshold": 90}


@pytest.mark.parametrize("haproxy, nbthread", [
    ({}, 1),  # the default 1-core limit
    ({"valkey.haproxy.resources.limits.cpu": "2500m"}, 3),
    ({"valkey.haproxy.resources.limits.cpu": "250m"}, 1),
    ({"valkey.haproxy.threads": 4}, 4),
    ({"valkey.haproxy.resources.limits.cpu": None}, None),  # no limit: HAProxy's own default
])
def test_haproxy_threads_follow_its_cpu_limit(render_chart, haproxy, nbthread):
    cfg = render_chart(with_(BASE, **haproxy)).get("ConfigMap", f"{NAME}-haproxy")["data"]["haproxy.cfg.tpl"]
    assert re.findall(r"^\s*nbthread (\d+)$", cfg, re.M) == ([str(nbthread)] if nbthread else [])


@pytest.mark.parametrize("threads", [-1, 65, "two"])
def test_haproxy_threads_out_of_range_are_refused(render_chart, threads):
    with pytest.raises(chart.RenderError, match="threads"):
        render_chart(with_(BASE, **{"valkey.haproxy.threads": threads}))


def test_servicemonitor_scrapes_servers_sentinels_and_haproxy(ha):
    sm = ha.of_kind("ServiceMonitor")[0]["spec"]
    ports = [e["port"] for e in sm["endpoints"]]
    assert ports == ["metrics", "sentinel-metrics", "haproxy-metrics"]
    selector = sm["selector"]
    allowed = selector["matchExpressions"][0]["values"]
    selected = [s for s in ha.of_kind("Service")
                if s["metadata"]["labels"]["app.kubernetes.io/component"] in allowed
                and selector["matchLabels"].items() <= s["metadata"]["labels"].items()]
    # Each endpoint's port is on exactly one selected Service: one job per metrics source.
    for port in ports:
        owners = [s["metadata"]["name"] for s in selected if port in [p["name"] for p in s["spec"]["ports"]]]
        assert len(owners) == 1, (port, owners)
    assert sorted(s["metadata"]["name"] for s in selected) == [f"{NAME}-haproxy-metrics", f"{NAME}-metrics",
                                                               f"{NAME}-sentinel"]


@pytest.mark.parametrize("password", ["plain-password-0123456789", 'sp ace"quote\\back#hash$dollar%pct&amp;é'])
def test_haproxy_init_writes_the_auth_command_as_hex(ha, tmp_path, password):
    """haproxy-init.sh (the HAProxy pod's config-init) turns the Secret file into one RESP AUTH command, byte for
    byte, whatever the password holds; the file is private and nothing else of the template changes."""
    template = ha.get("ConfigMap", f"{NAME}-haproxy")["data"]["haproxy.cfg.tpl"]
    script = ha.get("ConfigMap", f"{NAME}-scripts")["data"]["haproxy-init.sh"]
    (tmp_path / "haproxy-init.sh").write_text(script)
    (tmp_path / "haproxy.cfg.tpl").write_text(template)
    (tmp_path / "password").write_bytes(password.encode())
    (tmp_path / "run").mkdir()
    subprocess.run(["/bin/sh", str(tmp_path / "haproxy-init.sh")], check=True, capture_output=True, timeout=30,
                   env={"PATH": "/usr/bin:/bin", "HAPROXY_USER": "haproxy", "RUN_DIR": str(tmp_path / "run"),
                        "HAPROXY_PASSWORD_FILE": str(tmp_path / "password"),
                        "HAPROXY_TEMPLATE": str(tmp_path / "haproxy.cfg.tpl")})
    out = tmp_path / "run" / "haproxy.cfg"
    assert out.stat().st_mode & 0o077 == 0
    text = out.read_text()
    hexes = set(re.findall(r"send-binary (\S+)", text))
    assert len(hexes) == 1
    raw = password.encode()
    assert bytes.fromhex(hexes.pop()) == b"*3\r\n$4\r\nAUTH\r\n$7\r\nhaproxy\r\n$%d\r\n%s\r\n" % (len(raw), raw)
    assert re.sub(r"send-binary \S+", "send-binary @auth-hex@", text) == template
    assert password not in text


def test_haproxy_init_refuses_a_missing_password(ha, tmp_path):
    (tmp_path / "haproxy-init.sh").write_text(ha.get("ConfigMap", f"{NAME}-scripts")["data"]["haproxy-init.sh"])
    proc = subprocess.run(["/bin/sh", str(tmp_path / "haproxy-init.sh")], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "HAPROXY_USER": "haproxy",
                               "HAPROXY_PASSWORD_FILE": str(tmp_path / "absent")})
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"haproxy-init: the password file {tmp_path / 'absent'} is missing or empty"
