"""Capacity: redis-benchmark against the pod and the same binary with its stock defaults (the load drill's
anchor), and the HA comparison (`drill capacity`): the client Service (HAProxy) against the primary's own
address, and a primary with replicas against a standalone server, measured in one run.

redis-benchmark (Redis 7.0, Debian redis-tools) has no REDISCLI_AUTH support: a password can only reach it
through `-a` or `-u`, that is through its argv, readable by anyone in /proc/<pid>/cmdline. So the drill never
hands it a real password: as admin it creates a throwaway ACL user with `nopass`, allowed only GET and SET on the
benchmark's own keys (`~key:*`, the names redis-benchmark uses with -r), runs the benchmark as that user
(`--user NAME -a x`: any password is accepted for a nopass user, so `x` is no secret), and deletes the user
afterwards. The user exists only on the drill's own local pod, for the benchmark's seconds.

Stock defaults: the engine's server binary started with no config file, on another port inside the pod's
network namespace, so the benchmark crosses the same veth as against the pod. The only argument besides the
port is `--protected-mode no` (stock protected mode refuses every non-loopback client when no password is set);
it changes who may connect, not how fast the server serves.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import port_for
import psutil
import redis
from mirakuru import TCPExecutor

from ..waiting import wait_until
from . import forks, limits
from .load_results import OPTIONAL, Bench, Capacity, Figures
from .results import DrillResult

BENCH_KEY_PATTERN = "key:*"


class CapacityError(RuntimeError):
    pass


def redis_benchmark() -> str:
    path = shutil.which("redis-benchmark")
    if not path:
        raise CapacityError("redis-benchmark is not installed: install it with `apt-get install redis-tools`")
    return path


def benchmark_version() -> str:
    out = subprocess.run([redis_benchmark(), "--version"], capture_output=True, text=True).stdout.strip()
    return out.split()[-1] if out else "?"  # "redis-benchmark 7.0.15"



def parse_csv(text: str) -> dict[str, Bench]:
    """redis-benchmark 7 --csv: "test","rps","avg_latency_ms","min_latency_ms","p50..","p95..","p99..","max.."."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0] != "test"]
    out = {}
    for r in rows:
        if len(r) < 8:
            continue
        out[r[0]] = Bench(r[0], *(float(x) for x in r[1:8]))
    if not out:
        raise CapacityError(f"redis-benchmark printed no figures:\n{text[-2000:]}")
    return out


@dataclass
class BenchRun:
    """One redis-benchmark run: its figures, wall time and its own CPU time (user + system, from wait4)."""
    figures: dict[str, Bench]
    seconds: float
    cpu_seconds: float


