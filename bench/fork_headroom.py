"""Fork headroom benchmark: peak memory of the server plus its fork child at full maxmemory under sustained writes.

The local pod is filled to maxmemory with 2 KB alerts; redis-benchmark then floods SETs of 2 KB values over a
keyspace larger than maxmemory (so allkeys-lru evicts all along, as a full cache does), and the benchmark
forces a BGSAVE and then a BGREWRITEAOF. Every 20 ms it reads the PSS of the server and of its fork child
(psutil memory_full_info: proportional set size, so pages still shared after the fork count once) and compares
the peak with the container memory limit. The local pod does not enforce the limit (no memory cgroup), so a
peak above it is what the kernel would have OOM-killed in Kubernetes.

redis-benchmark runs as a throwaway nopass ACL user limited to its own keys (see drills/capacity.py).

    python bench/fork_headroom.py [--engine redis7] [--pairs 384mb:512Mi,256mb:512Mi] [--seconds 4]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time

import psutil
import redis

from _common import DrillResult, MiB, fill_to_maxmemory, mib, save, say

from alert_history_cache import units
from alert_history_cache.drills import forks, loadgen
from alert_history_cache.drills.capacity import BenchUser, redis_benchmark
from alert_history_cache.stack import LocalStack

THRESHOLD = 0.90  # of the container limit


class PssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int]] = []  # (time, server PSS, children PSS)
        self.halt = threading.Event()

    def run(self) -> None:
        proc = psutil.Process(self.pid)
        while not self.halt.is_set():
            t = time.time()
            try:
                server = proc.memory_full_info().pss
                child = 0
                for c in proc.children():
                    try:
                        child += c.memory_full_info().pss
                    except psutil.NoSuchProcess:
                        pass
                self.samples.append((t, server, child))
            except psutil.NoSuchProcess:
                return
            self.halt.wait(self.interval)

    def peak(self, start: float, end: float) -> tuple[int, int, int]:
        """(peak of server+child, server PSS then, largest child PSS) over [start, end]."""
        window = [s for s in self.samples if start <= s[0] <= end] or [(0, 0, 0)]
        best = max(window, key=lambda s: s[1] + s[2])
        return best[1] + best[2], best[1], max(s[2] for s in window)


class RateWriter(threading.Thread):
    """SETs of 2 KB alerts at a fixed rate (the load drill's generator, SET only) over a keyspace larger than
    maxmemory, for `seconds`."""

    def __init__(self, host: str, port: int, password: str, rate: float, seconds: float):
        super().__init__(daemon=True)
        self.target = loadgen.Target(host, port, password=password)
        self.workload = loadgen.Workload(keyspace=1_000_000, read_ratio=0.0, ttl=0, key_prefix="bench:write:")
        self.stages = [loadgen.Stage(0.5, rate), loadgen.Stage(seconds, rate)]
        self.run_: loadgen.LoadRun | None = None

    def run(self) -> None:
        self.run_ = loadgen.run(self.target, self.workload, self.stages, connections=50, workers=1)


def start_writer(stack: LocalStack, bench_user: str, writer_rate: float | None, seconds: float):
    """The sustained writes: the open-loop RateWriter at writer_rate SET/s, or a redis-benchmark flood as the
    throwaway `nopass` bench user when writer_rate is None (stop it with .terminate())."""
    if writer_rate:
        writer = RateWriter(stack.service_host, stack.port, stack.user_password("default"), writer_rate, seconds)
        writer.start()
        return writer
    return subprocess.Popen(
        [redis_benchmark(), "-h", stack.pod_ip, "-p", str(stack.port), "--user", bench_user, "-a", "x",
         "-t", "set", "-d", "2048", "-r", "5000000", "-c", "50", "-n", "1000000000", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(engine: str, maxmemory: str, limit: str, steady: float, writer_rate: float | None) -> dict:
    values = {"valkey": {"settings": {"maxmemory": maxmemory},
                         "resources": {"limits": {"memory": limit}, "requests": {"memory": limit}}}}
    limit_b = units.memory_bytes(limit)
    with tempfile.TemporaryDirectory(prefix="ahc-bench-fork-") as d, \
            LocalStack(values=values, engine=engine, state_dir=d, monitoring=False) as stack:
        app = stack.client("default", decode_responses=False, socket_timeout=60)
        admin = stack.client("admin", socket_timeout=60)
        fill = fill_to_maxmemory(app, admin)
        app.close()
        forks.wait_idle(admin)
        sampler = PssSampler(stack.server_pid)
        sampler.start()
        out: dict = {"engine": engine, "maxmemory": maxmemory, "limit": limit, "limit_bytes": limit_b,
                     "writer": f"{writer_rate:g} SET/s (open loop)" if writer_rate else "redis-benchmark flood", **fill}
        with BenchUser(admin) as user:
            writer = start_writer(stack, user, writer_rate, steady + 15)
            try:
                time.sleep(steady)
                stats0 = admin.info("stats")
                t_writes = time.time()
                time.sleep(1.0)
                stats1 = admin.info("stats")
                out["writes_per_s"] = round((stats1["total_commands_processed"] - stats0["total_commands_processed"])
                                            / (time.time() - t_writes))
                out["evicted_per_s"] = round(stats1["evicted_keys"] - stats0["evicted_keys"])
                forks.wait_idle(admin)  # the auto AOF rewrite may be running: start each fork from a quiet state
                for cmd, field in (("BGSAVE", "rdb_bgsave_in_progress"), ("BGREWRITEAOF", "aof_rewrite_in_progress")):
                    start = time.time()
                    for _ in range(10):
                        try:
                            admin.execute_command(cmd)
                            break
                        except redis.ResponseError as exc:  # an automatic rewrite or save just started
                            if "in progress" not in str(exc) and "child process" not in str(exc):
                                raise
                            forks.wait_idle(admin)
                            start = time.time()
                    end = forks.wait_idle(admin, fields=(field,))
                    info = admin.info("all")
                    peak, server, child = sampler.peak(start, end + 0.1)
                    key = cmd.lower()
                    out[key] = {"seconds": round(end - start, 3), "fork_usec": info["latest_fork_usec"],
                                "start": start, "end": end,
                                "peak_pss": peak, "server_pss_at_peak": server, "child_pss_max": child,
                                "peak_vs_limit": peak / limit_b,
                                "peak_vs_maxmemory": peak / fill["maxmemory_bytes"],
                                "used_memory_rss": info["used_memory_rss"]}
                    time.sleep(0.5)
                out["writer_window"] = [t_writes, time.time()]
                info = admin.info("all")
                out["mem_fragmentation_ratio"] = info.get("mem_fragmentation_ratio")
                out["mem_allocator"] = info.get("mem_allocator")
                out["total_forks"] = info.get("total_forks")
                out["oom_errors"] = int((admin.info("errorstats").get("errorstat_OOM") or {}).get("count", 0))
            finally:
                if writer_rate:
                    writer.join(120)  # bounded: its schedule ends by itself
                else:
                    writer.terminate()
                    writer.wait(10)
        sampler.halt.set()
        sampler.join(5)
        whole = sampler.peak(out["writer_window"][0] - steady, time.time())
        out["peak_pss_whole_run"] = whole[0]
        out["peak_vs_limit"] = max(out["bgsave"]["peak_pss"], out["bgrewriteaof"]["peak_pss"], whole[0]) / limit_b
        t0 = sampler.samples[0][0] if sampler.samples else 0
        out["series"] = {"t": [round(s[0] - t0, 3) for s in sampler.samples[::5]],
                         "server": [s[1] for s in sampler.samples[::5]],
                         "child": [s[2] for s in sampler.samples[::5]], "t0": t0}
        admin.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="redis7", help="redis7 uses jemalloc like the production images")
    ap.add_argument("--pairs", default="384mb:512Mi,256mb:512Mi", help="maxmemory:limit pairs; the first is the default")
    ap.add_argument("--seconds", type=float, default=4.0, help="writes before the forks")
    ap.add_argument("--writer-rates", default="flood,5000",
                    help="comma list: `flood` (redis-benchmark, as fast as the server goes) or SET/s (open loop)")
    args = ap.parse_args()
    result = DrillResult(drill="bench-fork-headroom", engine=args.engine)
    cases = []
    runs = [(pair, rate) for pair in args.pairs.split(",") for rate in args.writer_rates.split(",")]
    for pair, rate in runs:
        maxmemory, limit = pair.split(":")
        c = measure(args.engine, maxmemory, limit, args.seconds, None if rate == "flood" else float(rate))
        series = c.pop("series")
        cases.append(c)
        say(f"fork headroom {args.engine} maxmemory {maxmemory} limit {limit}, writer {c['writer']}", [
            ("dataset", f"{c['dbsize']} keys, used_memory {mib(c['used_memory'])} MiB, allocator {c['mem_allocator']}"),
            ("sustained writes", f"{c['writes_per_s']} SET/s, {c['evicted_per_s']} evictions/s"),
            ("BGSAVE", f"{c['bgsave']['seconds']} s, fork {c['bgsave']['fork_usec']} us, peak PSS server+child "
                       f"{mib(c['bgsave']['peak_pss'])} MiB = {c['bgsave']['peak_vs_limit']:.0%} of {limit}"),
            ("BGREWRITEAOF", f"{c['bgrewriteaof']['seconds']} s, fork {c['bgrewriteaof']['fork_usec']} us, peak "
                             f"{mib(c['bgrewriteaof']['peak_pss'])} MiB = {c['bgrewriteaof']['peak_vs_limit']:.0%}"),
            ("peak over the whole run", f"{mib(c['peak_pss_whole_run'])} MiB (incl. automatic rewrites)"),
            ("peak / maxmemory", f"{max(c['bgsave']['peak_vs_maxmemory'], c['bgrewriteaof']['peak_vs_maxmemory']):.2f}"),
            ("OOM errors to clients", c["oom_errors"]),
        ])
        peak = max(c["bgsave"]["peak_pss"], c["bgrewriteaof"]["peak_pss"], c["peak_pss_whole_run"])
        result.check(f"{maxmemory} in {limit}, {c['writer']}: peak PSS under {THRESHOLD:.0%} of the limit",
                     f"< {mib(THRESHOLD * c['limit_bytes'])} MiB", f"{mib(peak)} MiB ({c['peak_vs_limit']:.0%})",
                     c["peak_vs_limit"] < THRESHOLD)
        windows = [{"start": c[k]["start"] - series["t0"], "end": c[k]["end"] - series["t0"],
                    "label": "bgsave" if k == "bgsave" else "aof-rewrite"} for k in ("bgsave", "bgrewriteaof")]
        result.series[f"memory {maxmemory} in {limit} {rate}"] = {
            "kind": "line", "title": f"PSS, BGSAVE then AOF rewrite: maxmemory {maxmemory}, limit {limit}, {c['writer']}",
            "x_label": "seconds", "y_label": "MiB", "x": series["t"], "spans": windows,
            "lines": {"server": [round(v / MiB, 1) for v in series["server"]],
                      "fork child": [round(v / MiB, 1) for v in series["child"]],
                      "server + child": [round((a + b) / MiB, 1) for a, b in zip(series["server"], series["child"])],
                      f"{THRESHOLD:.0%} of limit": [round(THRESHOLD * c["limit_bytes"] / MiB, 1)] * len(series["t"])}}
    rules = {}
    for writer in dict.fromkeys(c["writer"] for c in cases):
        ratio = max(max(c["bgsave"]["peak_vs_maxmemory"], c["bgrewriteaof"]["peak_vs_maxmemory"],
                        c["peak_pss_whole_run"] / c["maxmemory_bytes"]) for c in cases if c["writer"] == writer)
        rules[writer] = {"worst_peak_vs_maxmemory": round(ratio, 3),
                         "safe_maxmemory_percent_of_limit": round(100 * THRESHOLD / ratio, 1)}
        say(f"headroom rule, writer {writer}", [
            ("worst peak / maxmemory", f"{ratio:.2f}"),
            (f"maxmemory that keeps the peak under {THRESHOLD:.0%} of the limit", f"<= {100 * THRESHOLD / ratio:.0f} % of it")])
    result.figures.update({"cases": cases, "threshold": THRESHOLD, "rules": rules})
    save(result, f"fork-headroom-{args.engine}")


if __name__ == "__main__":
    main()
