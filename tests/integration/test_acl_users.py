"""ACL users on the local stack (the rendered pod: config-init, probes and exporter running): a table of
commands by user, on Valkey 8.1, Valkey 9.1 and Redis 7.0.

Every allowed command must work and every forbidden one must be refused with NOPERM. The server runs the
chart's own ACL file, written by the chart's init-acl.sh from the rendered Secret.
"""

from __future__ import annotations

import socket

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helpers.servers import rendered_server

pytestmark = pytest.mark.integration

# Command lists: each entry is one command (a tuple) or a sequence of commands run on one connection.
APP_ALLOWED = [
    ("PING",),
    ("INFO",),
    ("INFO", "memory"),
    ("CLIENT", "SETNAME", "alert-history"),
    ("SET", "group:1", "v", "EX", "60"),
    ("SET", "timer:1", "v", "PX", "60000"),
    ("SETNX", "lock:1", "token"),
    ("GET", "group:1"),
    ("MGET", "group:1", "timer:1"),
    ("EXISTS", "group:1"),
    ("TTL", "group:1"),
    ("EXPIRE", "group:1", "120"),
    ("DEL", "timer:1"),
    ("ZADD", "timers:due", "1", "a"),
    ("ZRANGE", "timers:due", "0", "-1"),
    ("ZCARD", "timers:due"),
    ("ZREM", "timers:due", "a"),
    ("SADD", "inhibition:set", "a"),
    ("SMEMBERS", "inhibition:set"),
    ("SCARD", "inhibition:set"),
    ("SREM", "inhibition:set", "a"),
    [("WATCH", "group:1"), ("UNWATCH",)],
    [("MULTI",), ("SET", "group:2", "v"), ("EXEC",)],
    [("MULTI",), ("DISCARD",)],
    ("EVAL", "return redis.call('GET', KEYS[1])", "1", "group:1"),
    [("EVAL", "return 42", "0"), ("EVALSHA", "1fa00e76656cc152ad327c13fe365858fd7be306", "0")],
]

# The dangerous commands of docs/requirements.md, and others outside the application's profile.
APP_FORBIDDEN = [
    ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("CONFIG", "SET", "maxmemory", "0"),
    ("CONFIG", "REWRITE"), ("CONFIG", "RESETSTAT"), ("SHUTDOWN", "NOSAVE"),
    ("MODULE", "LIST"), ("ACL", "LIST"), ("ACL", "WHOAMI"), ("ACL", "SETUSER", "x"), ("ACL", "LOG"),
    ("KEYS", "*"), ("SCAN", "0"), ("MONITOR",), ("REPLICAOF", "NO", "ONE"), ("SLAVEOF", "NO", "ONE"),
    ("SAVE",), ("BGSAVE",), ("BGREWRITEAOF",), ("LASTSAVE",), ("SCRIPT", "FLUSH"), ("SCRIPT", "KILL"),
    ("SCRIPT", "LOAD", "return 1"), ("FUNCTION", "LIST"), ("FUNCTION", "FLUSH"), ("FCALL", "f", "0"),
    ("CLIENT", "LIST"), ("CLIENT", "KILL", "ID", "1"), ("CLIENT", "PAUSE", "10"), ("CLIENT", "NO-EVICT", "on"),
    ("SLOWLOG", "GET"), ("SLOWLOG", "RESET"), ("LATENCY", "RESET"), ("MEMORY", "USAGE", "group:1"),
    ("DBSIZE",), ("SELECT", "1"), ("SWAPDB", "0", "1"), ("MOVE", "group:1", "1"), ("RENAME", "group:1", "x"),
    ("DUMP", "group:1"), ("RESTORE", "x", "0", "payload"), ("MIGRATE", "h", "1", "k", "0", "1"),
    ("OBJECT", "ENCODING", "group:1"), ("SORT", "inhibition:set"), ("HSET", "h", "f", "v"), ("LPUSH", "l", "v"),
    ("INCR", "n"), ("PUBLISH", "ch", "m"), ("SUBSCRIBE", "ch"), ("PSYNC", "?", "-1"), ("SYNC",),
    ("FAILOVER",), ("CLUSTER", "INFO"), ("WAIT", "0", "0"), ("COMMAND", "DOCS"),
]