def benchmark(host: str, port: int, *, connections: int, value_size: int, keyspace: int, requests: int,
              tests: str = "set,get", user: str | None = None, threads: int | None = None,
              timeout: float = 600, tls=None) -> BenchRun:
    """tls: credentials.TlsFiles for a TLS-only server (`--tls --cacert`, and the client pair if any)."""
    argv = [redis_benchmark(), "-h", host, "-p", str(port), "-c", str(connections), "-n", str(requests),
            "-d", str(value_size), "-r", str(keyspace), "-t", tests, "--csv"]
    if tls is not None:
        argv += tls.cli_args()
    if user:
        argv += ["--user", user, "-a", "x"]  # a nopass user: the password is ignored, so none is revealed
    if threads:
        argv += ["--threads", str(threads)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        # wait4 rather than wait: the rusage of this child alone (the toolkit's own exec probes also end in
        # RUSAGE_CHILDREN), so the benchmark's CPU is not mixed with anything else.
        try:
            _, status, usage = wait_until(lambda: (r := os.wait4(proc.pid, os.WNOHANG))[0] and r, timeout,
                                          f"redis-benchmark against {host}:{port}", interval=0.05)
        except TimeoutError:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise CapacityError(f"redis-benchmark against {host}:{port} ran longer than {timeout:g} s") from None
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise CapacityError(f"redis-benchmark exited {proc.returncode}: {stderr[-2000:]}")
    return BenchRun(parse_csv(stdout), seconds, usage.ru_utime + usage.ru_stime)


def run_benchmark(host: str, port: int, **kwargs) -> dict[str, Bench]:
    """benchmark()'s figures only (see its keyword arguments)."""
    return benchmark(host, port, **kwargs).figures


class BenchUser:
    """A throwaway nopass ACL user limited to GET/SET on the benchmark's keys; deleted on exit."""

    def __init__(self, admin: redis.Redis):
        self.admin = admin
        self.name = f"bench-{secrets.token_hex(4)}"

    def __enter__(self) -> str:
        self.admin.execute_command("ACL", "SETUSER", self.name, "reset", "on", "nopass", f"~{BENCH_KEY_PATTERN}",
                                   "resetchannels", "-@all", "+get", "+set", "+ping")
        return self.name

    def __exit__(self, *exc) -> None:
        try:
            self.admin.execute_command("ACL", "DELUSER", self.name)
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            # The server died (or restarted and is loading): the user lived in its memory only, not in the ACL
            # file, so it is gone with it.
            pass


class StockServer:
    """The engine's server binary with no config file, in the pod's network namespace (see module doc)."""

    def __init__(self, server_binary: str | Path, netns: str | None, host: str):
        self.binary = str(server_binary)
        self.netns = netns
        self.host = host
        self.port = port_for.select_random()
        self.dir = tempfile.mkdtemp(prefix="ahc-stock-")
        self.executor: TCPExecutor | None = None

    def __enter__(self) -> "StockServer":
        cmd = [self.binary, "--port", str(self.port), "--protected-mode", "no"]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        # cwd: the stock `dir` is ./, where its own save rules write dump.rdb.
        self.log = open(Path(self.dir) / "server.log", "wb")
        self.executor = TCPExecutor(cmd, host=self.host, port=self.port, timeout=30, cwd=self.dir,
                                    stdout=self.log, stderr=subprocess.STDOUT)
        self.executor.start()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=30)

    def __exit__(self, *exc) -> None:
        if self.executor:
            self.executor.stop()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def mix_rps(figures: dict[str, Bench], read_ratio: float) -> float:
    """Rate of a GET/SET mix from the separate GET and SET maxima (time per request adds up)."""
    get, set_ = figures["GET"].rps, figures["SET"].rps
    return 1.0 / (read_ratio / get + (1 - read_ratio) / set_)


def anchor(admin: redis.Redis, host: str, port: int, *, stock_binary: str | Path | None, netns: str | None,
           connections: int, value_size: int, keyspace: int, requests: int, read_ratio: float,
           threads: int | None = None, tls=None) -> Capacity:
    """Benchmark the pod (production config) and, when stock_binary is given, the stock server. Both start
    empty: the pod is flushed before (its data is the load drill's, already measured) and after."""
    admin.flushall()
    with BenchUser(admin) as user:
        t = time.time()
        prod = run_benchmark(host, port, connections=connections, value_size=value_size, keyspace=keyspace,
                             requests=requests, user=user, threads=threads, tls=tls)
        window = [t, time.time()]
    admin.flushall()
    out = Capacity(redis_benchmark=benchmark_version(), connections=connections, value_size=value_size,
                   keyspace=keyspace, requests=requests, threads=threads or 1,
                   auth="throwaway nopass ACL user limited to ~key:* GET/SET, deleted afterwards",
                   production_window=window, production=prod, production_mix_rps=mix_rps(prod, read_ratio))
    if stock_binary:
        with StockServer(stock_binary, netns, host) as stock:
            out.stock = run_benchmark(host, stock.port, connections=connections, value_size=value_size,
                                      keyspace=keyspace, requests=requests, threads=threads)
        out.stock_mix_rps = mix_rps(out.stock, read_ratio)
        out.production_vs_stock = out.production_mix_rps / out.stock_mix_rps
    return out


# -- the HA comparison (`drill capacity`) ------------------------------------------------------------------

