"""Every dashboard panel's queries over a drill window, from the local stack's Prometheus, as plot series.

The panels come from the chart's generated dashboard JSON (files/dashboards/), the same file Grafana loads,
with its variables resolved the way Grafana would for one pod. The drill captures them before the stack (and
its Prometheus) stops, so the report can plot them later without a running Prometheus.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..chart import CHART_DIR
from ..promapi import PromAPIError, Prometheus
from ..units import duration_seconds

DASHBOARD_DIR = CHART_DIR / "files" / "dashboards"


def rate_interval(scrape_interval: str | float) -> str:
    """Grafana's $__rate_interval for a step no longer than the scrape interval: 4 x the scrape interval."""
    return f"{int(4 * duration_seconds(scrape_interval))}s"


# Series that exist only where replication runs (a replica, or a primary with replicas), and name prefixes of the
# Sentinel and HAProxy series of `valkey.architecture: replication`.
REPLICATION_ONLY_METRICS = (
    "redis_connected_slave_lag_seconds", "redis_master_last_io_seconds_ago", "redis_connected_slave_offset_bytes",
    "redis_master_link_up", "redis_sentinel_", "haproxy_",
)


@dataclass(frozen=True)
class PanelTarget:
    """One query of a dashboard panel, as the generated JSON holds it."""
    panel: str
    ref_id: str
    expr: str
    legend: str
    unit: str = ""

    @property
    def replication_only(self) -> bool:
        return any(m in self.expr for m in REPLICATION_ONLY_METRICS)


def board_targets(board: dict) -> list[PanelTarget]:
    """Every query of one dashboard (its JSON model), in panel order."""
    return [PanelTarget(panel.get("title", "?"), t.get("refId", ""), t["expr"], t.get("legendFormat", ""),
                        (panel.get("fieldConfig") or {}).get("defaults", {}).get("unit", ""))
            for panel in board.get("panels", []) for t in panel.get("targets", []) if t.get("expr")]


def dashboard_targets(path: Path | None = None) -> list[PanelTarget]:
    """Every query of the chart's dashboards (or of the one at `path`), in panel order."""
    files = [path] if path else sorted(DASHBOARD_DIR.glob("*.json"))
    return [t for f in files for t in board_targets(json.loads(Path(f).read_text()))]


def resolve(expr: str, *, namespace: str, pod: str = ".*", rate_interval: str = "1m") -> str:
    """Grafana's variables replaced, so Prometheus can evaluate the expression directly."""
    return expr.replace("$__rate_interval", rate_interval).replace("$namespace", namespace).replace("$pod", pod)


def legend(fmt: str, labels: dict) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(labels.get(m.group(1), "")), fmt or "")
    return text.strip() or json.dumps(labels, sort_keys=True)


def capture(url: str, start: float, end: float, *, namespace: str, pod: str, scrape_interval: str | float = "5s",
            step: float | None = None, origin: float | None = None) -> dict:
    """{"panel:<title>": line series} for every dashboard panel; queries with no data are listed as empty.
    x is in seconds from `origin` (the drill's offset 0, so panels line up with its own plots)."""
    start, end = float(math.floor(start)), float(math.ceil(end))  # whole seconds: the grid matches the reply
    step = step or max(duration_seconds(scrape_interval), (end - start) / 300)
    prometheus = Prometheus(url)
    interval = rate_interval(scrape_interval)
    grid = [start + k * step for k in range(int((end - start) // step) + 1)]
    origin = start if origin is None else origin
    out: dict = {}
    for t in dashboard_targets():
        key = f"panel:{t.panel}"
        s = out.setdefault(key, {"kind": "line", "title": f"Dashboard: {t.panel}", "x_label": "seconds",
                                 "y_label": t.unit or "", "t0": origin, "x": [round(g - origin, 1) for g in grid],
                                 "lines": {}, "queries": [], "empty": []})
        expr = resolve(t.expr, namespace=namespace, pod=pod, rate_interval=interval)
        s["queries"].append(expr)
        try:
            result = prometheus.query_range(expr, start, end, step)
        except PromAPIError as exc:
            s["empty"].append(f"{expr}: {exc}")
            continue
        if not result:
            s["empty"].append(expr)
        for r in result:
            values = {round(float(ts), 3): v for ts, v in r["values"]}
            line = []
            for g in grid:
                v = values.get(round(g, 3))
                line.append(None if v is None or v in ("NaN", "+Inf", "-Inf") else float(v))
            s["lines"][legend(t.legend, r["metric"])] = line
    return out
