"""A real server booted on the chart's rendered config, ACL file and Secret, on 127.0.0.1 and a free port.

The pod files come from test_config_boots.write_pod_files (the rendered valkey.conf with the pod paths mapped,
the Secret as files, the chart's own init-acl.sh run as config-init would). On top of it: clients per user,
a restart that re-runs config-init from the (possibly changed) Secret files, as a new pod would.
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

from .test_config_boots import write_pod_files

NAME = "alerthistory-redis"
BASE_VALUES = {"fullnameOverride": "alerthistory"}


@dataclass
class RenderedServer:
    engine: engines.Engine
    manifests: chart.Manifests
    values: dict  # values.yaml merged with the user values
    port: int
    paths: dict[str, Path]
    log_path: Path
    executor: TCPExecutor | None = None

    @property
    def acl(self) -> dict:
        return self.values["valkey"]["acl"]

    @property
    def keys(self) -> dict:
        return self.values["valkey"]["password"]

    def secret(self, key: str) -> str:
        return (self.paths["secret"] / key).read_text()

    @property
    def app_password(self) -> str:
        return self.secret(self.keys["secretKey"])

    @property
    def exporter_password(self) -> str:
        return self.secret(self.keys["exporterSecretKey"])

    @property
    def admin_password(self) -> str:
        return self.secret(self.keys["adminSecretKey"])

    @property
    def probe_password(self) -> str:
        return (self.paths["run"] / "probe-password").read_text()

    def client(self, username: str | None = None, password: str | None = None, **kwargs) -> redis.Redis:
        """A client that authenticates like go-redis with REDIS_PASSWORD only (no username) unless one is given."""
        return redis.Redis(host="127.0.0.1", port=self.port, username=username, password=password,
                           socket_timeout=10, **kwargs)

    def app(self, **kwargs) -> redis.Redis:
        return self.client(password=self.app_password, **kwargs)

    def admin(self, **kwargs) -> redis.Redis:
        return self.client(self.acl["adminUser"], self.admin_password, **kwargs)

    def exporter(self, **kwargs) -> redis.Redis:
        return self.client(self.acl["exporterUser"], self.exporter_password, **kwargs)

    def write_secret(self, key: str, value: str | None) -> None:
        """Change the mounted Secret as `kubectl apply` of the Secret would; None removes the key."""
        path = self.paths["secret"] / key
        if path.exists():
            path.chmod(0o600)
            path.unlink()
        if value is not None:
            path.write_text(value)
            path.chmod(0o400)

    def run_config_init(self, run_dir: Path | None = None) -> subprocess.CompletedProcess:
        """The chart's init-acl.sh, with the pod paths pointed at this server's dirs (or another run dir)."""
        return subprocess.run(
            ["/bin/sh", str(self.paths["scripts"] / "init-acl.sh")],
            env={"PATH": "/usr/bin:/bin", "SECRET_DIR": str(self.paths["secret"]),
                 "RUN_DIR": str(run_dir or self.paths["run"]), "ACL_TEMPLATE": str(self.paths["etc"] / "users.acl.tpl")},
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
        server.start()
        yield server
    finally:
        server.stop()


def rendered_secret(manifests: chart.Manifests) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in manifests.get("Secret", NAME)["data"].items()}
