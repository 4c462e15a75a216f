"""Open-loop load generator: a fixed arrival rate over N held connections, latency from each request's scheduled start.

Why not redis-py: at 500 connections a Python client's latency is mostly its own event-loop queueing, and redis-py
costs ~70 us of CPU per command. Each worker here is an asyncio (uvloop when installed) process with one
`asyncio.Protocol` per connection, commands pre-encoded as RESP bytes and replies parsed by hiredis: ~10 us per
command. Every worker owns a share of the connections and every P-th arrival of one global schedule, so the
arrivals stay evenly spaced whatever the worker count.

A request's latency runs from its scheduled time to its reply: when every connection is busy, or the worker's
loop wakes late, the wait counts (no coordinated omission). The worker also records how late it dispatched each
request that found a free connection (`dispatch lag`): that part is the generator's own delay, and when it grows
the result says the generator fell behind instead of blaming the server.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import random
import ssl
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable

import hiredis
import numpy as np
import psutil

from ..waiting import wait_until

# Per-request outcome codes.
HIT, MISS, STORED, ERROR, TIMEOUT, NOT_SENT = 0, 1, 2, 3, 4, 5
OUTCOMES = {HIT: "hit", MISS: "miss", STORED: "stored", ERROR: "error", TIMEOUT: "timeout", NOT_SENT: "not_sent"}
GET, SET = 0, 1


@dataclass
class Workload:
    """Alert-history-like traffic: 2 KB JSON alerts, keys from a Zipf distribution, a GET/SET mix and a TTL."""

    keyspace: int = 100_000
    zipf_s: float = 0.99
    read_ratio: float = 0.9
    ttl: int = 3600
    value_size: int = 2048
    key_prefix: str = "alert-history:alert:"
    seed: int = 1
    # Cache-aside: a GET that misses is followed, on the same connection, by the SET that fills the key (as the
    # application does after reading the source of truth). The fill is not a scheduled request: it is counted
    # apart, and it keeps the connection busy, as it would keep the application's.
    cache_aside: bool = False

    def zipf_ranks(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n key ids in [0, keyspace): id 0 is the hottest (bounded Zipf, P(k) ~ 1/(k+1)^s)."""
        weights = 1.0 / np.power(np.arange(1, self.keyspace + 1, dtype=np.float64), self.zipf_s)
        cdf = np.cumsum(weights)
        cdf /= cdf[-1]
        return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), self.keyspace - 1)

    def key(self, i: int) -> bytes:
        return f"{self.key_prefix}{i}".encode()

    def payloads(self, count: int = 64) -> list[bytes]:
        """Distinct alert documents padded to exactly value_size bytes."""
        rng = random.Random(self.seed)
        out = []
        for n in range(count):
            doc = {
                "fingerprint": f"{rng.getrandbits(64):016x}",
                "status": rng.choice(["firing", "resolved"]),
                "labels": {
                    "alertname": rng.choice(["HighLatency", "PodCrashLooping", "DiskFull", "TargetDown"]),
                    "namespace": f"team-{n % 12}",
                    "pod": f"api-{rng.getrandbits(24):06x}",
                    "severity": rng.choice(["critical", "warning", "info"]),
                },
                "annotations": {"summary": "Alert fired", "runbook_url": "https://runbooks.example/alert"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "history": [],
            }
            raw = json.dumps(doc, separators=(",", ":"))
            # Padded with hex fingerprints of past notifications: about as compressible (RDB LZF) as real
            # history, where a run of one letter would shrink to nothing on disk and flatter every load time.
            pad = self.value_size - len(raw) - len(',"pad":""}') + 1
            filler = "".join(f"{rng.getrandbits(64):016x}" for _ in range(pad // 16 + 1))[: max(pad, 0)]
            raw = raw[:-1] + ',"pad":"' + filler + '"}'
            out.append(raw.encode()[: self.value_size])
        return out


@dataclass
class Stage:
    """k6 ramping-arrival-rate semantics: the rate moves linearly to `target` (req/s) over `duration` seconds."""

    duration: float
    target: float


def profile(name: str, rate: float, hold: float) -> list[Stage]:
    """`short`: 5 s ramp up, `hold` s at `rate`, 5 s ramp down. `requirements` (formerly `spec`): the 7 minutes of
    docs/requirements.md' k6 script (2 m up, 3 m hold, 2 m down)."""
    if name == "short":
        return [Stage(5, rate), Stage(hold, rate), Stage(5, 0)]
    if name in ("requirements", "spec"):
        return [Stage(120, rate), Stage(180, rate), Stage(120, 0)]
    raise ValueError(f"unknown profile {name!r} (short or requirements)")


def schedule(stages: list[Stage], start_rate: float = 0.0, resolution: float = 0.001) -> np.ndarray:
    """Arrival offsets (s) for the stages: arrival k is where the integrated rate reaches k + 0.5 (evenly spaced)."""
    times, rates = [0.0], [start_rate]
    for st in stages:
        times.append(times[-1] + st.duration)
        rates.append(st.target)
    grid = np.arange(0.0, times[-1] + resolution, resolution)
    rate = np.interp(grid, times, rates)
    cumulative = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * resolution)])
    n = int(np.floor(cumulative[-1] + 0.5))
    return np.interp(np.arange(n) + 0.5, cumulative, grid)


