"""Password rotation (docs/security.md, "Rotating a password"), on servers booted from the rendered config and
on the local stack.

Two paths:
- Secret keys `<key>-next` (valkey.password.*Next or the existing Secret): config-init accepts both passwords,
  so clients with either work across the pod restart that applies the Secret; then the old one is dropped.
- Live, without any restart: the admin adds the new hash with ACL SETUSER and ACL SAVE, clients move, the old
  hash is removed; the Secret is updated alongside so that any later pod start agrees. On the local stack the
  doc's own `admin` helper runs inside the server container.
"""

from __future__ import annotations

import hashlib
import re

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from alert_history_cache.chart import REPO_ROOT

from helpers.local_stack import engine_or_skip, root_or_skip
from helpers.servers import rendered_server, stack_server

pytestmark = pytest.mark.integration

OLD = {"application": "old-application-password-0001", "exporter": "old-exporter-password-0001",
       "admin": "old-admin-password-000000001"}
NEW = {"application": "new-application-password-0002", "exporter": "new-exporter-password-0002",
       "admin": "new-admin-password-000000002"}


def sha(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def works(server, username: str | None, password: str) -> bool:
    """A new connection authenticates and runs one command it is allowed."""
    client = server.client(username, password, retry=Retry(NoBackoff(), 0))
    try:
        return client.execute_command("INFO", "server") is not None
    except redis.AuthenticationError:
        return False
    finally:
        client.close()


def logins(server, passwords: dict) -> dict[str, bool]:
    acl = server.acl
    return {
        "default": works(server, None, passwords["application"]),
        acl["applicationUser"]: works(server, acl["applicationUser"], passwords["application"]),
        acl["exporterUser"]: works(server, acl["exporterUser"], passwords["exporter"]),
        acl["adminUser"]: works(server, acl["adminUser"], passwords["admin"]),
    }


ALL = lambda server: {u: True for u in ("default", server.acl["applicationUser"],  # noqa: E731
                                        server.acl["exporterUser"], server.acl["adminUser"])}
NONE = lambda server: {u: False for u in ALL(server)}  # noqa: E731


@pytest.mark.parametrize("engine", ["valkey8", "redis7"], indirect=True)
def test_next_keys_accept_both_then_old_is_dropped(engine, tmp_path):
    values = {"valkey": {"password": {**OLD, "applicationNext": NEW["application"], "exporterNext": NEW["exporter"],
                                      "adminNext": NEW["admin"]}}}
    with rendered_server(engine, tmp_path, values) as server:
        keys = server.keys
        secret = {k: server.secret(k) for k in (keys["secretKey"], f"{keys['secretKey']}-next")}
        assert secret == {"password": OLD["application"], "password-next": NEW["application"]}
        # Both passwords of every user work.
        assert logins(server, OLD) == ALL(server)
        assert logins(server, NEW) == ALL(server)
        acl_file = (server.paths["run"] / "users.acl").read_text()
        assert acl_file.count(f"#{sha(NEW['application'])}") == 2  # default and the named application user
        assert NEW["application"] not in acl_file and OLD["application"] not in acl_file

        # Promote: the new password becomes the current key, the -next keys go; the pod restarts.
        for user, key in (("application", "secretKey"), ("exporter", "exporterSecretKey"), ("admin", "adminSecretKey")):
            server.write_secret(keys[key], NEW[user])
            server.write_secret(f"{keys[key]}-next", None)
        server.restart_pod()
        assert logins(server, NEW) == ALL(server)
        assert logins(server, OLD) == NONE(server)


def test_rendered_secret_carries_next_keys_only_when_set():
    from alert_history_cache import chart

    plain = chart.render({"fullnameOverride": "alerthistory", "valkey": {"password": OLD}})
    rotating = chart.render({"fullnameOverride": "alerthistory",
                             "valkey": {"password": {**OLD, "applicationNext": NEW["application"]}}})
    assert sorted(plain.get("Secret", "alerthistory-redis")["data"]) == ["admin-password", "exporter-password",
                                                                        "password"]
    assert sorted(rotating.get("Secret", "alerthistory-redis")["data"]) == ["admin-password", "exporter-password",
                                                                           "password", "password-next"]


@pytest.mark.parametrize("engine", ["valkey8", "redis7"], indirect=True)
def test_live_rotation_without_restart(engine, tmp_path):
    with rendered_server(engine, tmp_path, {"valkey": {"password": OLD}}) as server:
        acl = server.acl
        admin = server.client(acl["adminUser"], OLD["admin"])
        run_id = admin.info("server")["run_id"]
        pid = server.executor.process.pid
        # A long-lived application connection, authenticated with the old password.
        long_lived = server.client(password=OLD["application"], retry=Retry(NoBackoff(), 0))
        long_lived.set("group:rotation", "before")
        assert logins(server, NEW) == NONE(server)

        # Step 1: add the new password beside the old one (hash only: the password never crosses the wire).
        for user in ("default", acl["applicationUser"]):
            admin.execute_command("ACL", "SETUSER", user, f"#{sha(NEW['application'])}")
        admin.execute_command("ACL", "SAVE")  # a restart of the container keeps the change
        assert logins(server, OLD)["default"] and logins(server, NEW)["default"]
        assert logins(server, NEW)[acl["applicationUser"]]
        assert long_lived.get("group:rotation") == b"before"

        # Step 2: the Secret gets the new password as <key>-next (no restart), so any pod start from now on
        # accepts both: config-init, run into a scratch dir, writes both hashes.
        server.write_secret("password-next", NEW["application"])
        scratch = tmp_path / "scratch-run"
        scratch.mkdir()
        server.run_config_init(scratch)
        default_rule = [l for l in (scratch / "users.acl").read_text().splitlines() if l.startswith("user default ")]
        assert sha(OLD["application"]) in default_rule[0] and sha(NEW["application"]) in default_rule[0]

        # Step 3: clients move to the new password (a new connection with it), the old one is removed live.
        moved = server.client(password=NEW["application"])
        assert moved.get("group:rotation") == b"before"
        for user in ("default", acl["applicationUser"]):
            admin.execute_command("ACL", "SETUSER", user, f"!{sha(OLD['application'])}")
        admin.execute_command("ACL", "SAVE")
        assert not logins(server, OLD)["default"] and not logins(server, OLD)[acl["applicationUser"]]
        assert logins(server, NEW)["default"] and logins(server, NEW)[acl["applicationUser"]]
        assert moved.set("group:rotation", "after")
        # Connections authenticated before the removal stay authenticated (the server checks passwords at
        # AUTH only): the procedure ends by closing them, CLIENT KILL USER <user> as admin.
        assert long_lived.get("group:rotation") == b"after"
        assert admin.execute_command("CLIENT", "KILL", "USER", "default") >= 1
        with pytest.raises((redis.ConnectionError, redis.AuthenticationError)):
            long_lived.get("group:rotation")  # closed, and a reconnect with the old password is refused

        # No restart happened during the live steps.
        assert admin.info("server")["run_id"] == run_id and server.executor.process.pid == pid
        acl_list = [line.decode() if isinstance(line, bytes) else line for line in admin.acl_list()]
        (default_line,) = [line for line in acl_list if line.startswith("user default ")]
        assert f"#{sha(NEW['application'])}" in default_line and sha(OLD["application"]) not in default_line

        # ACL SAVE made it stick: a container restart (same pod, config-init does not run) keeps it.
        server.restart_container()
        assert logins(server, NEW)["default"] and not logins(server, OLD)["default"]

        # Step 4: the Secret's current key becomes the new password and -next goes; a later pod start agrees.
        server.write_secret("password", NEW["application"])
        server.write_secret("password-next", None)
        server.restart_pod()
        assert logins(server, NEW)["default"] and not logins(server, OLD)["default"]


def documented_admin_script() -> str:
    """The `admin` helper of docs/security.md's rotation procedure, verbatim (a doc that drifts fails here)."""
    doc = (REPO_ROOT / "docs" / "security.md").read_text()
    match = re.search(r"sh -c \\\n\s*'(REDISCLI_AUTH=\$\(cat\);[^']*)'", doc)
    assert match, "docs/security.md no longer has the admin helper"
    return match.group(1)


@pytest.mark.parametrize("engine_name", ["valkey8", "redis7"])
def test_documented_live_procedure_on_the_stack(engine_name, tmp_path):
    """Steps 3 and 5 of docs/security.md, run inside the pod's server container as `kubectl exec -i` would,
    the admin password on stdin: the new password works beside the old, then alone, and the pod never restarts."""
    root_or_skip()
    engine_or_skip(engine_name)
    script = documented_admin_script()
    cli = "redis-cli" if engine_name == "redis7" else "valkey-cli"
    with stack_server(engine_name, tmp_path / "state", {"valkey": {"password": OLD}}) as server:
        acl = server.acl

        def admin(*args: str) -> str:
            proc = server.stack.container("valkey").exec(["sh", "-c", script, cli, acl["adminUser"], *args],
                                                         timeout=30, input=server.admin_password.encode())
            assert proc.returncode == 0, proc.stdout
            return proc.stdout.decode()

        pid = server.stack.server_pid
        assert logins(server, NEW)["default"] is False
        for user in ("default", acl["applicationUser"]):
            assert admin("ACL", "SETUSER", user, f"#{sha(NEW['application'])}").strip() == "OK"
        assert admin("ACL", "SAVE").strip() == "OK"
        assert logins(server, OLD)["default"] and logins(server, NEW)["default"]
        assert logins(server, NEW)[acl["applicationUser"]]
        old_client = server.client(password=OLD["application"], retry=Retry(NoBackoff(), 0))
        old_client.ping()

        for user in ("default", acl["applicationUser"]):
            assert admin("ACL", "SETUSER", user, f"!{sha(OLD['application'])}").strip() == "OK"
        admin("ACL", "SAVE")
        admin("CLIENT", "KILL", "USER", "default")
        assert not logins(server, OLD)["default"] and logins(server, NEW)["default"]
        with pytest.raises((redis.ConnectionError, redis.AuthenticationError)):
            old_client.ping()
        getuser = admin("ACL", "GETUSER", "default").split("\n")
        hashes = getuser[getuser.index("passwords") + 1:getuser.index("commands")]
        assert hashes == [sha(NEW["application"])], "one password hash left, the new one"
        assert server.stack.server_pid == pid, "the server never restarted"
