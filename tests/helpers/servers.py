"""Real servers for the security tests, behind one small interface (clients per user, passwords, ACL names):

- RenderedServer: the server booted on the chart's rendered config, ACL file and Secret, on 127.0.0.1 and a
  free port. The pod files come from write_pod_files (the rendered valkey.conf with the pod paths mapped, the
  Secret as files, the chart's own init-acl.sh run as config-init would); restart_pod()
  re-runs config-init from the (possibly changed) Secret files, as a new pod would.
- StackServer: the local stack's pod (LocalStack), at its own pod address, with the rendered probes,
  exporter and config-init running as in Kubernetes.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import port_for
import redis
from mirakuru import TCPExecutor

from alert_history_cache import chart, engines

from .local_stack import FAST_PROBES, assert_nothing_left

NAME = "alerthistory-redis"
BASE_VALUES = {"fullnameOverride": "alerthistory"}


def map_lines(conf: str, table: dict[str, str]) -> str:
    """Replace whole config lines; each pod-path line must be present exactly once."""
    lines = conf.splitlines()
    for old, new in table.items():
        hits = [i for i, line in enumerate(lines) if line.strip() == old]
        assert len(hits) == 1, f"rendered valkey.conf should have exactly one line {old!r}, found {len(hits)}"
        lines[hits[0]] = new
    return "\n".join(lines) + "\n"


def rendered_secret(manifests: chart.Manifests) -> dict[str, str]:
    """The rendered Secret's keys and decoded values."""
    return {k: base64.b64decode(v).decode() for k, v in manifests.get("Secret", NAME)["data"].items()}


def write_pod_files(manifests: chart.Manifests, root: Path, port: int) -> dict:
    """The pod's files under `root` (etc, secret, run, data, scripts): the rendered config with its pod paths and
    listen address mapped, the Secret as 0400 files, and the ACL file written by the chart's init-acl.sh.
    Returns {"paths": {name: dir}, "secret": {key: value}}."""
    config = manifests.get("ConfigMap", f"{NAME}-config")["data"]
    scripts = manifests.get("ConfigMap", f"{NAME}-scripts")["data"]
    secret = rendered_secret(manifests)

    paths = {name: root / name for name in ("etc", "secret", "run", "data", "scripts")}
    for p in paths.values():
        p.mkdir(mode=0o700)
    for key, value in secret.items():
        (paths["secret"] / key).write_text(value)
        (paths["secret"] / key).chmod(0o400)
    (paths["etc"] / "users.acl.tpl").write_text(config["users.acl.tpl"])
    (paths["scripts"] / "init-acl.sh").write_text(scripts["init-acl.sh"])

    # The one table of pod path -> temp path (and the listen address: 127.0.0.1 and a free port).
    conf = map_lines(config["valkey.conf"], {
        "bind * -::*": "bind 127.0.0.1",
        "port 6379": f"port {port}",
        "aclfile /run/valkey/users.acl": f"aclfile {paths['run'] / 'users.acl'}",
        "dir /data": f"dir {paths['data']}",
    })
    (paths["etc"] / "valkey.conf").write_text(conf)

    # The chart's config-init script, with its pod paths pointed at the temp dirs.
    subprocess.run(
        ["/bin/sh", str(paths["scripts"] / "init-acl.sh")],
        env={"PATH": "/usr/bin:/bin", "SECRET_DIR": str(paths["secret"]), "RUN_DIR": str(paths["run"]),
             "ACL_TEMPLATE": str(paths["etc"] / "users.acl.tpl")},
        check=True, capture_output=True, text=True,
    )
    acl = (paths["run"] / "users.acl").read_text()
    for password in secret.values():
        assert password not in acl, "init-acl.sh must write hashes, not passwords"
    return {"paths": paths, "secret": secret}


class ServerAccess:
    """Clients and passwords; subclasses give host, port, acl, keys, secret() and probe_password."""

    host = "127.0.0.1"
    port: int

    @property
    def acl(self) -> dict:
        return self.values["valkey"]["acl"]

    @property
    def keys(self) -> dict:
        return self.values["valkey"]["password"]

    @property
    def app_password(self) -> str:
        return self.secret(self.keys["secretKey"])

    @property
    def exporter_password(self) -> str:
        return self.secret(self.keys["exporterSecretKey"])

    @property
    def admin_password(self) -> str:
        return self.secret(self.keys["adminSecretKey"])

    def client(self, username: str | None = None, password: str | None = None, **kwargs) -> redis.Redis:
        """A client that authenticates like go-redis with REDIS_PASSWORD only (no username) unless one is given."""
        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis(host=self.host, port=self.port, username=username, password=password, **kwargs)

    def app(self, **kwargs) -> redis.Redis:
        return self.client(password=self.app_password, **kwargs)

    def admin(self, **kwargs) -> redis.Redis:
        return self.client(self.acl["adminUser"], self.admin_password, **kwargs)

    def exporter(self, **kwargs) -> redis.Redis:
        return self.client(self.acl["exporterUser"], self.exporter_password, **kwargs)


