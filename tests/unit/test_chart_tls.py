"""valkey.tls renders TLS on every path the pod has, with no plaintext fallback: the server's TLS port and
files, the probes' and exporter's TLS settings, the helm test pod, the Certificate's names, the reload path
that fits the engine (Valkey 9.1's tls-auto-reload-interval, else the tls-reloader container), and the
plaintext migration port. The local stack proves the same on a running Redis 7 (tests/integration/test_tls.py)."""

from __future__ import annotations

import pytest
from helpers.values import CI_DIR, load_yaml, with_

TLS = {"fullnameOverride": "alerthistory",
       "valkey": {"tls": {"enabled": True, "existingSecret": "cache-tls"},
                  "password": {"application": "tls-test-application-pw", "exporter": "tls-test-exporter-pw",
                               "admin": "tls-test-admin-password"}}}
REPLICATION = with_(TLS, **{"valkey.architecture": "replication", "valkey.replicas": 3})


def config_lines(manifests) -> list[str]:
    [cm] = [c for c in manifests.of_kind("ConfigMap") if "valkey.conf" in c["data"]]
    return [line.strip() for line in cm["data"]["valkey.conf"].splitlines()]


def directive(lines: list[str], name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in lines if line.split(None, 1)[:1] == [name]]


def pod_spec(manifests) -> dict:
    return manifests.of_kind("StatefulSet")[0]["spec"]["template"]["spec"]


def container(manifests, name: str) -> dict:
    return next(c for c in pod_spec(manifests)["containers"] if c["name"] == name)


