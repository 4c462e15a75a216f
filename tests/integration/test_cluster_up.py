"""`up --detach` on the default values runs the release as a local cluster: the alert-history client profile
passes through the client Service's ClusterIP, and `fault delete alerthistory-redis-0` (another process, through
the stack's control dir) recreates the pod at a new address with the same data, served again by the same
ClusterIP without any client change. `down` leaves nothing behind, nft table and ip_forward included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from alert_history_cache.waiting import wait_until

from . import test_app_profile as profile
from helpers.cluster import assert_cluster_gone, forwarding_holders

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "alert_history_cache.cli"]
FAST = ["--set", "valkey.probes.startup.periodSeconds=1", "--set", "valkey.probes.readiness.periodSeconds=1",
        "--set", "valkey.probes.liveness.periodSeconds=1"]
POD = "alerthistory-redis-0"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def status(state) -> dict:
    proc = run("status", "--json", "--state-dir", str(state))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


class ServiceClient:
    """The application's view: the client Service's address and the Secret's passwords, nothing of the pod."""

    def __init__(self, doc: dict):
        self.host, port = doc["client"]["address"].split(":")
        self.port = int(port)
        secrets = doc["secrets"]
        self._dir, self._keys = secrets["dir"], secrets["keys"]
        self.admin_user = doc["details"]["endpoints"]["admin_user"]

    def _password(self, user: str) -> str:
        with open(f"{self._dir}/{self._keys[user]}") as f:
            return f.read()

    @property
    def app_password(self) -> str:
        return self._password("default")

    def app(self, **kwargs) -> redis.Redis:
        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis(host=self.host, port=self.port, password=self.app_password, **kwargs)

    def admin(self, **kwargs) -> redis.Redis:
        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis(host=self.host, port=self.port, username=self.admin_user,
                           password=self._password(self.admin_user), **kwargs)


def test_up_detach_client_profile_through_the_service_and_fault_delete(tmp_path, needs_root, nothing_left) -> None:
    state = tmp_path / "state"
    forward_before = open("/proc/sys/net/ipv4/ip_forward").read() if not forwarding_holders() else None
    try:
        up = run("up", "--detach", "--no-monitoring", "--state-dir", str(state), *FAST)
        assert up.returncode == 0, up.stdout + up.stderr
        doc = status(state)
        service = next(s for s in doc["services"] if s["name"] == "alerthistory-redis")
        pod = next(p for p in doc["pods"] if p["name"] == POD)
        assert doc["client"] == {"service": "alerthistory-redis", "address": f"{service['cluster_ip']}:6379"}
        assert service["cluster_ip"].startswith("10.96.") and service["endpoints"] == [pod["address"]]
        assert f"{service['cluster_ip']}:6379" in up.stdout, "the banner prints the client Service address"
        assert pod["address"] in up.stdout, "and the pod address, for debugging"

        # The alert-history client profile, through the ClusterIP (the kernel DNATs it to the pod).
        server = ServiceClient(doc)
        assert server.host == service["cluster_ip"] != pod["address"]
        profile.test_go_redis_connection_handshake(server)
        for protocol in (2, 3):
            profile.test_application_profile_replay(server, protocol)
        app = server.app(decode_responses=True)  # one client object for the whole test, like the application
        assert app.set("group:kept", "across-the-delete")

        # `fault delete` from another process: a graceful delete, the StatefulSet controller recreates the pod.
        fault = run("fault", "delete", POD, "--state-dir", str(state))
        assert fault.returncode == 0, fault.stdout + fault.stderr
        answer = json.loads(fault.stdout)
        assert answer["exit_codes"]["valkey"] == 0 and answer["old_address"] == pod["address"]
        after = status(state)
        recreated = next(p for p in after["pods"] if p["name"] == POD)
        assert recreated["address"] == answer["new_address"] != pod["address"]
        assert recreated["generation"] == pod["generation"] + 1
        same = next(s for s in after["services"] if s["name"] == "alerthistory-redis")
        assert same["cluster_ip"] == service["cluster_ip"]

        # The same client, unchanged, is served again once the new pod is Ready (redis-py reconnects).
        value = wait_until(lambda: app.get("group:kept"), 60, "the recreated pod behind the same ClusterIP",
                           interval=0.2, ignore=(redis.ConnectionError, redis.TimeoutError))
        assert value == "across-the-delete"
        final = status(state)
        assert next(s for s in final["services"] if s["name"] == "alerthistory-redis")["endpoints"] == \
            [recreated["address"]]
    finally:
        down = run("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    nothing_left(state)
    assert_cluster_gone(state)
    if forward_before is not None and not forwarding_holders():  # no other stack ran meanwhile
        assert open("/proc/sys/net/ipv4/ip_forward").read() == forward_before


def test_fault_without_a_stack_names_the_problem(tmp_path) -> None:
    proc = run("fault", "delete", POD, "--state-dir", str(tmp_path / "none"))
    assert proc.returncode == 1
    assert "no stack is running" in proc.stderr and "Traceback" not in proc.stderr


def test_down_after_a_killed_supervisor_removes_the_cluster(tmp_path, needs_root, nothing_left) -> None:
    """The supervisor dies without stopping (SIGKILL): `down` still removes the pods, the Service proxy's nft
    table, the ClusterIPs and the stack's hold on ip_forward."""
    import os
    import signal

    from alert_history_cache.cluster import proxy_table
    from alert_history_cache.service_proxy import tables_with_prefix
    from alert_history_cache.stack import read_state

    state = tmp_path / "state"
    up = run("up", "--detach", "--no-monitoring", "--state-dir", str(state), *FAST)
    assert up.returncode == 0, up.stdout + up.stderr
    supervisor = read_state(state)["supervisor"]["pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: supervisor not in forwarding_holders(), 10, "the killed supervisor gone")
    assert proxy_table(state) in tables_with_prefix("ahc_"), "the rules outlive a killed supervisor until `down`"
    down = run("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"deleted nft table ip {proxy_table(state)}" in down.stdout
    assert "released ClusterIP 10.96." in down.stdout
    nothing_left(state)
    assert_cluster_gone(state)
