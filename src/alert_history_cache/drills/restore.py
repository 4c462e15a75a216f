"""Restore drill (`drill restore --scenario flushall|volume-lost`; corrupted-aof below, disk-full in diskfull.py): under a recorded write load, the release's own
backup Job takes a backup, then the fault: `flushall` (an admin runs FLUSHALL) or `volume-lost` (the pod is
deleted, its PVC folder removed, and it comes back empty), and `restore` brings the backup back. It reports the RTO
(the fault to the restored primary serving writes again) and the RPO (acknowledged writes lost: those after the backup), and
checks every recorded write against the restored data: every write acknowledged before the backup started is
back, every write acknowledged after the restore is kept. The requirement it is held against is a recovery
under 60 s (docs/requirements.md)."""

from __future__ import annotations

import shutil
import time

from .. import chart
from .persistence import stack_for
from .results import DrillResult
from ..volumes import delete_claim
from ..waiting import wait_until
from .writeload import WriteLoad, lost_writes

RECOVERY_GOAL_S = 60.0
SCENARIOS = ("flushall", "volume-lost", "corrupted-aof", "disk-full")


def run(engine: str = "valkey8", values: dict | None = None, state_dir: str | None = None,
        scenario: str = "flushall", warmup_acks: int = 2000) -> DrillResult:
    if scenario not in SCENARIOS:
        raise ValueError(f"--scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    if scenario == "corrupted-aof":
        return run_corrupted_aof(engine, values, state_dir, warmup_acks)
    if scenario == "disk-full":
        from . import diskfull

        return diskfull.run(engine, values, state_dir, warmup_acks)
    values = chart.deep_merge(values or {}, {"backup": {"enabled": True}})
    result = DrillResult(drill=f"restore-{scenario}", engine=engine)
    fig = result.figures
    with stack_for("restore", engine, values, state_dir) as stack:
        result.versions = {k: str(v) for k, v in stack.versions().items() if v}
        load = WriteLoad(make_client=lambda: stack.client("default", socket_timeout=5), prefix="restore").start()
        try:
            load.wait_for_acks(warmup_acks, timeout=60)
            backup_started = time.monotonic()
            backup = stack.run_job()
            backup_done = time.monotonic()
            fig["backup_seconds"] = round(backup_done - backup_started, 3)
            result.check("backup Job succeeded", "exit 0, a verified file", backup["exit_codes"],
                         backup["succeeded"] and len(backup["files"]) == 1)
            if not backup["succeeded"]:
                return result
            fig["backup_file"] = backup["files"][0]
            load.wait_for_acks(len(load.acks) + 500, timeout=60)  # writes the backup does not have
            admin = stack.client("admin")
            flushed_at = time.monotonic()
            if scenario == "flushall":
                admin.flushall()
            else:
                lose_the_volume(stack, fig)
                # Empty: none of the writes before the backup is there (the load may write new keys already).
                earlier = load.snapshot(until=backup_started)
                kept = len(earlier) - len(lost_writes(stack.client("admin"), earlier))
                result.check("the pod came back empty", "0 of the earlier writes", kept, kept == 0)
            restored = stack.restore(backup["files"][0])
            restore_started = time.monotonic() - restored["seconds"]
            serving_at = restore_started + restored["serving_after_seconds"]
            fig["restore"] = restored
            after = len(load.acks)
            load.wait_for_acks(after + 500, timeout=60)  # writes on the restored primary
        finally:
            load.stop()
        acks = load.snapshot()
        check = stack.client("admin")
        before = [a for a in acks if a.acked_at < backup_started]
        between = [a for a in acks if backup_started <= a.acked_at < serving_at]
        later = [a for a in acks if a.acked_at >= serving_at]
        lost_before = lost_writes(check, before)
        lost_between = lost_writes(check, between)
        lost_later = lost_writes(check, later)
        rto = serving_at - flushed_at
        fig.update(rto_seconds=round(rto, 3), acknowledged_writes=len(acks), write_errors=load.errors,
                   acknowledged_before_backup=len(before), acknowledged_after_backup_before_serving=len(between),
                   rpo_writes_lost=len(lost_between), acknowledged_after_restore=len(later),
                   keys_in_backup=restored["keys"])
        result.check("every write acknowledged before the backup is back", "0 missing", len(lost_before),
                     not lost_before)
        result.check("writes acknowledged after the restore are kept", "0 missing", len(lost_later), not lost_later)
        result.check(f"RTO: {scenario} to the restored primary serving", f"< {RECOVERY_GOAL_S:.0f} s",
                     round(rto, 3), rto < RECOVERY_GOAL_S)
        appendonly = check.config_get("appendonly").get("appendonly")
        result.check("AOF on again after the restore", "yes", appendonly, appendonly == "yes")
    result.finished_at = time.time()
    return result


def lose_the_volume(stack, fig: dict) -> None:
    """The primary's pod deleted, its PVC deleted while it is gone (unmounted, image and folder removed), the pod
    recreated on a new empty volume (as a StatefulSet does with a new claim), and Ready again."""
    name = stack.primary_name
    data = stack.cluster.pod(name).volumes.claim_path("data")
    t0 = time.monotonic()
    stack.cluster.delete_pod(name, recreate=False)
    delete_claim(data)
    pod = stack.cluster.create_pod(name)
    stack.cluster.wait_pod_ready(pod, 120)
    fig["empty_pod_ready_seconds"] = round(time.monotonic() - t0, 3)


GARBAGE = b"*3\r\n$3\r\nSET\r\n$-7\r\nnot-resp" * 4  # a broken command in the middle of the incr file


def run_corrupted_aof(engine: str, values: dict | None, state_dir: str | None, warmup_acks: int) -> DrillResult:
    """Garbage in the middle of the AOF (not a cut tail): the server refuses it and the pod crash-loops; the
    disaster-recovery guide's repair (a copy kept, `<engine>-check-aof --fix` on the manifest) truncates at the
    garbage; the drill reports what that dropped, counted against the recorded writes."""
    import subprocess

    from .persistence import AOF_DIR, MANIFEST, manifest_entries

    result = DrillResult(drill="restore-corrupted-aof", engine=engine)
    fig = result.figures
    with stack_for("restore", engine, values or {}, state_dir) as stack:
        result.versions = {k: str(v) for k, v in stack.versions().items() if v}
        load = WriteLoad(make_client=lambda: stack.client("default", socket_timeout=5), prefix="restore").start()
        name = stack.primary_name
        try:
            load.wait_for_acks(warmup_acks, timeout=60)
            # A graceful stop: every acknowledged write is in the AOF before the garbage goes in.
            stack.cluster.delete_pod(name, recreate=False)
            stopped_at = time.monotonic()
        finally:
            load.stop()
        acks = load.snapshot()
        data = stack.data_dir
        incr = [e["file"] for e in manifest_entries(data) if e.get("type") == "i"][-1]
        path = data / AOF_DIR / incr
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.seek(size // 2)
            fh.write(GARBAGE)
        fig.update(incr_file=incr, incr_bytes=size, garbage_at=size // 2, acknowledged_writes=len(acks))
        pod = stack.cluster.create_pod(name)
        status = lambda: pod.kubelet.status["valkey"]  # noqa: E731
        try:
            wait_until(lambda: status().restarts >= 2, 120, "the server to crash-loop on the corrupted AOF")
            looped = status().restarts
        except TimeoutError:
            looped = status().restarts
        log = stack.server_log_path.read_text(errors="replace").splitlines()
        refusal = [line.strip() for line in log if "Bad file format" in line or "Unrecoverable" in line
                   or "corrupt" in line.lower()]
        fig["server_refusal"] = refusal[-2:]
        result.check("the pod crash-loops on the corrupted AOF", ">= 2 restarts, the server names the file",
                     looped, looped >= 2 and bool(refusal))
        # The guide's repair: the pod stopped, a copy kept, the checker's --fix on the manifest.
        repair_at = time.monotonic()
        stack.cluster.delete_pod(name, recreate=False)
        shutil.copytree(data / AOF_DIR, data / f"{AOF_DIR}.corrupt")
        checker = stack.state_dir / "bin" / stack.engine.checker("check-aof")
        fixed = subprocess.run([str(checker), "--fix", str(data / AOF_DIR / MANIFEST)], input="y\n",
                               capture_output=True, text=True, timeout=120)
        fig["check_aof_fix_output"] = (fixed.stdout + fixed.stderr).strip().splitlines()[-4:]
        fig["incr_bytes_after_fix"] = path.stat().st_size
        fig["bytes_dropped"] = size - path.stat().st_size  # the garbage overwrote bytes: the size is unchanged
        result.check("check-aof --fix repaired it", "exit 0", fixed.returncode, fixed.returncode == 0)
        pod = stack.cluster.create_pod(name)
        stack.cluster.wait_pod_ready(pod, 120)
        serving = time.monotonic()
        lost = lost_writes(stack.client("admin"), acks)
        fig.update(writes_dropped_by_fix=len(lost), repair_to_serving_seconds=round(serving - repair_at, 3),
                   stop_to_serving_seconds=round(serving - stopped_at, 3))
        result.check("writes the repair dropped (after the garbage)", "reported; fewer than were acknowledged",
                     len(lost), 0 < len(lost) < len(acks))
        result.check("the repair to serving", f"< {RECOVERY_GOAL_S:.0f} s", round(serving - repair_at, 3),
                     serving - repair_at < RECOVERY_GOAL_S)
    result.finished_at = time.time()
    return result
