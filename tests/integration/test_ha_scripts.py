"""The HA scripts (charts/alert-history/files/scripts/ha-*.sh) against real servers and real Sentinels.

Each "pod" is a server started through ha-bootstrap.sh and a Sentinel started through ha-sentinel.sh, exactly
as the chart's containers will run them, with the pod's paths (data dir, memory-backed run dir, Secret files)
in a temp dir. Pod names are loopback addresses (127.a.b.10, .11, .12): all of 127.0.0.0/8 is local and
/etc/hosts cannot change here, so every pod keeps the same ports as in Kubernetes, on its own address.

The servers carry the least-privilege users of docs/ha-design.md (replication, sentinel, probe), so every
replication and failover here also proves those command lists; no ACL denial may show up in ACL LOG.
Every row of the bootstrap decision table in docs/ha-design.md has a test below (rows 1-8).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import port_for
import psutil
import pytest
import redis

from alert_history_cache import engines
from alert_history_cache.waiting import wait_until

from helpers.local_stack import engine_or_skip

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).resolve().parents[2] / "charts" / "alert-history" / "files" / "scripts"
MASTER_SET = "alerthistory"
NODES = 3

# The server-side ACL users (docs/ha-design.md, "ACL users").
REPLICATION_ACL = "resetkeys resetchannels -@all +psync +replconf +ping"
SENTINEL_ACL = ("resetkeys resetchannels &__sentinel__:hello -@all +multi +exec +slaveof +replicaof +ping +info "
                "+role +config|rewrite +client|setname +client|kill +client|pause +client|unpause +publish "
                "+subscribe +script|kill")
PROBE_ACL = "resetkeys resetchannels -@all +ping +info"

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def free_ports(addresses: list[str], count: int) -> list[int]:
    """Ports free on every address (each pod listens on the same ports, on its own address)."""
    def bindable(port: int) -> bool:
        for addr in addresses:
            with socket.socket() as sock:
                try:
                    sock.bind((addr, port))
                except OSError:
                    return False
        return True

    ports: list[int] = []
    while len(ports) < count:
        port = port_for.select_random()
        if port not in ports and bindable(port):
            ports.append(port)
    return ports


@dataclass
class Pod:
    ordinal: int
    name: str  # the announced name (a DNS name, or the address itself)
    addr: str  # where its server and Sentinel listen
    root: Path
    server: subprocess.Popen | None = None
    sentinel: subprocess.Popen | None = None
    bootstraps: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def log(self, what: str) -> str:
        return "".join(p.read_text() for p in sorted(self.root.glob(f"{what}-*.log")))


@dataclass
class Cluster:
    """NODES pods of one engine, started and stopped through the chart's scripts."""

    engine: engines.Engine
    root: Path
    down_after_ms: int = 1000
    loopback_pod: int | None = None  # this pod's server also listens on 127.0.0.1 (for the probe scripts)
    dns_names: bool = False  # pods announce headless DNS names, resolved by a hosts file of their own
    pods: list[Pod] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
        addrs = [f"{self.base}.{10 + i}" for i in range(NODES)]
        moved = [f"{self.base}.{20 + i}" for i in range(NODES)]  # addresses of recreated pods
        self.server_port, self.sentinel_port = free_ports(addrs + moved + ["127.0.0.1"], 2)
        if self.dns_names:
            names = [f"alerthistory-redis-{i}.alerthistory-redis-headless.test.svc.cluster.local" for i in range(NODES)]
        else:
            names = addrs
        self.hosts = self.root / "hosts"
        self.passwords = {key: secrets.token_hex(16) for key in ("app", "replication", "sentinel")}
        secret_dir = self.root / "secret"
        secret_dir.mkdir(parents=True)
        for key in ("replication", "sentinel"):
            (secret_dir / f"{key}-password").write_text(self.passwords[key])
        self.bin = self.root / "bin"
        self.bin.mkdir()
        # The image's CLI name, mapped to this engine's CLI (valkey9's wheel has none: valkey8's is used).
        (self.bin / "valkey-cli").symlink_to(self.engine.cli)
        self.probe_password = secrets.token_hex(16)  # config-init writes one per pod; one for all is enough here
        for i, name in enumerate(names):
            pod = Pod(i, name, addrs[i], self.root / f"pod-{i}")
            pod.data.mkdir(parents=True)
            pod.run.mkdir(mode=0o700)
            (pod.run / "probe-password").write_text(self.probe_password)
            self.pods.append(pod)
        self.write_hosts()

    def write_hosts(self) -> None:
        """The pods' /etc/hosts, as the cluster DNS would answer for the headless names. Rewritten in place (same
        inode), so every process that bind-mounted it sees a moved pod at once."""
        self.hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{p.addr} {p.name}\n" for p in self.pods))

    def move(self, pod: Pod) -> None:
        """A recreated pod: same name, a new address."""
        assert self.dns_names
        pod.addr = f"{self.base}.{20 + pod.ordinal}"
        self.write_hosts()

    def wrap(self, argv: list[str]) -> list[str]:
        """With DNS names, run argv in a private mount namespace with the cluster's hosts file as /etc/hosts."""
        if not self.dns_names:
            return argv
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"', str(self.hosts), *argv]

    # -- environment and config of the scripts ------------------------------------------------------------
    def env(self, pod: Pod, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HA_NODES": " ".join(p.name for p in self.pods),
            "HA_ORDINAL": str(pod.ordinal),
            "VALKEY_PORT": str(self.server_port),
            "SENTINEL_PORT": str(self.sentinel_port),
            "HA_MASTER_SET": MASTER_SET,
            "RUN_DIR": str(pod.run),
            "SECRET_DIR": str(self.root / "secret"),
            "DATA_DIR": str(pod.data),
            "HA_SENTINEL_BIND": pod.addr,
            "HA_SENTINEL_DOWN_AFTER_MS": str(self.down_after_ms),
            "HA_SENTINEL_FAILOVER_TIMEOUT_MS": "10000",
            "HA_BOOTSTRAP_TIMEOUT": "30",
            "HA_CALL_TIMEOUT": "2",
            "HA_RETRY_INTERVAL": "0.3",
        }
        env.update(extra)
        return env

    def server_conf(self, pod: Pod) -> Path:
        bind = pod.addr + (" 127.0.0.1" if pod.ordinal == self.loopback_pod else "")
        conf = pod.root / "valkey.conf"
        conf.write_text("\n".join([
            f"bind {bind}",
            f"port {self.server_port}",
            f"dir {pod.data}",
            "daemonize no",
            "save ''",
            "appendonly yes",
            "appendfsync always",  # a write acknowledged before a stop is on disk
            "repl-diskless-sync no",
            "enable-debug-command yes",
            f"user default on #{sha256(self.passwords['app'])} ~* &* +@all",
            f"user replication on #{sha256(self.passwords['replication'])} {REPLICATION_ACL}",
            f"user sentinel on #{sha256(self.passwords['sentinel'])} {SENTINEL_ACL}",
            f"user probe on #{sha256(self.probe_password)} {PROBE_ACL}",
            # The split-brain guard: an isolated primary stops acknowledging writes.
            "min-replicas-to-write 1",
            "min-replicas-max-lag 10",
            f"include {pod.run}/replication.conf",
            "",
        ]))
        return conf

    # -- processes ----------------------------------------------------------------------------------------
    def _spawn(self, pod: Pod, what: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (pod.root / f"{what}-{time.monotonic_ns()}.log").open("w")
        with log:
            return subprocess.Popen(self.wrap(argv), env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def bootstrap(self, pod: Pod, **env: str) -> subprocess.Popen:
        """ha-bootstrap.sh, exec'ing the server, as the server container's command."""
        pod.bootstraps += 1
        (pod.run / "ha-role").unlink(missing_ok=True)
        argv = ["sh", str(SCRIPTS / "ha-bootstrap.sh"), str(self.engine.server), str(self.server_conf(pod))]
        pod.server = self._spawn(pod, "server", argv, self.env(pod, **env))
        return pod.server

    def start_server(self, pod: Pod, **env: str) -> None:
        self.bootstrap(pod, **env)
        wait_until(lambda: self.ping(pod), 30, f"server of pod {pod.ordinal} answering", ignore=REDIS_ERRORS)

    def start_sentinel(self, pod: Pod) -> None:
        conf = pod.run / "sentinel.conf"
        argv = ["sh", str(SCRIPTS / "ha-sentinel.sh"), str(self.engine.server), str(conf), "--sentinel"]
        pod.sentinel = self._spawn(pod, "sentinel", argv, self.env(pod))
        wait_until(lambda: self.sentinel(pod).ping(), 30, f"Sentinel of pod {pod.ordinal} answering",
                   ignore=REDIS_ERRORS)

    def start_pod(self, pod: Pod) -> None:
        self.start_server(pod)
        self.start_sentinel(pod)

    def start_all(self) -> None:
        for pod in self.pods:
            self.start_pod(pod)
        self.wait_settled()
        self.wait_sentinels_complete()

    def wait_sentinels_complete(self, timeout: float = 40) -> None:
        """Every Sentinel knows every replica and every other Sentinel: the steady state a failover needs."""
        def complete(pod: Pod) -> bool:
            with self.sentinel(pod) as s:
                master = s.sentinel_master(MASTER_SET)
            return master["num-slaves"] == NODES - 1 and master["num-other-sentinels"] == NODES - 1

        for pod in self.pods:
            wait_until(lambda: complete(pod), timeout, f"Sentinel of pod {pod.ordinal} knowing every member",
                       ignore=REDIS_ERRORS)

    @staticmethod
    def _stop(proc: subprocess.Popen | None, sig: int) -> None:
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop_server(self, pod: Pod, sig: int = signal.SIGTERM) -> None:
        self._stop(pod.server, sig)

    def stop_sentinel(self, pod: Pod) -> None:
        self._stop(pod.sentinel, signal.SIGKILL)

    def stop(self) -> None:
        for pod in self.pods:
            self._stop(pod.sentinel, signal.SIGKILL)
            self._stop(pod.server, signal.SIGKILL)

    # -- clients ------------------------------------------------------------------------------------------
    def client(self, pod: Pod, **kwargs) -> redis.Redis:
        kwargs.setdefault("socket_timeout", 5)
        return redis.Redis(pod.addr, self.server_port, password=self.passwords["app"], socket_connect_timeout=2,
                           **kwargs)

    def ping(self, pod: Pod) -> bool:
        with self.client(pod) as c:
            return c.ping()

    def sentinel(self, pod: Pod) -> redis.Redis:
        return redis.Redis(pod.addr, self.sentinel_port, username="sentinel", password=self.passwords["sentinel"],
                           socket_timeout=5, socket_connect_timeout=2, decode_responses=True)

    def role(self, pod: Pod) -> str | None:
        try:
            with self.client(pod) as c:
                return c.info("replication")["role"]
        except REDIS_ERRORS:
            return None

    def primaries(self) -> list[int]:
        return [p.ordinal for p in self.pods if self.role(p) == "master"]

    def named_primaries(self) -> set[str]:
        """The primary each running Sentinel names."""
        named = set()
        for pod in self.pods:
            if pod.sentinel is not None and pod.sentinel.poll() is None:
                with self.sentinel(pod) as s:
                    host, _port = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_SET)
                    named.add(host)
        return named

    def pod_named(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name)

    def wait_settled(self, timeout: float = 30) -> Pod:
        """One primary that every Sentinel names, every other running server its replica with the link up."""
        def settled():
            named = self.named_primaries()
            if len(named) != 1:
                return None
            primary = self.pod_named(named.pop())
            if self.primaries() != [primary.ordinal]:
                return None
            for pod in self.pods:
                if pod is not primary and pod.server is not None and pod.server.poll() is None:
                    with self.client(pod) as c:
                        info = c.info("replication")
                    if info.get("master_host") != primary.name or info.get("master_link_status") != "up":
                        return None
            return primary

        return wait_until(settled, timeout, "one primary named by every Sentinel, replicas linked",
                          ignore=REDIS_ERRORS)

    def acl_denials(self) -> list[dict]:
        """ACL LOG entries of the replication and Sentinel users on every running server."""
        out = []
        for pod in self.pods:
            if pod.server is not None and pod.server.poll() is None:
                with self.client(pod) as c:
                    out += [e for e in c.acl_log() if e["username"] in ("replication", "sentinel")]
        return out

    def run_script(self, pod: Pod, script: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.wrap(["sh", str(SCRIPTS / script)]), env=self.env(pod, **env),
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def make_cluster(tmp_path):
    clusters: list[Cluster] = []

    def make(engine_name: str = "valkey8", **kwargs) -> Cluster:
        cluster = Cluster(engine_or_skip(engine_name), tmp_path / f"cluster-{len(clusters)}", **kwargs)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()
        for pod in cluster.pods:  # nothing of ours keeps running
            for proc in (pod.server, pod.sentinel):
                if proc is not None:
                    assert proc.poll() is not None
    leftovers = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                 if any(str(tmp_path) in a for a in (p.info["cmdline"] or []))]
    assert leftovers == [], f"processes left: {leftovers}"


def no_secret_in_argv_or_env(cluster: Cluster) -> None:
    procs = [p.server for p in cluster.pods] + [p.sentinel for p in cluster.pods]
    for proc in procs:
        if proc is None or proc.poll() is not None:
            continue
        ps = psutil.Process(proc.pid)
        blob = " ".join(ps.cmdline()) + " ".join(f"{k}={v}" for k, v in ps.environ().items())
        for password in cluster.passwords.values():
            assert password not in blob, f"a password is in the argv or env of {ps.cmdline()}"


# -- the bootstrap decision table ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine_name", list(engines.ENGINES))
def test_first_install_pod0_primary_others_replicas(make_cluster, engine_name):
    """Rows 1 and 5: pod 0 finds no Sentinel and starts as primary; pods 1 and 2 find pod 0 through the
    Sentinels and join it. The Sentinels agree, know each other, require auth; no password leaks."""
    cluster = make_cluster(engine_name)
    cluster.start_all()
    p0, p1, p2 = cluster.pods
    assert cluster.wait_settled() is p0
    assert "row" in p0.log("server") and "rows 1-2" in p0.log("server")
    for pod in (p1, p2):
        assert f"the Sentinels name {p0.name} as primary (row 5)" in pod.log("server")
        assert (pod.run / "ha-role").read_text().strip() == "replica"
    assert (p0.run / "ha-role").read_text().strip() == "primary"

    with cluster.sentinel(p1) as s:
        master = s.sentinel_master(MASTER_SET)
        assert master["ip"] == p0.name and master["quorum"] == 2
        replicas = {r["name"] for r in s.sentinel_slaves(MASTER_SET)}
        assert replicas == {f"{p1.name}:{cluster.server_port}", f"{p2.name}:{cluster.server_port}"}
    # Sentinel itself requires auth.
    with redis.Redis(p0.addr, cluster.sentinel_port, socket_timeout=5) as anonymous:
        with pytest.raises(redis.AuthenticationError):
            anonymous.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_SET)

    with cluster.client(p0) as primary:
        primary.set("k", "v")
        offset = primary.info("replication")["master_repl_offset"]
    for pod in (p1, p2):
        with cluster.client(pod) as replica:
            wait_until(lambda: replica.info("replication")["slave_repl_offset"] >= offset, 10,
                       f"pod {pod.ordinal} replicating")
            assert replica.get("k") == b"v"
            with pytest.raises(redis.ReadOnlyError):
                replica.set("k", "x")
    assert cluster.acl_denials() == []  # replication and Sentinel ran on exactly these command lists
    # Least privilege: neither user reads or writes keys or administers the server.
    for user in ("replication", "sentinel"):
        with redis.Redis(p0.addr, cluster.server_port, username=user, password=cluster.passwords[user],
                         socket_timeout=5) as c:
            for cmd in (("GET", "k"), ("SET", "k", "x"), ("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "*"),
                        ("ACL", "LIST"), ("SHUTDOWN", "NOSAVE")):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    c.execute_command(*cmd)
    no_secret_in_argv_or_env(cluster)
    for pod in cluster.pods:
        for name in ("replication.conf", "sentinel.conf"):
            assert (pod.run / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"


def test_replica_restart_rejoins_primary(make_cluster):
    """Row 5 on a restart: a replica's server restarts and joins the primary the Sentinels name."""
    cluster = make_cluster()
    cluster.start_all()
    p0, _, p2 = cluster.pods
    with cluster.client(p0) as primary:
        primary.set("before", "1")
    cluster.stop_server(p2)
    with cluster.client(p0) as primary:
        primary.set("during", "2")
    cluster.start_server(p2)
    assert cluster.wait_settled() is p0
    assert p2.log("server").count("(row 5)") == 2
    with cluster.client(p2) as replica:
        wait_until(lambda: replica.get("during") == b"2", 10, "the restarted replica catching up")
        assert replica.get("before") == b"1"


@pytest.mark.parametrize("engine_name", list(engines.ENGINES))
def test_old_primary_rejoins_new_primary_after_failover(make_cluster, engine_name):
    """Row 5 for the old primary: after a node loss and a Sentinel failover, pod 0 restarts with its data and
    joins the new primary; it never becomes a second primary (bitnami/charts#5418, #5543)."""
    cluster = make_cluster(engine_name)
    cluster.start_all()
    p0 = cluster.pods[0]
    with cluster.client(p0) as primary:
        primary.set("k", "before")
        assert primary.execute_command("WAIT", 2, 5000) == 2
    cluster.stop_server(p0, signal.SIGKILL)  # the node is gone: no preStop, no shutdown
    new = wait_until(lambda: [p for p in cluster.pods[1:] if cluster.role(p) == "master"
                              and cluster.named_primaries() == {p.name}], 30,
                     "the Sentinels promoting a replica")[0]
    with cluster.client(new) as primary:
        primary.set("k", "after")
        assert primary.execute_command("WAIT", 1, 5000) == 1  # the other replica has it, whoever is primary next
    cluster.start_server(p0)
    # On a loaded machine the Sentinels may fail over once more before pod 0 is back (the new primary looked
    # down for down-after): what matters is that pod 0 joins whichever pod they name and is not a primary.
    settled = cluster.wait_settled()
    assert settled is not p0
    joined = re.search(r"the Sentinels name (\S+) as primary \(row 5\)", p0.log("server"))
    assert joined and joined.group(1) != p0.name, p0.log("server")[-2000:]
    assert cluster.primaries() == [settled.ordinal]
    with cluster.client(p0) as old:
        wait_until(lambda: old.get("k") == b"after", 30, "the old primary replicating the new one")
    assert cluster.acl_denials() == []


@pytest.mark.parametrize("engine_name", list(engines.ENGINES))
def test_recreated_pod_with_a_new_address_keeps_working(make_cluster, engine_name, needs_root):
    """Identity: pods announce headless DNS names (each process resolves them through a hosts file of its own,
    as the cluster DNS would). The primary's pod is lost and recreated with a new address: it rejoins under
    its name, and a later failover promotes it at its new address (Sentinel re-resolves the name instead of
    keeping the old address: redis/redis#9103, fixed by #10146)."""
    cluster = make_cluster(engine_name, dns_names=True)
    cluster.start_all()
    p0 = cluster.pods[0]
    assert p0.name.startswith("alerthistory-redis-0.") and cluster.named_primaries() == {p0.name}
    cluster.stop_sentinel(p0)
    cluster.stop_server(p0, signal.SIGKILL)  # the node is lost with the pod
    new = wait_until(lambda: [p for p in cluster.pods[1:] if cluster.role(p) == "master"
                              and cluster.named_primaries() == {p.name}], 30,
                     "the Sentinels promoting a replica")[0]
    old_addr = p0.addr
    cluster.move(p0)
    assert p0.addr != old_addr
    cluster.start_pod(p0)
    assert cluster.wait_settled() is new
    cluster.wait_sentinels_complete()
    # Fail over with pod 0 as the only candidate: Sentinel must reach it at its new address.
    other = next(p for p in cluster.pods[1:] if p is not new)
    with cluster.client(other) as replica:
        replica.config_set("replica-priority", 0)

    def sentinel_sees_candidates(s: redis.Redis) -> bool:
        """The Sentinel that runs the failover sees pod 0 up at its new address and the other replica's
        priority 0 (Sentinel reads both from INFO, every 10 s)."""
        replicas = {r["name"]: r for r in s.sentinel_slaves(MASTER_SET)}
        mine, theirs = (replicas.get(f"{p.name}:{cluster.server_port}") for p in (p0, other))
        return (mine is not None and theirs is not None and mine["is_sdown"] is False
                and mine["master-link-status"] == "ok" and int(theirs["slave-priority"]) == 0)

    with cluster.sentinel(new) as s:
        # Sentinel reads its replicas' INFO every 10 s: a loaded machine needs several rounds.
        wait_until(lambda: sentinel_sees_candidates(s), 90, "Sentinel seeing the recreated pod as the candidate",
                   ignore=REDIS_ERRORS)
        assert s.execute_command("SENTINEL", "FAILOVER", MASTER_SET)
    wait_until(lambda: cluster.named_primaries() == {p0.name}, 30, "the Sentinels promoting the recreated pod",
               ignore=REDIS_ERRORS)
    assert cluster.wait_settled() is p0
    with cluster.client(p0) as primary:
        primary.set("k", "v")
        assert primary.execute_command("WAIT", 2, 5000) == 2
    with cluster.sentinel(other) as s:
        assert {r["name"] for r in s.sentinel_slaves(MASTER_SET)} == {
            f"{p.name}:{cluster.server_port}" for p in cluster.pods[1:]}
    assert cluster.acl_denials() == []


def test_full_restart_pod0_primary_with_its_data(make_cluster):
    """Rows 1-2: everything stops (a reboot); no Sentinel is left, so pod 0 starts as primary with its data,
    and the other pods join it."""
    cluster = make_cluster()
    cluster.start_all()
    p0 = cluster.pods[0]
    with cluster.client(p0) as primary:
        primary.set("k", "kept")
        assert primary.execute_command("WAIT", 2, 5000) == 2
    cluster.stop()
    for pod in cluster.pods:
        pod.server = pod.sentinel = None
    cluster.start_all()
    assert cluster.wait_settled() is p0
    assert p0.log("server").count("rows 1-2") == 2
    with cluster.client(p0) as primary:
        assert primary.get("k") == b"kept"


def test_non0_pod_without_sentinels_never_becomes_primary(make_cluster):
    """Row 7: a pod other than 0 that reaches no Sentinel waits and then fails, so the kubelet retries; it never
    starts a server, let alone a primary. The same when a reachable Sentinel monitors no such master set,
    where pod 0 starts as primary (row 1)."""
    cluster = make_cluster()
    p0, p1, p2 = cluster.pods
    proc = cluster.bootstrap(p1, HA_BOOTSTRAP_TIMEOUT="3")
    assert proc.wait(timeout=30) == 1
    log = p1.log("server")
    assert "no Sentinel names a primary (0 reachable) and this is not pod 0: waiting (row 7)" in log
    assert "no role after 3s" in log
    assert not (p1.run / "replication.conf").exists() and not (p1.run / "ha-role").exists()
    with pytest.raises(REDIS_ERRORS):
        cluster.ping(p1)

    # A Sentinel that answers but monitors another master set.
    conf = p2.root / "other-sentinel.conf"
    conf.write_text("\n".join([
        f"port {cluster.sentinel_port}", f"bind {p2.addr}", f"dir {p2.root}", "user default off resetpass -@all",
        f"user sentinel on #{sha256(cluster.passwords['sentinel'])} ~* &* +@all",
        "sentinel monitor some-other-set 127.0.0.1 1 2", ""]))
    p2.sentinel = cluster._spawn(p2, "sentinel", [str(cluster.engine.server), str(conf), "--sentinel"], {})
    wait_until(lambda: cluster.sentinel(p2).ping(), 15, "the other Sentinel answering", ignore=REDIS_ERRORS)
    proc = cluster.bootstrap(p1, HA_BOOTSTRAP_TIMEOUT="2")
    assert proc.wait(timeout=30) == 1
    assert "no Sentinel names a primary (1 reachable) and this is not pod 0: waiting (row 7)" in p1.log("server")
    cluster.start_server(p0)
    assert "no Sentinel names a primary (1 reachable) and this is pod 0 (rows 1-2)" in p0.log("server")
    assert cluster.role(p0) == "master"


def test_primary_restart_before_failover_and_stale_primary(make_cluster):
    """Row 3: the primary's server restarts before the Sentinels fail over (down-after is long here): they still
    name it and its data is present, so it starts as primary again and the replicas reconnect.
    Row 6: while it is down, a restarting replica is told about a primary that does not answer: it waits and
    fails instead of following a stale address."""
    cluster = make_cluster(down_after_ms=60000)
    cluster.start_all()
    p0, _, p2 = cluster.pods
    with cluster.client(p0) as primary:
        primary.set("k", "v")
    cluster.stop_server(p0)
    cluster.stop_server(p2)
    proc = cluster.bootstrap(p2, HA_BOOTSTRAP_TIMEOUT="3")
    assert proc.wait(timeout=30) == 1
    assert f"the Sentinels name {p0.name}, which does not answer as a primary: waiting (row 6)" in p2.log("server")
    cluster.start_server(p0)
    assert "the Sentinels name this pod as primary and its data is present (row 3)" in p0.log("server")
    cluster.start_server(p2)
    assert cluster.wait_settled() is p0
    with cluster.client(p0) as primary:
        assert primary.get("k") == b"v"


def test_known_primary_without_data_waits_for_failover(make_cluster):
    """Row 4: the primary's volume is lost. The Sentinels still name it, but starting empty would make every
    replica resync to nothing: it waits until they fail over, then joins the new primary."""
    cluster = make_cluster()
    cluster.start_all()
    p0 = cluster.pods[0]
    with cluster.client(p0) as primary:
        primary.set("k", "v")
        assert primary.execute_command("WAIT", 2, 5000) == 2
    cluster.stop_server(p0, signal.SIGKILL)
    for child in p0.data.iterdir():
        subprocess.run(["rm", "-rf", str(child)], check=True)
    cluster.start_server(p0)
    log = p0.log("server")
    assert "holds no data: waiting for them to fail over (row 4)" in log
    new = cluster.wait_settled()
    assert new is not p0 and "(row 5)" in p0.log("server")
    with cluster.client(p0) as replica:
        wait_until(lambda: replica.get("k") == b"v", 10, "the emptied pod getting the data back")


def test_disagreeing_sentinels_make_a_pod_wait(make_cluster):
    """Row 8: when the Sentinels name different primaries, a starting pod joins neither and waits."""
    cluster = make_cluster(down_after_ms=60000)
    cluster.start_all()
    _, p1, p2 = cluster.pods
    # A Sentinel on pod 2's address that was (wrongly) started on pod 1 as primary.
    cluster.stop_sentinel(p2)
    rogue = p2.root / "rogue-sentinel.conf"
    conf = (p2.run / "sentinel.conf").read_text().splitlines()
    rogue.write_text("\n".join(
        f"sentinel monitor {MASTER_SET} {p1.name} {cluster.server_port} 2" if line.startswith("sentinel monitor")
        else line for line in conf if not line.startswith(("sentinel known-", "sentinel config-epoch",
                                                              "sentinel leader-epoch", "sentinel current-epoch")))
        + "\n")
    os.chmod(rogue, 0o600)
    p2.sentinel = cluster._spawn(p2, "sentinel", [str(cluster.engine.server), str(rogue), "--sentinel"], {})
    wait_until(lambda: cluster.named_primaries() == {cluster.pods[0].name, p1.name}, 15,
               "the Sentinels disagreeing", ignore=REDIS_ERRORS)
    cluster.stop_server(p2)
    proc = cluster.bootstrap(p2, HA_BOOTSTRAP_TIMEOUT="3")
    assert proc.wait(timeout=30) == 1
    assert "the Sentinels name different primaries (they converge after a failover): waiting (row 8)" in \
        p2.log("server")
    cluster.stop_sentinel(p2)
    cluster.start_server(p2)
    assert cluster.wait_settled() is cluster.pods[0]


# -- preStop ------------------------------------------------------------------------------------------------

class Writer(threading.Thread):
    """Writes unique keys to one server and records which writes it acknowledged."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.acked: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopped.is_set():
            key = f"w:{n}"
            n += 1
            try:
                if self.client.set(key, "1"):
                    self.acked.append(key)
            except REDIS_ERRORS:
                time.sleep(0.01)


@pytest.mark.parametrize("engine_name", list(engines.ENGINES))
def test_prestop_on_primary_hands_over_without_losing_writes(make_cluster, engine_name):
    """The primary's preStop pauses writes, fails over and returns once a replica is primary, within its
    budget; every write the old primary acknowledged is on the new primary."""
    cluster = make_cluster(engine_name, down_after_ms=60000)  # only the hook's SENTINEL FAILOVER can fail over
    cluster.start_all()
    p0 = cluster.pods[0]
    writer = Writer(cluster.client(p0, socket_timeout=2))
    writer.start()
    wait_until(lambda: len(writer.acked) > 200, 20, "writes flowing")
    budget = 20
    # Kubernetes runs both containers' hooks at once; the Sentinel's waits for the hand-over.
    sentinel_hook = subprocess.Popen(cluster.wrap(["sh", str(SCRIPTS / "ha-sentinel-prestop.sh")]),
                                     env=cluster.env(p0, HA_PRESTOP_TIMEOUT=str(budget)), stderr=subprocess.PIPE,
                                     text=True)
    started = time.monotonic()
    result = cluster.run_script(p0, "ha-prestop.sh", HA_PRESTOP_TIMEOUT=str(budget), HA_WRITE_PAUSE_SECONDS="30")
    elapsed = time.monotonic() - started
    acked_at_return = len(writer.acked)
    assert result.returncode == 0, result.stderr
    assert elapsed < budget
    assert "writes paused" in result.stderr and "handed over to" in result.stderr
    assert sentinel_hook.wait(timeout=10) == 0
    assert "not the primary the Sentinels follow" in sentinel_hook.stderr.read()
    cluster.stop_sentinel(p0)  # the kubelet's SIGTERM to the Sentinel container
    (new_name,) = cluster.named_primaries()
    new = cluster.pod_named(new_name)
    assert new is not p0 and cluster.role(new) == "master"
    # The old primary acknowledges nothing after the hook: a write waits in the pause, or is refused with
    # NOREPLICAS once its replicas follow the new primary (min-replicas-to-write).
    with cluster.client(p0, socket_timeout=1) as old:
        assert old.get("w:0") == b"1"  # reads still work
        with pytest.raises((redis.TimeoutError, redis.ResponseError)):
            old.set("late", "1")
    writer.stopped.set()
    writer.join(10)
    assert len(writer.acked) == acked_at_return
    # The kubelet's SIGTERM follows the hook.
    cluster.stop_server(p0)
    with cluster.client(new) as primary:
        missing = [k for k in writer.acked if not primary.exists(k)]
        assert not primary.exists("late")
    assert missing == [], f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    assert cluster.acl_denials() == []


def test_prestop_on_replica_returns_at_once(make_cluster):
    cluster = make_cluster(down_after_ms=60000)
    cluster.start_all()
    p0, p1, _ = cluster.pods
    started = time.monotonic()
    result = cluster.run_script(p1, "ha-prestop.sh")
    assert result.returncode == 0, result.stderr
    assert "not the primary, nothing to hand over" in result.stderr
    sentinel_hook = cluster.run_script(p1, "ha-sentinel-prestop.sh")
    assert sentinel_hook.returncode == 0, sentinel_hook.stderr
    assert time.monotonic() - started < 5
    assert cluster.named_primaries() == {p0.name}
    with cluster.client(p0) as primary:
        assert primary.set("still", "writable")


def test_prestop_without_a_replica_fails_and_resumes_writes(make_cluster):
    """No replica can take over: the hook fails at once, not after its whole budget (an uninstall deletes every
    pod together), and lifts the pause, so the primary keeps its writes until it shuts down."""
    cluster = make_cluster(down_after_ms=60000)
    p0 = cluster.pods[0]
    cluster.start_pod(p0)
    with cluster.client(p0) as primary:
        primary.config_set("min-replicas-to-write", 0)
    started = time.monotonic()
    result = cluster.run_script(p0, "ha-prestop.sh", HA_PRESTOP_TIMEOUT="30", HA_PRESTOP_SYNC_TIMEOUT="20")
    assert result.returncode == 1
    assert "no replica answers (online: none); writes resumed" in result.stderr
    assert time.monotonic() - started < 15  # well inside either budget
    sentinel_hook = cluster.run_script(p0, "ha-sentinel-prestop.sh", HA_PRESTOP_TIMEOUT="2")
    assert sentinel_hook.returncode == 1
    assert "still the primary after 2s" in sentinel_hook.stderr
    with cluster.client(p0, socket_timeout=3) as primary:
        assert primary.set("after", "ok")


# -- probes -------------------------------------------------------------------------------------------------

def test_replica_readiness_follows_the_link_and_liveness_tolerates_a_sync(make_cluster):
    """ha-replica-ready.sh: not Ready while a full sync is in progress or the link is down, Ready with the link
    up. liveness.sh stays alive throughout, so a long full sync never restarts the replica."""
    cluster = make_cluster(down_after_ms=60000, loopback_pod=1)
    p0, p1, _ = cluster.pods
    cluster.start_pod(p0)
    with cluster.client(p0) as primary:
        primary.config_set("min-replicas-to-write", 0)
        with primary.pipeline(transaction=False) as pipe:
            for i in range(3000):
                pipe.set(f"k:{i}", "x" * 100)
            pipe.execute()
        primary.config_set("rdb-key-save-delay", 2000)  # ~6 s of snapshot: the full sync stays open

    def probe(script: str) -> subprocess.CompletedProcess:
        return cluster.run_script(p1, script, timeout=20)

    cluster.bootstrap(p1)
    syncing = wait_until(lambda: (r := probe("ha-replica-ready.sh")).returncode == 1
                         and "full sync in progress" in r.stdout and r, 20, "readiness failing during the sync")
    assert syncing.stdout.strip() == f"readiness: replica of {p0.name}, full sync in progress"
    with cluster.client(p1) as replica:
        assert replica.info("replication")["master_sync_in_progress"] == 1
    assert probe("liveness.sh").returncode == 0
    wait_until(lambda: probe("ha-replica-ready.sh").returncode == 0, 30, "readiness once the link is up")
    with cluster.client(p1) as replica:
        info = replica.info("replication")
        assert info["master_link_status"] == "up" and info["master_sync_in_progress"] == 0

    cluster.stop_server(p0, signal.SIGKILL)
    down = wait_until(lambda: (r := probe("ha-replica-ready.sh")).returncode == 1 and r, 20,
                      "readiness failing with the link down")
    assert down.stdout.strip() == f"readiness: replica of {p0.name}, master_link_status:down"
    assert probe("liveness.sh").returncode == 0


def test_primary_is_ready(make_cluster):
    cluster = make_cluster(loopback_pod=0)
    cluster.start_server(cluster.pods[0])
    result = cluster.run_script(cluster.pods[0], "ha-replica-ready.sh")
    assert result.returncode == 0, result.stdout


# -- bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "message"), [
    ({"HA_NODES": ""}, "HA_NODES is empty"),
    ({"HA_ORDINAL": "x"}, "HA_ORDINAL 'x' is not a pod ordinal"),
    ({"HA_ORDINAL": "7"}, "HA_ORDINAL 7 is outside HA_NODES (3 names)"),
    ({"HA_SENTINEL_PASSWORD_FILE": "/nonexistent"}, "the Sentinel password file /nonexistent is missing or empty"),
    ({"HA_REPLICATION_PASSWORD_FILE": "/nonexistent"},
     "the replication password file /nonexistent is missing or empty"),
])
def test_bad_environment_is_named(make_cluster, env, message):
    cluster = make_cluster()
    result = cluster.run_script(cluster.pods[0], "ha-bootstrap.sh", **env)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and not (cluster.pods[0].run / "replication.conf").exists()
