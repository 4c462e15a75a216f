"""What an HA drill records while it breaks a replicated release: every client write and read (through the
client Service), each data pod's role and executed-write counter (sampled every 100 ms at its own address), and
the Sentinels' events (a subscription on one Sentinel). The figures come from these records afterwards.

Times are time.monotonic() seconds; results turn them into seconds from the recording's start."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
import threading
import time
from typing import Callable

import redis

CLIENT_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)


@dataclasses.dataclass
class Op:
    started: float
    ended: float
    ok: bool
    key: str = ""
    value: str = ""
    error: str = ""


class ClientLoad:
    """Writers SET unique keys (`<prefix>:<writer>:<seq>` = `<seq>`), readers GET acknowledged ones, each on its
    own connection from `make_client`, reconnecting after an error. A write is acknowledged only when its reply
    came back: a write whose connection died is not, whatever the server did with it."""

    def __init__(self, make_client: Callable[[], redis.Redis], prefix: str, writers: int = 4, readers: int = 2,
                 pause: float = 0.005):
        self.make_client, self.prefix = make_client, prefix
        self.writers, self.readers, self.pause = writers, readers, pause
        self.writes: list[Op] = []
        self.reads: list[Op] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "ClientLoad":
        for i in range(self.writers):
            self._spawn(self._write_loop, f"ha-writer-{i}", i)
        for i in range(self.readers):
            self._spawn(self._read_loop, f"ha-reader-{i}", i)
        return self

    def _spawn(self, fn, name: str, *args) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def acked(self) -> list[Op]:
        with self._lock:
            return [w for w in self.writes if w.ok]

    def _loop(self, record: list[Op], op: Callable[[redis.Redis], Op]) -> None:
        client = None
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                if client is None:
                    client = self.make_client()
                done = op(client)
            except CLIENT_ERRORS as exc:
                # A failed write carries its own record (key and start) on the exception.
                done = getattr(exc, "ha_op", None) or Op(t0, time.monotonic(), False,
                                                         error=f"{type(exc).__name__}: {str(exc)[:120]}")
                if client is not None:
                    client.close()
                client = None
            with self._lock:
                record.append(done)
            self._stop.wait(self.pause if done.ok else 0.05)
        if client is not None:
            client.close()

    def _write_loop(self, writer: int) -> None:
        seq = itertools.count()

        def write(client: redis.Redis) -> Op:
            n = next(seq)  # an unacknowledged key is never reused
            key, value = f"{self.prefix}:{writer}:{n}", str(n)
            t0 = time.monotonic()
            try:
                client.set(key, value)
            except CLIENT_ERRORS as exc:
                exc.ha_op = Op(t0, time.monotonic(), False, key, value, f"{type(exc).__name__}: {str(exc)[:120]}")
                raise
            return Op(t0, time.monotonic(), True, key, value)

        self._loop(self.writes, write)

    def _read_loop(self, reader: int) -> None:
        rng = random.Random(reader)

        def read(client: redis.Redis) -> Op:
            with self._lock:
                recent = [w for w in self.writes[-200:] if w.ok]
            key = rng.choice(recent).key if recent else f"{self.prefix}:none"
            t0 = time.monotonic()
            client.get(key)
            return Op(t0, time.monotonic(), True, key)

        self._loop(self.reads, read)


@dataclasses.dataclass
class RoleSample:
    pod: str
    at: float
    role: str | None  # master | slave | None (no answer)
    address: str | None
    run_id: str | None = None
    set_calls: int | None = None  # executed SETs (commandstats), client writes on a primary
    offset: int | None = None  # master_repl_offset
    error: str = ""


class RoleSampler:
    """One thread per data pod asks its server `INFO server replication commandstats` every `interval` at the
    pod's current address (it changes when the pod is recreated), with a short timeout: a frozen or partitioned
    pod shows as no answer."""

    def __init__(self, pods: list[str], address: Callable[[str], str | None],
                 make_client: Callable[[str], redis.Redis], interval: float = 0.1):
        self.pods, self.address, self.make_client, self.interval = pods, address, make_client, interval
        self.samples: dict[str, list[RoleSample]] = {p: [] for p in pods}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(p,), daemon=True, name=f"ha-roles-{p}")
                         for p in pods]

    def start(self) -> "RoleSampler":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def latest(self, pod: str) -> RoleSample | None:
        s = self.samples[pod]
        return s[-1] if s else None

    def _run(self, pod: str) -> None:
        client, client_at = None, None
        while not self._stop.is_set():
            t0 = time.monotonic()
            address = self.address(pod)
            sample = RoleSample(pod, t0, None, address)
            try:
                if address and (client is None or client_at != address):
                    if client is not None:
                        client.close()
                    client, client_at = self.make_client(address), address
                if client is not None and address:
                    info = client.info("server", "replication", "commandstats")
                    sample.role = info.get("role")
                    sample.run_id = info.get("run_id")
                    sample.offset = info.get("master_repl_offset")
                    sample.set_calls = (info.get("cmdstat_set") or {}).get("calls", 0)
            except Exception as exc:  # noqa: BLE001 - any failure is "no answer"; the sampler must keep going
                sample.error = f"{type(exc).__name__}: {str(exc)[:100]}"
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
                client = None
            sample.at = time.monotonic()
            self.samples[pod].append(sample)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))
        if client is not None:
            client.close()


class SentinelEvents:
    """Every event one Sentinel publishes (`PSUBSCRIBE *`: +sdown, +odown, +switch-master, ...), with its
    arrival time. Reconnects (to the address `address()` gives) if the Sentinel goes away."""

    def __init__(self, address: Callable[[], str | None], make_client: Callable[[str], redis.Redis]):
        self.address, self.make_client = address, make_client
        self.events: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ha-sentinel-events")

    def start(self, timeout: float = 10.0) -> "SentinelEvents":
        from ..waiting import wait_until

        self._thread.start()
        wait_until(self._subscribed.is_set, timeout, "a subscription to a Sentinel's events")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def first(self, channel: str, after: float = 0.0) -> tuple[float, str] | None:
        for at, ch, data in list(self.events):
            if ch == channel and at >= after:
                return at, data
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            address = self.address()
            try:
                pubsub = self.make_client(address).pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe("*")
                self._subscribed.set()
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.2)
                    if msg and msg.get("type") == "pmessage":
                        self.events.append((time.monotonic(), _text(msg["channel"]), _text(msg["data"])))
                pubsub.close()
            except CLIENT_ERRORS:
                self._stop.wait(0.2)


def _text(v) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