@dataclass
class Target:
    host: str
    port: int
    password: str | None = None
    username: str | None = None  # None: `AUTH <password>`, as the application (go-redis) logs in
    tls: object | None = None  # credentials.TlsFiles: TLS with this CA (and client pair), as the application would

    def ssl_context(self) -> ssl.SSLContext | None:
        """The chain is checked, the name is not: the load dials a ClusterIP the certificate does not list."""
        if self.tls is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        ctx.check_hostname = False
        if self.tls.cert:
            ctx.load_cert_chain(str(self.tls.cert), str(self.tls.key))
        return ctx


@dataclass
class WorkerStats:
    worker: int
    connections_wanted: int
    connections_opened: int = 0
    connect_errors: list[str] = field(default_factory=list)
    connections_lost: int = 0
    fills: int = 0
    fill_errors: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    error_samples: list[str] = field(default_factory=list)


@dataclass
class LoadRun:
    """Merged per-request records of all workers, sorted by scheduled time."""

    sched: np.ndarray  # scheduled offset (s) from the run's start
    latency: np.ndarray  # reply time - scheduled time (s); NaN when no reply
    service: np.ndarray  # reply time - send time (s); NaN when no reply
    dispatch_lag: np.ndarray  # send time - scheduled time for requests that found a free connection; NaN otherwise
    op: np.ndarray
    outcome: np.ndarray
    started_at: float  # wall clock of offset 0
    workers: list[WorkerStats]
    duration: float

    @property
    def ok(self) -> np.ndarray:
        return self.outcome <= STORED


def _cmd(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


class _Conn(asyncio.Protocol):
    """One held connection; at most one request in flight (like a pooled application connection)."""

    def __init__(self, w: "_Worker"):
        self.w = w
        self.reader = hiredis.Reader()
        self.transport = None
        self.current = -1
        self.filling = False
        self.alive = False
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.alive = True

    def data_received(self, data):
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if not self.ready.done():
                if isinstance(reply, hiredis.ReplyError):
                    self.ready.set_exception(ConnectionError(str(reply)))
                else:
                    self.ready.set_result(True)
                continue
            self.w.on_reply(self, reply)

    def connection_lost(self, exc):
        self.alive = False
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(str(exc or "closed")))
        self.w.on_lost(self)


