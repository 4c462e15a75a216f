"""The alert-history application's command profile, replayed as the application (password-only AUTH as
`default`): what it runs must work, the dangerous commands must be refused, and the ACL log must show only those
refusals. Used on a standalone pod (test_app_profile.py) and through the replication release's HAProxy."""

from __future__ import annotations

import hashlib
import threading

import pytest
import redis

# The application's two lock scripts (lock release and lock extension), as small Lua scripts over GET/DEL/EXPIRE.
RELEASE = """if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"""
EXTEND = """if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("EXPIRE", KEYS[1], ARGV[2]) else return 0 end"""

DANGEROUS = [("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("CONFIG", "SET", "appendonly", "no"),
             ("SHUTDOWN", "NOSAVE"), ("MODULE", "LIST"), ("ACL", "LIST"), ("KEYS", "*"), ("MONITOR",),
             ("REPLICAOF", "NO", "ONE"), ("SLAVEOF", "NO", "ONE"), ("SAVE",), ("BGSAVE",), ("BGREWRITEAOF",),
             ("SCRIPT", "FLUSH"), ("SCRIPT", "KILL"), ("FUNCTION", "FLUSH"), ("CLIENT", "KILL", "ID", "1"),
             ("SWAPDB", "0", "1"), ("MIGRATE", "h", "1", "k", "0", "1")]


def run_script(client: redis.Redis, body: str, keys: list[str], args: list) -> object:
    """go-redis Script.Run: EVALSHA first, EVAL when the server answers NOSCRIPT."""
    sha = hashlib.sha1(body.encode()).hexdigest()
    try:
        return client.evalsha(sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.eval(body, len(keys), *keys, *args)



def replay_application_profile(server, protocol: int) -> None:
    """`server` gives admin() and app() clients (tests/helpers/servers.ServerAccess)."""
    admin = server.admin()
    admin.flushall()  # one stack serves the module: start from an empty cache
    admin.acl_log_reset()
    # REDIS_PASSWORD only: redis-py then sends AUTH <password> (RESP2) or HELLO 3 AUTH default <password>.
    app = server.app(protocol=protocol, client_name="alert-history", decode_responses=True)
    other = server.app(protocol=protocol, decode_responses=True)

    assert app.ping() is True
    info = app.info()
    assert "redis_version" in info or "valkey_version" in info
    assert "used_memory" in app.info("memory")

    # Groups, timers, classification cache: strings with a TTL.
    assert app.set("group:g1", '{"alerts":3}', ex=300) is True
    assert app.set("classification:fp1", "critical", px=600000) is True
    assert app.get("group:g1") == '{"alerts":3}'
    assert app.setnx("alert_processing:a1", "worker-1") is True
    assert app.setnx("alert_processing:a1", "worker-2") is False
    assert app.set("lock:group:g1", "token-1", nx=True, ex=30) is True  # go-redis SetNX with an expiration
    assert app.mget("group:g1", "classification:fp1", "group:missing") == ['{"alerts":3}', "critical", None]
    assert app.exists("group:g1", "group:missing") == 1
    assert 0 < app.ttl("group:g1") <= 300
    assert app.expire("alert_processing:a1", 60) is True
    assert app.ttl("alert_processing:a1") > 0

    # Timers: a sorted set by due time.
    assert app.zadd("timers:due", {"timer:t1": 100, "timer:t2": 200, "timer:t3": 300}) == 3
    assert app.zrange("timers:due", 0, -1) == ["timer:t1", "timer:t2", "timer:t3"]
    assert app.zrange("timers:due", 0, 150, byscore=True) == ["timer:t1"]
    assert [tuple(x) for x in app.zrange("timers:due", 0, 0, withscores=True)] == [("timer:t1", 100.0)]
    assert app.zcard("timers:due") == 3
    assert app.zrem("timers:due", "timer:t1") == 1

    # Inhibitions: sets.
    assert app.sadd("inhibition:active", "rule-1", "rule-2") == 2
    assert app.smembers("inhibition:active") == {"rule-1", "rule-2"}
    assert app.scard("inhibition:active") == 2
    assert app.srem("inhibition:active", "rule-1") == 1
    assert app.delete("classification:fp1", "group:missing") == 1

    # A pipeline (one round trip) and a MULTI/EXEC transaction pipeline.
    pipe = app.pipeline(transaction=False)
    pipe.set("timer:t4", "due", ex=60).zadd("timers:due", {"timer:t4": 400}).zcard("timers:due").get("timer:t4")
    assert pipe.execute() == [True, 1, 3, "due"]
    tx = app.pipeline(transaction=True)
    tx.sadd("inhibition:active", "rule-3").scard("inhibition:active").expire("inhibition:active", 600)
    assert tx.execute() == [1, 2, True]

    # WATCH/MULTI/EXEC: a second client changes the watched key, so EXEC returns nil (WatchError); the retry wins.
    app.set("group:g2", "v1")
    with app.pipeline(transaction=True) as watched:
        watched.watch("group:g2")
        assert watched.get("group:g2") == "v1"
        other.set("group:g2", "changed-by-another-replica")
        watched.multi()
        watched.set("group:g2", "v2")
        with pytest.raises(redis.WatchError):
            watched.execute()
    assert app.get("group:g2") == "changed-by-another-replica"

    def bump(pipe):
        current = pipe.get("group:g2")
        pipe.multi()
        pipe.set("group:g2", current + "+1")

    app.transaction(bump, "group:g2")  # WATCH, GET, MULTI, SET, EXEC (and UNWATCH on the way out)
    assert app.get("group:g2") == "changed-by-another-replica+1"
    with app.pipeline(transaction=True) as aborted:  # MULTI ... DISCARD
        aborted.watch("group:g2")
        aborted.multi()
        aborted.set("group:g2", "never")
        aborted.reset()
    assert app.get("group:g2") == "changed-by-another-replica+1"

    # Lock release and extension scripts: EVALSHA, falling back to EVAL on NOSCRIPT, like go-redis.
    assert run_script(app, EXTEND, ["lock:group:g1"], ["wrong-token", 120]) == 0
    assert app.ttl("lock:group:g1") <= 30
    assert run_script(app, EXTEND, ["lock:group:g1"], ["token-1", 120]) == 1
    assert 30 < app.ttl("lock:group:g1") <= 120
    assert run_script(app, RELEASE, ["lock:group:g1"], ["wrong-token"]) == 0
    assert app.exists("lock:group:g1") == 1
    assert run_script(app, RELEASE, ["lock:group:g1"], ["token-1"]) == 1
    assert app.exists("lock:group:g1") == 0
    # The scripts are cached now: EVALSHA alone succeeds.
    assert app.evalsha(hashlib.sha1(RELEASE.encode()).hexdigest(), 1, "lock:none", "x") == 0

    # Concurrent lock holders: exactly one SETNX wins.
    winners = []

    def contend(n):
        c = server.app()
        if c.set("lock:race", f"t{n}", nx=True, ex=10):
            winners.append(n)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(winners) == 1

    # The dangerous commands are refused.
    for cmd in DANGEROUS:
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.execute_command(*cmd)
    assert admin.dbsize() > 0, "nothing was flushed"

    # The ACL log: only the refusals above, none for a command the application uses. Client libraries send
    # CLIENT SETINFO on connect and ignore its refusal (Redis 7.0 does not even know it).
    denied = {e["object"] for e in admin.acl_log(count=1000) if e["object"] != "client|setinfo"}
    expected = {" ".join(c[:2]).lower().replace(" ", "|") if c[0] in ("CONFIG", "MODULE", "ACL", "SCRIPT",
                                                                           "FUNCTION", "CLIENT") else c[0].lower()
                for c in DANGEROUS}
    assert denied == expected
