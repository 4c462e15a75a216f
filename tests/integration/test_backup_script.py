"""The backup CronJob's script (charts/alert-history/files/backup/backup.sh) against a real server booted on the
chart's rendered config and ACL file, with the rendered CronJob's environment (the pod's addresses and paths
mapped to this machine) and the image's binary names on PATH: it streams a snapshot as the least-privilege
`backup` user, verifies it with the engine's RDB checker, keeps the newest N and fails loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import port_for
import pytest
import redis
from mirakuru import TCPExecutor

from alert_history_cache import chart

from helpers.local_stack import engine_or_skip
from helpers.servers import rendered_server

pytestmark = pytest.mark.integration

SCRIPT = chart.CHART_DIR / "files" / "backup" / "backup.sh"
CRONJOB = "alerthistory-redis-backup"


def image_path(engine, root: Path) -> str:
    """A PATH with the image's binary names (valkey-cli, valkey-check-rdb ...) for this engine, then the system's."""
    bin_dir = root / "image-bin"
    bin_dir.mkdir(exist_ok=True)
    for name, target in engine.image_binaries().items():
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(target)
    return f"{bin_dir}:/usr/bin:/bin"


def family(engine) -> str:
    """The image family the engine stands for (the chart names backup files after it)."""
    return "valkey" if engine.name.startswith("valkey") else "redis"


def run_backup(server, root: Path, **overrides) -> subprocess.CompletedProcess:
    """backup.sh with the rendered CronJob container's env, the pod's names and paths mapped to this server."""
    cronjob = server.manifests.get("CronJob", CRONJOB)
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BACKUP_NODES"].startswith("alerthistory-redis-0.alerthistory-redis-headless.")
    assert env["BACKUP_DIR"] == "/backup"
    assert env["BACKUP_PASSWORD_FILE"] == "/etc/valkey-secret/backup-password"
    backup_dir = root / "backup"
    backup_dir.mkdir(exist_ok=True)
    env.update(BACKUP_NODES="127.0.0.1", VALKEY_PORT=str(server.port), BACKUP_DIR=str(backup_dir),
               BACKUP_PASSWORD_FILE=str(server.paths["secret"] / "backup-password"),
               PATH=image_path(server.engine, root))
    env.update(overrides)
    return subprocess.run(["/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def keys_of_rdb(engine, rdb: Path, root: Path) -> dict[bytes, bytes]:
    """Every string key of an RDB file, read back by a fresh server that loads it (AOF off)."""
    data = root / "load"
    data.mkdir()
    shutil.copy(rdb, data / "dump.rdb")
    port = port_for.select_random()
    server = TCPExecutor([str(engine.server), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                          "--dbfilename", "dump.rdb", "--appendonly", "no", "--save", ""],
                         host="127.0.0.1", port=port, timeout=30)
    with server:
        client = redis.Redis(port=port)
        return {k: client.get(k) for k in client.scan_iter(count=1000)}


@pytest.fixture(params=["valkey8", "redis7"])
def server(request, tmp_path):
    engine = engine_or_skip(request.param)
    (tmp_path / "pod").mkdir()
    with rendered_server(engine, tmp_path / "pod", {"backup": {"enabled": True, "retention": 2}}) as s:
        yield s


def test_a_backup_holds_every_key_and_is_verified(server, tmp_path):
    admin = server.admin()
    written = {f"alert:{i}".encode(): os.urandom(64) for i in range(500)}
    admin.mset(written)
    done = run_backup(server, tmp_path)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.parent == tmp_path / "backup" and path.name.startswith(f"alerthistory-redis-{family(server.engine)}")
    assert "verifying" in done.stderr and "wrote" in done.stderr
    assert not list((tmp_path / "backup").glob(".partial-*"))
    assert keys_of_rdb(server.engine, path, tmp_path) == written


def test_the_backup_user_may_only_take_snapshots(server):
    backup = server.client(server.values["backup"]["acl"]["user"], server.secret("backup-password"))
    assert backup.ping()
    for command in (("GET", "k"), ("SET", "k", "v"), ("FLUSHALL",), ("CONFIG", "GET", "dir"), ("KEYS", "*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            backup.execute_command(*command)


def test_only_the_newest_files_are_kept(server, tmp_path):
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    # Two older verified backups of earlier days, and a file that is not a backup (never touched).
    older = [backup_dir / f"alerthistory-redis-{family(server.engine)}-2026010{d}T031700Z.rdb" for d in (1, 2)]
    for p in older:
        p.write_bytes(b"older")
    (backup_dir / "notes.txt").write_text("kept")
    done = run_backup(server, tmp_path)
    assert done.returncode == 0, done.stderr
    newest = Path(done.stdout.strip().splitlines()[-1])
    assert sorted(p.name for p in backup_dir.iterdir()) == sorted([older[1].name, newest.name, "notes.txt"])
    assert f"deleted {older[0].name}" in done.stderr


def test_a_wrong_password_fails_and_leaves_no_file(server, tmp_path):
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password")
    done = run_backup(server, tmp_path, BACKUP_PASSWORD_FILE=str(wrong))
    assert done.returncode != 0
    assert "FAILED: no source gave a snapshot" in done.stderr
    assert list((tmp_path / "backup").iterdir()) == []


def test_an_unreachable_server_fails(server, tmp_path):
    done = run_backup(server, tmp_path, VALKEY_PORT=str(port_for.select_random()))
    assert done.returncode != 0 and "FAILED" in done.stderr
    assert list((tmp_path / "backup").iterdir()) == []


def test_no_password_in_the_arguments(server, tmp_path):
    done = run_backup(server, tmp_path, BACKUP_PASSWORD_FILE=str(tmp_path / "missing"))
    assert done.returncode != 0 and "password file" in done.stderr
    assert server.secret("backup-password") not in SCRIPT.read_text()
    # The CLI's arguments, as the script builds them, name the user and never the password.
    text = SCRIPT.read_text()
    assert "REDISCLI_AUTH=$(cat \"$password_file\")" in text and " -a " not in text
