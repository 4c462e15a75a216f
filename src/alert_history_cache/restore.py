"""Restore an RDB backup into the running release, the way docs/disaster-recovery.md tells an operator to with
kubectl: no restart, no change to the chart's config.

1. The file goes into the primary's data volume (`/data/restore/backup.rdb`) and the engine's RDB checker
   verifies it there.
2. A temporary server inside the primary's pod loads it with the AOF off (`--appendonly no`), bound to the
   pod's 127.0.0.1 only, so nothing outside the pod can reach it.
3. The primary turns its AOF off (`CONFIG SET appendonly no`), replicates from the temporary server
   (`REPLICAOF 127.0.0.1 6380`: a full sync replaces its whole dataset), is promoted back (`REPLICAOF NO ONE`),
   and `CONFIG SET appendonly yes` writes a new AOF from the restored data. Copying dump.rdb alone would not
   do: with `appendonly yes` the server loads the AOF, never dump.rdb.
4. With replication, the Sentinels are held off first (`down-after-milliseconds` raised), so they never fail
   over while the primary is briefly a replica; the replicas resync from the restored primary.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import redis

from .waiting import wait_until

RESTORE_PORT = 6380
RESTORE_DIR = "/data/restore"
HOLD_OFF_MS = 3_600_000  # Sentinels wait an hour before they call the primary down while it restores
SERVER_CONTAINER = "valkey"


class RestoreError(RuntimeError):
    pass


def _info(client: redis.Redis, section: str) -> dict:
    return client.info(section)


def _primary(stack) -> str:
    """The data pod whose server says it is the primary."""
    for name, pod in stack.cluster.pods.items():
        if pod.plan.owner_kind != "StatefulSet" or not pod.running:
            continue
        try:
            if _info(stack.client("admin", pod=name), "replication").get("role") == "master":
                return name
        except redis.RedisError:
            continue
    raise RestoreError("no data pod answers as the primary; restore needs the release running")


def _exec(container, argv: list[str], timeout: float = 30) -> str:
    done = container.exec(argv, timeout=timeout)
    out = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0:
        raise RestoreError(f"{' '.join(argv[:2])} in the server container failed (exit {done.returncode}): {out[-500:]}")
    return out


def restore(stack, backup: Path, timeout: float = 300) -> dict:
    """Restore `backup` (an RDB file on this machine) into the running release; returns what was done."""
    backup = Path(backup)
    if not backup.is_file() or backup.stat().st_size == 0:
        raise RestoreError(f"{backup}: not a backup file (missing or empty)")
    t0 = time.monotonic()
    primary = _primary(stack)
    pod = stack.cluster.pod(primary)
    server = pod.container(SERVER_CONTAINER)
    engine = "valkey" if "valkey" in Path(server.spec.argv[0]).name or any(
        "valkey-server" in a for a in server.spec.argv) else "redis"
    cli, checker = f"{engine}-cli", f"{engine}-check-rdb"
    # 1. Into the primary's data volume, owned like the kubelet's fsGroup makes it, and verified there.
    data = pod.volumes.paths["data"]
    folder = data / "restore"
    folder.mkdir(exist_ok=True)
    gid = data.stat().st_gid
    shutil.copyfile(backup, folder / "backup.rdb")
    for p in (folder, folder / "backup.rdb"):
        os.chown(p, server.spec.rootfs.identity.uid, gid)
    folder.chmod(0o2770)
    (folder / "backup.rdb").chmod(0o640)
    rdb = f"{RESTORE_DIR}/backup.rdb"
    _exec(server, [checker, rdb], timeout=120)
    replication = stack.full_values["valkey"]["architecture"] == "replication"
    sentinels = _hold_off_sentinels(stack) if replication else []
    admin = stack.client("admin", pod=primary)
    masterauth = None
    try:
        # 2. The temporary server: the backup with the AOF off, on the pod's loopback only.
        _exec(server, [f"{engine}-server", "--port", str(RESTORE_PORT), "--bind", "127.0.0.1", "--dir", RESTORE_DIR,
                       "--dbfilename", "backup.rdb", "--appendonly", "no", "--save", "", "--daemonize", "yes",
                       # the one replica is the primary: no wait for more before the sync starts
                       "--repl-diskless-sync-delay", "0",
                       "--pidfile", f"{RESTORE_DIR}/server.pid", "--logfile", f"{RESTORE_DIR}/server.log"])
        wait_until(lambda: _exec(server, [cli, "-p", str(RESTORE_PORT), "info", "persistence"]).find("loading:0") >= 0,
                   timeout, "the temporary server to load the backup", ignore=(RestoreError,))
        keys = int(_exec(server, [cli, "-p", str(RESTORE_PORT), "dbsize"]))
        # 3. AOF off, a full sync from the temporary server, promoted back, a new AOF.
        if replication:  # the primary's replication login is not a user of the temporary server
            masterauth = {k: admin.config_get(k).get(k, "") for k in ("masteruser", "masterauth")}
            admin.config_set("masteruser", "")
            admin.config_set("masterauth", "")
        admin.config_set("appendonly", "no")
        admin.execute_command("REPLICAOF", "127.0.0.1", str(RESTORE_PORT))
        wait_until(lambda: (lambda r: r.get("master_link_status") == "up" and not r.get("master_sync_in_progress"))(
            _info(admin, "replication")), timeout, "the primary's full sync from the backup")
        # Still a read-only replica: its dataset is exactly the backup's.
        restored = admin.dbsize()
        if restored != keys:
            raise RestoreError(f"the primary holds {restored} keys after the sync; the backup has {keys}")
        admin.execute_command("REPLICAOF", "NO", "ONE")
        serving = time.monotonic()
        admin.config_set("appendonly", "yes")
        wait_until(lambda: (lambda p: p.get("aof_enabled") == 1 and not p.get("aof_rewrite_in_progress")
                            and not p.get("aof_rewrite_scheduled"))(_info(admin, "persistence")),
                   timeout, "the new AOF to be written")
    finally:
        if masterauth is not None:
            for key, value in masterauth.items():
                admin.config_set(key, value)
        try:
            server.exec([cli, "-p", str(RESTORE_PORT), "shutdown", "nosave"], timeout=30)
        except (TimeoutError, ProcessLookupError):
            pass
        shutil.rmtree(folder, ignore_errors=True)
        _release_sentinels(stack, sentinels)
    replicas = _wait_replicas(stack, primary, keys, timeout) if replication else []
    return {"primary": primary, "keys": keys, "replicas_resynced": replicas, "backup": str(backup),
            "seconds": round(time.monotonic() - t0, 3), "serving_after_seconds": round(serving - t0, 3)}


def _sentinel_clients(stack) -> list[tuple[str, redis.Redis]]:
    port = int(stack.full_values["valkey"]["sentinel"]["port"])
    return [(name, stack.credentials.client(pod.ip, port, stack.full_values["valkey"]["acl"]["sentinelUser"]))
            for name, pod in stack.cluster.pods.items() if pod.plan.owner_kind == "StatefulSet" and pod.running]


def sentinel_master(client: redis.Redis, master_set: str) -> dict:
    """SENTINEL MASTER as a dict of strings (redis-py may already have paired it)."""
    reply = client.execute_command("SENTINEL", "MASTER", master_set)
    pairs = reply.items() if isinstance(reply, dict) else zip(*[iter(reply)] * 2)
    return {str(k): str(v) for k, v in pairs}


def _hold_off_sentinels(stack) -> list[tuple[redis.Redis, str, str]]:
    """Raise every Sentinel's down-after-milliseconds; returns what to set back."""
    master_set = stack.full_values["valkey"]["sentinel"]["masterSet"]
    held = []
    for _name, client in _sentinel_clients(stack):
        master = sentinel_master(client, master_set)
        client.execute_command("SENTINEL", "SET", master_set, "down-after-milliseconds", HOLD_OFF_MS)
        held.append((client, master_set, master["down-after-milliseconds"]))
    return held


def _release_sentinels(stack, held) -> None:
    for client, master_set, value in held:
        client.execute_command("SENTINEL", "SET", master_set, "down-after-milliseconds", value)


def _wait_replicas(stack, primary: str, keys: int, timeout: float) -> list[str]:
    names = [n for n, p in stack.cluster.pods.items() if p.plan.owner_kind == "StatefulSet" and n != primary]

    def synced(name: str) -> bool:
        client = stack.client("admin", pod=name)
        r = _info(client, "replication")
        return r.get("master_link_status") == "up" and not r.get("master_sync_in_progress") and client.dbsize() == keys

    for name in names:
        wait_until(lambda n=name: synced(n), timeout, f"replica {name} to resync from the restored primary",
                   ignore=(redis.RedisError,))
    return names
