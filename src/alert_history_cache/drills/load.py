"""Load drill: the 500-connection test of docs/requirements.md (its k6 script) as an open-loop load on the local pod.

One run: boot the pod from the rendered chart, warm the cache, play a constant arrival rate over N held
connections (loadgen.py) while a sampler polls the server as admin and forces a BGSAVE and an AOF rewrite in
the hold, capture every dashboard panel from Prometheus over the window, then anchor the figures with
redis-benchmark against the pod and against the same binary's stock defaults (capacity.py).

`compare_tls` runs that drill twice in one go, on the same engine: the release as given with TLS off, then with
`valkey.tls.enabled` (the local stack's CA; load, sampler and redis-benchmark all speak TLS), and reports the cost
of TLS as ratios TLS / plaintext (load_results.TlsCost).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import psutil
import redis

from ..promapi import Prometheus
from ..units import duration_seconds
from ..waiting import wait_until
from . import capacity, forks, limits, loadgen, panels
from .load_results import Cpu, ForkWindow, Generator, Latency, LoadFigures, RunFigures, TlsCost, Window
from .results import Criterion, DrillResult

# The requirements (docs/requirements.md): they always apply.
REQUIRED_P95_MS = 50.0
REQUIRED_ERROR_RATE = 0.01
# The project's own goals: they apply at the goal profile (the defaults) or when asked (--criteria goals).
GOAL_RATE = 10_000.0
GOAL_CONNECTIONS = 500
GOAL_P99_MS = 5.0
# Timer resolution of the workers' loop is 1 ms, so up to ~1.5 ms of dispatch lag is the generator working as
# designed; beyond this p99 it is falling behind its schedule.
GENERATOR_LAG_P99_MS = 2.5
GENERATOR_CPU_MAX = 0.85


@dataclass
class LoadOptions:
    engine: str = "valkey8"
    connections: int = GOAL_CONNECTIONS
    rate: float = GOAL_RATE
    duration: float = 30.0  # hold of the short profile
    profile: str = "short"
    workers: int = 2
    read_ratio: float = 0.9
    ttl: int = 3600
    keyspace: int = 100_000
    value_size: int = 2048
    zipf_s: float = 0.99
    cache_aside: bool = False
    prefill: int | None = None  # keys written before the run; None: the whole keyspace (a warm cache)
    forks: tuple[str, ...] = ("bgsave", "bgrewriteaof")
    capacity: bool = True
    enforce_limits: bool = False  # the server container's CPU and memory limits as cgroups (limits.py)
    stock: bool = True
    bench_requests: int = 200_000
    criteria: str = "auto"  # "requirements", "goals", or "auto": goals only at the goal profile (criteria_sets)
    scrape_interval: str = "5s"
    # "service": the client Service, as the application dials it (HAProxy in replication); "primary": the
    # primary's pod address, the same release without the HAProxy hop (what HAProxy adds to the latency).
    target: str = "service"
    values: dict = field(default_factory=dict)
    state_dir: str | None = None


# -- sampling the server during the run -------------------------------------------------------------------

def server_processes(pid: int | None) -> tuple[psutil.Process | None, list[psutil.Process]]:
    """The server process and its fork children (BGSAVE / AOF rewrite)."""
    if not pid:
        return None, []
    try:
        proc = psutil.Process(pid)
        return proc, proc.children()
    except psutil.NoSuchProcess:
        return None, []


def pss(proc: psutil.Process) -> int:
    try:
        return proc.memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


INFO_FIELDS = ("connected_clients", "blocked_clients", "used_memory", "used_memory_rss", "maxmemory",
               "rdb_bgsave_in_progress", "aof_rewrite_in_progress", "latest_fork_usec", "total_forks",
               "rejected_connections", "total_connections_received", "instantaneous_ops_per_sec",
               "keyspace_hits", "keyspace_misses", "evicted_keys", "expired_keys", "total_commands_processed",
               "mem_fragmentation_ratio", "aof_last_bgrewrite_status", "rdb_last_bgsave_status")


class Sampler(threading.Thread):
    """Polls INFO (and CLIENT LIST every few polls) as admin, the PSS of the server and its fork child, and
    runs timed actions (BGSAVE, BGREWRITEAOF) at given wall-clock times."""

    def __init__(self, make_admin: Callable[[], redis.Redis], server_pid: Callable[[], int | None],
                 interval: float = 0.25, client_list_every: int = 8, app_user: str = "default"):
        super().__init__(daemon=True, name="load-sampler")
        self.make_admin = make_admin
        self.server_pid = server_pid
        self.interval = interval
        self.client_list_every = client_list_every
        self.app_user = app_user
        self.samples: list[dict] = []
        self.actions: list[tuple[float, str]] = []  # (wall time, command)
        self.done_actions: list[dict] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def schedule(self, at: float, command: str) -> None:
        self.actions.append((at, command))
        self.actions.sort()

    def run(self) -> None:
        admin = self.make_admin()
        n = 0
        while not self._halt.is_set():
            t = time.time()
            while self.actions and self.actions[0][0] <= t:
                _, cmd = self.actions.pop(0)
                self._act(admin, cmd)
            try:
                self.samples.append(self._sample(admin, with_clients=n % self.client_list_every == 0))
            except (redis.RedisError, OSError) as exc:
                if len(self.errors) < 20:
                    self.errors.append(f"{time.time():.1f} {exc}")
                with contextlib.suppress(Exception):
                    admin.close()
                admin = self.make_admin()
            n += 1
            self._halt.wait(max(0.0, self.interval - (time.time() - t)))
        admin.close()

    def _act(self, admin: redis.Redis, cmd: str) -> None:
        rec = {"command": cmd, "at": time.time()}
        try:
            if cmd == "bgsave":
                rec["reply"] = str(admin.execute_command("BGSAVE", "SCHEDULE"))
            elif cmd == "bgrewriteaof":
                rec["reply"] = str(admin.execute_command("BGREWRITEAOF"))
            else:
                raise ValueError(cmd)
        except redis.RedisError as exc:
            rec["error"] = str(exc)
        rec["returned_at"] = time.time()
        self.done_actions.append(rec)

    def _sample(self, admin: redis.Redis, with_clients: bool) -> dict:
        t = time.time()
        info = admin.info("all")
        s = {"t": t, **{k: info.get(k) for k in INFO_FIELDS}}
        cpu = psutil.cpu_times()
        s["host_busy_cpu"] = sum(cpu) - cpu.idle - getattr(cpu, "iowait", 0.0)
        proc, children = server_processes(self.server_pid())
        if proc:
            with contextlib.suppress(psutil.NoSuchProcess):
                s["server_cpu"] = sum(proc.cpu_times()[:2])
            s["server_pss"] = pss(proc)
            s["child_pss"] = sum(pss(c) for c in children)
            s["server_rss"] = proc.memory_info().rss if proc.is_running() else 0
        if with_clients:
            clients = admin.client_list()
            s["app_clients"] = sum(1 for c in clients if c.get("user") == self.app_user)
        return s

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def prefill(app: redis.Redis, workload: loadgen.Workload, count: int, batch: int = 500) -> float:
    """Write `count` alerts (ids 0..count-1: the hottest keys first) as the application; returns seconds."""
    t = time.monotonic()
    payloads = workload.payloads()
    for start in range(0, count, batch):
        pipe = app.pipeline(transaction=False)
        for i in range(start, min(count, start + batch)):
            pipe.set(workload.key(i), payloads[i % len(payloads)], ex=workload.ttl or None)
        pipe.execute()
    return time.monotonic() - t


# -- analysis (pure: unit-tested without servers) ---------------------------------------------------------

def pct(values: np.ndarray, q: float) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if len(values) else None


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000.0, 3)


def windows_from_samples(samples: list[dict], started_at: float, actions: list[dict]) -> list[ForkWindow]:
    """Intervals (offsets from the run's start) during which a BGSAVE or AOF rewrite ran, with the fork time
    each one reported. A window opens at the first sample that shows its kind running, or at the drill's command
    that started it: the latest command of that kind not yet matched to a window. A rewrite asked for during a
    BGSAVE is only scheduled and starts when the save ends, possibly with no idle sample between the two, so a
    change of kind closes one window and opens the next."""
    out: list[dict] = []
    current = None
    last_fork = None
    unmatched = sorted((a for a in actions if "error" not in a), key=lambda a: a["at"])  # refused: started nothing

    def kind_of(sample: dict) -> str | None:
        if sample.get("rdb_bgsave_in_progress"):
            return "bgsave"
        if sample.get("aof_rewrite_in_progress"):
            return "aof-rewrite"
        return None

    def close(end: float, fork_usec) -> None:
        nonlocal current
        current["end"] = end
        current["fork_usec"] = fork_usec
        out.append(current)
        current = None

    for s in samples:
        kind = kind_of(s)
        off = s["t"] - started_at
        if current is not None and kind != current["kind"]:
            close(off, s.get("latest_fork_usec"))
        if kind and current is None:
            command = "bgsave" if kind == "bgsave" else "bgrewriteaof"
            action = next((a for a in reversed(unmatched) if a["command"] == command and a["at"] <= s["t"]), None)
            if action:
                unmatched.remove(action)
            current = {"kind": kind, "start": (action["at"] - started_at) if action else off, "end": off,
                       "triggered": action is not None}
        elif kind:
            current["end"] = off
        if s.get("total_forks") is not None:
            last_fork = s.get("latest_fork_usec")
    if current is not None:
        close(current["end"], last_fork)
    return [ForkWindow(**w) for w in out]


def in_windows(sched: np.ndarray, windows: list[ForkWindow], before: float = 0.1, after: float = 0.5) -> np.ndarray:
    mask = np.zeros(len(sched), dtype=bool)
    for w in windows:
        mask |= (sched >= w.start - before) & (sched <= w.end + after)
    return mask


def cpu_figures(samples: list[dict], generator_cores: float) -> Cpu:
    """Cores used over the samples' span: the whole host, the server, the generator, and everything else (other
    work on this machine: the noise under the figures)."""
    with_cpu = [s for s in samples if "host_busy_cpu" in s and "server_cpu" in s]
    if len(with_cpu) < 2:
        return Cpu()
    a, b = with_cpu[0], with_cpu[-1]
    dt = b["t"] - a["t"]
    host = (b["host_busy_cpu"] - a["host_busy_cpu"]) / dt
    server = (b["server_cpu"] - a["server_cpu"]) / dt
    return Cpu(host_cores_busy=round(host, 3), server_cores=round(server, 3), generator_cores=round(generator_cores, 3),
               other_cores=round(max(0.0, host - server - generator_cores), 3), host_cores=psutil.cpu_count())


def latency_figures(run: loadgen.LoadRun, mask: np.ndarray) -> Latency:
    ok = run.ok & mask
    lat = run.latency[ok]
    return Latency(requests=int(mask.sum()), ok=int(ok.sum()), p50_ms=ms(pct(lat, 50)), p95_ms=ms(pct(lat, 95)),
                   p99_ms=ms(pct(lat, 99)), p999_ms=ms(pct(lat, 99.9)),
                   max_ms=ms(float(lat.max())) if len(lat) else None,
                   mean_ms=ms(float(lat.mean())) if len(lat) else None)


def analyze(run: loadgen.LoadRun, stages: list[loadgen.Stage], samples: list[dict], actions: list[dict],
            baseline: dict) -> tuple[RunFigures, dict]:
    """Figures and plot series of one load run."""
    sched = run.sched
    n = len(sched)
    hold_start = stages[0].duration
    hold_end = hold_start + stages[1].duration if len(stages) > 1 else sched[-1]
    hold = (sched >= hold_start) & (sched < hold_end)
    windows = windows_from_samples(samples, run.started_at, actions)
    forked = in_windows(sched, windows)
    outcome = run.outcome
    errors = int(np.isin(outcome, [loadgen.ERROR, loadgen.TIMEOUT, loadgen.NOT_SENT]).sum())
    hits, misses = int((outcome == loadgen.HIT).sum()), int((outcome == loadgen.MISS).sum())
    replies_at = sched + np.nan_to_num(run.latency, nan=np.inf)
    hold_secs = hold_end - hold_start
    lag = run.dispatch_lag
    hold_samples = [s for s in samples if hold_start <= s["t"] - run.started_at < hold_end]
    app_clients = [s["app_clients"] for s in hold_samples if "app_clients" in s]
    last = samples[-1] if samples else {}
    worker_cpu = [w.cpu_seconds / w.wall_seconds if w.wall_seconds else 0.0 for w in run.workers]
    figures = {
        "scheduled": n,
        "offered_rate": round(float(hold.sum()) / hold_secs, 1) if hold_secs else None,
        # replies that arrived inside the hold window, per second: what the server delivered
        "achieved_rate": round(float(((replies_at >= hold_start) & (replies_at < hold_end) & run.ok).sum())
                               / hold_secs, 1) if hold_secs else None,
        "errors": errors,
        "error_rate": errors / n if n else 0.0,
        "outcomes": {name: int((outcome == code).sum()) for code, name in loadgen.OUTCOMES.items()},
        "error_samples": sorted({e for w in run.workers for e in w.error_samples})[:10],
        "hit_rate": hits / (hits + misses) if hits + misses else None,
        "latency_all": latency_figures(run, np.ones(n, dtype=bool)),
        "latency_hold": latency_figures(run, hold),
        "latency_steady": latency_figures(run, hold & ~forked),
        "latency_fork": latency_figures(run, hold & forked),
        "service_p99_ms": ms(pct(run.service[run.ok], 99)),
        "fork_windows": windows,
        "fork_usec": [w.fork_usec for w in windows],
        "latest_fork_usec": last.get("latest_fork_usec"),
        "connections_requested": sum(w.connections_wanted for w in run.workers),
        "connections_opened": sum(w.connections_opened for w in run.workers),
        "connections_lost": sum(w.connections_lost for w in run.workers),
        "connect_errors": [e for w in run.workers for e in w.connect_errors][:10],
        "connections_held_min": min(app_clients) if app_clients else None,
        "connected_clients_max": max((s.get("connected_clients") or 0 for s in samples), default=None),
        "rejected_connections": (last.get("rejected_connections") or 0) - (baseline.get("rejected_connections") or 0),
        "server_hits": (last.get("keyspace_hits") or 0) - (baseline.get("keyspace_hits") or 0),
        "server_misses": (last.get("keyspace_misses") or 0) - (baseline.get("keyspace_misses") or 0),
        "evicted_keys": (last.get("evicted_keys") or 0) - (baseline.get("evicted_keys") or 0),
        "used_memory_max": max((s.get("used_memory") or 0 for s in samples), default=None),
        "used_memory_rss_max": max((s.get("used_memory_rss") or 0 for s in samples), default=None),
        "pss_peak_server_plus_child": max((s.get("server_pss", 0) + s.get("child_pss", 0) for s in samples),
                                          default=None),
        "maxmemory": last.get("maxmemory"),
    }
    generator = Generator(
        workers=len(run.workers),
        dispatch_lag_p50_ms=ms(pct(lag, 50)),
        dispatch_lag_p99_ms=ms(pct(lag, 99)),
        dispatch_lag_max_ms=ms(float(np.nanmax(lag))) if np.any(~np.isnan(lag)) else None,
        dispatch_lag_p99_steady_ms=ms(pct(lag[hold & ~forked], 99)),
        dispatch_lag_p99_fork_ms=ms(pct(lag[hold & forked], 99)),
        queued_for_connection=int(np.isnan(lag).sum() - (outcome == loadgen.NOT_SENT).sum()),
        worker_cpu=[round(c, 3) for c in worker_cpu])
    steady_lag = generator.dispatch_lag_p99_steady_ms or 0.0
    if steady_lag > GENERATOR_LAG_P99_MS:
        generator.why.append(f"dispatch lag p99 {steady_lag:.2f} ms > {GENERATOR_LAG_P99_MS} ms")
    if worker_cpu and max(worker_cpu) > GENERATOR_CPU_MAX:
        generator.why.append(f"a worker used {max(worker_cpu):.0%} of a core")
    generator.fell_behind = bool(generator.why)
    fork_lag = generator.dispatch_lag_p99_fork_ms
    generator.fell_behind_during_fork = bool(fork_lag and fork_lag > GENERATOR_LAG_P99_MS)
    result = RunFigures(
        **figures, generator=generator,
        cpu=cpu_figures(hold_samples, sum(w.cpu_seconds for w in run.workers) / (run.duration or 1)),
        cache_aside_fills=sum(w.fills for w in run.workers),
        cache_aside_fill_errors=sum(w.fill_errors for w in run.workers))
    return result, series(run, samples, windows)


def series(run: loadgen.LoadRun, samples: list[dict], windows: list[ForkWindow]) -> dict:
    """Plot data (see report.py): CDF, histogram, per-second rate and latency, memory, connections."""
    ok = run.ok
    lat_ms = run.latency[ok] * 1000.0
    out: dict = {}
    spans = [{"start": w.start, "end": w.end, "label": w.kind} for w in windows]
    if len(lat_ms):
        qs = np.concatenate([np.linspace(0, 99, 100), np.linspace(99, 99.99, 40)[1:], [100.0]])
        out["latency_cdf"] = {"kind": "line", "title": "Latency CDF (from scheduled start)", "x_label": "latency (ms)",
                              "y_label": "fraction of requests", "log_x": True,
                              "x": [round(float(v), 4) for v in np.percentile(lat_ms, qs)],
                              "lines": {"all requests": [round(q / 100, 6) for q in qs]}}
        lo = max(min(float(lat_ms.min()), 0.05), 0.01)
        edges = np.logspace(np.log10(lo), np.log10(max(float(lat_ms.max()), lo * 10)), 60)
        counts, _ = np.histogram(lat_ms, bins=edges)
        out["latency_histogram"] = {"kind": "bar", "title": "Latency histogram", "x_label": "latency (ms)",
                                    "y_label": "requests", "log_x": True, "log_y": True,
                                    "edges": [round(float(e), 5) for e in edges], "counts": counts.tolist()}
    secs = int(np.ceil(run.sched[-1])) + 1 if len(run.sched) else 0
    if secs:
        b = np.floor(run.sched).astype(int)
        replies = run.sched + np.nan_to_num(run.latency, nan=np.inf)
        rb = np.floor(np.where(np.isfinite(replies), replies, -1)).astype(int)
        offered = np.bincount(b, minlength=secs)[:secs]
        done = np.bincount(rb[(rb >= 0) & ok], minlength=secs)[:secs]
        err = np.bincount(b[~ok], minlength=secs)[:secs]
        x = list(range(secs))
        out["rate"] = {"kind": "line", "title": "Request rate", "x_label": "seconds", "y_label": "requests/s",
                       "x": x, "lines": {"scheduled": offered.tolist(), "replied (ok)": done.tolist(),
                                         "errors": err.tolist()}, "spans": spans}
        p50, p99, mx = [], [], []
        for s in range(secs):
            v = run.latency[(b == s) & ok] * 1000.0
            p50.append(round(float(np.percentile(v, 50)), 3) if len(v) else None)
            p99.append(round(float(np.percentile(v, 99)), 3) if len(v) else None)
            mx.append(round(float(v.max()), 3) if len(v) else None)
        out["latency_over_time"] = {"kind": "line", "title": "Latency per second (by scheduled start)",
                                    "x_label": "seconds", "y_label": "ms", "log_y": True, "x": x,
                                    "lines": {"p50": p50, "p99": p99, "max": mx}, "spans": spans}
    if samples:
        t0 = run.started_at
        xs = [round(s["t"] - t0, 2) for s in samples]
        mib = 1024 * 1024
        out["memory"] = {"kind": "line", "title": "Server memory (BGSAVE and AOF rewrite shaded)",
                         "x_label": "seconds", "y_label": "MiB", "x": xs, "spans": spans,
                         "lines": {"used_memory": [round((s.get("used_memory") or 0) / mib, 1) for s in samples],
                                   "RSS": [round((s.get("used_memory_rss") or 0) / mib, 1) for s in samples],
                                   "PSS server + fork child": [
                                       round((s.get("server_pss", 0) + s.get("child_pss", 0)) / mib, 1)
                                       for s in samples]}}
        cl = [(round(s["t"] - t0, 2), s["app_clients"]) for s in samples if "app_clients" in s]
        out["connections"] = {"kind": "line", "title": "Connections", "x_label": "seconds", "y_label": "clients",
                              "x": xs, "spans": spans,
                              "lines": {"connected_clients": [s.get("connected_clients") for s in samples]}}
        if cl:
            out["connections"]["extra"] = {"application clients (CLIENT LIST)": {"x": [c[0] for c in cl],
                                                                                 "y": [c[1] for c in cl]}}
    return out


# -- the drill --------------------------------------------------------------------------------------------

def _drill_values(opts: LoadOptions) -> dict:
    from ..chart import deep_merge

    # A finer scrape than the default 30 s, so a 30-s hold has points on every dashboard panel.
    sm = {"interval": opts.scrape_interval, "scrapeTimeout": opts.scrape_interval}
    return deep_merge({"valkey": {"exporter": {"serviceMonitor": sm}}}, opts.values)


@contextlib.contextmanager
def enforced(opts: LoadOptions, stack):
    """The rendered server container's CPU and memory limits as cgroups around the server (limits.py)."""
    if not opts.enforce_limits:
        yield None
        return
    cpu, memory = limits.server_limits(stack)
    with limits.ContainerLimits(f"ahc-load-{os.getpid()}", cpu, memory) as cg:
        cg.add(stack.server_pid)
        yield cg


