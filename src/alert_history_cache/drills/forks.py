"""Waiting for a server's fork children (BGSAVE, AOF rewrite) to finish, as the drills and benchmarks need it."""

from __future__ import annotations

import time

import redis

from ..waiting import wait_until

FORK_FIELDS = ("rdb_bgsave_in_progress", "aof_rewrite_in_progress")


def busy(admin: redis.Redis, fields: tuple[str, ...] = FORK_FIELDS) -> bool:
    """A BGSAVE or AOF rewrite (of `fields`) is running, or an AOF rewrite is scheduled to follow one."""
    info = admin.info("persistence")
    return any(info.get(f) for f in (*fields, "aof_rewrite_scheduled"))


def wait_idle(admin: redis.Redis, timeout: float = 300, *, quiet: float = 0.0,
              fields: tuple[str, ...] = FORK_FIELDS) -> float:
    """Wait until no fork of `fields` runs (none for `quiet` seconds: a write burst triggers the save rules and
    the AOF auto-rewrite, which the server starts from its cron a little later); returns the wall time then."""
    idle_since: list[float] = []

    def idle():
        if busy(admin, fields):
            idle_since.clear()
            return False
        idle_since[:] = idle_since or [time.monotonic()]
        return time.monotonic() - idle_since[0] >= quiet

    wait_until(idle, timeout, f"no {' or '.join(fields)} for {quiet:g} s", interval=0.02 if not quiet else 0.1)
    return time.time()
