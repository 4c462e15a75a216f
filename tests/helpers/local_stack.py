"""Engines that are really installed, fast probes, and the check that a stopped local stack left nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from alert_history_cache import engines

ALL_ENGINES = list(engines.ENGINES)

# Probe periods of 1 s keep each stack start near one second; everything else stays as rendered.
FAST_PROBES = {"valkey": {"probes": {"startup": {"periodSeconds": 1}, "readiness": {"periodSeconds": 1},
                                     "liveness": {"periodSeconds": 1}}}}


def engine_or_skip(name: str) -> engines.Engine:
    """The engine, or a skip naming the missing package (CI installs them all, so nothing skips there)."""
    engine = engines.get(name)
    try:
        engine.check()
    except engines.MissingBinary as exc:
        pytest.skip(str(exc))
    return engine


def exporter_or_skip() -> None:
    """Skip naming the missing redis_exporter package (CI installs it)."""
    try:
        engines.EXPORTER.binary  # noqa: B018 - raises when missing
    except engines.MissingBinary as exc:
        pytest.skip(str(exc))


def root_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("the local stack needs root (network and mount namespaces)")


def assert_nothing_left(state_dir) -> None:
    """No process, network namespace, veth, mount or loop device of this state dir's stack remains (ip netns
    list, ip link, /proc/mounts, losetup, psutil)."""
    from alert_history_cache import netns, stack, volumes

    state_dir = Path(state_dir).absolute()
    assert volumes.mounts_under(state_dir) == [], "mounts left under the state dir"
    assert volumes.loop_devices_under(state_dir) == [], "loop devices of the PVC images left"
    mounts = Path("/proc/mounts").read_text()
    assert str(state_dir) not in mounts
    assert stack.processes_of(state_dir) == [], "container processes left"
    leftovers = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.pid != os.getpid() and any(str(state_dir) in a for a in (p.info["cmdline"] or [])):
            leftovers.append((p.pid, p.info["cmdline"]))
    assert leftovers == [], f"processes still running: {leftovers}"
    owned = [s for s, o in netns.owners().items() if o.get("state_dir") == str(state_dir.resolve())]
    assert owned == [], f"pod address slots still allocated to {state_dir}: {owned}"
    data = stack.read_state(state_dir)
    slot = ((data.get("pod") or {}).get("network") or {}).get("slot")
    if slot:
        net = netns.PodNetwork(int(slot))
        owner = netns.owners().get(int(slot), {})
        if owner.get("state_dir") != str(state_dir):  # free, or reused by another stack since
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
            if not owner:
                assert net.netns not in listed.split(), f"network namespace {net.netns} left"
                assert f" {net.host_if}@" not in links and f" {net.host_if}:" not in links, f"veth {net.host_if} left"
        else:
            raise AssertionError(f"slot {slot} still allocated to {state_dir}: {json.dumps(owner)}")
    for rec in data.get("processes", []):
        if psutil.pid_exists(rec["pid"]):
            p = psutil.Process(rec["pid"])
            assert abs(p.create_time() - (rec["create_time"] or 0)) > 0.01, f"{rec} still running"


def run_drill(args: list[str], out: Path, timeout: float) -> tuple[subprocess.CompletedProcess, dict]:
    """`alert-history-cache drill ARGS --json OUT` as a user runs it: the process (its output's tail printed
    for the test log) and the JSON result, which must have been written."""
    cli = Path(sys.executable).with_name("alert-history-cache")
    proc = subprocess.run([str(cli), "drill", *args, "--json", str(out)], capture_output=True, text=True,
                          timeout=timeout)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    assert out.exists(), proc.stderr
    return proc, json.loads(out.read_text())
