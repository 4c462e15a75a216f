"""valkey.tls on a running Redis 7 (the Valkey wheels have no TLS): the local stack plays cert-manager for the
rendered Certificate and the pod runs as rendered. Through the client Service, the application profile passes
over TLS with the CA; a plaintext client is refused; with `authClients: yes` a client without a certificate is
refused; the exporter, the probes and the helm test pod work over TLS only, each shown by its own output; and a
renewed Secret, swapped in the kubelet's way, reaches new handshakes without a restart."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess

import port_for
import pytest
import redis

from alert_history_cache import chart, local_certs
from alert_history_cache.waiting import wait_until
from helpers.app_profile import replay_application_profile
from helpers.local_stack import FAST_PROBES, assert_nothing_left, engine_or_skip, exporter_or_skip, root_or_skip
from helpers.metrics import scrape
from helpers.servers import StackServer

pytestmark = pytest.mark.integration

RELOAD_INTERVAL = 2
SENTINEL_RESTART_DELAY = 4
SERVICE_DNS = "alerthistory-redis.default.svc.cluster.local"


class TlsService(StackServer):
    """The stack through its client Service's ClusterIP, every client speaking TLS with the stack's CA."""

    def __init__(self, stack) -> None:
        super().__init__(stack)
        self.host = stack.service_host

    def client(self, username=None, password=None, **kwargs) -> redis.Redis:
        return super().client(username, password, **{**self.stack.tls_files.redis_kwargs(), **kwargs})


def start_stack(tmp_path_factory, name: str, tls: dict):
    from alert_history_cache.stack import LocalStack

    root_or_skip()
    engine_or_skip("redis7")
    exporter_or_skip()
    values = chart.deep_merge(FAST_PROBES, {"valkey": {"tls": {"enabled": True, **tls}}})
    stack = LocalStack(values=values, engine="redis7", state_dir=tmp_path_factory.mktemp(name), monitoring=False)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory, "tls", {"reloadInterval": RELOAD_INTERVAL})
    yield stack
    stack.stop()
    assert_nothing_left(stack.state_dir)


@pytest.fixture(scope="module")
def mtls_stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory, "mtls", {"authClients": "yes"})
    yield stack
    stack.stop()
    assert_nothing_left(stack.state_dir)


def peer_certificate(host: str, port: int, ca, server_hostname: str | None = None, client_pair=None) -> bytes:
    """The server certificate (PEM) of a fresh TLS handshake, checked against the CA (and the name, if given),
    presenting `client_pair` (cert, key) when given (mutual TLS)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = server_hostname is not None
    if client_pair:
        ctx.load_cert_chain(*map(str, client_pair))
    with socket.create_connection((host, port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname=server_hostname) as tls:
            return ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode()


@pytest.mark.parametrize("protocol", [2, 3])
def test_application_profile_over_tls_through_the_client_service(tls_stack, protocol):
    replay_application_profile(TlsService(tls_stack), protocol)


def test_the_certificate_names_the_client_service_and_chains_to_the_ca(tls_stack):
    ca = tls_stack.tls_files.ca
    pem = peer_certificate(tls_stack.service_host, tls_stack.port, ca, server_hostname=SERVICE_DNS)
    assert b"BEGIN CERTIFICATE" in pem
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match"):
        peer_certificate(tls_stack.service_host, tls_stack.port, ca, server_hostname="other.example")


def test_a_plaintext_client_is_refused(tls_stack):
    plain = redis.Redis(host=tls_stack.service_host, port=tls_stack.port, password=tls_stack.user_password("app"),
                        socket_timeout=5, socket_connect_timeout=5, retry=None)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    # The server has no plaintext port at all (port 0), not merely a refusal of this one client.
    assert tls_stack.client("admin").config_get("port") == {"port": "0"}


def test_a_client_without_the_ca_is_refused(tls_stack):
    ctx = ssl.create_default_context()  # the system's CAs only: the local CA is nobody's
    with socket.create_connection((tls_stack.service_host, tls_stack.port), timeout=5) as sock:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(sock, server_hostname=SERVICE_DNS)


def test_the_exporter_scrapes_over_tls(tls_stack):
    """redis_up 1 from a server that listens on TLS only: the exporter's rediss:// connection works, and reads the
    server's INFO (its uptime, whole seconds: 0 in the first second after the start, so poll for the first tick)."""
    def values() -> dict[str, str]:
        page = scrape(tls_stack.endpoints()["metrics"])
        return dict(line.split() for line in page.splitlines() if re.match(r"redis_(up|uptime_in_seconds) ", line))

    seen = wait_until(lambda: (v := values()) and float(v.get("redis_uptime_in_seconds", 0)) > 0 and v, 15,
                      "the exporter to report the server's uptime", interval=0.5)
    assert seen["redis_up"] == "1"


def test_the_probes_pass_over_tls(tls_stack):
    """The pod is Ready on probes that can only reach the server over TLS; each probe ran and passed."""
    status = tls_stack.pod.kubelet.status["valkey"]
    # The liveness probe's first run may still be ahead when the pod is Ready: wait until each probe has run.
    wait_until(lambda: all(p.runs > 0 for p in status.probes.values()), 60, "each probe of the server to run once")
    assert {kind: p.result for kind, p in status.probes.items()} == {
        "startup": "success", "readiness": "success", "liveness": "success"}


def test_a_probe_names_a_missing_tls_file(tls_stack):
    out = tls_stack.exec(["/bin/sh", "/scripts/readiness.sh"], env={"VALKEY_TLS_CA_FILE": "/etc/valkey-tls/none.crt"})
    assert out.returncode == 1
    assert "TLS is on but /etc/valkey-tls/none.crt is missing" in out.stdout.decode()


def test_the_helm_test_pod_passes_over_tls(tls_stack):
    pod = tls_stack.manifests.get("Pod", "alerthistory-redis-test-connection")
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    tls_dir = tls_stack.cluster.pod_dir(tls_stack.primary_name) / "secrets" / pod["spec"]["volumes"][0]["secret"][
        "secretName"]
    # What differs from the cluster: the Service name -> its ClusterIP, the image's CLI -> the engine's, the
    # Secret's mount path -> its folder here.
    env.update(PATH="/usr/bin:/bin", HOST=tls_stack.service_host, CLI=str(tls_stack.engine.cli),
               TLS_ARGS=env["TLS_ARGS"].replace("/etc/valkey-tls", str(tls_dir)),
               REDISCLI_AUTH=tls_stack.user_password("app"))
    ok = subprocess.run(container["command"] + container["args"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[0] == "ok   PING"
    without_tls = subprocess.run(container["command"] + container["args"], env={**env, "TLS_ARGS": ""},
                                 capture_output=True, text=True, timeout=60)
    assert without_tls.returncode != 0


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_stack):
    assert mtls_stack.client("admin").config_get("tls-auth-clients") == {"tls-auth-clients": "yes"}
    bare = redis.Redis(host=mtls_stack.service_host, port=mtls_stack.port, password=mtls_stack.user_password("app"),
                       ssl=True, ssl_ca_certs=str(mtls_stack.tls_files.ca), ssl_check_hostname=False,
                       socket_timeout=5, retry=None)
    with pytest.raises(redis.ConnectionError):
        bare.ping()
    # With the client certificate, the same client works: the application profile passes.
    replay_application_profile(TlsService(mtls_stack), 3)


def test_mutual_tls_exporter_and_probes_present_the_pods_pair(mtls_stack):
    assert re.search(r"^redis_up 1$", scrape(mtls_stack.endpoints()["metrics"]), re.M)
    assert mtls_stack.pod.ready


def test_a_renewed_certificate_reaches_new_handshakes_without_a_restart(tls_stack):
    """The kubelet's swap (new timestamped folder, one rename of ..data); the tls-reloader applies it within
    its interval. An open connection keeps working and the server's run_id does not change."""
    host, port, ca = tls_stack.service_host, tls_stack.port, tls_stack.tls_files.ca
    admin = tls_stack.client("admin")
    run_id = admin.info("server")["run_id"]
    before = local_certs.serial_of(peer_certificate(host, port, ca))
    held = tls_stack.client("app")
    assert held.set("rotation:held", "1") is True

    new = tls_stack.renew_certificate()
    expected = local_certs.serial_of(new["tls.crt"])
    assert expected != before
    seen = wait_until(lambda: (s := local_certs.serial_of(peer_certificate(host, port, ca))) == expected and s,
                      RELOAD_INTERVAL + 15, "a new handshake showing the renewed certificate's serial")
    assert seen == expected
    assert held.get("rotation:held") == "1"  # the connection opened before the renewal
    assert admin.info("server")["run_id"] == run_id
    log = tls_stack.log_path("tls-reloader").read_text()
    assert "loaded the renewed certificate" in log


@pytest.fixture(scope="module")
def tls_replication(tmp_path_factory):
    from alert_history_cache.stack import LocalStack

    root_or_skip()
    engine_or_skip("redis7")
    exporter_or_skip()
    values = {"valkey": {"architecture": "replication", "tls": {
        "enabled": True, "authClients": "yes", "reloadInterval": RELOAD_INTERVAL,
        "reloader": {"sentinelRestartDelay": SENTINEL_RESTART_DELAY}}}}
    stack = LocalStack(values=values, engine="redis7", state_dir=tmp_path_factory.mktemp("tls-ha"), monitoring=False)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
    assert_nothing_left(stack.state_dir)


def data_pods(stack) -> list:
    return [p for p in stack.cluster.pods.values() if p.plan.owner == "alerthistory-redis"]


def test_replication_runs_over_tls(tls_replication):
    """Each replica's link to the primary is up while every server has port 0: the links are TLS."""
    st = tls_replication
    roles = {}
    for pod in data_pods(st):
        admin = st.client("admin", pod=pod.name)
        assert admin.config_get("port") == {"port": "0"}
        assert admin.config_get("tls-replication") == {"tls-replication": "yes"}
        roles[pod.name] = admin.info("replication")
    primaries = [n for n, r in roles.items() if r["role"] == "master"]
    assert len(primaries) == 1
    assert roles[primaries[0]]["connected_slaves"] == 2
    for name, info in roles.items():
        if name not in primaries:
            assert info["master_link_status"] == "up", name


def test_sentinel_runs_over_tls(tls_replication):
    st = tls_replication
    v = st.full_values["valkey"]
    pod = data_pods(st)[0]
    sentinel = redis.Redis(host=pod.ip, port=v["sentinel"]["port"], username=v["acl"]["sentinelUser"],
                           password=st.password(v["password"]["sentinelSecretKey"]), socket_timeout=5,
                           decode_responses=True, **st.tls_files.redis_kwargs())
    # Its own status: it reaches the primary (flags master, not s_down) and both other Sentinels, all over TLS.
    # It finds the replicas in the primary's INFO every 10 s and the Sentinels by their hellos: poll for both.
    master = wait_until(lambda: (m := sentinel.sentinel_master(v["sentinel"]["masterSet"]))["num-slaves"] == 2
                        and m["num-other-sentinels"] == 2 and m, 60, "the Sentinel to know both replicas and both "
                        "other Sentinels", interval=0.5)
    assert "s_down" not in master["flags"]
    plain = redis.Redis(host=pod.ip, port=v["sentinel"]["port"], socket_timeout=5, retry=None)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    page = scrape(f"http://{pod.ip}:{v['exporter']['sentinelPort']}/metrics")
    assert re.search(r'^redis_sentinel_master_status\{.*master_status="ok".*\} 1$', page, re.M)


def test_haproxy_checks_over_tls_and_passes_tls_through(tls_replication):
    st = tls_replication
    haproxy = [p for p in st.cluster.pods.values() if p.plan.owner == "alerthistory-redis-haproxy"]
    assert len(haproxy) == 2
    for pod in haproxy:
        def servers_up() -> list[str]:
            page = scrape(f"http://{pod.ip}:{st.full_values['valkey']['haproxy']['metricsPort']}/metrics")
            return re.findall(r'^haproxy_server_status\{proxy="node_(\d)",server="redis",state="UP"\} 1$', page, re.M)
        # HAProxy starts every server UP until its first check says otherwise (no route meanwhile: the Sentinel
        # backends are all UP too, so every node counts as named and none is routed to): wait for the checks.
        up = wait_until(lambda: (u := servers_up()) and len(u) == 1 and u, 30, "HAProxy's TLS checks to find one "
                        "primary", interval=0.5)
        assert up == [p.name[-1] for p in data_pods(st) if st.client("admin", pod=p.name).info("replication")["role"]
                      == "master"]
    # Through the client Service (HAProxy) to the primary, TLS end to end, the application profile passes.
    replay_application_profile(TlsService(st), 2)
    ctx_pem = peer_certificate(st.service_host, st.port, st.tls_files.ca, server_hostname=SERVICE_DNS)
    assert b"BEGIN CERTIFICATE" in ctx_pem  # the server's certificate, passed through HAProxy


def test_an_existing_tls_secret_from_files(tmp_path_factory):
    """valkey.tls.existingSecret without an issuer: the Secret's keys come from --secret-file (here a pair from a
    CA of the test's own), and clients trust that CA."""
    from alert_history_cache.stack import LocalStack

    root_or_skip()
    engine_or_skip("redis7")
    exporter_or_skip()
    own = tmp_path_factory.mktemp("own-ca")
    ca = local_certs.LocalCA(own)
    cert, key = ca.sign("server", common_name="cache", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    values = chart.deep_merge(FAST_PROBES, {"valkey": {"tls": {"enabled": True, "existingSecret": "my-tls"}}})
    stack = LocalStack(values=values, engine="redis7", state_dir=tmp_path_factory.mktemp("own"), monitoring=False,
                       secret_files={"tls.crt": cert, "tls.key": key, "ca.crt": ca.cert})
    try:
        stack.start()
        assert stack.manifests.of_kind("Certificate") == []
        assert stack.tls_files.ca.read_bytes() == ca.cert.read_bytes()
        pem = peer_certificate(stack.service_host, stack.port, ca.cert)
        assert local_certs.serial_of(pem) == local_certs.serial_of(cert.read_bytes())
        assert stack.client("app").ping() is True
    finally:
        stack.stop()
    assert_nothing_left(stack.state_dir)


def test_the_valkey_engines_refuse_tls_in_one_line(tmp_path):
    from alert_history_cache.stack import LocalStack, StackError

    root_or_skip()
    for engine in ("valkey8", "valkey9"):
        engine_or_skip(engine)
        stack = LocalStack(values={"valkey": {"tls": {"enabled": True}}}, engine=engine,
                           state_dir=tmp_path / engine, monitoring=False)
        with pytest.raises(StackError, match=rf"valkey.tls.enabled: the {engine} engine's server is built without "
                                             r"TLS .*--engine redis7") as exc:
            stack.start()
        assert "\n" not in str(exc.value)
        assert_nothing_left(tmp_path / engine)


@pytest.mark.parametrize("engine_name, accepted", [("valkey9", True), ("valkey8", False), ("redis7", False)])
def test_only_valkey_9_1_sentinel_takes_tls_auto_reload_interval(tmp_path, engine_name, accepted):
    """ha-sentinel.sh writes tls-auto-reload-interval into the Sentinel config on Valkey 9.1 only (the chart sets
    HA_TLS_AUTO_RELOAD_INTERVAL there): the 9.1 Sentinel starts with it, older engines refuse the directive.
    Whether it then reloads in Sentinel mode needs a TLS build, which the Valkey wheels are not."""
    engine = engine_or_skip(engine_name)
    port = port_for.select_random()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\ntls-auto-reload-interval 60\n"
                    "sentinel monitor m 127.0.0.1 1 1\n")
    proc = subprocess.Popen([str(engine.server_path), str(conf), "--sentinel"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        if accepted:
            client = redis.Redis(port=port, socket_timeout=2)
            assert wait_until(lambda: client.ping(), 15, "the Sentinel to answer", ignore=(redis.ConnectionError,))
            assert client.execute_command("SENTINEL", "MASTERS")
        else:
            assert proc.wait(15) != 0
            assert "tls-auto-reload-interval" in proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()


def sentinel_serial(st, pod) -> str | None:
    """The serial of the certificate a new handshake with the pod's Sentinel gets (None: no handshake)."""
    port = st.full_values["valkey"]["sentinel"]["port"]
    try:
        pem = peer_certificate(pod.ip, port, st.tls_files.ca, client_pair=(st.tls_files.cert, st.tls_files.key))
    except OSError:
        return None
    return local_certs.serial_of(pem)


def sentinel_restarts(st) -> dict[str, int]:
    return {p.name: p.snapshot()["containers"]["sentinel"]["restarts"] for p in data_pods(st)}


def test_a_renewed_certificate_restarts_each_sentinel_once_and_one_at_a_time(tls_replication):
    """Sentinel loads its certificate only at start. After a renewal each pod's tls-reloader restarts its own
    Sentinel, pod n after n x sentinelRestartDelay and only while the others answer: every Sentinel ends on the
    new certificate, never two of them are down at the same time, and the primary does not change."""
    st = tls_replication
    pods = sorted(data_pods(st), key=lambda p: p.name)
    primary = [p.name for p in pods if st.client("admin", pod=p.name).info("replication")["role"] == "master"]
    restarts = sentinel_restarts(st)
    expected = local_certs.serial_of(st.renew_certificate()["tls.crt"])
    most_down = 0

    def every_sentinel_renewed() -> bool:
        nonlocal most_down
        serials = [sentinel_serial(st, p) for p in pods]
        most_down = max(most_down, serials.count(None))
        return all(s == expected for s in serials)

    # The slowest is pod 2: one reload interval, 2 x the delay, its own poll; then a Sentinel start.
    wait_until(every_sentinel_renewed, RELOAD_INTERVAL * 4 + SENTINEL_RESTART_DELAY * 2 + 60,
               "every Sentinel to serve the renewed certificate", interval=0.05)
    assert most_down <= 1
    assert {n: c - restarts[n] for n, c in sentinel_restarts(st).items()} == {p.name: 1 for p in pods}
    assert [p.name for p in pods if st.client("admin", pod=p.name).info("replication")["role"] == "master"] == primary
    times = []
    for pod in pods:
        log = st.log_path("tls-reloader", pod=pod.name).read_text()
        [line] = [ln for ln in log.splitlines() if "restarting the Sentinel for the renewed certificate" in ln]
        times.append(line.split()[0])
    assert times == sorted(times), times  # in the order of the ordinals


def test_a_sentinel_restart_waits_while_another_sentinel_does_not_answer(tls_replication):
    """Pod 1's Sentinel is stopped (SIGSTOP: its port accepts, nothing answers) during a renewal: pod 0's reloader
    keeps its Sentinel up, on the old certificate, until pod 1's answers again; then every Sentinel renews."""
    st = tls_replication
    pods = sorted(data_pods(st), key=lambda p: p.name)
    before = sentinel_serial(st, pods[0])
    stopped = pods[1].snapshot()["containers"]["sentinel"]["pid"]
    os.kill(stopped, signal.SIGSTOP)
    try:
        expected = local_certs.serial_of(st.renew_certificate()["tls.crt"])
        log = st.log_path("tls-reloader", pod=pods[0].name)
        wait_until(lambda: f"the Sentinel restart waits: the Sentinel of {pods[1].name}." in log.read_text(),
                   RELOAD_INTERVAL * 4 + 30, "pod 0's reloader to wait for pod 1's Sentinel")
        assert sentinel_serial(st, pods[0]) == before != expected
    finally:
        os.kill(stopped, signal.SIGCONT)
    wait_until(lambda: all(sentinel_serial(st, p) == expected for p in pods),
               RELOAD_INTERVAL * 4 + SENTINEL_RESTART_DELAY * 2 + 60, "every Sentinel on the renewed certificate",
               interval=0.2)


def test_the_reloaders_sentinel_user_may_only_ping_read_and_shut_down(tls_replication):
    st = tls_replication
    pod = sorted(data_pods(st), key=lambda p: p.name)[0]
    password = (pod.volumes.paths["reloader-run"] / "sentinel-password").read_text()
    sentinel = redis.Redis(host=pod.ip, port=st.full_values["valkey"]["sentinel"]["port"], username="tls-reloader",
                           password=password, socket_timeout=5, decode_responses=True, **st.tls_files.redis_kwargs())
    assert sentinel.ping() is True
    assert sentinel.sentinel_master(st.full_values["valkey"]["sentinel"]["masterSet"])["flags"] == "master"
    for command in (["SENTINEL", "FAILOVER", "alerthistory"], ["SENTINEL", "SET", "alerthistory", "quorum", "1"],
                    ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "alerthistory"], ["INFO"]):
        with pytest.raises(redis.exceptions.NoPermissionError):
            sentinel.execute_command(*command)
