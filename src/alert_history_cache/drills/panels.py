"""Every dashboard panel's queries over a drill window, from the local stack's Prometheus, as plot series.

The panels come from the chart's generated dashboard JSON (files/dashboards/), the same file Grafana loads,
with its variables resolved the way Grafana would for one pod. The drill captures them before the stack (and
its Prometheus) stops, so the report can plot them later without a running Prometheus.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from pathlib import Path

from ..chart import CHART_DIR

DASHBOARD_DIR = CHART_DIR / "files" / "dashboards"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return float(m.group(1)) * units[m.group(2)]


def rate_interval(scrape_interval: str) -> str:
    """Grafana's $__rate_interval for a step no longer than the scrape interval: 4 x the scrape interval."""
    return f"{int(4 * parse_duration(scrape_interval))}s"


def settle_seconds(scrape_interval: str) -> float:
    """Wait this long after a run so the last scrape of the window lands in Prometheus."""
    return parse_duration(scrape_interval) + 1.0


def dashboard_targets(path: Path | None = None) -> list[dict]:
    """[{panel, expr, legend}] of every query of the dashboard, in panel order."""
    files = [path] if path else sorted(DASHBOARD_DIR.glob("*.json"))
    out = []
    for f in files:
        board = json.loads(Path(f).read_text())
        for panel in board.get("panels", []):
            for t in panel.get("targets", []):
                if t.get("expr"):
                    out.append({"panel": panel.get("title", "?"), "expr": t["expr"], "legend": t.get("legendFormat", ""),
                                "unit": (panel.get("fieldConfig") or {}).get("defaults", {}).get("unit", "")})
    return out


def resolve(expr: str, *, namespace: str, pod: str, rate_interval_: str) -> str:
    return expr.replace("$__rate_interval", rate_interval_).replace("$namespace", namespace).replace("$pod", pod)


def legend(fmt: str, labels: dict) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(labels.get(m.group(1), "")), fmt or "")
    return text.strip() or json.dumps(labels, sort_keys=True)


def query_range(url: str, expr: str, start: float, end: float, step: float, timeout: float = 20) -> list[dict]:
    qs = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
    with _NO_PROXY.open(f"{url.rstrip('/')}/api/v1/query_range?{qs}", timeout=timeout) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus query failed: {body.get('error')}")
    return body["data"]["result"]


def capture(url: str, start: float, end: float, *, namespace: str, pod: str, scrape_interval: str = "5s",
            step: float | None = None, origin: float | None = None) -> dict:
    """{"panel:<title>": line series} for every dashboard panel; queries with no data are listed as empty.
    x is in seconds from `origin` (the drill's offset 0, so panels line up with its own plots)."""
    start, end = float(math.floor(start)), float(math.ceil(end))  # whole seconds: the grid matches the reply
    step = step or max(parse_duration(scrape_interval), (end - start) / 300)
    ri = rate_interval(scrape_interval)
    grid = [start + k * step for k in range(int((end - start) // step) + 1)]
    origin = start if origin is None else origin
    out: dict = {}
    for t in dashboard_targets():
        key = f"panel:{t['panel']}"
        s = out.setdefault(key, {"kind": "line", "title": f"Dashboard: {t['panel']}", "x_label": "seconds",
                                 "y_label": t["unit"] or "", "t0": origin, "x": [round(g - origin, 1) for g in grid],
                                 "lines": {}, "queries": [], "empty": []})
        expr = resolve(t["expr"], namespace=namespace, pod=pod, rate_interval_=ri)
        s["queries"].append(expr)
        try:
            result = query_range(url, expr, start, end, step)
        except (OSError, RuntimeError) as exc:
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
            s["lines"][legend(t["legend"], r["metric"])] = line
    return out
