"""Every HA drill scenario on every engine in one run: the failover table of docs/ha-drills.md.

    sudo .venv/bin/python bench/ha_matrix.py [--engines valkey8,valkey9,redis7] [--scenarios primary-delete,...]
                                             [--node-loss-delay 60] [--chart-probes]

Each run is `alert-history-cache drill ha --scenario S --engine E` (drills/ha.py) on its own stack; the JSON of
each goes to results/bench/ha-<engine>-<scenario>.json (BENCH_RESULTS overrides), and a table of the figures
and verdicts is printed at the end. The probes run every second unless --chart-probes (the chart's 10 s
periods), as in the tests: the figures then show the release, not the probe period. A failed goal is printed,
never hidden; the exit code is 1 when any scenario missed one.
"""

from __future__ import annotations

import argparse
import json

from _common import RESULTS_DIR

from alert_history_cache.drills import ha

# 1 s probe periods; the startup budget covers the bootstrap's wait for a primary (the chart checks it).
FAST = {"valkey": {"probes": {"startup": {"periodSeconds": 1, "failureThreshold": 120},
                              "readiness": {"periodSeconds": 1}, "liveness": {"periodSeconds": 1}},
                   "replication": {"preStopTimeout": 10}}}
COLUMNS = [("write_unavailable_seconds", "writes unavailable s"), ("write_unavailable_total_seconds", "total s"),
           ("acknowledged_writes_lost", "acked lost"), ("switch_master_seconds", "+switch-master s"),
           ("servers_accepting_writes_at_once", "split brain"), ("old_primary_back_as_replica_seconds",
                                                                 "old back as replica s")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default="valkey8,valkey9,redis7")
    ap.add_argument("--scenarios", default=",".join(ha.SCENARIOS))
    ap.add_argument("--node-loss-delay", type=float, default=ha.NODE_LOSS_DELAY_S)
    ap.add_argument("--chart-probes", action="store_true", help="the chart's probe periods instead of 1 s")
    args = ap.parse_args()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    rows = []
    for engine in args.engines.split(","):
        for scenario in args.scenarios.split(","):
            print(f"\n$ alert-history-cache drill ha --scenario {scenario} --engine {engine}", flush=True)
            result = ha.run(scenario, engine=engine, values=None if args.chart_probes else FAST,
                            node_loss_delay=args.node_loss_delay)
            result.print_table()
            result.write_json(RESULTS_DIR / f"ha-{engine}-{scenario}.json")
            missed = [c.name for c in result.criteria if not c.passed]
            rows.append((engine, scenario, result.figures, missed))
    print("\n" + " | ".join(["engine", "scenario", *(title for _, title in COLUMNS), "verdict"]))
    for engine, scenario, fig, missed in rows:
        cells = [json.dumps(fig.get(key)) for key, _ in COLUMNS]
        print(" | ".join([engine, scenario, *cells, "pass" if not missed else "MISSED: " + "; ".join(missed)]))
    raise SystemExit(1 if any(missed for *_, missed in rows) else 0)


if __name__ == "__main__":
    main()
