"""Every benchmark and the load drill in one run: prints each figure and ratio, saves JSON, writes the report.

Per engine: the load drill on a standalone release and on a replication release (through the client Service,
that is HAProxy), the HA capacity comparison (`drill capacity`), then the recovery, fork-headroom, eviction and
enforced-limits benchmarks.

    sudo .venv/bin/python bench/run_all.py [--quick] [--engines valkey8,redis7]

Results go to results/bench/ (BENCH_RESULTS overrides) and the page to results/bench/report.html. Nothing here
is a timed test: figures depend on the machine, and on what else runs on it (the load drill records the CPU
that other processes took during its hold).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from _common import RESULTS_DIR, say

from alert_history_cache import report
from alert_history_cache.drills.capacity import HaCapacity
from alert_history_cache.drills.load_results import LoadFigures

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> None:
    print(f"\n$ {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default="valkey8,redis7")
    ap.add_argument("--quick", action="store_true", help="one size per benchmark and a 30-s load hold")
    ap.add_argument("--summary-only", action="store_true", help="run nothing: summarise the saved results")
    args = ap.parse_args()
    engines = [] if args.summary_only else args.engines.split(",")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for engine in engines:
        load_json = RESULTS_DIR / f"load-{engine}.json"
        print(f"\n$ alert-history-cache drill load --engine {engine}", flush=True)
        cli = Path(sys.executable).with_name("alert-history-cache")
        subprocess.run([str(cli), "drill", "load", "--engine", engine, "--json", str(load_json)], check=False)
        # A missed goal exits 1 and is in the results: the other benchmarks still run.
        ha_json = RESULTS_DIR / f"load-{engine}-replication.json"
        print(f"\n$ alert-history-cache drill load --engine {engine} --set valkey.architecture=replication", flush=True)
        subprocess.run([str(cli), "drill", "load", "--engine", engine, "--set", "valkey.architecture=replication",
                        "--json", str(ha_json)], check=False)
        cap_args = ["--rounds", "1", "--bench-requests", "50000"] if args.quick else []
        print(f"\n$ alert-history-cache drill capacity --engine {engine} {' '.join(cap_args)}", flush=True)
        subprocess.run([str(cli), "drill", "capacity", "--engine", engine, *cap_args,
                        "--json", str(RESULTS_DIR / f"capacity-{engine}.json")], check=False)
        run("recovery.py", "--engine", engine, *(["--sizes", "384mb:512Mi"] if args.quick else []))
        run("fork_headroom.py", "--engine", engine, *(["--pairs", "384mb:512Mi"] if args.quick else []))
        run("eviction.py", "--engine", engine, *(["--seconds", "30"] if args.quick else []))
        run("oom_limit.py", "--engine", engine, *(["--pairs", "384mb:512Mi"] if args.quick else []))
    results = report.load_results(sorted(RESULTS_DIR.glob("*.json")))
    rows = []
    for r in results:
        f = r.get("figures", {})
        if r["drill"] == "load":
            load = LoadFigures.from_dict(f)
            arch = load.options.get("architecture", "standalone")
            label = r["engine"] if arch == "standalone" else f"{r['engine']} {arch} (through HAProxy)"
            rows.append((f"load {label}: achieved / p99 steady / p99 fork",
                         f"{load.achieved_rate} req/s / {load.latency_steady.p99_ms} ms / "
                         f"{load.latency_fork.p99_ms} ms (fork {load.fork_usec} us)"))
            if load.capacity:
                rows.append((f"load {label}: capacity (redis-benchmark mix)",
                             f"{load.capacity.production_mix_rps:.0f} req/s; ours = {load.rate_vs_capacity:.1%} of "
                             f"it; production config = {load.capacity.production_vs_stock or 0:.2f} x stock"))
        elif r["drill"] == "capacity":
            cap = HaCapacity.from_dict(f)
            rows.append((f"capacity {r['engine']}: mix req/s by path (median of {cap.rounds})",
                         ", ".join(f"{p} {v:,.0f}" for p, v in cap.mix_rps.items())))
            for c in r["criteria"]:
                rows.append((f"capacity {r['engine']}: {c['name']}",
                             f"{'pass' if c['passed'] else 'MISSED'}: {c['measured']} (goal {c['goal']})"))
        elif r["drill"] == "bench-recovery":
            for c in f["cases"]:
                rows.append((f"recovery {r['engine']} {c['mode']} {c['maxmemory']}",
                             f"kill->ready {c['kill_to_ready_s']:.2f} s, load {c['server_load_s']} s"))
            rows.append((f"startup budget {r['engine']}", f"{f['budget_s_per_gib']:.1f} s per GiB; default covers "
                                                         f"{f['default_budget_covers_gib']:.1f} GiB"))
        elif r["drill"] == "bench-fork-headroom":
            for c in f["cases"]:
                peak = max(c["bgsave"]["peak_pss"], c["bgrewriteaof"]["peak_pss"], c["peak_pss_whole_run"])
                rows.append((f"fork {r['engine']} {c['maxmemory']}/{c['limit']} {c['writer']}",
                             f"peak {peak / 2**20:.0f} MiB = {c['peak_vs_limit']:.0%} of the limit"))
        elif r["drill"] == "bench-oom-limit":
            for c in f["cases"]:
                rows.append((f"limits enforced {r['engine']} {c['maxmemory']}/{c['limit']} {c['writer']}",
                             f"OOM kills {c['cgroup'].get('oom_kills')}, server restarted {c['server_restarted']}"))
        elif r["drill"] == "bench-eviction":
            rows.append((f"eviction {r['engine']}", f"hit rate {f['hit_rate_last_third']:.3f} (ideal "
                                                    f"{f['ideal_hit_rate_same_size']:.3f}), evicted {f['evicted_keys']}, "
                                                    f"OOM {f['oom_errors_client']}/{f['oom_errors_server']}"))
    say("summary", rows)
    page = report.write(results, RESULTS_DIR / "report.html")
    print(f"\nreport: {page}")
    (RESULTS_DIR / "summary.txt").write_text("".join(f"{k}: {v}\n" for k, v in rows))


if __name__ == "__main__":
    main()
