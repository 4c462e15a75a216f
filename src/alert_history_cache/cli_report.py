"""`alert-history-cache report RESULTS... -o report.html`: drill and benchmark results as one HTML page."""

from __future__ import annotations

import click

from .cli_common import DURATION, one_line_failures


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False))
@click.option("--prometheus", metavar="URL",
              help="Query this Prometheus for the dashboard panels of results that carry none (a live stack).")
@click.option("--namespace", default="default", show_default=True, help="Namespace of the pod (with --prometheus).")
@click.option("--pod", default="alerthistory-redis-0", show_default=True, help="Pod name (with --prometheus).")
@click.option("--scrape-interval", type=DURATION, default="30s", show_default=True,
              help="Scrape interval (with --prometheus).")
@one_line_failures
def report(results, output, prometheus, namespace, pod, scrape_interval) -> None:
    """Criteria, figures and plots of every result; dashboard panels from Prometheus over each drill window."""
    from . import report as report_mod  # matplotlib: loaded only when a report is written
    from .drills import panels
    from .drills.load_results import LoadFigures

    data = report_mod.load_results(results)
    if prometheus:
        for r in data:
            window = LoadFigures.from_dict(r["figures"]).window if r.get("drill") == "load" else None
            if window and not any(k.startswith("panel:") for k in r.get("series", {})):
                r.setdefault("series", {}).update(panels.capture(
                    prometheus, window.start - 10, window.end + 10, namespace=namespace, pod=pod,
                    scrape_interval=scrape_interval, origin=window.start))
    path = report_mod.write(data, output)
    click.echo(f"report written to {path} ({len(data)} result(s))")
