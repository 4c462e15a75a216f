"""No password leaks from the running pod (the local stack, on Valkey 8.1 and Redis 7.0), and no loop device
outlives it.

With every secret set (the three passwords, their rotation `-next` passwords) and the pod-local probe password:
none appears in any process command line (sampled until the probes' CLI processes were seen), in the
environment of the long-running containers, in any log, or in a probe command; the server itself holds hashes
only; the application user cannot read the config or the users; a MONITOR sees AUTH redacted.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import pytest
import redis

from alert_history_cache.waiting import wait_until

from helpers.local_stack import engine_or_skip, root_or_skip
from helpers.servers import stack_server

pytestmark = pytest.mark.integration

PASSWORDS = {k: f"{k}-{secrets.token_hex(16)}" for k in
             ("application", "exporter", "admin", "applicationNext", "exporterNext", "adminNext")}


@pytest.fixture(scope="module", params=["valkey8", "redis7"])
def server(request, tmp_path_factory):
    root_or_skip()
    engine_or_skip(request.param)
    with stack_server(request.param, tmp_path_factory.mktemp(f"leaks-{request.param}"),
                      {"valkey": {"password": PASSWORDS}}) as s:
        yield s


def secrets_of(server) -> list[str]:
    values = list(PASSWORDS.values()) + [server.probe_password]
    assert all(len(v) >= 32 for v in values)
    return values


def _cmdlines() -> list[tuple[int, str]]:
    """Every process's command line, read straight from /proc (faster than psutil: short probes are caught)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    out.append((int(entry.name), f.read().decode(errors="replace")))
            except OSError:
                pass  # gone meanwhile
    return out


def test_no_password_in_any_command_line(server):
    needles = secrets_of(server)
    probes_seen: set[int] = set()
    clis_seen = 0

    def scan() -> bool:
        """One pass over every command line; True once several probes and a probe CLI were caught in the act."""
        nonlocal clis_seen
        for pid, cmdline in _cmdlines():
            assert not [n for n in needles if n in cmdline], \
                f"a password in the command line of pid {pid}: {cmdline.split(chr(0))[:3]}"
            if "/scripts/" in cmdline and cmdline.rstrip("\0").endswith(("startup.sh", "readiness.sh", "liveness.sh")):
                probes_seen.add(pid)
            if "--user\0probe" in cmdline:
                clis_seen += 1
        return len(probes_seen) >= 3 and clis_seen >= 1

    # Probes run every second (sh /scripts/<probe>.sh, then the CLI as the probe user): scan back to back until
    # several were caught in the act, so the scan covers the probe commands too (else the sampler proves nothing).
    wait_until(scan, 30, "three probe scripts and a probe CLI caught in the process table", interval=0)


def test_no_password_in_the_environment_of_the_containers(server):
    """The exporter reads its password from a file (REDIS_PASSWORD_FILE), the server from its ACL file."""
    needles = secrets_of(server)
    pids = {name: pid for name, pid in server.stack.processes().items() if name != "supervisor"}
    assert {"valkey", "exporter"} <= set(pids), pids
    for name, pid in pids.items():
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        assert not [n for n in needles if n in environ], f"a password in the environment of {name}"


def test_no_password_in_any_log_or_state_file(server):
    needles = secrets_of(server)
    logs = list((server.stack.state_dir / "logs").iterdir())
    assert any(p.name.startswith("valkey") for p in logs), logs
    for path in logs + [server.stack.state_dir / "stack.json"]:
        text = path.read_text(errors="replace")
        assert not [n for n in needles if n in text], f"a password in {path}"


def test_probe_commands_carry_no_password(server):
    sts = server.manifests.get("StatefulSet", server.stack.pod.name.rsplit("-", 1)[0])
    needles = secrets_of(server)
    for container in sts["spec"]["template"]["spec"]["containers"]:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container.get(probe)
            if spec and "exec" in spec:
                assert spec["exec"]["command"][:2] == ["/bin/sh", f"/scripts/{probe.removesuffix('Probe')}.sh"]
    scripts = next(cm for cm in server.manifests.of_kind("ConfigMap") if cm["metadata"]["name"].endswith("-scripts"))
    for name, text in scripts["data"].items():
        assert not [n for n in needles if n in text], name
        if name.endswith(".sh") and "cli" in text:
            assert "-a " not in text and "--pass" not in text, f"{name} passes a password as an argument"


def test_application_user_cannot_read_config_or_users(server):
    app = server.app()
    for cmd in (("CONFIG", "GET", "*"), ("CONFIG", "GET", "requirepass"), ("ACL", "LIST"), ("ACL", "GETUSER", "admin"),
                ("ACL", "USERS"), ("ACL", "WHOAMI"), ("CLIENT", "LIST"), ("MONITOR",)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.execute_command(*cmd)


def test_the_server_holds_hashes_only(server):
    admin = server.admin(decode_responses=True)
    needles = secrets_of(server)
    config = admin.config_get("*")
    assert config["requirepass"] == "" and config.get("masterauth", "") == ""
    assert not [n for n in needles if n in repr(config)]
    users = admin.acl_list()
    assert not [n for n in needles if n in repr(users)]
    default = next(u for u in users if u.startswith("user default "))
    assert default.count(" #") == 2, "the current and the -next application password, as SHA-256 hashes"
    # The ACL file on the memory-backed emptyDir: hashes only, readable by the pod's user only.
    acl_file = server.stack.state_dir / "emptydirs" / "run" / "users.acl"
    assert not [n for n in needles if n in acl_file.read_text()]
    st = acl_file.stat()
    assert st.st_mode & 0o077 == 0 and st.st_uid == server.values["valkey"]["podSecurityContext"]["runAsUser"]
    # The exporter's password file: the one plaintext copy outside the Secret, in its own memory volume.
    pw_file = server.stack.state_dir / "emptydirs" / "exporter-run" / "password.json"
    assert pw_file.stat().st_mode & 0o077 == 0
    assert PASSWORDS["exporter"] in pw_file.read_text()


def test_monitor_sees_auth_redacted(server):
    """An admin watching the traffic with MONITOR does not see the application's password."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        user, password = server.acl["adminUser"], server.admin_password
        sock.sendall(f"AUTH {user} {password}\r\nMONITOR\r\n".encode())
        data = b""
        while data.count(b"+OK\r\n") < 2:
            data += sock.recv(4096)
        app = server.app()
        app.ping()

        def auth_seen() -> bool:
            nonlocal data
            data += sock.recv(65536)  # blocks until MONITOR sends more (the socket's 5 s timeout at most)
            return any(word in data for word in (b'"AUTH"', b'"auth"', b'"HELLO"'))

        wait_until(auth_seen, 10, "MONITOR to show the application's AUTH", interval=0)
    assert b"(redacted)" in data, data[-500:]
    assert server.app_password.encode() not in data


def test_the_volume_is_a_loop_device_that_the_stop_frees(server):
    """The PVC's loop device is backed by an image inside the state dir, so the fixture's teardown check
    (assert_nothing_left: no loop device under the state dir) covers it."""
    from alert_history_cache import volumes

    state = server.stack.state_dir
    devices = volumes.loop_devices_under(state)
    assert len(devices) == 1, devices
    image = volumes.claim_image(server.stack.data_dir)
    assert image.is_file() and image.resolve().is_relative_to(state)
    assert str(server.stack.data_dir.resolve()) in volumes.mounts_under(server.stack.data_dir)