def run(opts: LoadOptions, progress: Callable[[str, float, float], None] | None = None) -> DrillResult:
    """progress(phase, done, total) for a progress bar."""
    from ..stack import LocalStack

    progress = progress or (lambda *a: None)
    result = DrillResult(drill="load", engine=opts.engine)
    workload = loadgen.Workload(keyspace=opts.keyspace, zipf_s=opts.zipf_s, read_ratio=opts.read_ratio, ttl=opts.ttl,
                                value_size=opts.value_size, cache_aside=opts.cache_aside)
    stages = loadgen.profile(opts.profile, opts.rate, opts.duration)
    options = {k: v for k, v in asdict(opts).items() if k not in ("values",)}
    state_ctx = contextlib.nullcontext(opts.state_dir) if opts.state_dir else tempfile.TemporaryDirectory(
        prefix="ahc-load-")
    with state_ctx as state_dir, LocalStack(values=_drill_values(opts), engine=opts.engine,
                                            state_dir=state_dir) as stack, enforced(opts, stack) as cgroup:
        result.versions = {k: str(v) for k, v in stack.versions().items() if v}
        result.versions["redis-benchmark"] = capacity.benchmark_version() if opts.capacity else None
        # The load goes to the client Service: the server itself in standalone, HAProxy in replication.
        options["architecture"] = stack.full_values["valkey"]["architecture"]
        if opts.target == "primary":
            host = stack.pod_ip
            options["target"] = f"pod {stack.pod.name} {host}:{stack.port}"
        else:
            host = stack.service_host
            options["target"] = f"Service {stack.client_service} {host}:{stack.port}"
        options["tls"] = stack.tls_enabled
        admin = stack.client("admin")
        if opts.target == "primary" and admin.info("replication")["role"] != "master":
            raise RuntimeError(f"--target primary: {stack.pod.name} is not the primary")
        app = stack.client("default", decode_responses=False)
        count = opts.keyspace if opts.prefill is None else opts.prefill
        progress("prefill", 0, 1)
        prefill_seconds = round(prefill(app, workload, count), 2) if count else 0.0
        app.close()
        forks.wait_idle(admin, 120, quiet=1.5)  # the warm-up burst starts a save or rewrite a little later
        baseline = {k: v for k, v in admin.info("all").items() if k in INFO_FIELDS}

        sampler = Sampler(lambda: stack.client("admin"), lambda: stack.server_pid)
        target = loadgen.Target(host, stack.port, password=stack.user_password("default"),
                                tls=stack.tls_files)
        hold_start = stages[0].duration
        hold = stages[1].duration if len(stages) > 1 else 0.0

        def on_start(t0_mono: float, started_at: float) -> None:
            # Forks in the hold: BGSAVE at 40 %, the AOF rewrite at 70 %.
            for frac, cmd in zip((0.4, 0.7), opts.forks):
                sampler.schedule(started_at + hold_start + frac * hold, cmd)

        sampler.start()
        total = float(sum(s.duration for s in stages))
        try:
            run_ = loadgen.run(target, workload, stages, connections=opts.connections, workers=opts.workers,
                               on_start=on_start,
                               on_tick=lambda off, done, n: progress("load", min(off, total), total))
            replied = time.time()
            with contextlib.suppress(TimeoutError):  # a sampler that cannot reach the server says so in its errors
                wait_until(lambda: sampler.samples and sampler.samples[-1]["t"] > replied, 10,
                           "a server sample after the last reply", interval=0.05)
        finally:
            sampler.stop()
        run_figures, plots = analyze(run_, stages, sampler.samples, sampler.done_actions, baseline)
        figures = result.figures = LoadFigures.of_run(
            run_figures, options=options, prefill_keys=count, prefill_seconds=prefill_seconds,
            dataset_bytes_before=baseline.get("used_memory"), sampler_errors=sampler.errors,
            fork_actions=sampler.done_actions, window=Window(run_.started_at, run_.started_at + run_.duration),
            limits_enforced=cgroup.stats() if cgroup else None)
        result.series.update(plots)

        if stack.prometheus_url:
            progress("prometheus", 0, 1)
            end = time.time()
            Prometheus(stack.prometheus_url).wait_scraped_since(
                stack.pod.name, end, timeout=2 * duration_seconds(opts.scrape_interval) + 10)
            start = run_.started_at - 10
            result.series.update(panels.capture(stack.prometheus_url, start, end,
                                                namespace=stack.namespace, pod=stack.pod.name,
                                                scrape_interval=opts.scrape_interval, origin=run_.started_at))

        if opts.capacity:
            progress("capacity", 0, 1)
            net = getattr(stack.pod, "net", None)
            cap = capacity.anchor(admin, stack.pod_ip, stack.port,
                                  stock_binary=stack.engine.server if opts.stock else None,
                                  netns=net.netns if net else None, connections=opts.connections,
                                  value_size=opts.value_size, keyspace=opts.keyspace,
                                  requests=opts.bench_requests, read_ratio=opts.read_ratio,
                                  tls=stack.tls_files)
            if cgroup:
                cap.production_limits = cgroup.stats()
            figures.capacity = cap
            figures.rate_vs_capacity = (figures.achieved_rate or 0.0) / cap.production_mix_rps
        admin.close()
    judge(result, opts)
    return result


