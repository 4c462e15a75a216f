"""`alert-history-cache up --detach | status | down` end to end, the printed connection command, Ctrl-C in the
foreground, the non-root refusal, and a failed start: nothing is left behind in any case."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from alert_history_cache import stack as stack_mod
from alert_history_cache.cli import main
from alert_history_cache.waiting import wait_until

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "alert_history_cache.cli"]
FAST = ["--set", "valkey.probes.startup.periodSeconds=1", "--set", "valkey.probes.readiness.periodSeconds=1"]


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_detached_up_status_down(tmp_path, needs_root, nothing_left) -> None:
    state = tmp_path / "state"
    try:
        up = run("up", "--detach", "--state-dir", str(state), *FAST,
                 "--set", "valkey.exporter.serviceMonitor.interval=1s",
                 "--set", "valkey.exporter.serviceMonitor.scrapeTimeout=1s")
        assert up.returncode == 0, up.stdout + up.stderr
        out = up.stdout
        assert re.search(r"the chart's [1-9]\d* rules loaded; exporter target up: http://10\.244\.", out), out
        assert "is ready" in out and "not Kubernetes" in out
        assert re.search(r"Prometheus\s+http://127\.0\.0\.1:\d+", out)
        assert re.search(r"Alertmanager\s+http://127\.0\.0\.1:\d+", out)
        assert f"{state}/logs" in out
        data = stack_mod.read_state(state)
        for key in ("password", "exporter-password", "admin-password"):
            assert stack_mod.is_running(state)
            assert (state / "secrets" / "alerthistory-redis" / key).read_text() not in out

        # The printed command, run as printed: the application user sets and gets through the pod address.
        connect = next(line.strip() for line in out.splitlines() if line.strip().startswith("REDISCLI_AUTH=")
                       and "--user" not in line)
        set_get = subprocess.run(["sh", "-c", f"{connect} SET group:cli ok && {connect} GET group:cli"],
                                 capture_output=True, text=True, timeout=10)
        assert set_get.stdout.split() == ["OK", "ok"], set_get.stdout + set_get.stderr

        status = run("status", "--state-dir", str(state))
        assert status.returncode == 0, status.stdout + status.stderr
        assert "running" in status.stdout and "valkey" in status.stdout and "exporter" in status.stdout
        assert re.search(r"valkey\s+│\s+running", status.stdout)
        assert "success" in status.stdout
        assert data["pod"]["ip"] in status.stdout
    finally:
        down = run("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Stopped." in down.stdout
    assert not stack_mod.is_running(state)
    nothing_left(state)
    assert stack_mod.read_state(state)["phase"] == "stopped"
    after = run("status", "--state-dir", str(state))
    assert after.returncode == 1
    assert run("down", "--state-dir", str(state)).returncode == 0, "down is idempotent"


def test_foreground_up_stops_on_ctrl_c(tmp_path, needs_root, nothing_left) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen([*CLI, "up", "--no-monitoring", "--state-dir", str(state), *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Stop: Ctrl-C"):
                break
        assert any("is ready" in line for line in lines), "".join(lines)
        assert stack_mod.read_state(state)["phase"] == "running"
        proc.send_signal(signal.SIGINT)
        # Not a wait for a condition: the scenario is a second press a moment after the first, mid-cleanup.
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # an impatient second Ctrl-C must not cut the cleanup short
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "Stopped" in rest
    nothing_left(state)


def test_down_cleans_up_after_a_killed_stack(tmp_path, needs_root, nothing_left) -> None:
    """The supervisor dies without stopping (SIGKILL) and even stack.json is lost: `down` still removes processes,
    the network namespace and veth (from the slot record) and the mounts."""
    state = tmp_path / "state"
    up = run("up", "--detach", "--no-monitoring", "--state-dir", str(state), *FAST)
    assert up.returncode == 0, up.stdout + up.stderr
    data = stack_mod.read_state(state)
    os.kill(data["supervisor"]["pid"], signal.SIGKILL)
    wait_until(lambda: not stack_mod.is_running(state), 10, "the killed supervisor to be gone", interval=0.05)
    assert stack_mod.processes_of(state), "the pod's processes outlive a killed supervisor until `down`"
    status = run("status", "--state-dir", str(state))
    assert status.returncode == 1 and "process is gone" in status.stdout
    (state / "stack.json").unlink()
    down = run("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "deleted network namespace" in down.stdout and "unmounted" in down.stdout and "killed pid" in down.stdout
    nothing_left(state)


def test_failed_start_leaves_nothing(tmp_path, needs_root, nothing_left) -> None:
    """existingSecret without the exporter's key: the chart's init container refuses, and `up` cleans up."""
    state = tmp_path / "state"
    app = tmp_path / "app-password"
    app.write_text("an-application-password-of-32-chars")
    result = run("up", "--no-monitoring", "--state-dir", str(state), *FAST,
                 "--set", "valkey.password.existingSecret=my-cache-secret", "--secret-file", f"password={app}")
    assert result.returncode == 1
    assert "init container config-init failed" in result.stderr
    assert "exporter-password" in result.stderr  # init-acl.sh names the missing key
    assert stack_mod.read_state(state)["phase"] == "failed"
    nothing_left(state)


def test_up_refuses_without_root(tmp_path) -> None:
    """The CLI, run as uid 65534, stops with a clear message. It runs in a forked child that drops to 65534
    (like setpriv --reuid=65534) because the venv's interpreter under /root is not readable by that user."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = CliRunner().invoke(main, ["up", "--state-dir", str(tmp_path / "state")])
            os.write(write, f"{result.exit_code}\n{os.geteuid()}\n{result.output}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        code, euid, output = f.read().split("\n", 2)
    os.waitpid(pid, 0)
    assert euid == "65534"
    assert int(code) != 0
    assert "needs root" in output and "namespaces" in output
    assert not (tmp_path / "state").exists(), "nothing is created before the check"
