"""`alert-history-cache status --json` on a detached stack, as docs/local-stack.md documents it: pods (address,
readiness, containers with restarts, the server's replication role), Services (ClusterIP, ports, endpoints),
where the Secret files are (never their content), the Prometheus and Alertmanager URLs. The fault commands
it reports on (`kill`, `partition`, `heal`) run from this other process through the stack's control dir."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alert_history_cache.promapi import Alertmanager, Prometheus
from alert_history_cache.waiting import wait_until

from helpers.cluster import assert_cluster_gone

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "alert_history_cache.cli"]
FAST = ["--set", "valkey.probes.startup.periodSeconds=1", "--set", "valkey.probes.readiness.periodSeconds=1",
        "--set", "valkey.probes.liveness.periodSeconds=1",
        "--set", "valkey.exporter.serviceMonitor.interval=1s",
        "--set", "valkey.exporter.serviceMonitor.scrapeTimeout=1s"]
POD = "alerthistory-redis-0"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def status(state: Path, code: int = 0) -> dict:
    proc = run("status", "--json", "--state-dir", str(state))
    assert proc.returncode == code, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def reachable(ip: str, port: int = 6379) -> bool:
    try:
        socket.create_connection((ip, port), timeout=1).close()
        return True
    except OSError:
        return False


def test_status_json_documents_pods_services_secrets_and_monitoring(tmp_path, needs_root, nothing_left) -> None:
    state = tmp_path / "state"
    try:
        up = run("up", "--detach", "--state-dir", str(state), *FAST)
        assert up.returncode == 0, up.stdout + up.stderr
        doc = status(state)
        assert doc["running"] is True and doc["phase"] == "running"

        (pod,) = doc["pods"]
        assert pod["name"] == POD and pod["address"].startswith("10.244.") and pod["ready"] is True
        containers = {c["name"]: c for c in pod["containers"]}
        assert set(containers) == {"valkey", "exporter"}
        assert all(c["restarts"] == 0 and c["ready"] is True and c["state"] == "running" for c in containers.values())
        assert containers["valkey"]["role"] == "master", "the server's replication role, asked live"
        assert "role" not in containers["exporter"]

        services = {s["name"]: s for s in doc["services"]}
        assert set(services) == {"alerthistory-redis", "alerthistory-redis-headless", "alerthistory-redis-metrics"}
        client, headless, metrics = (services[n] for n in ("alerthistory-redis", "alerthistory-redis-headless",
                                                           "alerthistory-redis-metrics"))
        assert client["cluster_ip"].startswith("10.96.") and client["endpoints"] == [pod["address"]]
        assert client["ports"] == [{"name": "redis", "port": 6379, "target_port": 6379, "target_port_name": "redis",
                                    "protocol": "TCP"}]
        assert headless["cluster_ip"] is None and headless["headless"] and headless["endpoints"] == [pod["address"]]
        assert metrics["ports"][0]["target_port"] == 9121 and metrics["cluster_ip"] != client["cluster_ip"]
        assert doc["client"] == {"service": "alerthistory-redis", "address": f"{client['cluster_ip']}:6379"}

        # Where the Secret files are, never what they hold.
        secrets = doc["secrets"]
        folder = Path(secrets["dir"])
        assert folder == state.resolve() / "secrets" / "alerthistory-redis" and secrets["pods"] == {POD: str(folder)}
        text = json.dumps(doc)
        for key in set(secrets["keys"].values()):
            path = folder / key
            assert stat.S_IMODE(path.stat().st_mode) == 0o400
            assert path.read_text() not in text

        assert Prometheus(doc["prometheus"]).ready() and Alertmanager(doc["alertmanager"]).ready()
        assert doc["prometheus"].startswith("http://127.0.0.1:") and doc["alertmanager"].startswith("http://127.0.0.1:")

        # fault kill: the container restarts in the same pod (same address), status counts it.
        killed = run("fault", "kill", POD, "-c", "valkey", "--signal", "KILL", "--state-dir", str(state))
        assert killed.returncode == 0, killed.stdout + killed.stderr
        restarted = wait_until(lambda: next((c for c in status(state)["pods"][0]["containers"]
                                             if c["name"] == "valkey" and c["restarts"] == 1 and c["ready"]), None),
                               60, "the killed server restarted and Ready")
        assert restarted["last_exit"]["signal"] == 9
        assert status(state)["pods"][0]["address"] == pod["address"]

        # fault partition / heal: the pod is cut from the host and back.
        cut = run("fault", "partition", POD, "--state-dir", str(state))
        assert cut.returncode == 0, cut.stdout + cut.stderr
        assert status(state)["pods"][0]["partition"]["from"] == "everything"
        assert not reachable(pod["address"])
        healed = run("fault", "heal", "--state-dir", str(state))
        assert healed.returncode == 0 and json.loads(healed.stdout) == {"healed": [POD]}
        assert reachable(pod["address"]) and status(state)["pods"][0]["partition"] is None
        bad = run("fault", "kill", "no-such-pod", "--state-dir", str(state))
        assert bad.returncode == 1 and "no pod 'no-such-pod'" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        down = run("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    nothing_left(state)
    assert_cluster_gone(state)
    after = status(state, code=1)
    assert after["running"] is False and after["phase"] == "stopped"
