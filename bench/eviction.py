"""Cache behaviour at maxmemory: allkeys-lru evicts, no OOM error reaches a client, and the hit rate under Zipf.

The local pod (chart defaults: maxmemory 384mb, allkeys-lru) serves an application-like cache-aside load whose
keyspace is about twice what fits: 400,000 alerts of 2 KB drawn from a Zipf distribution. It is prefilled past
maxmemory first, so the run starts full and evicting. Every GET that misses is followed by the SET that fills
it, as the application does. The hit rate is compared with the best any cache of the same size could do (the
probability mass of the hottest keys that fit).

    python bench/eviction.py [--engine valkey8] [--rate 5000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from _common import DrillResult, mib, save, say

from alert_history_cache.drills import forks, load, loadgen
from alert_history_cache.stack import LocalStack


def ideal_hit_rate(workload: loadgen.Workload, capacity_keys: int) -> float:
    """Hit rate of a cache that always holds the `capacity_keys` hottest keys (an upper bound for LRU)."""
    w = 1.0 / np.power(np.arange(1, workload.keyspace + 1, dtype=np.float64), workload.zipf_s)
    return float(w[:capacity_keys].sum() / w.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="valkey8")
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--keyspace", type=int, default=400_000)
    ap.add_argument("--connections", type=int, default=100)
    args = ap.parse_args()
    workload = loadgen.Workload(keyspace=args.keyspace, read_ratio=1.0, cache_aside=True, ttl=3600)
    result = DrillResult(drill="bench-eviction", engine=args.engine)
    with tempfile.TemporaryDirectory(prefix="ahc-bench-evict-") as d, \
            LocalStack(values={}, engine=args.engine, state_dir=d, monitoring=False) as stack:
        result.versions = {k: str(v) for k, v in stack.versions().items() if v}
        admin = stack.client("admin", socket_timeout=60)
        app = stack.client("default", decode_responses=False, socket_timeout=60)
        prefill_s = load.prefill(app, workload, args.keyspace)
        app.close()
        forks.wait_idle(admin, 120, quiet=1.5)
        before = admin.info("all")
        errors_before = admin.info("errorstats")
        stages = loadgen.profile("short", args.rate, args.seconds)
        target = loadgen.Target(stack.service_host, stack.port, password=stack.user_password("default"))
        run = loadgen.run(target, workload, stages, connections=args.connections, workers=2)
        after = admin.info("all")
        errors_after = admin.info("errorstats")
        admin.close()
    oom_server = int((errors_after.get("errorstat_OOM") or {}).get("count", 0)) - \
        int((errors_before.get("errorstat_OOM") or {}).get("count", 0))
    samples = sorted({e for w in run.workers for e in w.error_samples})
    oom_client = sum(1 for e in samples if "OOM" in e)
    hits = run.outcome == loadgen.HIT
    misses = run.outcome == loadgen.MISS
    secs = int(np.ceil(run.sched[-1])) + 1
    b = np.floor(run.sched).astype(int)
    per_sec = [float(hits[b == s].sum() / max(1, (hits | misses)[b == s].sum())) for s in range(secs)]
    hold_start, hold_end = stages[0].duration, stages[0].duration + stages[1].duration
    last_third = (run.sched >= hold_end - (hold_end - hold_start) / 3) & (run.sched < hold_end)
    steady_hit = float(hits[last_third].sum() / max(1, (hits | misses)[last_third].sum()))
    keys = int(after["db0"]["keys"]) if isinstance(after.get("db0"), dict) else None
    ideal = ideal_hit_rate(workload, keys or 0)
    errors = int(np.isin(run.outcome, [loadgen.ERROR, loadgen.TIMEOUT, loadgen.NOT_SENT]).sum())
    fills = sum(w.fills for w in run.workers)
    fill_errors = sum(w.fill_errors for w in run.workers)
    lat = run.latency[run.ok] * 1000
    f = {
        "keyspace": args.keyspace, "rate": args.rate, "hold_seconds": args.seconds, "prefill_seconds": round(prefill_s, 1),
        "maxmemory": after["maxmemory"], "maxmemory_policy": after.get("maxmemory_policy"),
        "used_memory_max_seen": after["used_memory"], "keys_held": keys,
        "evicted_keys": after["evicted_keys"] - before["evicted_keys"],
        "evicted_keys_total": after["evicted_keys"], "requests": len(run.sched), "errors": errors,
        "fills": fills, "fill_errors": fill_errors, "oom_errors_server": oom_server, "oom_errors_client": oom_client,
        "error_samples": samples, "hit_rate": float(hits.sum() / max(1, (hits | misses).sum())),
        "hit_rate_last_third": steady_hit, "ideal_hit_rate_same_size": ideal,
        "lru_vs_ideal": steady_hit / ideal if ideal else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
    }
    result.figures.update(f)
    result.check("evictions happen at maxmemory", "> 0 during the run", f["evicted_keys"], f["evicted_keys"] > 0)
    result.check("no OOM error reaches a client", "0 (client replies and server errorstat_OOM)",
                 f"client {oom_client}, server {oom_server}", oom_client == 0 and oom_server == 0)
    result.check("errors", "< 1 %", f"{errors} of {len(run.sched)} (+{fill_errors} failed fills)",
                 errors < 0.01 * len(run.sched) and fill_errors == 0)
    result.series["hit_rate"] = {"kind": "line", "title": "Hit rate per second (cache-aside, Zipf, at maxmemory)",
                                 "x_label": "seconds", "y_label": "hit rate", "x": list(range(secs)),
                                 "lines": {"measured": per_sec, "ideal cache of the same size": [ideal] * secs}}
    say(f"cache at maxmemory ({args.engine}, allkeys-lru)", [
        ("dataset", f"{args.keyspace} alerts of 2 KB offered, {keys} held in maxmemory {mib(f['maxmemory'])} MiB"),
        ("evicted during the run", f["evicted_keys"]),
        ("OOM errors (client / server)", f"{oom_client} / {oom_server}"),
        ("errors", f"{errors} of {len(run.sched)}, failed fills {fill_errors}"),
        ("hit rate (whole run / last third)", f"{f['hit_rate']:.3f} / {steady_hit:.3f}"),
        ("ideal hit rate for that many keys", f"{ideal:.3f} (LRU reaches {f['lru_vs_ideal']:.0%} of it)"),
        ("p99 latency", f"{f['p99_ms']} ms at {args.rate:g} req/s"),
    ])
    save(result, f"eviction-{args.engine}")


if __name__ == "__main__":
    main()