EXPORTER_ALLOWED = [
    ("CLIENT", "SETNAME", "redis_exporter"), ("INFO", "ALL"), ("INFO",), ("CONFIG", "GET", "*"),
    ("SLOWLOG", "GET", "1"), ("SLOWLOG", "LEN"), ("LATENCY", "LATEST"), ("LATENCY", "HISTOGRAM"),
]
EXPORTER_FORBIDDEN = [
    ("GET", "group:1"), ("SET", "x", "1"), ("KEYS", "*"), ("SCAN", "0"), ("FLUSHALL",), ("CONFIG", "SET", "maxmemory", "0"),
    ("CONFIG", "REWRITE"), ("ACL", "LIST"), ("SLOWLOG", "RESET"), ("LATENCY", "RESET"), ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "ID", "1"), ("EVAL", "return 1", "0"), ("MONITOR",), ("SHUTDOWN", "NOSAVE"),
    ("PING",), ("DBSIZE",), ("SAVE",), ("BGSAVE",), ("REPLICAOF", "NO", "ONE"), ("MODULE", "LIST"),
]

ADMIN_ALLOWED = [
    ("PING",), ("CONFIG", "GET", "*"), ("ACL", "LIST"), ("ACL", "LOG"), ("KEYS", "*"), ("SCAN", "0"), ("DBSIZE",),
    ("CLIENT", "LIST"), ("SLOWLOG", "RESET"), ("BGSAVE", "SCHEDULE"), ("LASTSAVE",), ("SCRIPT", "LOAD", "return 1"),
    ("FUNCTION", "LIST"), ("HSET", "h", "f", "v"), ("SELECT", "1"), ("CONFIG", "SET", "slowlog-max-len", "128"),
]

PROBE_ALLOWED = [("PING",), ("INFO", "persistence")]
PROBE_FORBIDDEN = [("GET", "group:1"), ("SET", "x", "1"), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("FLUSHALL",),
                   ("SHUTDOWN", "NOSAVE"), ("ACL", "LIST"), ("CLIENT", "LIST")]


def _steps(entry) -> list[tuple]:
    return entry if isinstance(entry, list) else [entry]


def check_table(connect, allowed, forbidden) -> list[str]:
    """Runs each entry on a fresh connection; returns what went against the table."""
    problems = []
    for entry in allowed:
        client = connect()
        try:
            for cmd in _steps(entry):
                client.execute_command(*cmd)
        except redis.ResponseError as exc:
            problems.append(f"allowed {_steps(entry)} failed: {exc}")
        finally:
            client.close()
    for cmd in forbidden:
        client = connect()
        try:
            client.execute_command(*cmd)
            problems.append(f"forbidden {cmd} succeeded")
        except redis.exceptions.NoPermissionError:
            pass
        except redis.RedisError as exc:
            problems.append(f"forbidden {cmd} refused, but not with NOPERM: {type(exc).__name__}: {exc}")
        finally:
            client.close()
    return problems


@pytest.fixture(scope="module")
def server(stack_per_engine):
    return stack_per_engine


