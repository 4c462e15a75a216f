"""The rendered replication objects run for real: three data pods and HAProxy built from the chart's render.

Renders valkey.architecture: replication, then runs each data pod's server and Sentinel exactly as its containers
would: the rendered valkey.conf (pod paths and listen address mapped through one table), the chart's init-acl.sh
as config-init (server ACL file and the Sentinels' extra users, from the rendered templates and Secret), the
rendered container commands and environment (HA_NODES, users, password files, timeouts), through ha-bootstrap.sh
and ha-sentinel.sh. HAProxy runs the rendered haproxy.cfg, written by the chart's haproxy-init.sh, after
`haproxy -c`. Pod names are loopback addresses (127.a.b.10-12), each pod on the same two ports, as in Kubernetes.

What it proves: the Sentinel config ha-sentinel.sh writes with the rendered users boots on every engine; the
rendered ACL rules let replication, Sentinel and HAProxy do their work with no denial; HAProxy sends clients to
the primary only, follows a failover, and refuses connections while no pod qualifies; the HAProxy user can read
but not reconfigure the Sentinels.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import port_for
import pytest
import redis

from alert_history_cache import chart, engines
from alert_history_cache.promapi import PromAPIError, http
from alert_history_cache.waiting import wait_until

from helpers.servers import map_lines

pytestmark = pytest.mark.integration

HAPROXY = shutil.which("haproxy")
NODES = 3
NAME = "alerthistory-redis"
ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)


def free_port(addresses: list[str], taken: set[int]) -> int:
    """A port free on every address (every pod listens on the same ports, each on its own address)."""
    while True:
        port = port_for.select_random()
        if port in taken:
            continue
        try:
            for addr in addresses:
                with socket.socket() as sock:
                    sock.bind((addr, port))
        except OSError:
            continue
        taken.add(port)
        return port


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}




class Release:
    """The rendered release's data pods and one HAProxy, as processes on loopback addresses."""

    def __init__(self, engine: engines.Engine, root: Path) -> None:
        self.engine, self.root = engine, root
        base = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
        self.addrs = [f"{base}.{10 + i}" for i in range(NODES)]
        taken: set[int] = set()
        self.server_port = free_port(self.addrs, taken)
        self.sentinel_port = free_port(self.addrs, taken)
        self.haproxy_port = free_port(["127.0.0.1"], taken)
        self.haproxy_metrics = free_port(["127.0.0.1"], taken)
        self.values = {
            "fullnameOverride": "alerthistory",
            "valkey": {
                "architecture": "replication", "replicas": NODES,
                "service": {"port": self.server_port},
                "sentinel": {"port": self.sentinel_port},
                # No DNS server here: HAProxy resolves the (mapped) addresses once, at start.
                "haproxy": {"metricsPort": self.haproxy_metrics, "resolvers": False},
            },
        }
        self.manifests = chart.render(self.values)
        m = self.manifests
        self.secret = {k: base64.b64decode(v).decode() for k, v in m.get("Secret", NAME)["data"].items()}
        self.names = [f"{NAME}-{i}.{NAME}-headless.default.svc.cluster.local" for i in range(NODES)]
        self.config = m.get("ConfigMap", f"{NAME}-config")["data"]
        self.scripts = m.get("ConfigMap", f"{NAME}-scripts")["data"]
        pod = m.get("StatefulSet", NAME)["spec"]["template"]["spec"]
        self.containers = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
        self.procs: list[subprocess.Popen] = []

        self.bin = root / "bin"
        self.bin.mkdir()
        # The image's binary names, mapped to this engine's programs (as the local stack does).
        for name, path in engine.image_binaries().items():
            (self.bin / name).symlink_to(path)
        self.scripts_dir = root / "scripts"
        self.scripts_dir.mkdir()
        for name, text in self.scripts.items():
            (self.scripts_dir / name).write_text(text)
        self.secret_dir = root / "secret"
        self.secret_dir.mkdir(mode=0o700)
        for key, value in self.secret.items():
            (self.secret_dir / key).write_text(value)
            (self.secret_dir / key).chmod(0o400)

    # -- one data pod -----------------------------------------------------------------------------------------
    def paths(self, i: int) -> dict[str, Path]:
        return {name: self.root / f"pod-{i}" / name for name in ("etc", "run", "data", "exporter")}

    def pod_path(self, i: int, value: str) -> str:
        """A rendered value with the pod's paths and names mapped to this machine's."""
        p = self.paths(i)
        value = value.replace("/etc/valkey-secret", str(self.secret_dir)).replace("/run/valkey", str(p["run"]))
        value = value.replace("/etc/valkey/", f"{p['etc']}/").replace("/run/exporter", str(p["exporter"]))
        for name, addr in zip(self.names, self.addrs):
            value = value.replace(name, addr)
        return value

    def container_env(self, i: int, container: str) -> dict[str, str]:
        env = {k: self.pod_path(i, v) for k, v in env_of(self.containers[container]).items()}
        # Pod 0's Sentinel also listens on 127.0.0.1, where its exporter sidecar finds it (pod-local localhost).
        bind = self.addrs[i] + (" 127.0.0.1" if i == 0 else "")
        env.update({"PATH": f"{self.bin}:/usr/bin:/bin", "HOSTNAME": f"{NAME}-{i}", "SECRET_DIR": str(self.secret_dir),
                    "RUN_DIR": str(self.paths(i)["run"]), "DATA_DIR": str(self.paths(i)["data"]),
                    "HA_SENTINEL_BIND": bind, "HA_RETRY_INTERVAL": "0.3", "HA_CALL_TIMEOUT": "2"})
        return env

    def config_init(self, i: int) -> None:
        p = self.paths(i)
        for d in p.values():
            d.mkdir(parents=True, mode=0o700)
        (p["etc"] / "users.acl.tpl").write_text(self.config["users.acl.tpl"])
        (p["etc"] / "sentinel-users.acl.tpl").write_text(self.config["sentinel-users.acl.tpl"])
        (p["etc"] / "valkey.conf").write_text(map_lines(self.config["valkey.conf"], {
            "bind * -::*": f"bind {self.addrs[i]}",
            "aclfile /run/valkey/users.acl": f"aclfile {p['run'] / 'users.acl'}",
            "dir /data": f"dir {p['data']}",
            "include /run/valkey/replication.conf": f"include {p['run'] / 'replication.conf'}",
        }))
        init = self.containers["config-init"]
        env = self.container_env(i, "config-init")
        env["ACL_TEMPLATE"] = str(p["etc"] / "users.acl.tpl")
        env["EXPORTER_DIR"] = str(p["exporter"])
        argv = [self.pod_path(i, a).replace("/scripts/", f"{self.scripts_dir}/") for a in init["command"]]
        subprocess.run(argv, env=env, check=True, capture_output=True, text=True, timeout=30)

    def spawn(self, i: int, container: str) -> subprocess.Popen:
        c = self.containers[container]
        argv = [self.pod_path(i, a).replace("/scripts/", f"{self.scripts_dir}/") for a in c["command"]]
        log = (self.root / f"pod-{i}-{container}.log").open("a")
        with log:
            proc = subprocess.Popen(argv, env=self.container_env(i, container), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_pods(self) -> None:
        for i in range(NODES):
            self.config_init(i)
            self.spawn(i, "valkey")
            wait_until(lambda: self.server(i).ping(), 60, f"server of pod {i}", ignore=ERRORS)
            self.spawn(i, "sentinel")
            wait_until(lambda: self.sentinel(i).ping(), 60, f"Sentinel of pod {i}", ignore=ERRORS)

    # -- HAProxy ----------------------------------------------------------------------------------------------
    def haproxy_config(self) -> Path:
        """haproxy.cfg as the HAProxy pod's config-init writes it, with names and listen addresses mapped."""
        hp = self.root / "haproxy"
        for d in ("etc", "secret", "run"):
            (hp / d).mkdir(parents=True, mode=0o700)
        template = self.manifests.get("ConfigMap", f"{NAME}-haproxy")["data"]["haproxy.cfg.tpl"]
        template = self.pod_path(0, template)
        # The names became addresses: the Sentinel checks' min-recv (the name, its framing and the +OK) follows.
        template = re.sub(r"(expect string (\S+) min-recv )\d+", lambda m: f"{m[1]}{len(m[2]) + 16}"
                          if m[2] in self.addrs else m[0], template)
        template = map_lines(template, {f"bind :{self.server_port}": f"bind 127.0.0.1:{self.haproxy_port}",
                                        f"bind :{self.haproxy_metrics}": f"bind 127.0.0.1:{self.haproxy_metrics}"})
        (hp / "etc" / "haproxy.cfg.tpl").write_text(template)
        deploy = self.manifests.get("Deployment", f"{NAME}-haproxy")["spec"]["template"]["spec"]
        secret_volume = next(v for v in deploy["volumes"] if v["name"] == "secret")["secret"]
        for item in secret_volume["items"]:  # only the HAProxy user's key reaches the pod
            (hp / "secret" / item["path"]).write_text(self.secret[item["key"]])
        init = deploy["initContainers"][0]
        env = {**env_of(init), "PATH": "/usr/bin:/bin", "RUN_DIR": str(hp / "run"),
               "HAPROXY_TEMPLATE": str(hp / "etc" / "haproxy.cfg.tpl"),
               "HAPROXY_PASSWORD_FILE": str(hp / "secret" / "password")}
        argv = [a.replace("/scripts/", f"{self.scripts_dir}/") for a in init["command"]]
        subprocess.run(argv, env=env, check=True, capture_output=True, text=True, timeout=30)
        return hp / "run" / "haproxy.cfg"

    def start_haproxy(self, cfg: Path) -> subprocess.Popen:
        command = self.manifests.get("Deployment", f"{NAME}-haproxy")["spec"]["template"]["spec"]["containers"][0][
            "command"]
        argv = [HAPROXY if a == "haproxy" else a.replace("/run/haproxy/haproxy.cfg", str(cfg)) for a in command]
        log = (self.root / "haproxy.log").open("a")
        with log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    # -- clients ----------------------------------------------------------------------------------------------
    def server(self, i: int, user: str = "admin", key: str = "admin-password") -> redis.Redis:
        return redis.Redis(self.addrs[i], self.server_port, username=user, password=self.secret[key],
                           socket_timeout=5, socket_connect_timeout=2, decode_responses=True)

    def sentinel(self, i: int, user: str = "sentinel", key: str = "sentinel-password") -> redis.Redis:
        return redis.Redis(self.addrs[i], self.sentinel_port, username=user, password=self.secret[key],
                           socket_timeout=5, socket_connect_timeout=2, decode_responses=True)

    def via_haproxy(self) -> redis.Redis:
        """The application's view: password-only AUTH through HAProxy, a new connection per call."""
        return redis.Redis("127.0.0.1", self.haproxy_port, password=self.secret["password"], socket_timeout=3,
                           socket_connect_timeout=2, decode_responses=True, single_connection_client=True)

    def primary(self) -> int | None:
        roles = []
        for i in range(NODES):
            with contextlib.suppress(*ERRORS), self.server(i) as s:
                roles.append((i, s.info("replication")["role"]))
        masters = [i for i, role in roles if role == "master"]
        return masters[0] if len(masters) == 1 else None

    def named(self) -> set[str]:
        out = set()
        for i in range(NODES):
            with contextlib.suppress(*ERRORS), self.sentinel(i) as s:
                out.add(s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "alerthistory")[0])
        return out

    def wait_complete(self) -> int:
        def complete():
            primary = self.primary()
            if primary is None or self.named() != {self.addrs[primary]}:
                return None
            for i in range(NODES):
                with self.sentinel(i) as s:
                    master = s.sentinel_master("alerthistory")
                if master["num-slaves"] != NODES - 1 or master["num-other-sentinels"] != NODES - 1:
                    return None
            return primary + 1  # truthy for pod 0 too

        return wait_until(complete, 60, "one primary that every Sentinel names and knows in full", ignore=ERRORS) - 1

    def denials(self) -> list[dict]:
        out = []
        for i in range(NODES):
            with self.server(i) as s:
                # The application identities' refused CLIENT SETINFO (redis-py sends it on connect) is expected.
                out += [e for e in s.acl_log() if e.get("username") not in ("default", "alerthistory")]
        return out

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def release(engine: engines.Engine, tmp_path: Path):
    r = Release(engine, tmp_path)
    try:
        yield r
    finally:
        r.stop()


