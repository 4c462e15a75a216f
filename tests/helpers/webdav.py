"""A real rclone remote for the off-site backup tests: `rclone serve webdav` (Debian's rclone) with an htpasswd
file, listening inside a network namespace of its own that netns.create() builds as it does for a pod, so the
local stack's Job pods reach it through the host's routes like any pod address. The password reaches the server
as a hash in a file and the client as rclone's obscured form in its config file (stdin to `rclone obscure -`),
never as an argument or an environment variable."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from mirakuru import TCPExecutor

from alert_history_cache import netns

PORT = 8080


@dataclass
class WebDav:
    url: str
    folder: Path  # what the server serves: the remote's files land here
    user: str

    def rclone_conf(self, remote: str, password: str) -> str:
        """An rclone config file whose section `remote` is this server, with `password` obscured."""
        obscured = subprocess.run([rclone(), "obscure", "-"], input=password, capture_output=True, text=True,
                                  check=True, timeout=30).stdout.strip()
        return (f"[{remote}]\ntype = webdav\nurl = {self.url}\nvendor = other\nuser = {self.user}\n"
                f"pass = {obscured}\n")


def rclone() -> str:
    found = shutil.which("rclone")
    if not found:
        pytest.skip("rclone missing (Debian package rclone; scripts/setup.sh installs it)")
    return found


@contextlib.contextmanager
def webdav_server(root: Path, user: str, password: str) -> Iterator[WebDav]:
    binary = rclone()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / "served"
    folder.mkdir()
    hashed = subprocess.run(["openssl", "passwd", "-apr1", "-stdin"], input=password, capture_output=True,
                            text=True, check=True, timeout=30).stdout.strip()
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"{user}:{hashed}\n")
    htpasswd.chmod(0o600)
    net = netns.create({"test": "webdav", "dir": str(root), "pid": os.getpid()})
    try:
        argv = ["ip", "netns", "exec", net.netns, binary, "serve", "webdav", str(folder),
                "--addr", f"{net.pod_ip}:{PORT}", "--htpasswd", str(htpasswd)]
        with open(root / "serve.log", "ab") as log, TCPExecutor(argv, host=net.pod_ip, port=PORT, timeout=30,
                                                                 stdout=log, stderr=subprocess.STDOUT):
            yield WebDav(url=f"http://{net.pod_ip}:{PORT}/", folder=folder, user=user)
    finally:
        netns.delete(net)