class _Worker:
    def __init__(self, idx: int, cfg: dict, sched: np.ndarray, progress):
        self.idx = idx
        self.cfg = cfg
        wl: Workload = cfg["workload"]
        self.sched = sched
        n = len(sched)
        rng = np.random.default_rng(wl.seed * 1000 + idx)
        self.keys = wl.zipf_ranks(rng, n)
        self.ops = (rng.random(n) >= wl.read_ratio).astype(np.int8)
        self.payload_idx = rng.integers(0, 64, n)
        self.payloads = wl.payloads()
        self.cache_aside = wl.cache_aside
        self.get_cmds = [_cmd(b"GET", wl.key(i)) for i in range(wl.keyspace)]
        self.set_tail = b"\r\n$2\r\nEX\r\n$%d\r\n%d\r\n" % (len(str(wl.ttl)), wl.ttl) if wl.ttl else b"\r\n"
        nargs = 5 if wl.ttl else 3
        self.set_heads = [
            b"*%d\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (nargs, len(k), k, wl.value_size)
            for k in (wl.key(i) for i in range(wl.keyspace))
        ]
        self.latency = np.full(n, np.nan)
        self.service = np.full(n, np.nan)
        self.dispatch_lag = np.full(n, np.nan)
        self.outcome = np.full(n, NOT_SENT, dtype=np.int8)
        self.sent_at = np.zeros(n)
        self.idle: deque[_Conn] = deque()  # FIFO: requests rotate over every held connection
        self.backlog: deque[int] = deque()
        self.conns: list[_Conn] = []
        self.done = 0
        self.progress = progress
        self.t0 = 0.0
        self.stats = WorkerStats(idx, cfg["connections"])
        self.finished: asyncio.Future | None = None
        self.closing = False

    def send(self, conn: _Conn, i: int, now: float) -> None:
        conn.current = i
        self.sent_at[i] = now
        k = self.keys[i]
        if self.ops[i] == GET:
            conn.transport.write(self.get_cmds[k])
        else:
            conn.transport.write(self.set_heads[k] + self.payloads[self.payload_idx[i]] + self.set_tail)

    def on_reply(self, conn: _Conn, reply) -> None:
        now = time.monotonic() - self.t0
        if conn.filling:
            conn.filling = False
            self.stats.fills += 1
            if isinstance(reply, hiredis.ReplyError):
                self.stats.fill_errors += 1
                if len(self.stats.error_samples) < 10:
                    self.stats.error_samples.append(f"fill: {reply}")
            self._free(conn, now)
            return
        i = conn.current
        conn.current = -1
        if i >= 0:
            self.latency[i] = now - self.sched[i]
            self.service[i] = now - self.sent_at[i]
            if isinstance(reply, hiredis.ReplyError):
                self.outcome[i] = ERROR
                if len(self.stats.error_samples) < 10:
                    self.stats.error_samples.append(str(reply))
            elif self.ops[i] == SET:
                self.outcome[i] = STORED
            else:
                self.outcome[i] = MISS if reply is None else HIT
                if reply is None and self.cache_aside:
                    self._completed()
                    conn.filling = True
                    k = self.keys[i]
                    conn.transport.write(self.set_heads[k] + self.payloads[self.payload_idx[i]] + self.set_tail)
                    return
            self._completed()
        self._free(conn, now)

    def _free(self, conn: _Conn, now: float) -> None:
        if self.backlog:
            self.send(conn, self.backlog.popleft(), now)
        else:
            self.idle.append(conn)

    def _completed(self) -> None:
        self.done += 1
        if self.finished is not None and self.done >= len(self.sched) and not self.finished.done():
            self.finished.set_result(True)

    def on_lost(self, conn: _Conn) -> None:
        if not self.conns or not conn.ready.done() or self.closing:
            return
        self.stats.connections_lost += 1
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.current >= 0:
            self.outcome[conn.current] = ERROR
            if len(self.stats.error_samples) < 10:
                self.stats.error_samples.append("connection lost")
            conn.current = -1
            self._completed()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        target: Target = self.cfg["target"]
        if target.password is None:
            auth = _cmd(b"PING")
        elif target.username:
            auth = _cmd(b"AUTH", target.username.encode(), target.password.encode())
        else:
            auth = _cmd(b"AUTH", target.password.encode())
        gate = asyncio.Semaphore(50)
        ssl_ctx = target.ssl_context()

        async def one() -> _Conn | None:
            async with gate:
                try:
                    _, conn = await asyncio.wait_for(
                        loop.create_connection(lambda: _Conn(self), target.host, target.port, ssl=ssl_ctx), 10)
                    conn.transport.write(auth)
                    await asyncio.wait_for(conn.ready, 10)
                    return conn
                except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                    if len(self.stats.connect_errors) < 10:
                        self.stats.connect_errors.append(f"{type(exc).__name__}: {exc}")
                    return None

        conns = await asyncio.gather(*(one() for _ in range(self.cfg["connections"])))
        self.conns = [c for c in conns if c is not None]
        self.idle = deque(self.conns)
        self.stats.connections_opened = len(self.conns)

    async def run(self, t0: float) -> None:
        self.t0 = t0
        loop = asyncio.get_running_loop()
        self.finished = loop.create_future()
        sched = self.sched
        n = len(sched)
        reporter = asyncio.ensure_future(self._report())
        i = 0
        mono = time.monotonic
        tick = self.cfg.get("tick", 0.001)
        while i < n:
            now = mono() - t0
            while i < n and sched[i] <= now:
                if self.idle:
                    conn = self.idle.popleft()
                    self.dispatch_lag[i] = now - sched[i]
                    self.send(conn, i, now)
                else:
                    self.backlog.append(i)
                i += 1
            if i < n:
                # Never sleep below the loop's 1 ms timer resolution: shorter sleeps spin the CPU the server needs.
                await asyncio.sleep(max(tick, sched[i] - (mono() - t0)))
        if n and self.done < n:
            try:
                await asyncio.wait_for(asyncio.shield(self.finished), self.cfg["drain_timeout"])
            except asyncio.TimeoutError:
                pass
        # Whatever is still in flight after the drain timeout timed out; the backlog was never sent.
        for c in self.conns:
            if c.current >= 0:
                self.outcome[c.current] = TIMEOUT
                c.current = -1
        reporter.cancel()
        self.progress[self.idx] = self.done
        self.closing = True  # our own close is no lost connection
        for c in self.conns:
            if c.transport is not None:
                c.transport.close()

    async def _report(self) -> None:
        while True:
            self.progress[self.idx] = self.done
            await asyncio.sleep(0.2)


