"""`alert-history-cache up --set valkey.architecture=replication` on the chart's defaults otherwise: 3 data pods
(server, Sentinel and their exporters), 2 HAProxy pods behind the client Service, Prometheus and Alertmanager;
`status --json` shows exactly one primary; the alert-history client profile passes through the client Service's
ClusterIP (HAProxy); `down` leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from alert_history_cache import chart
from alert_history_cache.promapi import Alertmanager, Prometheus

from helpers.servers import ServerAccess

from helpers.app_profile import replay_application_profile

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "alert_history_cache.cli"]
STS = "alerthistory-redis"


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


class ClientService(ServerAccess):
    """The application's path: the client Service's ClusterIP, with the users and passwords of the release."""

    def __init__(self, address: str, secret_dir: Path):
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.secret_dir = secret_dir
        self.values = chart.deep_merge(chart.default_values(), {})

    def secret(self, key: str) -> str:
        return (self.secret_dir / key).read_text()


def test_up_replication_one_primary_and_the_client_profile(tmp_path, needs_root, nothing_left) -> None:
    state = tmp_path / "state"
    try:
        up = run("up", "--detach", "--state-dir", str(state), "--set", "valkey.architecture=replication")
        assert up.returncode == 0, up.stdout + up.stderr
        proc = run("status", "--json", "--state-dir", str(state), timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        doc = json.loads(proc.stdout)
        pods = {p["name"]: p for p in doc["pods"]}
        data = [p for p in doc["pods"] if p["owner"] == {"kind": "StatefulSet", "name": STS}]
        haproxy = [p for p in doc["pods"] if p["owner"] == {"kind": "Deployment", "name": f"{STS}-haproxy"}]
        assert sorted(p["name"] for p in data) == [f"{STS}-{i}" for i in range(3)], sorted(pods)
        assert len(haproxy) == 2 and len(doc["pods"]) == 5
        assert all(p["ready"] for p in doc["pods"]), [(p["name"], p["ready"]) for p in doc["pods"]]
        for p in data:
            names = {c["name"] for c in p["containers"]}
            assert {"valkey", "sentinel", "exporter", "sentinel-exporter"} <= names
        roles = [c["role"] for p in data for c in p["containers"] if c["name"] == "valkey"]
        assert roles.count("master") == 1 and roles.count("slave") == 2, roles

        services = {s["name"]: s for s in doc["services"]}
        client = services[STS]
        assert doc["client"] == {"service": STS, "address": f"{client['cluster_ip']}:6379"}
        assert sorted(client["endpoints"]) == sorted(p["address"] for p in haproxy)  # HAProxy behind it
        assert sorted(services[f"{STS}-sentinel"]["endpoints"]) == sorted(p["address"] for p in data)
        assert Prometheus(doc["prometheus"]).ready() and Alertmanager(doc["alertmanager"]).ready()

        server = ClientService(doc["client"]["address"], Path(doc["secrets"]["dir"]))
        for protocol in (2, 3):
            replay_application_profile(server, protocol)
        primary = next(p for p in data if any(c.get("role") == "master" for c in p["containers"]))
        # Everything went to the primary: it holds what the profile wrote.
        direct = redis.Redis(host=primary["address"], port=server.port, username=server.acl["adminUser"],
                             password=server.admin_password, decode_responses=True)
        assert direct.get("group:g2") == "changed-by-another-replica+1"
    finally:
        down = run("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stdout + down.stderr
    nothing_left(state)
