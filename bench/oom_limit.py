"""The fork headroom verdict with the limit really enforced: does the kernel OOM-kill the server?

fork_headroom.py measures PSS against the limit on a pod without cgroups. Here the server container's rendered
limits (CPU quota and memory limit) are applied as cgroups around the server (drills/limits.py), fork children
included, and the same load runs: fill to maxmemory, sustained 2 KB writes, a forced BGSAVE then a forced
BGREWRITEAOF. The outcome is the kernel's: OOM kills counted by the memory cgroup, the server's restarts, and
the cgroup's peak usage (page cache included, which the kernel reclaims before it kills).

    python bench/oom_limit.py [--engine redis7] [--pairs 384mb:512Mi,256mb:512Mi] [--writer-rates flood,5000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

import redis

from _common import DrillResult, fill_to_maxmemory, mib, save, say
from fork_headroom import start_writer

from alert_history_cache.drills import forks, limits
from alert_history_cache.drills.capacity import BenchUser
from alert_history_cache.stack import LocalStack


def measure(engine: str, maxmemory: str, limit: str, writer_rate: float | None, steady: float = 4.0) -> dict:
    values = {"valkey": {"settings": {"maxmemory": maxmemory},
                         "resources": {"limits": {"memory": limit}, "requests": {"memory": limit}}}}
    out: dict = {"engine": engine, "maxmemory": maxmemory, "limit": limit,
                 "writer": f"{writer_rate:g} SET/s (open loop)" if writer_rate else "redis-benchmark flood"}
    with tempfile.TemporaryDirectory(prefix="ahc-bench-oom-") as d, \
            LocalStack(values=values, engine=engine, state_dir=d, monitoring=False) as stack:
        cpu, memory = limits.server_limits(stack)
        with limits.ContainerLimits(f"ahc-bench-oom-{os.getpid()}", cpu, memory) as cg:
            cg.add(stack.server_pid)
            pid = stack.server_pid
            admin = stack.client("admin", socket_timeout=60)
            app = stack.client("default", decode_responses=False, socket_timeout=60)
            out.update(fill_to_maxmemory(app, admin))
            app.close()
            forks.wait_idle(admin)
            with BenchUser(admin) as user:
                writer = start_writer(stack, user, writer_rate, steady + 15)
                steps = []
                try:
                    time.sleep(steady)
                    forks.wait_idle(admin)
                    for cmd, field in (("BGSAVE", "rdb_bgsave_in_progress"),
                                       ("BGREWRITEAOF", "aof_rewrite_in_progress")):
                        t = time.time()
                        for _ in range(10):
                            try:
                                admin.execute_command(cmd)
                                break
                            except redis.ResponseError as exc:  # an automatic save or rewrite got there first
                                if "in progress" not in str(exc) and "child process" not in str(exc):
                                    raise
                                forks.wait_idle(admin)
                                t = time.time()
                        forks.wait_idle(admin, fields=(field,))
                        steps.append({"command": cmd, "seconds": round(time.time() - t, 3),
                                      "fork_usec": admin.info("stats")["latest_fork_usec"]})
                except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                    steps.append({"error": f"{type(exc).__name__}: {exc}"})
                finally:
                    if writer_rate:
                        writer.join(120)
                    else:
                        writer.terminate()
                        writer.wait(10)
            out["steps"] = steps
            out["cgroup"] = cg.stats()
            out["oom_killed"] = out["cgroup"].get("oom_kills", 0) > 0
            out["server_restarted"] = stack.server_pid != pid
            with contextlib.suppress(Exception):
                admin.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="redis7")
    ap.add_argument("--pairs", default="384mb:512Mi,256mb:512Mi")
    ap.add_argument("--writer-rates", default="flood,5000")
    args = ap.parse_args()
    result = DrillResult(drill="bench-oom-limit", engine=args.engine)
    cases = []
    for pair in args.pairs.split(","):
        maxmemory, limit = pair.split(":")
        for rate in args.writer_rates.split(","):
            c = measure(args.engine, maxmemory, limit, None if rate == "flood" else float(rate))
            cases.append(c)
            cgs = c["cgroup"]
            say(f"limits enforced: {args.engine} maxmemory {maxmemory} in {limit}, writer {c['writer']}", [
                ("limits", f"CPU {cgs.get('cpu_millicores')}m, memory {mib(cgs.get('memory_limit'))} MiB"),
                ("forks", "; ".join(f"{s['command']} {s['seconds']} s (fork {s['fork_usec']} us)" if "command" in s
                                    else s["error"] for s in c["steps"])),
                ("OOM kills / server restarted", f"{cgs.get('oom_kills')} / {c['server_restarted']}"),
                ("cgroup peak usage (incl. page cache)", f"{mib(cgs.get('memory_peak'))} MiB"),
                ("CPU throttled", f"{cgs.get('nr_throttled')} of {cgs.get('nr_periods')} periods, "
                                  f"{cgs.get('throttled_seconds', 0):.1f} s"),
            ])
            result.check(f"{maxmemory} in {limit}, {c['writer']}: not OOM-killed", "0 OOM kills",
                         cgs.get("oom_kills"), not c["oom_killed"])
    result.figures["cases"] = cases
    save(result, f"oom-limit-{args.engine}")


if __name__ == "__main__":
    main()
