"""The rendered server config boots on every engine and means what the values say.

Renders the chart with its defaults, writes the config and the Secret to a temp dir with the pod's paths
mapped through one table, runs the chart's own init-acl.sh (as config-init would) to write the ACL file, then
boots Valkey 8.1, Valkey 9.1 and Redis 7.0 on that config and checks it with CONFIG GET as the admin user."""

from __future__ import annotations

import subprocess
from pathlib import Path

import port_for
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from mirakuru import TCPExecutor

from alert_history_cache import chart, engines
from alert_history_cache.units import valkey_bytes

from helpers.servers import write_pod_files

pytestmark = pytest.mark.integration

VALUES = {"fullnameOverride": "alerthistory"}


@pytest.fixture(scope="module")
def manifests() -> chart.Manifests:
    return chart.render(VALUES)


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
