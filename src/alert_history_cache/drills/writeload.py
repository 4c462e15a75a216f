"""Sustained write load that records every acknowledged write, so a drill can count what a crash lost."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

import redis

from ..waiting import wait_until


@dataclass
class Ack:
    seq: int
    key: str
    acked_at: float


@dataclass
class WriteLoad:
    """Writers SET `prefix:<writer>:<seq>` = seq until stopped; each success is an acknowledged write.

    A write whose reply never arrived (connection died mid-command) is not acknowledged: the server may or
    may not have it, and no client was told it was safe.
    """

    make_client: callable
    prefix: str = "drill"
    writers: int = 4
    acks: list[Ack] = field(default_factory=list)
    errors: int = 0
    errors_by_kind: collections.Counter = field(default_factory=collections.Counter)  # MISCONF, ConnectionError...
    first_error_at: dict[str, float] = field(default_factory=dict)  # kind -> monotonic time of its first error
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "WriteLoad":
        for w in range(self.writers):
            t = threading.Thread(target=self._run, args=(w,), daemon=True, name=f"writer-{w}")
            t.start()
            self._threads.append(t)
        return self

    def _run(self, writer: int) -> None:
        client = None
        seq = 0
        while not self._stop.is_set():
            try:
                if client is None:
                    client = self.make_client()
                key = f"{self.prefix}:{writer}:{seq}"
                client.set(key, seq)
                now = time.monotonic()
                with self._lock:
                    self.acks.append(Ack(seq, key, now))
                seq += 1
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError) as exc:
                # The server is down, loading, restarting or refusing writes: retry on a fresh connection.
                kind = error_kind(exc)
                with self._lock:
                    self.errors += 1
                    self.errors_by_kind[kind] += 1
                    self.first_error_at.setdefault(kind, time.monotonic())
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        pass
                client = None
                seq += 1  # the unacknowledged key is never reused
                self._stop.wait(0.05)
        if client is not None:
            client.close()

    def wait_for_acks(self, count: int, timeout: float = 30.0) -> None:
        wait_until(lambda: len(self.acks) >= count, timeout, f"{count} acknowledged writes", interval=0.01)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def snapshot(self, until: float | None = None) -> list[Ack]:
        """Acks recorded up to `until` (monotonic), all by default."""
        with self._lock:
            acks = list(self.acks)
        return acks if until is None else [a for a in acks if a.acked_at <= until]


def error_kind(exc: Exception) -> str:
    """An error reply's code (MISCONF, LOADING, READONLY, ...), or the exception's class for a failed connection."""
    if isinstance(exc, redis.ResponseError) and not isinstance(exc, redis.ConnectionError):
        word = str(exc).split(" ", 1)[0]
        return word if word.isupper() else type(exc).__name__
    return type(exc).__name__


def lost_writes(client: redis.Redis, acks: list[Ack], batch: int = 1000) -> list[Ack]:
    """Acknowledged writes that are missing after a restart."""
    lost: list[Ack] = []
    for i in range(0, len(acks), batch):
        chunk = acks[i : i + batch]
        values = client.mget([a.key for a in chunk])
        lost.extend(a for a, v in zip(chunk, values) if v is None)
    return lost
