"""PVCs of the requested size on the local stack: each claim is an ext4 filesystem loop-mounted from a sparse
image beside its folder, so a full volume fails writes as a real one does. The data survives a pod's deletion
and a stop; stopping frees the mount and the loop device (the make_stack fixture checks that nothing is left);
a deleted claim comes back empty."""

from __future__ import annotations

import os
import subprocess

import pytest

from alert_history_cache import volumes

pytestmark = pytest.mark.integration

MI = 1024 * 1024


def fs_bytes(path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def test_the_data_pvc_is_a_filesystem_of_the_requested_size(make_stack) -> None:
    stack = make_stack({"valkey": {"storage": {"requestedSize": "96Mi"}}}).start()
    data = stack.data_dir
    assert str(data.resolve()) in volumes.mounts_under(data)
    source = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", str(data)], capture_output=True, text=True,
                            check=True).stdout.split()
    assert source[0].startswith("/dev/loop") and source[1] == "ext4", source
    # ext4 keeps some of the image for its own metadata (journal, inode tables): the rest is the pod's.
    assert 80 * MI < fs_bytes(data) <= 96 * MI
    image = volumes.claim_image(data)
    assert image.stat().st_size == 96 * MI
    assert image.stat().st_blocks * 512 < 32 * MI, "the image is sparse: only written blocks take space"
    assert volumes.loop_devices_under(stack.state_dir) == [source[0]]
    stack.client().set("kept", "yes")
    stack.restart_server()
    stack.wait_ready(60)
    assert stack.client().get("kept") == "yes", "a new pod mounts the same volume"
    stack.stop()
    assert volumes.mounts_under(stack.state_dir) == [] and volumes.loop_devices_under(stack.state_dir) == []
    assert image.exists(), "the PVC outlives the stack"


def test_the_backup_pvc_has_its_requested_size(make_stack) -> None:
    stack = make_stack({"backup": {"enabled": True, "storage": {"requestedSize": "48Mi"}}}).start()
    job = stack.run_job()
    assert job["succeeded"], job
    folder = stack.state_dir / "pvcs" / "alerthistory-redis-backup"
    assert str(folder.resolve()) in volumes.mounts_under(folder) and 36 * MI < fs_bytes(folder) <= 48 * MI
    assert os.path.exists(job["files"][0]) and job["files"][0].startswith(str(folder.resolve()))


def test_a_deleted_claim_comes_back_empty(make_stack) -> None:
    stack = make_stack({"valkey": {"storage": {"requestedSize": "64Mi"}}}).start()
    stack.client().set("gone", "soon")
    name = stack.primary_name
    data = stack.data_dir
    stack.cluster.delete_pod(name, recreate=False)
    volumes.delete_claim(data)
    assert not data.exists() and not volumes.claim_image(data).exists()
    assert volumes.loop_devices_under(stack.state_dir) == []
    pod = stack.cluster.create_pod(name)
    stack.cluster.wait_pod_ready(pod, 60)
    assert stack.client().get("gone") is None and str(data.resolve()) in volumes.mounts_under(data)


def test_a_folder_from_before_moves_into_its_filesystem(needs_root, tmp_path) -> None:
    """A state dir made when PVCs were plain folders keeps its data: the files move into the new filesystem."""
    folder = tmp_path / "pvc"
    (folder / "appendonlydir").mkdir(parents=True)
    (folder / "appendonlydir" / "x.aof").write_bytes(b"*1\r\n$4\r\nPING\r\n")
    try:
        volumes.mount_claim(folder, 32 * MI)
        assert str(folder.resolve()) in volumes.mounts_under(folder)
        assert (folder / "appendonlydir" / "x.aof").read_bytes() == b"*1\r\n$4\r\nPING\r\n"
        assert sorted(p.name for p in folder.iterdir()) == ["appendonlydir"], "mkfs's lost+found is removed"
    finally:
        volumes.unmount_all(tmp_path)
    assert volumes.loop_devices_under(tmp_path) == [] and not (folder / "appendonlydir").exists()
