"""backup.rclone on the local stack: the rendered CronJob's pod (the backup as init container, the upload
container after it) runs once as a Job pod against a real rclone remote, `rclone serve webdav` with a password
(tests/helpers/webdav.py), in a network namespace of its own. The uploaded file is byte-identical to the
verified local one, the remote keeps the newest backup.retention files, and a wrong password fails the Job
with a clear line. Only the WebDAV backend is exercised here, not S3, GCS, Azure or SFTP."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from alert_history_cache.waiting import wait_until

from helpers.webdav import webdav_server

pytestmark = pytest.mark.integration

SECRET = "alert-history-rclone"
FOLDER = "alert-history"
PASSWORD = "webdav-test-password-3f8a1c"
NAME = re.compile(r"^alerthistory-redis-valkey-\d{8}T\d{6}Z\.rdb$")


def values(retention: int) -> dict:
    return {"backup": {"enabled": True, "retention": retention,
                       "rclone": {"enabled": True, "remote": f"offsite:{FOLDER}/", "existingSecret": SECRET}}}


def use_config(stack, text: str) -> None:
    """The user's Secret with the rclone config (backup.rclone.existingSecret), as `kubectl create secret`."""
    stack.cluster.objects.external_secrets[SECRET] = {"rclone.conf": text.encode()}


def run(stack, after: float = 0.0) -> dict:
    """One Job run, started in a later wall-clock second than `after` (the previous run's end): the backup files
    are named by the second."""
    wait_until(lambda: int(time.time()) > int(after), 5, "the next wall-clock second", interval=0.05)
    result = stack.run_job()
    result["ended"] = time.time()
    return result


def test_the_job_uploads_each_verified_file_and_keeps_the_newest_on_the_remote(make_stack, tmp_path):
    with webdav_server(tmp_path / "dav", "backup", PASSWORD) as dav:
        stack = make_stack(values(retention=2))
        stack.start()
        use_config(stack, dav.rclone_conf("offsite", PASSWORD))
        stack.client("admin").mset({f"alert:{i}": os.urandom(64) for i in range(500)})

        first = run(stack)
        assert first["succeeded"], first
        assert list(first["exit_codes"]) == ["backup", "upload"]  # init container first, then the upload
        (local,) = first["files"]
        local = Path(local)
        remote = dav.folder / FOLDER / local.name
        assert remote.is_file(), sorted(p.name for p in dav.folder.rglob("*"))
        assert remote.read_bytes() == local.read_bytes() and local.stat().st_size > 500 * 64
        upload_log = Path(first["logs"]["upload"]).read_text()
        assert f"uploaded offsite:{FOLDER}/{local.name}" in upload_log
        assert upload_log.strip().splitlines()[-1] == f"offsite:{FOLDER}/{local.name}"

        ended = first["ended"]
        for _ in range(2):
            stack.client("admin").set("alert:later", os.urandom(16))
            later = run(stack, after=ended)
            assert later["succeeded"], later
            ended = later["ended"]
        on_remote = sorted(p.name for p in (dav.folder / FOLDER).iterdir())
        on_volume = sorted(p.name for p in local.parent.iterdir() if NAME.match(p.name))
        # Three runs, retention 2: the oldest is gone from both, and never a partial file on the remote.
        assert len(on_remote) == 2 and all(NAME.match(n) for n in on_remote), on_remote
        assert on_remote == on_volume and local.name not in on_remote
        for name in on_remote:
            assert (dav.folder / FOLDER / name).read_bytes() == (local.parent / name).read_bytes()


def test_a_wrong_password_fails_the_job_with_a_clear_line(make_stack, tmp_path):
    with webdav_server(tmp_path / "dav", "backup", PASSWORD) as dav:
        stack = make_stack(values(retention=3))
        stack.start()
        use_config(stack, dav.rclone_conf("offsite", "not-the-password"))
        result = run(stack)
        assert not result["succeeded"]
        # The backup itself worked and stays on the volume for the next run; the upload failed the pod.
        assert result["exit_codes"]["backup"] == 0 and result["exit_codes"]["upload"] not in (0, None)
        assert len(result["files"]) == 1 and Path(result["files"][0]).is_file()
        log = Path(result["logs"]["upload"]).read_text()
        assert "upload: FAILED: rclone could not copy the backups to offsite:alert-history/" in log, log
        assert "401" in log, log
        assert not (dav.folder / FOLDER).exists() or not any((dav.folder / FOLDER).iterdir())
