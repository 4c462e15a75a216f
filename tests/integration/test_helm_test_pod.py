"""The chart's `helm test` pod passes against a real server booted on the rendered config, and fails on a
wrong password: its rendered command runs unchanged, with its env resolved as the kubelet would (the
password from the Secret through REDISCLI_AUTH) and the image's CLI name mapped to the engine's binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import port_for
import pytest
from mirakuru import TCPExecutor

from alert_history_cache import chart, engines

from helpers.servers import NAME, write_pod_files

pytestmark = pytest.mark.integration


def run_test_pod(pod: dict, secret: dict, port: int, engine: engines.Engine) -> subprocess.CompletedProcess:
    (container,) = pod["spec"]["containers"]
    env = {"PATH": "/usr/bin:/bin"}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = secret[var["valueFrom"]["secretKeyRef"]["key"]]
    assert env["REDISCLI_AUTH"], "the password reaches the CLI through REDISCLI_AUTH"
    # What differs from the cluster: the Service name -> 127.0.0.1, its port -> the test port, the image's
    # CLI name -> the engine's binary.
    env.update(HOST="127.0.0.1", PORT=str(port), CLI=str(engine.cli))
    return subprocess.run(container["command"] + container["args"], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("values", [
    {"fullnameOverride": "alerthistory"},
    {"fullnameOverride": "alerthistory", "valkey": {"acl": {"keyPatterns": ["alert:*", "history:*"]}}},
], ids=["default", "key-patterns"])
def test_helm_test_pod_passes_and_refuses_a_wrong_password(engine: engines.Engine, values: dict,
                                                           tmp_path: Path) -> None:
    manifests = chart.render(values)
    pod = manifests.get("Pod", f"{NAME}-test-connection")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    port = port_for.select_random()
    secret = write_pod_files(manifests, tmp_path, port)["secret"]

    with (tmp_path / "server.log").open("w") as log:
        server = TCPExecutor([str(engine.server), str(tmp_path / "etc" / "valkey.conf")], host="127.0.0.1",
                             port=port, timeout=30, stdout=log, stderr=subprocess.STDOUT)
        server.start()
        try:
            ok = run_test_pod(pod, secret, port, engine)
            assert ok.returncode == 0, f"{engine.title}: {ok.stdout}{ok.stderr}"
            key = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}["TEST_KEY"]
            assert ok.stdout.splitlines() == ["ok   PING", f"ok   SET {key}", f"ok   GET {key}", f"ok   DEL {key}"]

            bad = run_test_pod(pod, {k: "wrong-password-0123456789" for k in secret}, port, engine)
            assert bad.returncode != 0
            assert "FAIL PING" in bad.stdout and "WRONGPASS" in bad.stdout
        finally:
            server.stop()
