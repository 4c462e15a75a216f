"""The pod's volumes as folders of the state dir, owned and moded the way the kubelet would leave them.

  configMap -> STATE/configmaps/<name>/<key>   (defaultMode, group fsGroup)
  secret    -> STATE/secrets/<name>/<key>      (mode 0400, owned by runAsUser, group fsGroup; dir 0500), laid
               out as the kubelet's atomic writer does: <key> -> ..data/<key>, ..data -> ..<timestamp>/, so
               update_secret() swaps the contents with one rename, the way a renewed Secret reaches a pod
  (a volume that selects `items` gets its own folder <name>.<volume>; `optional` skips missing keys)
  emptyDir  -> STATE/emptydirs/<volume>/       (medium Memory: a tmpfs mounted here, sizeLimit as its size)
  PVC       -> the folder `claim_dir(<claim>)` gives (the cluster keeps one per pod and claim), with an ext4
               filesystem of the claim's requested size loop-mounted on it from a sparse image `<folder>.img`
               beside it, so a full volume fails writes with ENOSPC as a real one does
STATE is the pod's own folder. The PVC (its image) survives every stop and start; it is mounted while the
stack runs and unmounted (the loop device freed) when it stops; emptyDirs are emptied when a new pod is
created."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from .kube import KubeError, Objects, quantity
from .waiting import wait_until


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this mount namespace, deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return sorted(found, key=len, reverse=True)


def unmount_all(path: Path) -> list[str]:
    """Unmount everything below `path` and free the loop devices of images below it (idempotent; lazily when
    busy). Returns what was unmounted or detached."""
    done = []
    for target in mounts_under(path):
        proc = subprocess.run(["umount", target], capture_output=True)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", target], capture_output=True)
        done.append(target)
    for device in loop_devices_under(path):
        subprocess.run(["losetup", "-d", device], capture_output=True)  # busy: freed when its last user goes
        done.append(device)
    if done:
        # The kernel frees an unmounted loop device a moment later: wait, so the caller's cleanup is complete.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not loop_devices_under(path), 30, f"the loop devices under {path} to be freed",
                       interval=0.05)  # a loaded machine, or a lazily unmounted filesystem still in use
    return done


def loop_devices_under(path: Path) -> list[str]:
    """Loop devices whose backing file is at or below `path` (`losetup` shows a removed one as "X (deleted)")."""
    prefix = str(Path(path).resolve())
    proc = subprocess.run(["losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"],
                          capture_output=True, text=True)
    found = []
    for line in proc.stdout.splitlines():
        name, _, back = line.partition(" ")
        back = back.replace("\\x20", " ").removesuffix(" (deleted)")
        if back == prefix or back.startswith(prefix + "/"):
            found.append(name)
    return found


def claim_image(folder: Path) -> Path:
    """The sparse image file that holds a PVC folder's filesystem."""
    return folder.with_name(folder.name + ".img")


def mount_claim(folder: Path, size: int) -> None:
    """An ext4 filesystem of `size` bytes on `folder`, from its sparse image (made on first use; the blocks
    are only allocated as data is written). -m 0: no blocks reserved for root, so the pod gets the whole size.
    A folder that already holds files (a state dir from before volumes had a size) moves them in."""
    folder = folder.resolve()
    if str(folder) in mounts_under(folder):
        return
    image = claim_image(folder)
    if not image.exists():
        with open(image, "wb") as fh:
            fh.truncate(size)
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
              str(image)], f"mkfs.ext4 for the PVC image {image}")
        existing = list(folder.iterdir())
        if existing:
            _move_into(image, folder, existing)
    _run(["mount", "-o", "loop,nodev,nosuid", str(image), str(folder)], f"mounting the PVC image {image}")
    lost_found = folder / "lost+found"
    if lost_found.is_dir() and not any(lost_found.iterdir()):
        lost_found.rmdir()  # mkfs's folder: the volume starts empty, as a fresh PVC does