# The project's HA performance goals (docs/performance.md, "HA: HAProxy and replication"): the client Service
# (HAProxy) keeps at least 0.8x of the primary's direct capacity, and a primary with replicas keeps at least 90 %
# of a standalone server's.
HAPROXY_VS_DIRECT_GOAL = 0.8
REPLICATION_COST_GOAL = 0.10

# What one round benchmarks, each path in turn (the order rotates from round to round):
PATHS = {
    "standalone": "a standalone release's server, at its pod address",
    "primary": "the replication release's primary, at its pod address (no HAProxy)",
    "haproxy-pod": "one HAProxy pod at its own address (HAProxy without the Service's DNAT)",
    "service": "the replication release's client Service ClusterIP: DNAT to an HAProxy pod, then the primary "
               "(the application's path)",
}


@dataclass
class PathRun(Figures):
    """One path benchmarked once: the figures, the mix rate, and the CPU cores each group of processes used."""
    path: str
    round: int
    target: str
    benches: dict[str, Bench]
    mix_rps: float | None  # None: the benchmark failed (`error`)
    seconds: float
    cores: dict[str, float]
    # HAProxy's check events during the run (a server or a Sentinel's vote marked DOWN or UP, with the reason):
    # under load a check that times out marks the primary down, and HAProxy then closes every client session.
    haproxy_events: list[str] = field(default_factory=list)
    # CPU time per request (both tests' requests) of each group; it does not depend on how much of the machine
    # the run got, so it shows what a path costs where the rates only show who won the cores.
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    error: str | None = field(default=None, metadata=OPTIONAL)
    replicas_connected: int | None = field(default=None, metadata=OPTIONAL)  # after the run (replication paths)
    full_syncs: int | None = field(default=None, metadata=OPTIONAL)  # full resyncs the primary served during it
    # --enforce-limits: seconds each container's cgroup spent throttled by its CPU quota during the run (the ones
    # above 0): the container that sets the run's capacity, when it is not the machine
    throttled_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class HaCapacity(Figures):
    """The HA comparison: every run, the median mix rate per path, and the ratios the goals are about."""
    redis_benchmark: str
    connections: int
    value_size: int
    keyspace: int
    requests: int
    threads: int
    read_ratio: float
    rounds: int
    replicas: int
    haproxy_pods: int
    auth: str
    paths: dict[str, str]
    runs: list[PathRun]
    mix_rps: dict[str, float]  # median over the rounds, per path
    haproxy_vs_direct: float | None  # service / primary
    haproxy_pod_vs_direct: float | None  # haproxy-pod / primary: the same without the DNAT hop
    replication_vs_standalone: float | None  # primary / standalone
    replication_cost: float | None  # 1 - replication_vs_standalone
    round_ratios: dict[str, list[float]]  # the same ratios within each round (their spread is the noise)
    cores: dict[str, dict[str, float]]  # per path: median cores per process group over the rounds
    # per path: median CPU microseconds per request of the chain the requests cross (the benchmark, the servers,
    # HAProxy; not the sidecars, the toolkit or other work)
    chain_cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    full_syncs: int = 0
    replicas_connected_min: int | None = None
    failed_runs: list[str] = field(default_factory=list)  # "<path> round <n>: <error>"
    # --enforce-limits: the CPU millicores enforced per container ("<release> <pod>/<container>"), else empty
    limits_enforced: dict[str, int | None] = field(default_factory=dict)


def ratios(mix: dict[str, float]) -> dict[str, float | None]:
    """The goals' ratios from mix rates per path (a path not measured gives None)."""
    def over(a: str, b: str) -> float | None:
        return mix[a] / mix[b] if mix.get(a) and mix.get(b) else None

    rep = over("primary", "standalone")
    return {"haproxy_vs_direct": over("service", "primary"), "haproxy_pod_vs_direct": over("haproxy-pod", "primary"),
            "replication_vs_standalone": rep, "replication_cost": None if rep is None else 1.0 - rep}