class StackServer(ServerAccess):
    def __init__(self, stack) -> None:
        self.stack = stack
        self.values = stack.full_values
        self.host = stack.pod_ip
        self.port = stack.port
        self.manifests = stack.manifests

    def secret(self, key: str) -> str:
        return self.stack.password(key)

    @property
    def probe_password(self) -> str:
        return (self.stack.state_dir / "emptydirs" / "run" / "probe-password").read_text()


@contextlib.contextmanager
def stack_server(engine_name: str, state_dir: Path, values: dict | None = None) -> Iterator[StackServer]:
    """A started LocalStack (fast probes, no Prometheus) that is stopped and checked to leave nothing behind."""
    from alert_history_cache.stack import LocalStack

    stack = LocalStack(values=chart.deep_merge(FAST_PROBES, values or {}), engine=engine_name,
                       state_dir=state_dir, monitoring=False)
    try:
        stack.start()
        yield StackServer(stack)
    finally:
        stack.stop()
    assert_nothing_left(state_dir)


@dataclass
class RenderedServer(ServerAccess):
    engine: engines.Engine
    manifests: chart.Manifests
    values: dict  # values.yaml merged with the user values
    port: int
    paths: dict[str, Path]
    log_path: Path
    executor: TCPExecutor | None = None

    def secret(self, key: str) -> str:
        return (self.paths["secret"] / key).read_text()

    @property
    def probe_password(self) -> str:
        return (self.paths["run"] / "probe-password").read_text()

    def write_secret(self, key: str, value: str | None) -> None:
        """Change the mounted Secret as `kubectl apply` of the Secret would; None removes the key."""
        path = self.paths["secret"] / key
        if path.exists():
            path.chmod(0o600)
            path.unlink()
        if value is not None:
            path.write_text(value)
            path.chmod(0o400)

    @property
    def exporter_addr(self) -> str:
        """The exporter's REDIS_ADDR (the pod's redis://127.0.0.1:6379) mapped to this server."""
        return f"redis://127.0.0.1:{self.port}"

    def run_config_init(self, run_dir: Path | None = None) -> subprocess.CompletedProcess:
        """The chart's init-acl.sh with the rendered config-init env, the pod paths pointed at this server's dirs
        (or another run dir)."""
        sts = self.manifests.get("StatefulSet", NAME)
        (init,) = sts["spec"]["template"]["spec"]["initContainers"]
        env = {e["name"]: e["value"] for e in init.get("env", [])}
        if "EXPORTER_REDIS_ADDR" in env:
            assert env["EXPORTER_REDIS_ADDR"] == "redis://127.0.0.1:6379"
            env["EXPORTER_REDIS_ADDR"] = self.exporter_addr
        self.paths.setdefault("exporter", self.paths["run"].parent / "exporter-run").mkdir(mode=0o700, exist_ok=True)
        return subprocess.run(
            ["/bin/sh", str(self.paths["scripts"] / "init-acl.sh")],
            env={**env, "PATH": "/usr/bin:/bin", "SECRET_DIR": str(self.paths["secret"]),
                 "RUN_DIR": str(run_dir or self.paths["run"]), "ACL_TEMPLATE": str(self.paths["etc"] / "users.acl.tpl"),
                 "EXPORTER_DIR": str(self.paths["exporter"])},
            check=True, capture_output=True, text=True,
        )

    def start(self) -> None:
        log = self.log_path.open("a")
        self.executor = TCPExecutor([str(self.engine.server), str(self.paths["etc"] / "valkey.conf")],
                                    host="127.0.0.1", port=self.port, timeout=30, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.executor.start()

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.stop()
            self.executor = None

    def restart_container(self) -> None:
        """The server container restarts in the same pod: the run dir (emptyDir) stays, config-init does not run."""
        self.stop()
        self.start()

    def restart_pod(self) -> None:
        """What a new pod does: config-init writes the ACL file from the Secret again, then the server starts."""
        self.stop()
        self.run_config_init()
        self.start()


@contextlib.contextmanager
def rendered_server(engine: engines.Engine, root: Path, values: dict | None = None) -> Iterator[RenderedServer]:
    # The engine's image, as the local stack renders it: the image decides the server binary.
    image = {"valkey": {"image": engines.ENGINE_IMAGES[engine.name]}}
    user_values = chart.deep_merge(chart.deep_merge(BASE_VALUES, image), values or {})
    manifests = chart.render(user_values)
    port = port_for.select_random()
    pod = write_pod_files(manifests, root, port)
    server = RenderedServer(engine=engine, manifests=manifests,
                            values=chart.deep_merge(chart.default_values(), user_values),
                            port=port, paths=pod["paths"], log_path=root / "server.log")
    try:
        server.run_config_init()  # again, with the rendered config-init env (the exporter's password file)
        server.start()
        yield server
    finally:
        server.stop()