def _with_tls(opts: LoadOptions, enabled: bool, sub: str) -> LoadOptions:
    from ..chart import deep_merge

    return dataclasses.replace(
        opts, values=deep_merge(opts.values, {"valkey": {"tls": {"enabled": enabled}}}),
        state_dir=os.path.join(opts.state_dir, sub) if opts.state_dir else None,
        stock=opts.stock and not enabled)  # the stock server has no TLS: its anchor is the plaintext run's


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def tls_cost(plain: LoadFigures, tls: LoadFigures) -> TlsCost:
    """TLS / plaintext from the two runs' figures (pure: unit-tested without servers)."""
    p_mix = plain.capacity.production_mix_rps if plain.capacity else None
    t_mix = tls.capacity.production_mix_rps if tls.capacity else None
    p99p, p99t = plain.latency_steady.p99_ms, tls.latency_steady.p99_ms
    return TlsCost(rate=plain.options.get("rate", 0.0), connections=plain.options.get("connections", 0),
                   plaintext_mix_rps=p_mix, tls_mix_rps=t_mix, capacity_ratio=_ratio(t_mix, p_mix),
                   plaintext_p99_ms=p99p, tls_p99_ms=p99t, p99_ratio=_ratio(p99t, p99p),
                   plaintext_achieved_rate=plain.achieved_rate, tls_achieved_rate=tls.achieved_rate,
                   tls_generator_fell_behind=tls.generator.fell_behind, tls_run=tls.to_dict())