def raw(host: str, port: int, payload: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_unauthenticated_client_gets_noauth(server):
    for command in (b"GET group:1\r\n", b"PING\r\n", b"CONFIG GET *\r\n", b"FLUSHALL\r\n", b"KEYS *\r\n"):
        assert raw(server.host, server.port, command).startswith(b"-NOAUTH"), command
    # A wrong password is refused as well; nothing was flushed by the attempts above.
    once = Retry(NoBackoff(), 0)
    with pytest.raises(redis.AuthenticationError):
        server.client(password="not-the-password", retry=once).ping()
    with pytest.raises(redis.AuthenticationError):
        server.client(server.acl["adminUser"], server.app_password, retry=once).ping()


def test_application_identity_password_only(server):
    """go-redis sends AUTH <password>: the `default` user, with exactly the application profile."""
    assert check_table(server.app, APP_ALLOWED, APP_FORBIDDEN) == []
    app = server.app(client_name="who")
    assert app.ping()
    assert [c["user"] for c in server.admin().client_list() if c["name"] == "who"] == ["default"]


def test_named_application_user(server):
    """The same rights under acl.applicationUser, for clients that send a username."""
    connect = lambda: server.client(server.acl["applicationUser"], server.app_password)  # noqa: E731
    assert check_table(connect, APP_ALLOWED, APP_FORBIDDEN) == []


def test_exporter_user(server):
    assert check_table(server.exporter, EXPORTER_ALLOWED, EXPORTER_FORBIDDEN) == []


def test_admin_user(server):
    assert check_table(server.admin, ADMIN_ALLOWED, []) == []


def test_debug_and_module_loading_are_off_for_everyone(server):
    """enable-debug-command and enable-module-command refuse DEBUG and MODULE LOAD before the ACL is asked,
    admin included; ACL DRYRUN shows that the ACL would refuse them to the application and exporter too."""
    for client in (server.admin(), server.app(), server.exporter()):
        for cmd in (("DEBUG", "SLEEP", "0"), ("MODULE", "LOAD", "/nonexistent.so")):
            with pytest.raises(redis.ResponseError, match="not allowed"):
                client.execute_command(*cmd)
    admin = server.admin()
    for user in ("default", server.acl["applicationUser"], server.acl["exporterUser"]):
        for cmd in (("DEBUG", "SLEEP", "0"), ("MODULE", "LOAD", "/x.so"), ("FLUSHALL",)):
            verdict = admin.execute_command("ACL", "DRYRUN", user, *cmd)
            assert b"no permissions" in verdict, (user, cmd, verdict)
        assert admin.execute_command("ACL", "DRYRUN", user, "INFO") == b"OK"


def test_probe_user(server):
    connect = lambda: server.client("probe", server.probe_password)  # noqa: E731
    assert check_table(connect, PROBE_ALLOWED, PROBE_FORBIDDEN) == []


def test_every_denial_is_in_the_acl_log(server):
    """The refusals are the ACL's (ACL LOG records them), not errors of another kind."""
    admin = server.admin()
    admin.acl_log_reset()
    check_table(server.app, [], [("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*")])
    # Client libraries send CLIENT SETINFO on connect and ignore its refusal (Redis 7.0 does not know it).
    logged = {(e["reason"], e["object"], e["username"]) for e in admin.acl_log(count=1000) if e["object"] != "client|setinfo"}
    assert logged == {("command", "flushall", "default"), ("command", "config|get", "default"),
                      ("command", "keys", "default")}


@pytest.mark.parametrize("engine", ["valkey8", "redis7"], indirect=True)
def test_key_patterns_confine_the_application(engine, tmp_path):
    patterns = ["group:*", "lock:*"]
    with rendered_server(engine, tmp_path, {"valkey": {"acl": {"keyPatterns": patterns}}}) as server:  # fast boot
        app = server.app()
        assert app.set("group:1", "v") and app.set("lock:1", "t")
        assert app.mget("group:1", "lock:1") == [b"v", b"t"]
        for cmd in (("SET", "other:1", "v"), ("GET", "timer:1"), ("MGET", "group:1", "other:1"), ("DEL", "other:1"),
                    ("EVAL", "return redis.call('GET', KEYS[1])", "1", "other:1")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                app.execute_command(*cmd)
        # A script cannot reach an undeclared key outside the patterns either.
        with pytest.raises(redis.ResponseError, match="(?i)can't access|no permissions"):
            app.eval("return redis.call('GET', 'other:1')", 0)