def _worker_main(idx: int, cfg: dict, sched: np.ndarray, pipe, progress) -> None:
    if cfg.get("uvloop", True):
        try:
            import uvloop  # optional: less loop overhead per request

            uvloop.install()
        except ImportError:
            pass
    proc = psutil.Process()

    async def main() -> None:
        w = _Worker(idx, cfg, sched, progress)
        await w.open()
        pipe.send(("ready", w.stats.connections_opened, w.stats.connect_errors))
        msg = await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        if msg[0] != "start":
            return
        cpu0 = sum(proc.cpu_times()[:2])
        wall0 = time.monotonic()
        await w.run(msg[1])
        w.stats.cpu_seconds = sum(proc.cpu_times()[:2]) - cpu0
        w.stats.wall_seconds = time.monotonic() - wall0
        pipe.send(("done", w.latency, w.service, w.dispatch_lag, w.ops, w.outcome, asdict(w.stats)))

    asyncio.run(main())


def run(target: Target, workload: Workload, stages: list[Stage], connections: int = 500, workers: int = 2,
        drain_timeout: float = 5.0, on_tick: Callable[[float, int, int], None] | None = None,
        on_start: Callable[[float, float], None] | None = None, tick: float = 0.5,
        use_uvloop: bool = True) -> LoadRun:
    """Open `connections` split over `workers` processes, then play the schedule. `on_start(t0 monotonic, wall
    time of offset 0)` runs once every connection is open; `on_tick(offset, done, total)` every `tick` s."""
    sched = schedule(stages)
    workers = max(1, min(workers, connections))
    ctx = mp.get_context("spawn")
    progress = ctx.Array("q", workers, lock=False)
    procs, pipes, shares = [], [], []
    for w in range(workers):
        share = connections // workers + (1 if w < connections % workers else 0)
        cfg = {"target": target, "workload": workload, "connections": share, "drain_timeout": drain_timeout,
               "uvloop": use_uvloop}
        parent, child = ctx.Pipe()
        # The password reaches the worker through the pipe (pickled arguments), never through argv.
        p = ctx.Process(target=_worker_main, args=(w, cfg, sched[w::workers], child, progress), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent)
        shares.append(sched[w::workers])
    try:
        for p in pipes:
            if not p.poll(120):
                raise RuntimeError("a load worker did not open its connections in 120 s")
            p.recv()
        # Start a little later so every worker is waiting when offset 0 comes.
        t0 = time.monotonic() + 0.2
        started_at = time.time() + 0.2
        if on_start:
            on_start(t0, started_at)
        for p in pipes:
            p.send(("start", t0))
        total = len(sched)
        end = sched[-1] if total else 0.0
        results = [None] * workers

        def collected() -> bool:
            for k, p in enumerate(pipes):
                if results[k] is None and p.poll(0):
                    results[k] = p.recv()
            if on_tick:
                on_tick(time.monotonic() - t0, int(sum(progress)), total)
            return all(r is not None for r in results)

        wait_until(collected, end + drain_timeout + 60, "the load workers to finish their schedule", interval=tick)
        duration = time.monotonic() - t0
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    n = total
    merged = {k: np.empty(n) for k in ("latency", "service", "dispatch_lag")}
    op = np.empty(n, dtype=np.int8)
    outcome = np.empty(n, dtype=np.int8)
    stats = []
    for w, res in enumerate(results):
        _, lat, svc, lag, ops, out, st = res
        sl = slice(w, None, workers)
        merged["latency"][sl] = lat
        merged["service"][sl] = svc
        merged["dispatch_lag"][sl] = lag
        op[sl] = ops
        outcome[sl] = out
        stats.append(WorkerStats(**st))
    return LoadRun(sched=sched, op=op, outcome=outcome, started_at=started_at, workers=stats, duration=duration,
                   **merged)