def compare_tls(opts: LoadOptions, progress: Callable[[str, float, float], None] | None = None) -> DrillResult:
    """The plaintext release, then the TLS release, under the same load; the plaintext run's result carries the
    TLS run's figures and the ratios (figures.tls_cost), and every criterion of both runs (the TLS run's prefixed
    "TLS: "). No goal is set for the ratios: they are printed as measured."""
    from .. import engines

    if not engines.get(opts.engine).tls:
        raise ValueError(f"--compare-tls: the {opts.engine} engine's server is built without TLS (no OpenSSL in "
                         f"its wheel); TLS runs on the redis7 engine: --engine redis7")
    progress = progress or (lambda *a: None)
    plain = run(_with_tls(opts, False, "plaintext"), lambda phase, d, n: progress(f"plaintext {phase}", d, n))
    tls = run(_with_tls(opts, True, "tls"), lambda phase, d, n: progress(f"TLS {phase}", d, n))
    plain.drill = "load"
    plain.figures.tls_cost = tls_cost(plain.figures, tls.figures)
    plain.criteria += [Criterion(**{**dataclasses.asdict(c), "name": f"TLS: {c.name}"}) for c in tls.criteria]
    return plain


CRITERIA_ALIASES = {"spec": "requirements", "all": "goals"}  # the names of earlier releases


