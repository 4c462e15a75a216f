"""Capacity anchor: redis-benchmark against the pod, and against the same binary with its stock defaults.

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

import csv
import io
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import port_for
import redis
from mirakuru import TCPExecutor

from .load_results import Bench, Capacity

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


def run_benchmark(host: str, port: int, *, connections: int, value_size: int, keyspace: int, requests: int,
                  tests: str = "set,get", user: str | None = None, threads: int | None = None,
                  timeout: float = 600) -> dict[str, Bench]:
    argv = [redis_benchmark(), "-h", host, "-p", str(port), "-c", str(connections), "-n", str(requests),
            "-d", str(value_size), "-r", str(keyspace), "-t", tests, "--csv"]
    if user:
        argv += ["--user", user, "-a", "x"]  # a nopass user: the password is ignored, so none is revealed
    if threads:
        argv += ["--threads", str(threads)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise CapacityError(f"redis-benchmark exited {proc.returncode}: {proc.stderr[-2000:]}")
    return parse_csv(proc.stdout)


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
           threads: int | None = None) -> Capacity:
    """Benchmark the pod (production config) and, when stock_binary is given, the stock server. Both start
    empty: the pod is flushed before (its data is the load drill's, already measured) and after."""
    admin.flushall()
    with BenchUser(admin) as user:
        t = time.time()
        prod = run_benchmark(host, port, connections=connections, value_size=value_size, keyspace=keyspace,
                             requests=requests, user=user, threads=threads)
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