def summarize(runs: list[PathRun]) -> dict:
    """Medians per path over the rounds, the ratios of those medians, each round's own ratios, and the median CPU
    cores per process group per path (pure: unit-tested)."""
    by_path: dict[str, list[PathRun]] = {}
    runs = [r for r in runs if r.mix_rps is not None]  # a failed benchmark has no figure
    for r in runs:
        by_path.setdefault(r.path, []).append(r)
    mix = {p: statistics.median(r.mix_rps for r in rs) for p, rs in by_path.items()}
    per_round: dict[str, list[float]] = {}
    for n in sorted({r.round for r in runs}):
        for k, v in ratios({r.path: r.mix_rps for r in runs if r.round == n}).items():
            if v is not None:
                per_round.setdefault(k, []).append(round(v, 4))
    cores = {p: {g: round(statistics.median(r.cores.get(g, 0.0) for r in rs), 3)
                 for g in sorted({g for r in rs for g in r.cores})} for p, rs in by_path.items()}
    chain = {p: round(statistics.median(chain_us(p, r.cpu_us_per_request) for r in rs), 1)
             for p, rs in by_path.items() if all(r.cpu_us_per_request for r in rs)}
    return {"mix_rps": {p: round(v, 1) for p, v in mix.items()}, **ratios(mix), "round_ratios": per_round,
            "cores": cores, "chain_cpu_us_per_request": chain}


def chain_us(path: str, per_request: dict[str, float]) -> float:
    """CPU per request of the processes the path's requests cross: the benchmark and its release's servers and
    HAProxy (not the sidecars, the toolkit, the other release or other work)."""
    release = "standalone " if path == "standalone" else "replication "
    return sum(v for g, v in per_request.items()
               if g == "redis-benchmark" or (g.startswith(release) and not g.endswith("sidecars")))


