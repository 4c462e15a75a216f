"""`fault fill-disk POD` / `fault free-disk POD` on a stack started by `up --detach`: the pod's data volume (a
filesystem of its requested size) fills up to what `--leave` asks with a file the server's user can not remove,
the server's own writes to the volume fail, and `free-disk` gives the space back. Bad input is named."""

from __future__ import annotations

import json
import subprocess

import redis

import pytest

from alert_history_cache import chart, volumes
from alert_history_cache.waiting import wait_until

from .test_cluster_up import FAST, POD, ServiceClient, run, status

pytestmark = pytest.mark.integration

MI = 1024 * 1024


def fault(state, *args: str) -> dict:
    proc = run("fault", *args, "--state-dir", str(state))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_fill_disk_and_free_disk(tmp_path, needs_root, nothing_left) -> None:
    state = tmp_path / "state"
    sized = ["--set", "valkey.storage.requestedSize=64Mi"]
    try:
        up = run("up", "--detach", "--no-monitoring", "--state-dir", str(state), *FAST, *sized)
        assert up.returncode == 0, up.stdout + up.stderr
        admin = ServiceClient(status(state)).admin()
        assert admin.set("before", "the fill")

        filled = fault(state, "fill-disk", POD, "--leave", "8Mi")
        data = state / "pvc"
        assert filled["pod"] == POD and filled["claim"] == "data" and filled["volume"] == str(data)
        assert 8 * MI - 4096 <= filled["free_bytes"] <= 8 * MI + 4096
        assert volumes.free_bytes(data) <= 8 * MI + 4096
        assert 40 * MI < filled["filler_bytes"] < filled["size_bytes"] <= 64 * MI

        full = fault(state, "fill-disk", POD)  # again, without --leave: tops the same file up to a full disk
        assert full["filler"] == filled["filler"] and full["free_bytes"] < 4096 + 4096

        # The pod's user (and fsGroup) can not remove the filler, and the server's own writes fail: BGSAVE writes a
        # new RDB to the volume and reports the failure.
        sc = chart.render({"fullnameOverride": "alerthistory"}).get("StatefulSet", "alerthistory-redis")[
            "spec"]["template"]["spec"]["securityContext"]
        rm = subprocess.run(["setpriv", f"--reuid={sc['runAsUser']}", f"--regid={sc['runAsGroup']}",
                             f"--groups={sc['fsGroup']}", "rm", "-f", full["filler"]], capture_output=True, text=True)
        assert rm.returncode != 0 and "Permission denied" in rm.stderr
        admin.set("big", "x" * (2 * MI))
        admin.bgsave()
        wait_until(lambda: admin.info("persistence")["rdb_last_bgsave_status"] == "err", 30,
                   "BGSAVE to fail on the full volume", ignore=(redis.ResponseError,))

        freed = fault(state, "free-disk", POD)
        assert freed["freed_bytes"] == full["filler_bytes"] and freed["free_bytes"] > 40 * MI
        assert not (data / volumes.FILLER).exists() and not (data / volumes.FILLER).parent.exists()
        admin.bgsave()
        wait_until(lambda: admin.info("persistence")["rdb_last_bgsave_status"] == "ok", 30,
                   "BGSAVE to succeed again", ignore=(redis.ResponseError,))
        assert admin.get("before") == b"the fill"

        wrong = run("fault", "fill-disk", POD, "--claim", "nope", "--state-dir", str(state))
        assert wrong.returncode == 1 and "no claim 'nope'" in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        down = run("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    nothing_left(state)


def test_leave_must_be_a_size(tmp_path) -> None:
    proc = run("fault", "fill-disk", POD, "--leave", "lots", "--state-dir", str(tmp_path))
    assert proc.returncode == 2 and "--leave" in proc.stderr and "Traceback" not in proc.stderr