def env(c: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def test_off_by_default_nothing_speaks_tls(render_chart):
    m = render_chart(load_yaml(CI_DIR / "default-values.yaml"))
    lines = config_lines(m)
    assert directive(lines, "port") == ["6379"]
    assert not [line for line in lines if line.startswith("tls-")]
    assert env(container(m, "exporter"))["REDIS_ADDR"].startswith("redis://")
    assert "tls" not in {v["name"] for v in pod_spec(m)["volumes"]}
    assert m.of_kind("Certificate") == []


def test_the_server_listens_on_tls_only(render_chart):
    lines = config_lines(render_chart(TLS))
    assert directive(lines, "port") == ["0"]
    assert directive(lines, "tls-port") == ["6379"]
    assert directive(lines, "tls-cert-file") == ["/etc/valkey-tls/tls.crt"]
    assert directive(lines, "tls-key-file") == ["/etc/valkey-tls/tls.key"]
    assert directive(lines, "tls-ca-cert-file") == ["/etc/valkey-tls/ca.crt"]
    assert directive(lines, "tls-auth-clients") == ["no"]
    assert directive(lines, "tls-replication") == []


@pytest.mark.parametrize("mode", ["no", "optional", "yes"])
def test_auth_clients_mode_and_the_pods_own_client_certificate(render_chart, mode):
    m = render_chart(with_(TLS, **{"valkey.tls.authClients": mode}))
    assert directive(config_lines(m), "tls-auth-clients") == [mode]
    probes, exporter = env(container(m, "valkey")), env(container(m, "exporter"))
    assert probes["VALKEY_TLS_CA_FILE"] == exporter["REDIS_EXPORTER_TLS_CA_CERT_FILE"] == "/etc/valkey-tls/ca.crt"
    presents = mode != "no"
    assert ("VALKEY_TLS_CERT_FILE" in probes) is presents
    assert ("REDIS_EXPORTER_TLS_CLIENT_CERT_FILE" in exporter) is presents
    if presents:
        assert probes["VALKEY_TLS_KEY_FILE"] == exporter["REDIS_EXPORTER_TLS_CLIENT_KEY_FILE"] == "/etc/valkey-tls/tls.key"


def test_configured_key_names_reach_every_file_reference(render_chart):
    m = render_chart(with_(TLS, **{"valkey.tls.certKey": "server.pem", "valkey.tls.keyKey": "server.key",
                                   "valkey.tls.caKey": "root.pem", "valkey.tls.authClients": "yes"}))
    lines = config_lines(m)
    assert directive(lines, "tls-cert-file") == ["/etc/valkey-tls/server.pem"]
    assert directive(lines, "tls-key-file") == ["/etc/valkey-tls/server.key"]
    assert directive(lines, "tls-ca-cert-file") == ["/etc/valkey-tls/root.pem"]
    reloader = env(container(m, "tls-reloader"))
    assert (reloader["TLS_CERT_FILE"], reloader["TLS_KEY_FILE"], reloader["TLS_CA_FILE"]) == (
        "/etc/valkey-tls/server.pem", "/etc/valkey-tls/server.key", "/etc/valkey-tls/root.pem")


def test_the_exporter_dials_rediss_and_its_password_file_is_keyed_by_that_address(render_chart):
    m = render_chart(TLS)
    addr = env(container(m, "exporter"))["REDIS_ADDR"]
    assert addr == "rediss://127.0.0.1:6379"
    init = env(pod_spec(m)["initContainers"][0])
    assert init["EXPORTER_REDIS_ADDR"] == addr


def test_every_mount_of_the_secret_is_whole_so_a_renewal_reaches_it(render_chart):
    """kubelet never updates a subPath mount, and an items list would still be fine, but the chart mounts the
    Secret whole at one folder in each container that reads it."""
    m = render_chart(REPLICATION)
    spec = pod_spec(m)
    [vol] = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert vol["secret"] == {"secretName": "cache-tls", "defaultMode": 0o400}
    readers = {c["name"] for c in spec["containers"] for mnt in c.get("volumeMounts", []) if mnt["name"] == "tls"}
    assert {"valkey", "exporter", "tls-reloader"} <= readers
    for c in spec["containers"]:
        for mnt in c.get("volumeMounts", []):
            if mnt["name"] == "tls":
                assert mnt == {"name": "tls", "mountPath": "/etc/valkey-tls", "readOnly": True}, c["name"]


@pytest.mark.parametrize("image, builtin", [
    ({"repository": "valkey/valkey", "tag": "9.1"}, True),
    ({"repository": "valkey/valkey", "tag": "9.1.2-alpine"}, True),
    ({"repository": "valkey/valkey", "tag": "10.0"}, True),
    ({"repository": "valkey/valkey", "tag": "9.0"}, False),
    ({"repository": "valkey/valkey", "tag": "8.1"}, False),
    ({"repository": "valkey/valkey", "tag": "latest"}, False),
    ({"repository": "redis", "tag": "7.0"}, False),
])
def test_the_reload_path_fits_the_engine(render_chart, image, builtin):
    """Valkey 9.1+ reloads by itself; anything else (or a tag that names no version) gets the reloader."""
    m = render_chart(with_(TLS, **{"valkey.image": image, "valkey.tls.reloadInterval": 45}))
    names = {c["name"] for c in pod_spec(m)["containers"]}
    assert directive(config_lines(m), "tls-auto-reload-interval") == (["45"] if builtin else [])
    assert ("tls-reloader" in names) is not builtin
    volumes = {v["name"] for v in pod_spec(m)["volumes"]}
    assert ("tls-admin" in volumes) is not builtin
    if not builtin:
        reloader = container(m, "tls-reloader")
        assert reloader["command"] == ["/bin/sh", "/scripts/tls-reload.sh"]
        assert env(reloader)["TLS_RELOAD_INTERVAL"] == "45"
        assert env(reloader)["TLS_ADMIN_USER"] == "admin"


def test_the_reloader_sees_the_admin_password_and_nothing_else_of_the_secret(render_chart):
    m = render_chart(TLS)
    [vol] = [v for v in pod_spec(m)["volumes"] if v["name"] == "tls-admin"]
    assert vol["secret"]["items"] == [{"key": "admin-password", "path": "admin-password"}]
    reloader = container(m, "tls-reloader")
    assert env(reloader)["TLS_ADMIN_PASSWORD_FILE"] == "/etc/valkey-admin/admin-password"
    assert {v["name"] for v in reloader["volumeMounts"]} == {"scripts", "tls", "tls-admin"}
    assert not any("valueFrom" in e for e in reloader["env"])  # no password in its environment


def sentinel_users(manifests) -> list[str]:
    [cm] = [c for c in manifests.of_kind("ConfigMap") if "sentinel-users.acl.tpl" in c["data"]]
    return cm["data"]["sentinel-users.acl.tpl"].splitlines()


def test_the_reloader_restarts_sentinel_as_a_user_that_may_do_little_else(render_chart):
    """Sentinel loads its certificate only at start: with replication the reloader restarts it, staggered by
    ordinal, logging in as a Sentinel user with a pod-local password that config-init writes to their own volume."""
    m = render_chart(with_(REPLICATION, **{"valkey.image": {"repository": "redis", "tag": "7.0"},
                                           "valkey.tls.reloader.sentinelRestartDelay": 45}))
    reloader = container(m, "tls-reloader")
    e = env(reloader)
    assert e["TLS_SENTINEL_RESTART_DELAY"] == "45" and e["TLS_SENTINEL_USER"] == "tls-reloader"
    assert e["TLS_SENTINEL_PASSWORD_FILE"] == "/run/tls-reloader/sentinel-password"
    assert e["HA_NODES"].split()[0].startswith("alerthistory-redis-0.") and len(e["HA_NODES"].split()) == 3
    assert e["TLS_SENTINEL_GENERATION_FILE"] == env(container(m, "sentinel"))["HA_TLS_GENERATION_FILE"]
    assert "HA_SENTINEL_PASSWORD_FILE" not in e  # never the Sentinel user's password
    assert {v["name"] for v in reloader["volumeMounts"]} == {"scripts", "tls", "tls-admin", "reloader-run"}
    readers = {c["name"] for c in pod_spec(m)["containers"] + pod_spec(m)["initContainers"]
               if any(v["name"] == "reloader-run" for v in c["volumeMounts"])}
    assert readers == {"config-init", "sentinel", "tls-reloader"}
    [vol] = [v for v in pod_spec(m)["volumes"] if v["name"] == "reloader-run"]
    assert vol["emptyDir"]["medium"] == "Memory"
    assert env(pod_spec(m)["initContainers"][0])["RELOADER_RUN_DIR"] == "/run/tls-reloader"
    [user] = [u for u in sentinel_users(m) if u.startswith("user tls-reloader ")]
    assert user.endswith("on @reloader@ resetkeys resetchannels -@all +ping +shutdown +sentinel|master")


@pytest.mark.parametrize("image, interval", [
    ({"repository": "valkey/valkey", "tag": "9.1"}, "45"),
    ({"repository": "valkey/valkey", "tag": "8.1"}, None),  # refuses the directive: the reloader restarts it
    ({"repository": "redis", "tag": "7.0"}, None),
])
def test_a_valkey_9_1_sentinel_reloads_its_certificate_by_itself(render_chart, image, interval):
    m = render_chart(with_(REPLICATION, **{"valkey.image": image, "valkey.tls.reloadInterval": 45}))
    assert env(container(m, "sentinel")).get("HA_TLS_AUTO_RELOAD_INTERVAL") == interval


@pytest.mark.parametrize("overrides", [
    {"valkey.image": {"repository": "valkey/valkey", "tag": "9.1"}},  # reloads by itself: no reloader
    {"valkey.tls.enabled": False},
])
def test_no_sentinel_restart_user_without_the_reloader(render_chart, overrides):
    m = render_chart(with_(REPLICATION, **overrides))
    assert not [u for u in sentinel_users(m) if "tls-reloader" in u]
    assert "reloader-run" not in {v["name"] for v in pod_spec(m)["volumes"]}
    assert "RELOADER_RUN_DIR" not in env(pod_spec(m)["initContainers"][0])


def test_the_certificate_names_every_address_a_client_dials(render_chart):
    values = with_(REPLICATION, **{"valkey.tls.certManager.issuerRef": {"name": "ca", "kind": "ClusterIssuer",
                                                                          "group": "cert-manager.io"}})
    [cert] = render_chart(values, namespace="cache").of_kind("Certificate")
    spec = cert["spec"]
    assert spec["secretName"] == "cache-tls"
    assert spec["issuerRef"] == {"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    names = set(spec["dnsNames"])
    for service in ("alerthistory-redis", "alerthistory-redis-headless", "alerthistory-redis-sentinel"):
        assert {service, f"{service}.cache", f"{service}.cache.svc", f"{service}.cache.svc.cluster.local"} <= names
    pods = {f"alerthistory-redis-{i}.alerthistory-redis-headless.cache.svc.cluster.local" for i in range(3)}
    assert pods <= names
    assert "localhost" in names and spec["ipAddresses"] == ["127.0.0.1"]
    assert {"server auth", "client auth"} <= set(spec["usages"])


def test_the_certificate_writes_the_default_secret_name(render_chart):
    values = with_(TLS, **{"valkey.tls.existingSecret": "", "valkey.tls.certManager.issuerRef.name": "ca"})
    m = render_chart(values)
    [cert] = m.of_kind("Certificate")
    assert cert["spec"]["secretName"] == "alerthistory-redis-tls"
    [vol] = [v for v in pod_spec(m)["volumes"] if v["name"] == "tls"]
    assert vol["secret"]["secretName"] == "alerthistory-redis-tls"
    assert "alerthistory-redis-sentinel" not in cert["spec"]["dnsNames"]  # standalone has no Sentinel


def test_replication_replicates_over_tls(render_chart):
    assert directive(config_lines(render_chart(REPLICATION)), "tls-replication") == ["yes"]


def test_a_full_resync_after_a_failover_starts_at_once(render_chart):
    """Without it a replica that cannot resync partially waits 5 s, and the new primary refuses writes
    (min-replicas-to-write) all that time; measured by `drill ha --scenario primary-delete` over TLS."""
    assert directive(config_lines(render_chart(REPLICATION)), "repl-diskless-sync-delay") == ["0"]
    standalone = config_lines(render_chart(TLS))
    assert directive(standalone, "repl-diskless-sync-delay") == []


def test_the_plaintext_migration_port_opens_on_server_service_and_network_policy(render_chart):
    values = with_(TLS, **{"valkey.tls.plaintextPort": 6380, "valkey.networkPolicy.enabled": True})
    m = render_chart(values)
    lines = config_lines(m)
    assert directive(lines, "port") == ["6380"] and directive(lines, "tls-port") == ["6379"]
    ports = {p["name"]: p["containerPort"] for p in container(m, "valkey")["ports"]}
    assert ports == {"redis": 6379, "redis-plaintext": 6380}
    svc = m.get("Service", "alerthistory-redis")
    assert {(p["name"], p["port"]) for p in svc["spec"]["ports"]} == {("redis", 6379), ("redis-plaintext", 6380)}
    [policy] = m.of_kind("NetworkPolicy")
    assert {p["port"] for p in policy["spec"]["ingress"][0]["ports"]} == {6379, 6380}


def test_the_helm_test_pod_speaks_tls_with_the_ca(render_chart):
    m = render_chart(with_(TLS, **{"valkey.tls.authClients": "yes"}))
    [pod] = [p for p in m.of_kind("Pod") if p["metadata"]["name"].endswith("test-connection")]
    c = pod["spec"]["containers"][0]
    assert env(c)["TLS_ARGS"] == ("--tls --cacert /etc/valkey-tls/ca.crt "
                                  "--cert /etc/valkey-tls/tls.crt --key /etc/valkey-tls/tls.key")
    assert "${TLS_ARGS:-}" in c["args"][0]
    assert pod["spec"]["volumes"] == [{"name": "tls", "secret": {"secretName": "cache-tls", "defaultMode": 0o400}}]



def test_sentinel_and_its_exporter_speak_tls(render_chart):
    m = render_chart(with_(REPLICATION, **{"valkey.tls.authClients": "yes"}))
    sentinel = env(container(m, "sentinel"))
    assert (sentinel["HA_TLS_CERT_FILE"], sentinel["HA_TLS_KEY_FILE"], sentinel["HA_TLS_AUTH_CLIENTS"]) == (
        "/etc/valkey-tls/tls.crt", "/etc/valkey-tls/tls.key", "yes")
    assert sentinel["VALKEY_TLS_CA_FILE"] == "/etc/valkey-tls/ca.crt"  # its HA script calls speak TLS
    assert env(container(m, "valkey"))["VALKEY_TLS_CA_FILE"] == "/etc/valkey-tls/ca.crt"  # ha-bootstrap.sh's too
    exporter = env(container(m, "sentinel-exporter"))
    assert exporter["REDIS_ADDR"] == "rediss://127.0.0.1:26379"
    assert exporter["REDIS_EXPORTER_TLS_CLIENT_CERT_FILE"] == "/etc/valkey-tls/tls.crt"
    init = env(pod_spec(m)["initContainers"][0])
    assert init["EXPORTER_SENTINEL_ADDR"] == exporter["REDIS_ADDR"]


def haproxy_servers(manifests) -> list[str]:
    cfg = manifests.get("ConfigMap", "alerthistory-redis-haproxy")["data"]["haproxy.cfg.tpl"]
    return [line.strip() for line in cfg.splitlines() if line.strip().startswith(("server ", "tcp-check connect"))]


@pytest.mark.parametrize("auth_clients", ["no", "yes"])
def test_haproxy_checks_run_over_tls_and_verify_the_ca(render_chart, auth_clients):
    m = render_chart(with_(REPLICATION, **{"valkey.tls.authClients": auth_clients}))
    lines = haproxy_servers(m)
    servers = [line for line in lines if line.startswith("server ")]
    assert len(servers) == 3 + 3 * 3  # a server check per pod, a Sentinel check per pod and Sentinel
    for line in servers:
        assert "check-ssl verify required ca-file /etc/haproxy-tls/ca.crt" in line
        assert (" crt /run/haproxy/check-client.pem" in line) is (auth_clients == "yes")
        assert " ssl " not in f"{line} "  # client traffic passes through: HAProxy never terminates TLS
    # A tcp-check connect rule without `default` would ignore check-ssl and check in plaintext.
    assert {line for line in lines if line.startswith("tcp-check")} == {"tcp-check connect default"}
    deployment = m.of_kind("Deployment")[0]["spec"]["template"]["spec"]
    assert {"name": "tls", "mountPath": "/etc/haproxy-tls", "readOnly": True} in deployment["containers"][0][
        "volumeMounts"]
    init = env(deployment["initContainers"][0])
    assert ("HAPROXY_TLS_CERT_FILE" in init) is (auth_clients == "yes")


def test_haproxy_checks_stay_plaintext_without_tls(render_chart):
    values = with_(REPLICATION, **{"valkey.tls": {"enabled": False}})
    lines = haproxy_servers(render_chart(values))
    assert not [line for line in lines if "ssl" in line]
    assert {line for line in lines if line.startswith("tcp-check")} == {"tcp-check connect"}


# -- the certificate-expiry Probe and its alerts (valkey.tls.expiryProbe) ---------------------------------------
PROBE = with_(TLS, **{"valkey.tls.expiryProbe.enabled": True,
                      "valkey.tls.expiryProbe.proberUrl": "prometheus-blackbox-exporter.monitoring.svc:9115"})
TLS_ALERTS = {"RedisTLSCertificateExpiringSoon", "RedisTLSProbeFailing"}


def alert_rules(manifests) -> dict[str, dict]:
    [rule] = manifests.of_kind("PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


def test_no_probe_and_no_certificate_alerts_unless_asked(render_chart):
    for values in (load_yaml(CI_DIR / "default-values.yaml"), TLS):
        m = render_chart(values)
        assert m.of_kind("Probe") == []
        assert not TLS_ALERTS & set(alert_rules(m))


def test_the_probe_dials_each_data_pod_by_the_name_its_certificate_carries(render_chart):
    m = render_chart(with_(PROBE, **{"valkey.architecture": "replication", "valkey.replicas": 3}))
    [probe] = m.of_kind("Probe")
    spec = probe["spec"]
    assert spec["prober"] == {"url": "prometheus-blackbox-exporter.monitoring.svc:9115", "scheme": "http",
                              "path": "/probe"}
    assert spec["module"] == "redis_tls" and spec["jobName"] == "alerthistory-redis-tls"
    targets = spec["targets"]["staticConfig"]["static"]
    # Each server and, with replication, each Sentinel: Sentinel loads its certificate only at start.
    assert targets == [f"alerthistory-redis-{i}.alerthistory-redis-headless.default.svc.cluster.local:{port}"
                       for i in range(3) for port in (6379, 26379)]
    assert {"sourceLabels": ["__param_target"], "regex": ".*:([0-9]+)", "targetLabel": "port",
            "replacement": "${1}"} in spec["targets"]["staticConfig"]["relabelingConfigs"]
    # Every target is a name the Certificate lists (with cert-manager), so the handshake checks it.
    certificate = render_chart(with_(PROBE, **{"valkey.architecture": "replication", "valkey.replicas": 3,
                                               "valkey.tls.existingSecret": "",
                                               "valkey.tls.certManager.issuerRef.name": "ca"})).of_kind("Certificate")
    assert {t.rsplit(":", 1)[0] for t in targets} <= set(certificate[0]["spec"]["dnsNames"])
    rules = alert_rules(m)
    assert TLS_ALERTS <= set(rules)
    assert rules["RedisTLSCertificateExpiringSoon"]["expr"] == (
        '(probe_ssl_earliest_cert_expiry{job="alerthistory-redis-tls",namespace="default"} - time()) / 86400 < 14')
    # No result for a target is a failure too: one absent() per data pod and port, naming both.
    failing = rules["RedisTLSProbeFailing"]["expr"]
    assert failing.count("absent(") == 6
    assert [f'absent(probe_success{{job="alerthistory-redis-tls",namespace="default",pod="alerthistory-redis-{i}",'
            f'port="{port}"}})' in failing for i in range(3) for port in (6379, 26379)] == [True] * 6


def test_without_replication_the_probe_dials_the_server_port_only(render_chart):
    m = render_chart(PROBE)
    [probe] = m.of_kind("Probe")
    assert probe["spec"]["targets"]["staticConfig"]["static"] == [
        "alerthistory-redis-0.alerthistory-redis-headless.default.svc.cluster.local:6379"]
    assert 'absent(probe_success{job="alerthistory-redis-tls",namespace="default",pod="alerthistory-redis-0"})' in (
        alert_rules(m)["RedisTLSProbeFailing"]["expr"])


def test_the_threshold_follows_values(render_chart):
    rules = alert_rules(render_chart(with_(PROBE, **{"monitoring.rules.redisTLSCertificateExpiringSoon.thresholdDays": 7,
                                                     "monitoring.rules.redisTLSProbeFailing.enabled": False})))
    assert rules["RedisTLSCertificateExpiringSoon"]["expr"].endswith("< 7")
    assert "RedisTLSProbeFailing" not in rules


@pytest.mark.parametrize("values, message", [
    (with_(TLS, **{"valkey.tls.expiryProbe.enabled": True}), "valkey.tls.expiryProbe.proberUrl: empty"),
    (with_(PROBE, **{"valkey.tls.enabled": False}), "valkey.tls.expiryProbe.enabled: true but valkey.tls.enabled is false"),
    (with_(PROBE, **{"valkey.tls.expiryProbe.scrapeTimeout": "2m"}),
     "valkey.tls.expiryProbe.scrapeTimeout: 2m must not exceed valkey.tls.expiryProbe.interval"),
    # cert-manager renews renewBefore (15 days) before expiry: a 15-day threshold would fire at every renewal.
    (with_(PROBE, **{"valkey.tls.certManager.issuerRef.name": "ca",
                     "monitoring.rules.redisTLSCertificateExpiringSoon.thresholdDays": 15}),
     "monitoring.rules.redisTLSCertificateExpiringSoon.thresholdDays: 15 days is not below the renewal point"),
    # A longer renewBefore moves the renewal point: 30 days.
    (with_(PROBE, **{"valkey.tls.certManager.issuerRef.name": "ca", "valkey.tls.certManager.renewBefore": "720h",
                     "monitoring.rules.redisTLSCertificateExpiringSoon.thresholdDays": 30}),
     "(30 days before expiry)"),
])
def test_expiry_probe_refusals_name_the_key(values, message):
    from alert_history_cache import chart

    with pytest.raises(chart.RenderError) as exc:
        chart.render(values)
    assert message in str(exc.value)


def test_a_threshold_below_the_renewal_point_renders(render_chart):
    m = render_chart(with_(PROBE, **{"valkey.tls.certManager.issuerRef.name": "ca", "valkey.tls.certManager.renewBefore": "720h",
                                     "monitoring.rules.redisTLSCertificateExpiringSoon.thresholdDays": 29}))
    assert alert_rules(m)["RedisTLSCertificateExpiringSoon"]["expr"].endswith("< 29")


def test_the_notes_say_whether_the_certificate_expiry_is_watched(render_chart):
    def notes(values) -> str:
        return next(text for path, text in render_chart(values).templates.items() if path.endswith("NOTES.txt"))

    assert "Certificate expiry is not monitored: set valkey.tls.expiryProbe.enabled" in notes(TLS)
    watched = notes(PROBE)
    assert "the Probe alerthistory-redis-tls needs your blackbox exporter at " \
           "prometheus-blackbox-exporter.monitoring.svc:9115 with module redis_tls" in watched
    assert "Certificate expiry" not in notes(load_yaml(CI_DIR / "default-values.yaml"))