def rotation(paths: list[str], n: int) -> list[str]:
    """Round n's order: the paths rotated by n, so no path always runs first (or right after another)."""
    k = n % len(paths) if paths else 0
    return paths[k:] + paths[:k]


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of a process, its live descendants and its reaped children (a fork's BGSAVE counts too)."""
    if not pid:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def host_busy() -> float:
    cpu = psutil.cpu_times()
    return sum(cpu) - cpu.idle - getattr(cpu, "iowait", 0.0)


def process_groups(stack, label: str, primary: str | None) -> dict[str, list[int]]:
    """The stack's container processes by group: `<label> primary` / `replicas` / `server` (the data pods'
    servers), `haproxy`, `sidecars` (Sentinel, exporter)."""
    from ..stack import SERVER_CONTAINER

    out: dict[str, list[int]] = {}
    for pod in list(stack.cluster.pods.values()):
        for name, c in (pod.kubelet.containers.items() if pod.kubelet else []):
            if name == SERVER_CONTAINER:
                group = "server" if primary is None else ("primary" if pod.name == primary else "replicas")
            elif name == "haproxy":
                group = "haproxy"
            else:
                group = "sidecars"
            if c.pid:
                out.setdefault(f"{label} {group}", []).append(c.pid)
    return out


def cores_used(before: dict[str, float], after: dict[str, float], busy: float, seconds: float) -> dict[str, float]:
    """CPU cores per group over `seconds`, plus `other`: what the host was busy with besides those groups
    (other work on this machine; pure)."""
    cores = {g: max(0.0, after.get(g, 0.0) - before.get(g, 0.0)) / seconds for g in after}
    cores["other"] = max(0.0, busy / seconds - sum(cores.values()))
    return {g: round(v, 3) for g, v in cores.items()}


@dataclass
class CapacityOptions:
    engine: str = "valkey8"
    rounds: int = 3
    connections: int = 500
    value_size: int = 2048
    keyspace: int = 100_000
    requests: int = 200_000
    read_ratio: float = 0.9
    threads: int | None = None
    values: dict = field(default_factory=dict)
    state_dir: str | None = None
    # the data pods' servers and HAProxy in cgroups with their rendered limits: with a server limit low enough
    # that every other process of the chain finds a free core, the ratios measure the paths, not the machine
    enforce_limits: bool = False


class _Target:
    """One path: where redis-benchmark connects, and the server that answers it (flushed before each run)."""

    def __init__(self, path: str, host: str, port: int, server: redis.Redis, user: str,
                 primary: redis.Redis | None = None):
        self.path, self.host, self.port, self.server, self.user = path, host, port, server, user
        self.primary = primary  # replication paths: the primary's admin client, for the replicas' figures


def _replication_info(admin: redis.Redis) -> tuple[int, int]:
    """(connected replicas, full resyncs served so far) of a primary."""
    return int(admin.info("replication")["connected_slaves"]), int(admin.info("stats")["sync_full"])


def _replicas_caught_up(admin: redis.Redis) -> bool:
    info = admin.info("replication")
    offsets = [v["offset"] for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    return bool(offsets) and min(offsets) >= int(info["master_repl_offset"])


def settled_primary(stack, timeout: float = 90) -> str:
    """The primary once the replication set is settled (the HA drills' criterion: every Sentinel names it and
    knows every member, every replica's link is up)."""
    from .ha import Drill

    return wait_until(Drill(stack, "capacity").settled, timeout,
                      "a settled replication set (one primary, Sentinels know every member)", interval=0.5)


def routes_to(stack, host: str, run_id: str) -> bool:
    """Whether a new connection to `host` (a pod, an HAProxy pod, the Service) reaches the server `run_id`."""
    with contextlib.closing(stack.credentials.client(host, stack.port, "admin", socket_timeout=2,
                                                     socket_connect_timeout=2)) as c:
        return c.info("server")["run_id"] == run_id


class HAProxyLogs:
    """The new check events (lines with ` is DOWN` or ` is UP`) in the HAProxy pods' logs since the last call."""

    def __init__(self, paths: list[Path]):
        self.offsets = {p: p.stat().st_size if p.exists() else 0 for p in paths}

    def events(self) -> list[str]:
        out = []
        for path, offset in self.offsets.items():
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
                self.offsets[path] = f.tell()
            # HAProxy writes each event twice (stderr with a "[WARNING] (pid) :" prefix, and the log line)
            out += [f"{path.name.split('.')[0]}: {line.strip()}" for line in text.splitlines()
                    if (" is DOWN" in line or " is UP" in line) and not line.startswith("[")]
        return out


def compare(opts: CapacityOptions, progress: Callable[[str, float, float], None] | None = None) -> DrillResult:
    """Start a standalone and a replication release side by side (no monitoring: nothing else to feed), then
    benchmark every path of PATHS once per round; the ratios come from the medians over the rounds."""
    from ..chart import deep_merge
    from ..stack import SERVER_CONTAINER, LocalStack

    progress = progress or (lambda *a: None)
    if opts.rounds < 1:
        raise ValueError(f"rounds: {opts.rounds}; at least 1")
    result = DrillResult(drill="capacity", engine=opts.engine)
    runs: list[PathRun] = []
    with contextlib.ExitStack() as ctx:
        state = Path(opts.state_dir) if opts.state_dir else Path(ctx.enter_context(
            tempfile.TemporaryDirectory(prefix="ahc-capacity-")))
        stacks = {}
        for arch in ("standalone", "replication"):
            progress(f"start {arch}", 0, 1)
            values = deep_merge(opts.values, {"valkey": {"architecture": arch}})
            if arch == "standalone":
                values["valkey"].pop("replicas", None)  # a standalone release has one server
            stacks[arch] = ctx.enter_context(LocalStack(values=values, engine=opts.engine,
                                                        state_dir=state / arch, monitoring=False))
        single, ha = stacks["standalone"], stacks["replication"]
        result.versions = {k: str(v) for k, v in single.versions().items() if v}
        result.versions["redis-benchmark"] = benchmark_version()
        progress("settle", 0, 1)
        primary = settled_primary(ha)
        cgroups = ctx.enter_context(limits.enforced_containers(
            stacks, (SERVER_CONTAINER, "haproxy"), f"ahc-capacity-{os.getpid()}")) if opts.enforce_limits else {}
        single_admin = ctx.enter_context(contextlib.closing(single.client("admin")))
        ha_admin = ctx.enter_context(contextlib.closing(ha.client("admin", pod=primary)))
        single_user = ctx.enter_context(BenchUser(single_admin))
        ha_user = ctx.enter_context(BenchUser(ha_admin))
        haproxy = sorted((p for p in ha.cluster.pods.values() if any(c["name"] == "haproxy"
                                                                       for c in p.spec["containers"])),
                         key=lambda p: p.name)
        if not haproxy:
            raise CapacityError("the replication release runs no HAProxy pod")
        targets = {
            "standalone": _Target("standalone", single.pod_ip, single.port, single_admin, single_user),
            "primary": _Target("primary", ha.cluster.pod(primary).ip, ha.port, ha_admin, ha_user, ha_admin),
            "haproxy-pod": _Target("haproxy-pod", haproxy[0].ip, ha.port, ha_admin, ha_user, ha_admin),
            "service": _Target("service", ha.service_host, ha.port, ha_admin, ha_user, ha_admin),
        }
        replicas = len([p for p in ha.cluster.pods.values() if p.name != primary and p not in haproxy])
        logs = HAProxyLogs([ha.log_path("haproxy", p.name) for p in haproxy])
        run_ids = {"standalone": single_admin.info("server")["run_id"]}
        run_ids["primary"] = run_ids["haproxy-pod"] = run_ids["service"] = ha_admin.info("server")["run_id"]
        total = opts.rounds * len(targets)
        for n in range(opts.rounds):
            for path in rotation(list(targets), n):
                progress("benchmarks", len(runs), total)
                t = targets[path]
                stack = single if path == "standalone" else ha
                # HAProxy forwards new connections to the primary once its checks and the Sentinels' votes pass
                # (again after a check that timed out in the previous run).
                wait_until(lambda: routes_to(stack, t.host, run_ids[path]), 30, f"{path} ({t.host}) to reach the "
                           f"primary", interval=0.2, ignore=(redis.RedisError, OSError))
                # The previous run's writes start a BGSAVE or AOF rewrite a little later (save rules, auto-rewrite):
                # let them end on both servers, so no run pays for another's fork.
                for admin in (single_admin, ha_admin):
                    forks.wait_idle(admin, 300, quiet=1.5)
                logs.events()  # what happened before this run is not its own
                runs.append(_measure(t, n, opts, single, ha, primary, logs, cgroups))
        progress("benchmarks", total, total)
    summary = summarize(runs)
    result.figures = HaCapacity(
        redis_benchmark=benchmark_version(), connections=opts.connections, value_size=opts.value_size,
        keyspace=opts.keyspace, requests=opts.requests, threads=opts.threads or 1, read_ratio=opts.read_ratio,
        rounds=opts.rounds, replicas=replicas, haproxy_pods=len(haproxy),
        auth="throwaway nopass ACL user limited to ~key:* GET/SET, deleted afterwards", paths=dict(PATHS),
        runs=runs, **summary,
        full_syncs=sum(r.full_syncs or 0 for r in runs),
        replicas_connected_min=min((r.replicas_connected for r in runs if r.replicas_connected is not None),
                                   default=None),
        failed_runs=[f"{r.path} round {r.round}: {r.error}" for r in runs if r.error],
        limits_enforced={k: cg.cpu for k, cg in cgroups.items()})
    result.series["capacity_rounds"] = {
        "kind": "line", "title": "redis-benchmark capacity for the GET/SET mix, per round", "x_label": "round",
        "y_label": "requests/s", "x": list(range(1, opts.rounds + 1)),
        "lines": {p: [None if r.mix_rps is None else round(r.mix_rps) for r in runs if r.path == p] for p in PATHS}}
    judge(result)
    return result


def _measure(target: _Target, n: int, opts: CapacityOptions, single, ha, primary: str,
             logs: HAProxyLogs, cgroups: dict[str, limits.ContainerLimits]) -> PathRun:
    target.server.flushall()  # every run starts empty, as the load drill's anchor does
    if target.primary:
        wait_until(lambda: _replicas_caught_up(target.primary), 60, "the replicas to apply the flush",
                   ignore=(redis.RedisError,))
        connected, syncs = _replication_info(target.primary)
    groups = {**process_groups(single, "standalone", None), **process_groups(ha, "replication", primary)}

    def snapshot() -> dict[str, float]:
        out = {g: sum(tree_cpu(p) for p in pids) for g, pids in groups.items()}
        me = psutil.Process().cpu_times()
        out["toolkit"] = me.user + me.system  # this process's own threads (kubelets, control loops), no children
        return out

    def throttled() -> dict[str, float]:
        return {k: cg.stats().get("throttled_seconds", 0.0) for k, cg in cgroups.items()}

    before, busy, t, throttled_before = snapshot(), host_busy(), time.monotonic(), throttled()
    try:
        run = benchmark(target.host, target.port, connections=opts.connections, value_size=opts.value_size,
                        keyspace=opts.keyspace, requests=opts.requests, user=target.user, threads=opts.threads)
        error = None
    except CapacityError as exc:  # e.g. HAProxy closed the sessions: recorded with its check events, not fatal
        run, error = BenchRun({}, time.monotonic() - t, 0.0), str(exc)
    after, busy = snapshot(), host_busy() - busy
    throttled_run = {k: round(v - throttled_before[k], 3) for k, v in throttled().items() if v > throttled_before[k]}
    after["redis-benchmark"], before["redis-benchmark"] = run.cpu_seconds, 0.0
    cores = cores_used(before, after, busy, run.seconds)
    requests = 2 * opts.requests  # SET, then GET
    out = PathRun(path=target.path, round=n + 1, target=f"{target.host}:{target.port}", benches=run.figures,
                  mix_rps=None if error else round(mix_rps(run.figures, opts.read_ratio), 1),
                  seconds=round(run.seconds, 3), cores=cores, haproxy_events=logs.events(), error=error,
                  throttled_seconds=throttled_run,
                  cpu_us_per_request={} if error else {g: round(c * run.seconds / requests * 1e6, 2)
                                                       for g, c in cores.items()})
    if target.primary:
        connected_after, syncs_after = _replication_info(target.primary)
        out.replicas_connected, out.full_syncs = min(connected, connected_after), syncs_after - syncs
    return out


def judge(result: DrillResult) -> None:
    f: HaCapacity = result.figures
    result.criteria_sets = ["goals"]
    hv = f.haproxy_vs_direct
    result.check("goals: HAProxy capacity vs the primary's", f">= {HAPROXY_VS_DIRECT_GOAL:.1f}x",
                 f"{hv:.2f}x ({f.mix_rps.get('service', 0):,.0f} vs {f.mix_rps.get('primary', 0):,.0f} req/s; "
                 f"one HAProxy pod without the DNAT: {f.haproxy_pod_vs_direct:.2f}x)" if hv else "not measured",
                 hv is not None and hv >= HAPROXY_VS_DIRECT_GOAL)
    cost = f.replication_cost
    result.check("goals: capacity cost of replication", f"<= {REPLICATION_COST_GOAL:.0%}",
                 f"{cost:.1%} (primary with {f.replicas} replicas {f.mix_rps.get('primary', 0):,.0f} vs standalone "
                 f"{f.mix_rps.get('standalone', 0):,.0f} req/s)" if cost is not None else "not measured",
                 cost is not None and cost <= REPLICATION_COST_GOAL)
    runs_down = [r for r in f.runs if any(" is DOWN" in e for e in r.haproxy_events)]
    result.check("every benchmark completed", f"{len(f.runs)} runs",
                 "; ".join(f.failed_runs) + (f" (HAProxy marked a server or vote DOWN during "
                                             f"{', '.join(f'{r.path} round {r.round}' for r in runs_down)})"
                                             if runs_down else "") if f.failed_runs else f"{len(f.runs)} runs",
                 not f.failed_runs)
    # Not a goal, but the cost figure means something only if the replicas kept up: a replica dropped for its
    # output buffer (and a full resync) would make the primary's figure that of a different workload.
    result.check("replicas stayed connected, no full resync", f"{f.replicas} connected after every run, 0 resyncs",
                 f"min {f.replicas_connected_min}, {f.full_syncs} full resyncs",
                 f.replicas_connected_min == f.replicas and f.full_syncs == 0)
