"""`alert-history-cache drill load`: the spec's 500-connection load test, open loop, on the local pod."""

from __future__ import annotations

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import chart, engines
from .chart import RenderError
from .drills import load as load_drill
from .drills.capacity import CapacityError
from .drills.limits import LimitsUnavailable
from .engines import MissingBinary
from .stack import StackError

# What a drill cannot get past: reported as one line, not a traceback.
FAILURES = (StackError, MissingBinary, CapacityError, RenderError, TimeoutError, LimitsUnavailable)


def values_options(f):
    """-f/--set as in cli.py (not imported from there: cli.py imports this module through cli_drill)."""
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a value (Helm --set syntax).")(f)
    f = click.option("-f", "--values", "values_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="Values file (repeatable, later files win).")(f)
    return f


@click.command("load")
@values_options
@click.option("--engine", type=click.Choice(sorted(engines.ENGINE_IMAGES)), default="valkey8", show_default=True)
@click.option("--connections", default=500, show_default=True, help="Connections held for the whole run.")
@click.option("--rate", default=load_drill.GOAL_RATE, show_default=True, help="Arrival rate of the hold (req/s).")
@click.option("--duration", default=30.0, show_default=True, help="Hold seconds of the short profile.")
@click.option("--profile", type=click.Choice(["short", "spec"]), default="short", show_default=True,
              help="short: 5 s up, --duration hold, 5 s down; spec: the spec's 7 minutes (2 m up, 3 m hold, 2 m down).")
@click.option("--workers", default=2, show_default=True, help="Generator processes (each owns a share).")
@click.option("--read-ratio", default=0.9, show_default=True, help="Share of GETs (the rest are SETs).")
@click.option("--ttl", default=3600, show_default=True, help="TTL of the SETs in seconds (0: none).")
@click.option("--keyspace", default=100_000, show_default=True, help="Alerts the Zipf distribution draws from.")
@click.option("--cache-aside/--no-cache-aside", default=False, show_default=True,
              help="A GET that misses is followed by the SET that fills it (the application's cache-aside).")
@click.option("--prefill", type=int, default=None, help="Alerts written before the run [default: the keyspace].")
@click.option("--forks/--no-forks", default=True, show_default=True,
              help="BGSAVE at 40 % and BGREWRITEAOF at 70 % of the hold.")
@click.option("--capacity/--no-capacity", default=True, show_default=True,
              help="redis-benchmark against the pod and the stock binary after the run.")
@click.option("--enforce-limits/--no-enforce-limits", default=False, show_default=True,
              help="Enforce the server container's rendered CPU and memory limits with cgroups (the local pod "
                   "otherwise runs without them).")
@click.option("--bench-requests", default=200_000, show_default=True, help="redis-benchmark requests per test.")
@click.option("--criteria", type=click.Choice(["all", "spec"]), default="all", show_default=True,
              help="spec: only the spec's pass criteria (and the generator's validity), not our 10k/5 ms goal.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="State dir of the drill's pod [default: a temporary one].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the HTML report.")
def load(values_files, sets, engine, connections, rate, duration, profile, workers, read_ratio, ttl, keyspace,
         cache_aside, prefill, forks, capacity, enforce_limits, bench_requests, criteria, state_dir, json_path, report_path) -> None:
    """Open-loop load at a fixed arrival rate over held connections; latency from each scheduled start."""
    values = chart.load_values(values_files, sets)
    opts = load_drill.LoadOptions(
        engine=engine, connections=connections, rate=rate, duration=duration, profile=profile, workers=workers,
        read_ratio=read_ratio, ttl=ttl, keyspace=keyspace, cache_aside=cache_aside, prefill=prefill,
        forks=("bgsave", "bgrewriteaof") if forks else (), capacity=capacity, enforce_limits=enforce_limits,
        bench_requests=bench_requests,
        criteria=criteria, values=values, state_dir=state_dir)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: float, total: float) -> None:
            if phase not in tasks:
                for other in tasks.values():
                    bar.update(other, completed=bar.tasks[other].total)
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        try:
            result = load_drill.run(opts, progress)
        except FAILURES as exc:
            raise click.ClickException(str(exc)) from exc
    if report_path:
        from . import report

        report.write([result.to_dict()], report_path)
        click.echo(f"report written to {report_path}")
    from .cli_drill import finish

    finish(result, json_path)
