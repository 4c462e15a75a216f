"""The rendered probes under the kubelet emulation: a hung (SIGSTOPped) server is restarted by liveness; a
crashing one is restarted with back-off; while a large dataset loads, readiness fails (and passes afterwards)
but liveness never kills the server."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

from alert_history_cache.waiting import wait_until

pytestmark = pytest.mark.integration

STRICT_LIVENESS = {"valkey": {
    "probes": {"liveness": {"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2}},
    "terminationGracePeriodSeconds": 2, "settings": {"shutdownTimeout": 1}}}


def events_since(stack, t_wall: float, reason: str | None = None) -> list[dict]:
    return [e for e in stack.events if e["time"] >= t_wall and (reason is None or e["reason"] == reason)]


def test_sigstopped_server_is_restarted_by_liveness(make_stack) -> None:
    stack = make_stack(values=STRICT_LIVENESS).start()
    stack.client().set("lock:a", "held")
    # appendfsync everysec: the write reaches the AOF file (what survives the SIGKILL below) within a second.
    aof_dir = stack.data_dir / stack.client("admin").config_get("appenddirname")["appenddirname"]
    wait_until(lambda: any(b"lock:a" in f.read_bytes() for f in aof_dir.glob("*.aof")), 10,
               "the write to reach the AOF file")
    t_wall = time.time()
    stack.kill_server(signal.SIGSTOP)
    recovery = stack.wait_ready(60)
    # At least two liveness periods of 1 s with a 1 s timeout each, then SIGTERM (pending: the process is stopped)
    # and SIGKILL after the 2 s grace period, then the restart and the probes: over 3 s. The upper bound only
    # catches a restart that never comes; a loaded machine stretches every step.
    assert 3 < recovery < 45, recovery

    status = stack.status()["pod"]["containers"]["valkey"]
    assert status["restarts"] == 1
    assert status["last_exit"]["signal"] == signal.SIGKILL and status["last_exit"]["exit_code"] == 137
    unhealthy = [e["message"] for e in events_since(stack, t_wall, "Unhealthy")]
    assert any(m.startswith("Liveness probe failed: probe timed out") for m in unhealthy), unhealthy
    assert any("failed liveness probe" in e["message"] for e in events_since(stack, t_wall, "Killing"))
    assert stack.client().get("lock:a") == "held"
    assert "restart 1" in stack.server_log_path.read_text()


def test_crashing_server_is_restarted_with_back_off(make_stack) -> None:
    stack = make_stack(backoff=(2.0, 8.0)).start()
    t_wall = time.time()
    stack.kill_server(signal.SIGKILL)
    stack.wait_ready(30)
    stack.kill_server(signal.SIGKILL)
    wait_until(lambda: stack.status()["pod"]["containers"]["valkey"]["reason"] == "CrashLoopBackOff", 2,
               "the container to wait in CrashLoopBackOff (the 2 s back-off)", interval=0.02)
    second = stack.wait_ready(30)
    assert second >= 2.0, "ready again only after the back-off"
    assert stack.status()["pod"]["containers"]["valkey"]["restarts"] == 2

    # From each exit the kubelet saw to the restart it made (event times, not readiness: probes add their own
    # periods): the first restart is immediate, the second waits the 2 s base (10 s in a kubelet).
    died = [e["time"] for e in events_since(stack, t_wall, "Died") if e["object"] == "valkey"]
    restarted = [e["time"] for e in events_since(stack, t_wall, "Started") if e["object"] == "valkey"]
    assert len(died) == len(restarted) == 2, stack.events
    gaps = [start - exit_ for exit_, start in zip(died, restarted)]
    assert gaps[0] < 1.0, gaps
    assert 1.9 <= gaps[1] < 5.0, gaps


def _mass_insert(stack, hashes: int, fields: int) -> None:
    """HSETs through `valkey-cli --pipe` as the admin user (password in REDISCLI_AUTH, not in argv)."""
    def commands():
        for h in range(hashes):
            args = [b"HSET", b"alert_processing:%d" % h]
            for f in range(fields):
                args += [b"f%d" % f, b"v%015d" % f]
            yield b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    proc = subprocess.Popen([*stack.cli_argv("admin"), "--pipe"], env=stack.cli_env("admin"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = proc.communicate(b"".join(commands()), timeout=120)
    assert proc.returncode == 0 and b"errors: 0" in out, out


@pytest.mark.parametrize("engine", ["valkey8", "redis7"])
def test_readiness_fails_while_loading_and_liveness_keeps_the_server(make_stack, engine: str) -> None:
    hashes, fields, delay_us = 2000, 500, 1500  # 1M fields (~60 MB); 1.5 ms per key stretches the load to ~3 s
    values = {"valkey": {
        "probes": {"readiness": {"periodSeconds": 1, "failureThreshold": 1},
                   "liveness": {"periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 2}},
        # Test only: DEBUG RELOAD (a real RDB load while the server runs), from inside the pod only.
        "extraConfig": "enable-debug-command local"}}
    stack = make_stack(values=values, engine=engine).start()
    admin = stack.client("admin")
    _mass_insert(stack, hashes, fields)
    assert admin.save()
    # key-load-delay: the server's own knob for slowing a load per key, so several probe periods fall inside.
    admin.config_set("key-load-delay", delay_us)
    before = stack.status()["pod"]["containers"]["valkey"]
    t_wall, t_mono = time.time(), time.monotonic()

    result: dict = {}

    def reload() -> None:
        t = time.monotonic()
        proc = stack.exec(["valkey-cli", "--user", "admin", "--no-auth-warning", "DEBUG", "RELOAD", "NOSAVE"],
                          env={"REDISCLI_AUTH": stack.user_password("admin")}, timeout=60)
        result.update(out=proc.stdout.decode().strip(), seconds=time.monotonic() - t)

    worker = threading.Thread(target=reload)
    worker.start()
    worker.join(70)
    load_seconds = result["seconds"]
    load_end = time.time()
    assert result["out"] == "OK"
    assert load_seconds > 2.0, f"the load took {load_seconds:.2f}s, too short to span probe periods"
    again = stack.wait_ready(20, since=t_mono)
    admin.config_set("key-load-delay", 0)

    transitions = [(round(at - t_mono, 2), ready) for at, ready in stack.pod.kubelet.ready_transitions if at >= t_mono]
    assert transitions[0][1] is False and transitions[-1][1] is True, transitions
    assert again >= transitions[0][0]
    during = [e for e in events_since(stack, t_wall) if e["time"] <= load_end + 0.2]
    readiness_failures = [e["message"] for e in during if e["message"].startswith("Readiness probe failed")]
    assert readiness_failures and all("LOADING" in m or "loading:1" in m for m in readiness_failures), during
    # Liveness may fail now and then on a loaded machine (a probe over its timeout); Kubernetes tolerates up to
    # failureThreshold - 1 failures in a row, and so does this test: what it must never do is kill the server.
    assert not [e for e in events_since(stack, t_wall, "Killing")], "liveness must not kill a loading server"

    after = stack.status()["pod"]["containers"]["valkey"]
    assert after["restarts"] == before["restarts"] == 0, "liveness must not kill a loading server"
    assert after["probes"]["liveness"]["failures"] < values["valkey"]["probes"]["liveness"]["failureThreshold"]
    # Liveness kept probing during the load (period 1 s; a loaded machine may stretch each run up to its timeout).
    assert after["probes"]["liveness"]["runs"] - before["probes"]["liveness"]["runs"] >= max(2, int(load_seconds / 3))
    assert after["probes"]["readiness"]["result"] == "success"
    assert admin.dbsize() == hashes and admin.hlen("alert_processing:7") == fields
    assert "DB reloaded by DEBUG RELOAD" in stack.server_log_path.read_text()
