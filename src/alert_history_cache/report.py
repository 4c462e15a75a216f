"""One HTML page from drill and benchmark results (their JSON): criteria, figures and every plot series.

Plot series (DrillResult.series) are plain JSON so any drill can add its own:
- {"kind": "line", "title", "x_label", "y_label", "x": [...], "lines": {label: [...]}, "spans": [{start, end,
  label}], "extra": {label: {"x", "y"}}, "log_x", "log_y", "y_ticks": {value: label}}: lines over x; spans
  shaded (BGSAVE, AOF rewrite, a drill's faults); y_ticks names levels (the HA drills' role of each pod).
- {"kind": "bar", "edges": [...], "counts": [...]}: a histogram.
- {"kind": "timeline", "phases": [{"start", "end", "label"}], "events": [{"t", "label"}]}: a recovery timeline.
Series whose key starts with "panel:" are dashboard panels captured from Prometheus; they get their own section.
Images are PNGs embedded as data URIs, so the page is one self-contained file.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .drills.results import ResultsError  # noqa: E402

SPAN_COLORS = {"bgsave": "#f4a261", "aof-rewrite": "#8ecae6"}
SKIP_FIGURES = {"fork_actions", "window", "options"}


def load_results(paths: Iterable[str | Path]) -> list[dict]:
    out = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsError(f"{p}: not a results file ({exc})") from exc
        items = data if isinstance(data, list) else [data]
        if not all(isinstance(d, dict) and "drill" in d for d in items):
            raise ResultsError(f"{p}: not a results file (expected drill results as written by --json)")
        for d in items:
            d.setdefault("_source", str(p))
            out.append(d)
    return out


# -- plots ----------------------------------------------------------------------------------------------

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _clean(values: list) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def plot_line(s: dict, size=(7.5, 3.4)) -> str:
    fig, ax = plt.subplots(figsize=size)
    x = s.get("x", [])
    drawn = 0
    for label, ys in s.get("lines", {}).items():
        if ys and any(v is not None for v in ys):
            ax.plot(x[: len(ys)], _clean(ys), label=label, linewidth=1.2)
            drawn += 1
    for label, xy in (s.get("extra") or {}).items():
        ax.plot(xy["x"], _clean(xy["y"]), label=label, linewidth=1.0, marker=".", linestyle="--")
        drawn += 1
    seen = set()
    for sp in s.get("spans", []):
        lab = sp.get("label", "")
        ax.axvspan(sp["start"], max(sp["end"], sp["start"] + 0.05), alpha=0.35,
                   color=SPAN_COLORS.get(lab, "#cccccc"), label=None if lab in seen else lab)
        seen.add(lab)
    if s.get("log_x"):
        ax.set_xscale("log")
    if s.get("log_y"):
        ax.set_yscale("log")
    if s.get("y_ticks"):  # named levels (e.g. a pod's role)
        ticks = sorted((float(k), v) for k, v in s["y_ticks"].items())
        ax.set_yticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=8)
    ax.set_title(s.get("title", ""), fontsize=10)
    ax.set_xlabel(s.get("x_label", ""))
    ax.set_ylabel(s.get("y_label", ""))
    ax.grid(True, alpha=0.3)
    if drawn or seen:
        ax.legend(fontsize=7, loc="best")
    if not drawn:
        ax.text(0.5, 0.5, "no data in the window", ha="center", va="center", transform=ax.transAxes, color="gray")
    return _png(fig)


def plot_bar(s: dict) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    edges, counts = s["edges"], s["counts"]
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    ax.bar(edges[:-1], counts, width=widths, align="edge", edgecolor="none")
    if s.get("log_x"):
        ax.set_xscale("log")
    if s.get("log_y") and any(counts):
        ax.set_yscale("log")
    ax.set_title(s.get("title", ""), fontsize=10)
    ax.set_xlabel(s.get("x_label", ""))
    ax.set_ylabel(s.get("y_label", ""))
    ax.grid(True, alpha=0.3)
    return _png(fig)


def plot_timeline(s: dict) -> str:
    phases = s.get("phases", [])
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.45 * max(1, len(phases))))
    for i, p in enumerate(phases):
        ax.barh(i, p["end"] - p["start"], left=p["start"], height=0.6)
        ax.text(p["end"], i, f" {p['end'] - p['start']:.2f} s", va="center", fontsize=8)
    ax.set_yticks(range(len(phases)), [p["label"] for p in phases], fontsize=8)
    ax.invert_yaxis()
    for e in s.get("events", []):
        ax.axvline(e["t"], color="red", linewidth=0.8)
        ax.text(e["t"], -0.6, e["label"], fontsize=7, color="red", rotation=0)
    ax.set_title(s.get("title", ""), fontsize=10)
    ax.set_xlabel(s.get("x_label", "seconds"))
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def plot(s: dict) -> str | None:
    kind = s.get("kind")
    if kind == "line":
        return plot_line(s)
    if kind == "bar":
        return plot_bar(s)
    if kind == "timeline":
        return plot_timeline(s)
    return None


# -- tables ---------------------------------------------------------------------------------------------

def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            if not prefix and k in SKIP_FIGURES:
                continue
            out.extend(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        for i, x in enumerate(d):
            out.extend(flatten(x, f"{prefix}{i}."))
    else:
        out.append((prefix.rstrip("."), d))
    return out


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.4g}"
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10_000:
        return f"{v:,}"
    if isinstance(v, list):
        text = ", ".join(fmt(x) for x in v[:12])
        return text + (" ..." if len(v) > 12 else "")
    return str(v)


def _table(rows: list[list[str]], head: list[str], cls: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def section(result: dict) -> str:
    title = f"{result.get('drill', '?')} on {result.get('engine', '?')}"
    verdict = result.get("passed")
    badge = '<span class="pass">passed</span>' if verdict else '<span class="fail">failed</span>'
    if not result.get("criteria"):
        badge = '<span class="info">figures only</span>'
    when = dt.datetime.fromtimestamp(result.get("started_at") or 0, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f'<section><h2>{html.escape(title)} {badge}</h2>',
             f'<p class="meta">{when} · {html.escape(json.dumps(result.get("versions", {})))} · '
             f'source {html.escape(result.get("_source", "-"))}</p>']
    for note in result.get("figures", {}).get("notes", []) or []:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    if result.get("criteria"):
        rows = [[html.escape(c["name"]), html.escape(str(c["goal"])), html.escape(fmt(c["measured"])),
                 '<span class="pass">pass</span>' if c["passed"] else '<span class="fail">FAIL</span>']
                for c in result["criteria"]]
        parts.append(_table(rows, ["criterion", "goal", "measured", "result"], "criteria"))
        if result.get("criteria_sets"):
            parts.append(f'<p class="meta">criteria applied: {html.escape(" + ".join(result["criteria_sets"]))}</p>')
    series = result.get("series", {})
    own = [(k, s) for k, s in series.items() if not k.startswith("panel:")]
    dash = [(k, s) for k, s in series.items() if k.startswith("panel:")]
    imgs = [f'<img alt="{html.escape(s.get("title", k))}" src="{src}">' for k, s in own if (src := plot(s))]
    if imgs:
        parts.append('<div class="plots">' + "".join(imgs) + "</div>")
    if dash:
        parts.append("<h3>Dashboard panels over the drill window (Prometheus)</h3>")
        cells = []
        for k, s in dash:
            src = plot_line(s, size=(5.6, 2.8))
            q = "<br>".join(html.escape(e) for e in s.get("queries", []))
            cells.append(f'<figure><img alt="{html.escape(s["title"])}" src="{src}"><figcaption>{q}</figcaption></figure>')
        parts.append('<div class="plots dash">' + "".join(cells) + "</div>")
    rows = [[html.escape(k), html.escape(fmt(v))] for k, v in flatten(result.get("figures", {}))]
    parts.append("<details><summary>all figures</summary>" + _table(rows, ["figure", "value"], "figures")
                 + "</details>")
    machine = result.get("machine", {})
    parts.append(f'<p class="meta">machine: {html.escape(json.dumps(machine))}</p></section>')
    return "\n".join(parts)


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em} h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em} td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left}
th{background:#f4f4f4} .pass{color:#1a7f37;font-weight:600} .fail{color:#cf222e;font-weight:600} .info{color:#555}
.plots{display:flex;flex-wrap:wrap;gap:.6em} .plots img{max-width:100%;border:1px solid #eee}
.dash figure{margin:0;max-width:560px} figcaption{font-size:.7em;color:#555;font-family:monospace;word-break:break-all}
.meta{font-size:.8em;color:#555} .note{background:#fff8c5;padding:.4em}
"""


def render(results: list[dict], title: str = "alert-history cache tier: drill and benchmark report") -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [[html.escape(r.get("drill", "?")), html.escape(r.get("engine", "?")),
             ('<span class="pass">passed</span>' if r.get("passed") else '<span class="fail">failed</span>')
             if r.get("criteria") else "figures", str(len(r.get("criteria", [])))] for r in results]
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">generated {now} from {len(results)} result(s)</p>',
            _table(rows, ["drill", "engine", "verdict", "criteria"])]
    body.extend(section(r) for r in results)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write(results: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render(results))
    return path