def _move_into(image: Path, folder: Path, children: list[Path]) -> None:
    staging = folder.with_name(folder.name + ".moving")
    staging.mkdir(exist_ok=True)
    _run(["mount", "-o", "loop", str(image), str(staging)], f"mounting the PVC image {image}")
    try:
        for child in children:
            shutil.move(str(child), str(staging / child.name))
    finally:
        subprocess.run(["umount", str(staging)], capture_output=True)
        staging.rmdir()


def _run(argv: list[str], what: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        raise KubeError(f"{what}: {argv[0]} is not installed (Debian: e2fsprogs, mount)") from None
    if proc.returncode != 0:
        raise KubeError(f"{what} failed: {(proc.stderr or proc.stdout).strip()} (loop devices need root and "
                        f"/dev/loop-control; in a container, run it privileged)")


FILLER = Path(".fill-disk") / "filler"  # in a root-owned folder: the pod's user can neither delete nor shrink it


def free_bytes(folder: Path) -> int:
    """Bytes the pod's user may still write on the volume (-m 0: root has no reserve either)."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill_disk(folder: Path, leave: int = 0) -> dict:
    """Fill the volume at `folder` until at most `leave` bytes are free, with a file owned by root in a folder owned
    by root (mode 0755), so the server can not remove it. fallocate reserves the blocks without writing them
    (instant, and the sparse image grows by metadata only). Filling again tops up the same file."""
    if str(folder.resolve()) not in mounts_under(folder):
        raise KubeError(f"{folder} is not a mounted volume (is the stack running?)")
    target = folder / FILLER
    target.parent.mkdir(mode=0o755, exist_ok=True)
    os.chown(target.parent, 0, 0)
    os.chmod(target.parent, 0o755)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fchown(fd, 0, 0)
        chunk = 1 << 30
        while chunk >= 4096:  # big chunks first, smaller ones as the last free blocks go (extent metadata)
            want = min(chunk, free_bytes(folder) - leave)
            if want < 4096:
                break
            try:
                os.posix_fallocate(fd, os.fstat(fd).st_size, want)
            except OSError:
                chunk //= 16  # ENOSPC: the free count included blocks the extents need
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"volume": str(folder), "filler": str(target), "filler_bytes": target.stat().st_size,
            "free_bytes": free_bytes(folder), "size_bytes": os.statvfs(folder).f_blocks * os.statvfs(folder).f_frsize}


def free_disk(folder: Path) -> dict:
    """Remove the filler `fill_disk` left; the space is free again at once."""
    target = folder / FILLER
    freed = target.stat().st_size if target.exists() else 0
    target.unlink(missing_ok=True)
    if target.parent.is_dir():
        target.parent.rmdir()
    return {"volume": str(folder), "freed_bytes": freed, "free_bytes": free_bytes(folder)}


def delete_claim(folder: Path) -> None:
    """A PVC deleted for good: unmounted, its image and folder removed (a new claim starts empty)."""
    folder = folder.resolve()
    unmount_all(folder)
    claim_image(folder).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


class Volumes:
    def __init__(self, state: Path, pod_spec: dict, claim_templates: list[dict], objects: Objects, *,
                 claim_dir=None):
        self.state = state
        self._claim_dir = claim_dir
        self.spec = pod_spec
        self.claims = claim_templates
        self.objects = objects
        sc = pod_spec.get("securityContext", {})
        self.run_as_user = int(sc.get("runAsUser", 0))
        self.fs_group = sc.get("fsGroup")
        self.fs_group_policy = sc.get("fsGroupChangePolicy", "Always")
        self.paths: dict[str, Path] = {}

    # -- layout ---------------------------------------------------------------------------------------
    def claim_path(self, name: str) -> Path:
        if self._claim_dir:
            return self._claim_dir(name)
        first = self.claims[0]["metadata"]["name"] if self.claims else None
        return self.state / ("pvc" if name == first else f"pvc-{name}")

    def prepare(self) -> dict[str, Path]:
        """Write every volume of the pod spec; returns volume name -> host folder."""
        for vol in self.spec.get("volumes", []):
            name = vol["name"]
            if "configMap" in vol:
                self.paths[name] = self._config_map(vol["configMap"], name)
            elif "secret" in vol:
                self.paths[name] = self._secret(vol["secret"], name)
            elif "emptyDir" in vol:
                self.paths[name] = self._empty_dir(name, vol["emptyDir"] or {})
            elif "persistentVolumeClaim" in vol:
                self.paths[name] = self._claim(vol["persistentVolumeClaim"]["claimName"])
            else:
                raise KubeError(f"volume {name!r}: type {sorted(set(vol) - {'name'})} is not emulated")
        for claim in self.claims:
            self.paths[claim["metadata"]["name"]] = self._claim(claim["metadata"]["name"])
        return self.paths

    @staticmethod
    def _folder(base: Path, object_name: str, ref: dict, volume: str) -> Path:
        """One folder per object; a volume that selects `items` gets its own (two volumes of one Secret with
        different keys must not share a folder)."""
        return base / (f"{object_name}.{volume}" if ref.get("items") else object_name)

    def _write_files(self, folder: Path, data: dict[str, bytes], items: list | None, mode: int,
                     owner: int, dir_mode: int, optional: bool = False) -> Path:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, mode=0o700)
        selected = {i["key"]: (i.get("path", i["key"]), i.get("mode", mode)) for i in items} if items \
            else {k: (k, mode) for k in data}
        for key, (rel, file_mode) in selected.items():
            if key not in data:
                if optional:
                    continue  # optional: true also covers missing keys, as the kubelet does
                raise KubeError(f"{folder.parent.name} {folder.name!r} has no key {key!r}")
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data[key])
            os.chown(target, owner, self.fs_group if self.fs_group is not None else -1)
            os.chmod(target, file_mode)
        os.chown(folder, owner, self.fs_group if self.fs_group is not None else -1)
        os.chmod(folder, dir_mode)
        return folder

    def _atomic_write(self, folder: Path, data: dict[str, bytes], items: list | None, mode: int, owner: int,
                      dir_mode: int, optional: bool = False) -> Path:
        """The kubelet's atomic writer: the files go into a new ..<timestamp> folder, then a ..data link to it
        replaces the old one with one rename; each key is a link through ..data. Readers see the old or the new
        contents, never a mix."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{time.time_ns() % 10**9:09d}"
        self._write_files(folder / stamp, data, items, mode, owner, dir_mode, optional)
        data_link = folder / "..data"
        old = os.readlink(data_link) if data_link.is_symlink() else None
        tmp = folder / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(stamp, tmp)
        os.rename(tmp, data_link)
        tops = {p.name for p in (folder / stamp).iterdir()}
        for top in tops:
            if not (folder / top).is_symlink():
                os.symlink(f"..data/{top}", folder / top)
        for child in folder.iterdir():
            if child.is_symlink() and not child.name.startswith("..") and child.name not in tops:
                child.unlink()  # a key the new contents no longer have
        if old and old != stamp:
            shutil.rmtree(folder / old, ignore_errors=True)
        os.chown(folder, owner, self.fs_group if self.fs_group is not None else -1)
        os.chmod(folder, dir_mode)
        return folder

    def update_secret(self, secret_name: str) -> list[Path]:
        """Rewrite every volume of this Secret from its current data, the way the kubelet syncs a changed
        Secret into a running pod; returns the folders it rewrote."""
        done = []
        for vol in self.spec.get("volumes", []):
            ref = vol.get("secret")
            if ref and ref["secretName"] == secret_name:
                folder = self._folder(self.state / "secrets", secret_name, ref, vol["name"])
                done.append(self._atomic_write(folder, self.objects.secret(secret_name), ref.get("items"),
                                               ref.get("defaultMode", 0o400), self.run_as_user, 0o500,
                                               optional=bool(ref.get("optional"))))
        return done

    def _config_map(self, ref: dict, volume: str = "") -> Path:
        data = self.objects.config_map(ref["name"])
        return self._write_files(self._folder(self.state / "configmaps", ref["name"], ref, volume), data,
                                 ref.get("items"), ref.get("defaultMode", 0o644), 0, 0o755,
                                 optional=bool(ref.get("optional")))

    def _secret(self, ref: dict, volume: str = "") -> Path:
        data = self.objects.secret(ref["secretName"])
        folder = self._folder(self.state / "secrets", ref["secretName"], ref, volume)
        if folder.exists():
            shutil.rmtree(folder)  # a new pod's volume starts from scratch
        # Readable by the pod's user only (mode 0400); nobody else on the machine can list or read it.
        return self._atomic_write(folder, data, ref.get("items"), ref.get("defaultMode", 0o400), self.run_as_user,
                                  0o500, optional=bool(ref.get("optional")))

    def _empty_dir(self, name: str, spec: dict) -> Path:
        folder = self.state / "emptydirs" / name
        folder.mkdir(parents=True, exist_ok=True)
        gid = self.fs_group if self.fs_group is not None else 0
        if spec.get("medium") == "Memory":
            if not mounts_under(folder):
                size = int(quantity(spec["sizeLimit"])) if spec.get("sizeLimit") else "50%"
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=2777,gid={gid},nosuid,nodev",
                                f"ahc-{name}", str(folder)], check=True, capture_output=True)
        else:
            os.chown(folder, 0, gid)
            os.chmod(folder, 0o2777)
        return folder

    def claim_size(self, name: str) -> int:
        """Bytes the claim requests: its volumeClaimTemplate's, or the rendered PersistentVolumeClaim's."""
        specs = [c.get("spec", {}) for c in self.claims if c["metadata"]["name"] == name]
        if not specs:
            try:
                specs = [self.objects.manifests.get("PersistentVolumeClaim", name).get("spec", {})]
            except KeyError:
                raise KubeError(f"PersistentVolumeClaim {name!r} is not rendered by the chart") from None
        storage = specs[0].get("resources", {}).get("requests", {}).get("storage")
        if not storage:
            raise KubeError(f"PersistentVolumeClaim {name!r}: no resources.requests.storage")
        return int(quantity(storage))

    def _claim(self, name: str) -> Path:
        folder = self.claim_path(name)
        folder.mkdir(parents=True, exist_ok=True)
        mount_claim(folder, self.claim_size(name))
        if self.fs_group is not None:
            self._own_claim(folder, int(self.fs_group))
        return folder

    def _own_claim(self, folder: Path, gid: int) -> None:
        """fsGroup ownership as the kubelet applies it (OnRootMismatch: only when the root does not match)."""
        st = folder.stat()
        matches = st.st_gid == gid and (st.st_mode & 0o2070) == 0o2070
        if matches and self.fs_group_policy == "OnRootMismatch":
            return
        for root, dirs, files in os.walk(folder):
            if Path(root) == folder:  # `fault fill-disk`'s folder stays root's, so the server can not free it
                dirs[:] = [d for d in dirs if d != FILLER.parent.name]
            for d in dirs:
                _own(Path(root, d), gid, 0o2070)
            for f in files:
                _own(Path(root, f), gid, 0o060)
        _own(folder, gid, 0o2070)

    # -- lifecycle ------------------------------------------------------------------------------------
    def reset_ephemeral(self) -> None:
        """A new pod gets new emptyDirs."""
        for vol in self.spec.get("volumes", []):
            if "emptyDir" in vol and vol["name"] in self.paths:
                for child in self.paths[vol["name"]].iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()

    def teardown(self) -> list[str]:
        """Unmount the memory emptyDirs (idempotent)."""
        return unmount_all(self.state / "emptydirs") if (self.state / "emptydirs").exists() else []


def _own(path: Path, gid: int, bits: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_symlink():
            return
        os.chown(path, -1, gid)
        os.chmod(path, path.stat().st_mode & 0o7777 | bits)
