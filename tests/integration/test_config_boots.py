"""The rendered server config boots on every engine and means what the values say.

Renders the chart with its defaults, writes the config and the Secret to a temp dir with the pod's paths
mapped through one table, runs the chart's own init-acl.sh (as config-init would) to write the ACL file, then
boots Valkey 8.1, Valkey 9.1 and Redis 7.0 on that config and checks it with CONFIG GET as the admin user."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import port_for
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from mirakuru import TCPExecutor

from alert_history_cache import chart, engines

pytestmark = pytest.mark.integration

NAME = "alerthistory-redis"
VALUES = {"fullnameOverride": "alerthistory"}

# Valkey's size units (config.c memtoull): k/m/g decimal, kb/mb/gb binary.
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}


def valkey_bytes(text: str) -> int:
    num, unit = re.fullmatch(r"(\d+)([a-z]*)", str(text).lower()).groups()
    return int(num) * UNITS[unit]


def map_lines(conf: str, table: dict[str, str]) -> str:
    """Replace whole config lines; each pod-path line must be present exactly once."""
    lines = conf.splitlines()
    for old, new in table.items():
        hits = [i for i, line in enumerate(lines) if line.strip() == old]
        assert len(hits) == 1, f"rendered valkey.conf should have exactly one line {old!r}, found {len(hits)}"
        lines[hits[0]] = new
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def manifests() -> chart.Manifests:
    return chart.render(VALUES)


def write_pod_files(manifests: chart.Manifests, root: Path, port: int) -> dict:
    config = manifests.get("ConfigMap", f"{NAME}-config")["data"]
    scripts = manifests.get("ConfigMap", f"{NAME}-scripts")["data"]
    secret = {k: base64.b64decode(v).decode() for k, v in manifests.get("Secret", NAME)["data"].items()}

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


def test_rendered_config_boots(engine: engines.Engine, manifests: chart.Manifests, tmp_path: Path) -> None:
    values = chart.deep_merge(chart.default_values(), VALUES)
    settings, acl, keys = values["valkey"]["settings"], values["valkey"]["acl"], values["valkey"]["password"]
    port = port_for.select_random()
    pod = write_pod_files(manifests, tmp_path, port)
    paths, secret = pod["paths"], pod["secret"]

    log = (tmp_path / "server.log").open("w")
    server = TCPExecutor([str(engine.server), str(paths["etc"] / "valkey.conf")], host="127.0.0.1", port=port,
                         timeout=30, stdout=log, stderr=subprocess.STDOUT)
    try:
        server.start()
        admin = redis.Redis(port=port, username=acl["adminUser"], password=secret[keys["adminSecretKey"]],
                            decode_responses=True)
        got = {k: admin.config_get(k)[k] for k in (
            "maxmemory", "maxmemory-policy", "appendonly", "appendfsync", "save", "slowlog-log-slower-than",
            "protected-mode", "dir", "aclfile")}
        assert got == {
            "maxmemory": str(valkey_bytes(settings["maxmemory"])),
            "maxmemory-policy": settings["maxmemoryPolicy"],
            "appendonly": "yes" if settings["appendonly"] else "no",
            "appendfsync": settings["appendfsync"],
            "save": " ".join(settings["save"]),
            "slowlog-log-slower-than": str(settings["slowlogThreshold"]),
            "protected-mode": "yes",
            "dir": str(paths["data"]),
            "aclfile": str(paths["run"] / "users.acl"),
        }, f"{engine.title} {engine.version}"

        # Not authenticated: refused.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, retry=Retry(NoBackoff(), 0)).ping()
        # The application sends AUTH <password> only, so it is the `default` user.
        app = redis.Redis(port=port, password=secret[keys["secretKey"]], client_name="boot-app",
                          decode_responses=True)
        app.ping()  # CLIENT ID is outside the application's command profile: find it by name
        assert [c["user"] for c in admin.client_list() if c["name"] == "boot-app"] == ["default"]
        assert app.set("alert:boot", "ok", ex=60)
        assert app.get("alert:boot") == "ok"
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.flushall()
        assert admin.dbsize() == 1, "FLUSHALL refused, so the key is still there"
    finally:
        server.stop()
        log.close()