def test_rendered_pods_replicate_and_sentinels_boot(release: Release) -> None:
    """The rendered containers form one primary (pod 0) with two replicas, watched by three Sentinels that boot
    on the config ha-sentinel.sh writes with the rendered users; no rendered ACL rule is missing."""
    release.start_pods()
    assert release.wait_complete() == 0
    for i in range(NODES):
        conf = (release.paths(i)["run"] / "sentinel.conf").read_text()
        assert "sentinel announce-hostnames yes" in conf and "sentinel resolve-hostnames yes" in conf
        users = sorted(line.split()[1] for line in conf.splitlines() if line.startswith("user "))
        assert users == ["default", "exporter", "haproxy", "sentinel"], conf
        with release.server(i) as s:
            assert s.config_get("min-replicas-to-write") == {"min-replicas-to-write": "1"}
            assert s.config_get("min-replicas-max-lag") == {"min-replicas-max-lag": "10"}
    # The Sentinels require auth, and the HAProxy user reads but cannot reconfigure them.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(release.addrs[1], release.sentinel_port, socket_timeout=5).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "alerthistory")
    with release.sentinel(1, "haproxy", "haproxy-password") as reader:
        assert reader.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "alerthistory")[0] == release.addrs[0]
        assert len(reader.execute_command("SENTINEL", "REPLICAS", "alerthistory")) == NODES - 1
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.execute_command("SENTINEL", "FAILOVER", "alerthistory")
    # The exporter user may read the Sentinel's INFO (the Sentinel exporter's login).
    with release.sentinel(2, "exporter", "exporter-password") as exporter:
        assert exporter.info("sentinel")["sentinel_masters"] == 1
    # The Sentinel exporter sidecar, with its rendered environment and the password file config-init wrote,
    # exports the Sentinel (the redis_sentinel_* metrics the HA alerts use).
    if engines.EXPORTER.path.exists():
        exporter_env = release.container_env(0, "sentinel-exporter")
        metrics_port = port_for.select_random()
        exporter_env["REDIS_EXPORTER_WEB_LISTEN_ADDRESS"] = f"127.0.0.1:{metrics_port}"
        log = (release.root / "sentinel-exporter.log").open("w")
        with log:
            proc = subprocess.Popen([str(engines.EXPORTER.binary)], env=exporter_env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        release.procs.append(proc)
        def sentinel_metrics() -> str:
            text = http("GET", f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).decode()
            return text if re.search(r"^redis_sentinel_masters 1$", text, re.M) else ""

        text = wait_until(sentinel_metrics, 20, "the Sentinel exporter's metrics", ignore=(PromAPIError,))
        assert re.search(r"^redis_up 1$", text, re.M)
        assert re.search(r'^redis_sentinel_master_ok_sentinels\{.*master_name="alerthistory".*\} 3$', text, re.M), \
            "\n".join(line for line in text.splitlines() if "sentinel" in line)
        # SENTINEL CKQUORUM is allowed to the exporter user: a NOPERM answer reads as status 0 (RedisSentinelQuorumUnreachable).
        assert re.search(r'^redis_sentinel_master_ckquorum_status\{.*message="OK .*\} 1$', text, re.M), \
            "\n".join(line for line in text.splitlines() if "ckquorum" in line)
    # A write to the primary reaches a replica through the replication user.
    with release.server(0, "alerthistory", "password") as app:
        app.set("ha:boot", "ok")
    wait_until(lambda: release.server(2).get("ha:boot") == "ok", 10, "the write on a replica", ignore=ERRORS)
    assert release.denials() == []


def started_status(release: Release) -> tuple[int, str]:
    """HAProxy's /started (the startup probe's URI): its status and body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{release.haproxy_metrics}/started", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (scripts/setup.sh installs it)")
@pytest.mark.parametrize("engine", ["valkey8"], indirect=True)
def test_rendered_haproxy_routes_to_the_one_primary(release: Release) -> None:
    """haproxy -c accepts the rendered config; HAProxy sends clients to the primary only, refuses connections
    while no pod has a Sentinel majority, and follows a failover to the new primary."""
    cfg = release.haproxy_config()
    assert "@auth-hex@" not in cfg.read_text() and release.secret["haproxy-password"] not in cfg.read_text()
    checked = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not re.search(r"\[(WARNING|ALERT)\]", checked.stdout + checked.stderr), checked.stdout + checked.stderr

    # No data pod yet: HAProxy runs, but every connection is closed unanswered.
    release.start_haproxy(cfg)
    wait_until(lambda: socket.create_connection(("127.0.0.1", release.haproxy_port), 1).close() or True, 10,
               "HAProxy listening", ignore=(OSError,))
    with pytest.raises(ERRORS), release.via_haproxy() as app:
        app.ping()
    assert started_status(release) == (503, "no primary found yet")  # the startup probe: not started yet

    release.start_pods()
    primary = release.wait_complete()

    def role_via_haproxy() -> str:
        with release.via_haproxy() as app:
            return app.info("replication")["role"]

    wait_until(lambda: role_via_haproxy() == "master", 20, "HAProxy routing to the primary", ignore=ERRORS)
    assert started_status(release) == (200, "routing to a primary")
    with release.server(primary) as s:
        primary_run_id = s.info("server")["run_id"]
    for _ in range(20):  # every new connection lands on the primary
        with release.via_haproxy() as app:
            assert app.info("server")["run_id"] == primary_run_id
            assert app.set("ha:via-haproxy", "1")

    # A failover under writes (a new connection each, as after a reconnect): HAProxy follows the Sentinels'
    # majority to the new primary, and no write ever reaches a replica (which would answer READONLY).
    outcomes: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                with release.via_haproxy() as app:
                    app.set(f"ha:during:{n}", n)
                outcomes.append("ok")
            except redis.ResponseError as exc:
                outcomes.append(f"refused: {exc}")
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                outcomes.append("no primary")
            time.sleep(0.02)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with release.sentinel(1) as s:
            s.execute_command("SENTINEL", "FAILOVER", "alerthistory")
        new = wait_until(lambda: (p := release.primary()) is not None and p != primary and p + 1, 30,
                         "a new primary") - 1
        with release.server(new) as s:
            new_run_id = s.info("server")["run_id"]
        wait_until(lambda: release.via_haproxy().info("server")["run_id"] == new_run_id, 20,
                   "HAProxy routing to the new primary", ignore=ERRORS)
        time.sleep(1)  # a few more writes on the new primary
    finally:
        stop.set()
        thread.join(10)
    assert outcomes.count("ok") > 10, outcomes
    # READONLY would be a replica. NOREPLICAS is the new primary itself: until a replica has reconnected to it,
    # min-replicas-to-write refuses writes (the split-brain guard), which ends once one has.
    assert [o for o in outcomes if o.startswith("refused") and "NOREPLICAS" not in o] == [], \
        "a write reached a replica through HAProxy"
    assert outcomes[-5:] == ["ok"] * 5, outcomes[-20:]
    # From then on, writes go to the new primary only; none is refused as READONLY by a replica.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with release.via_haproxy() as app:
            assert app.info("server")["run_id"] == new_run_id
            assert app.set("ha:after-failover", "1")

    # The metrics endpoint HAProxy serves for Prometheus, and its health URI.
    metrics = http("GET", f"http://127.0.0.1:{release.haproxy_metrics}/metrics", timeout=5).decode()
    assert re.search(r'haproxy_backend_active_servers\{proxy="node_%d"\} 1' % new, metrics), metrics[:2000]
    assert re.search(r'haproxy_backend_active_servers\{proxy="sentinels_name_node_%d"\} 3' % new, metrics)
    http("GET", f"http://127.0.0.1:{release.haproxy_metrics}/healthz", timeout=5)  # raises unless 2xx
    assert release.denials() == []
