"""Helpers shared by the benchmarks: fill a server to maxmemory, print figures, save results for the report."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from alert_history_cache.drills.loadgen import Workload  # noqa: E402
from alert_history_cache.drills.results import DrillResult  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS", "results/bench"))


def fill_to_maxmemory(client: redis.Redis, admin: redis.Redis, *, value_size: int = 2048, prefix: str = "bench:fill:",
                      batch: int = 1000, target: float = 0.995, ttl: int | None = None) -> dict:
    """Write distinct 2 KB alerts as `client` (the application) until used_memory reaches `target` x maxmemory
    or the first eviction; `admin` reads the figures."""
    payloads = Workload(value_size=value_size).payloads()
    info = admin.info("memory")
    maxmemory = int(info["maxmemory"])
    if not maxmemory:
        raise RuntimeError("the server has no maxmemory")
    evicted0 = int(admin.info("stats")["evicted_keys"])
    t = time.monotonic()
    n = 0
    while True:
        pipe = client.pipeline(transaction=False)
        for i in range(n, n + batch):
            pipe.set(f"{prefix}{i}", payloads[i % len(payloads)], ex=ttl)
        pipe.execute()
        n += batch
        used = int(admin.info("memory")["used_memory"])
        evicted = int(admin.info("stats")["evicted_keys"]) - evicted0
        if used >= target * maxmemory or evicted > 0:
            break
    return {"keys_written": n, "fill_seconds": round(time.monotonic() - t, 2), "used_memory": used,
            "maxmemory_bytes": maxmemory, "evicted_during_fill": evicted, "dbsize": admin.dbsize()}


def mib(v: float | int | None) -> float | None:
    return None if v is None else round(v / MiB, 1)


def say(title: str, rows: list[tuple[str, object]]) -> None:
    """Print figures as an aligned block."""
    print(f"\n== {title}")
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    sys.stdout.flush()


def save(result: DrillResult, name: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    result.finished_at = time.time()
    result.write_json(path)
    print(f"  -> {path}")
    return path