def criteria_sets(opts: LoadOptions) -> list[str]:
    """The requirements always; the goals at the goal profile (GOAL_RATE over GOAL_CONNECTIONS) or when asked."""
    asked = CRITERIA_ALIASES.get(opts.criteria, opts.criteria)
    if asked not in ("auto", "requirements", "goals"):
        raise ValueError(f"unknown criteria set {opts.criteria!r} (auto, requirements or goals)")
    at_goal = opts.rate == GOAL_RATE and opts.connections == GOAL_CONNECTIONS
    return ["requirements", "goals"] if asked == "goals" or (asked == "auto" and at_goal) else ["requirements"]


def judge(result: DrillResult, opts: LoadOptions) -> None:
    """The criteria of the sets that apply (criteria_sets), then whether the generator's own delay matters."""
    f: RunFigures = result.figures
    gen = f.generator
    result.criteria_sets = criteria_sets(opts)
    note = " (generator fell behind: these latencies include its own delay)" if gen.fell_behind else ""
    result.check("requirements: p95 latency", f"< {REQUIRED_P95_MS:.0f} ms", f"{f.latency_all.p95_ms} ms{note}",
                 (f.latency_all.p95_ms or 1e9) < REQUIRED_P95_MS)
    result.check("requirements: errors", f"< {REQUIRED_ERROR_RATE:.0%}",
                 f"{f.error_rate:.4%} ({f.errors} of {f.scheduled})", f.error_rate < REQUIRED_ERROR_RATE)
    held = f.connections_held_min
    result.check("requirements: connections held", f"{opts.connections} for the whole hold",
                 f"min {held} (opened {f.connections_opened}, lost {f.connections_lost})",
                 held is not None and held >= opts.connections and f.connections_lost == 0)
    result.check("requirements: rejected connections", "0", f.rejected_connections, f.rejected_connections == 0)
    lim = getattr(f, "limits_enforced", None)
    if lim:
        result.check("server not OOM-killed (container limits enforced)", "0 OOM kills",
                     f"{lim.get('oom_kills')} (CPU throttled in {lim.get('nr_throttled')} of {lim.get('nr_periods')} "
                     f"periods)", lim.get("oom_kills") == 0)
    if "goals" in result.criteria_sets:
        result.check("goals: rate", f">= {GOAL_RATE:,.0f} req/s over {opts.connections} connections",
                     f"{f.achieved_rate} req/s", (f.achieved_rate or 0) >= 0.99 * GOAL_RATE)
        result.check("goals: p99 latency (steady hold)", f"< {GOAL_P99_MS:.0f} ms",
                     f"{f.latency_steady.p99_ms} ms{note}", (f.latency_steady.p99_ms or 1e9) < GOAL_P99_MS)
        if opts.forks:
            fork = f.latency_fork
            result.check("goals: p99 latency during BGSAVE/AOF rewrite", f"< {GOAL_P99_MS:.0f} ms",
                         f"{fork.p99_ms} ms (max {fork.max_ms} ms, fork {f.fork_usec} us){note}",
                         fork.requests > 0 and (fork.p99_ms or 1e9) < GOAL_P99_MS)
    # Latency counts from each scheduled start, so a late generator only adds to it: bounds met in spite of its
    # delay still hold for the server. Bounds missed while it was late may be its own fault: that fails the run.
    latency_met = all(c.passed for c in result.criteria if "latency" in c.name)
    measured = "; ".join(gen.why) or f"lag p99 {gen.dispatch_lag_p99_steady_ms} ms, " \
                                     f"CPU {max(gen.worker_cpu, default=0):.0%}"
    if gen.fell_behind and latency_met:
        measured += " (every latency bound met with its delay included)"
    result.check("generator kept its schedule", f"dispatch lag p99 <= {GENERATOR_LAG_P99_MS} ms and worker CPU <= "
                 f"{GENERATOR_CPU_MAX:.0%}, or every latency bound met in spite of its delay", measured,
                 not gen.fell_behind or latency_met)
