"""`alert-history-cache drill load`: the 500-connection load test of docs/requirements.md, open loop, on the
local pod; `drill capacity`: redis-benchmark through HAProxy against the primary, and a primary with replicas
against a standalone server, in one run."""

from __future__ import annotations

import math
import statistics

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import chart
from .cli_common import (DURATION, engine_option, finish_drill, json_option, one_line_failures, state_dir_option,
                         values_options)
from .drills import capacity as capacity_drill
from .drills import load as load_drill


class AliasedChoice(click.Choice):
    """A choice that also takes the names of earlier releases (not listed in --help)."""

    def __init__(self, choices: list[str], aliases: dict[str, str]):
        super().__init__(choices)
        self.aliases = aliases

    def convert(self, value, param, ctx):
        return super().convert(self.aliases.get(value, value), param, ctx)


def _whole_seconds(ctx, param, value: float) -> int:
    """SET EX takes whole seconds: a TTL must be 0 (none) or at least 1 s; a fraction rounds up."""
    if 0 < value < 1:
        raise click.BadParameter(f"{value:g}s is under a second; SET EX takes whole seconds (0: no TTL)")
    return math.ceil(value)


@click.command("load")
@values_options
@engine_option
@click.option("--connections", default=load_drill.GOAL_CONNECTIONS, show_default=True,
              help="Connections held for the whole run.")
@click.option("--rate", default=load_drill.GOAL_RATE, show_default=True, help="Arrival rate of the hold (req/s).")
@click.option("--duration", type=DURATION, default="30s", show_default=True,
              help="Hold of the short profile (30s, 5m, 1h30m or seconds).")
@click.option("--profile", type=AliasedChoice(["short", "requirements"], {"spec": "requirements"}), default="short",
              show_default=True, help="short: 5 s up, --duration hold, 5 s down; requirements: the 7 minutes of "
                                      "docs/requirements.md (2 m up, 3 m hold, 2 m down).")
@click.option("--workers", default=2, show_default=True, help="Generator processes (each owns a share).")
@click.option("--read-ratio", default=0.9, show_default=True, help="Share of GETs (the rest are SETs).")
@click.option("--ttl", type=DURATION, default="1h", show_default=True, callback=_whole_seconds,
              help="TTL of the SETs (whole seconds, e.g. 1h or 3600; 0: none).")
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
@click.option("--criteria", type=AliasedChoice(["auto", "requirements", "goals"], load_drill.CRITERIA_ALIASES),
              default="auto", show_default=True,
              help="requirements: p95 < 50 ms, errors < 1 %, every connection held, none rejected, and the "
                   "generator kept its schedule; they always apply. goals: also the project's own goals (10,000 "
                   "req/s, p99 < 5 ms steady and during BGSAVE/AOF rewrite). auto: goals only at the goal "
                   "profile (10,000 req/s over 500 connections, the defaults).")
@click.option("--target", type=click.Choice(["service", "primary"]), default="service", show_default=True,
              help="service: the client Service, as the application dials it (HAProxy in replication); primary: "
                   "the primary's pod address, the same release without HAProxy.")
@click.option("--compare-tls", is_flag=True, default=False,
              help="Run the drill twice, on the release with TLS off and then with valkey.tls.enabled (redis7: the "
                   "Valkey wheels have no TLS), and report TLS / plaintext: redis-benchmark's capacity (--tls with "
                   "the CA) and the steady p99 at --rate over --connections.")
@state_dir_option(None, "State dir of the drill's pod (with --compare-tls: the parent of plaintext/ and tls/) "
                        "[default: a temporary one].")
@json_option
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the HTML report.")
@one_line_failures
def load(values_files, sets, engine, connections, rate, duration, profile, workers, read_ratio, ttl, keyspace,
         cache_aside, prefill, forks, capacity, enforce_limits, bench_requests, criteria, target, compare_tls,
         state_dir, json_path, report_path) -> None:
    """Open-loop load at a fixed arrival rate over held connections; latency from each scheduled start."""
    values = chart.load_values(values_files, sets)
    opts = load_drill.LoadOptions(
        engine=engine, connections=connections, rate=rate, duration=duration, profile=profile, workers=workers,
        read_ratio=read_ratio, ttl=ttl, keyspace=keyspace, cache_aside=cache_aside, prefill=prefill,
        forks=("bgsave", "bgrewriteaof") if forks else (), capacity=capacity, enforce_limits=enforce_limits,
        bench_requests=bench_requests, criteria=criteria, target=target, values=values,
        state_dir=str(state_dir) if state_dir else None)
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

        result = (load_drill.compare_tls if compare_tls else load_drill.run)(opts, progress)
    if result.figures.tls_cost:
        print_tls_cost(result.figures.tls_cost)
    if report_path:
        from . import report

        report.write([result.to_dict()], report_path)
        click.echo(f"report written to {report_path}")
    finish_drill(result, json_path)


def print_tls_cost(c) -> None:
    """Both runs' figures and the ratios TLS / plaintext, as measured (no goal is set for them)."""
    def fmt(v, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    table = Table(title=f"The cost of TLS: {c.rate:,.0f} req/s over {c.connections} connections, then "
                        f"redis-benchmark's mix")
    for col in ("", "plaintext", "TLS", "TLS / plaintext"):
        table.add_column(col)
    table.add_row("capacity (redis-benchmark mix, req/s)", fmt(c.plaintext_mix_rps, ",.0f"), fmt(c.tls_mix_rps, ",.0f"),
                  fmt(c.capacity_ratio, ".2f"))
    table.add_row("p99, steady hold (ms)", fmt(c.plaintext_p99_ms, ".2f"), fmt(c.tls_p99_ms, ".2f"),
                  fmt(c.p99_ratio, ".2f"))
    table.add_row("achieved rate (req/s)", fmt(c.plaintext_achieved_rate, ",.0f"), fmt(c.tls_achieved_rate, ",.0f"),
                  "")
    Console().print(table)
    if c.tls_generator_fell_behind:
        click.echo("note: the generator fell behind its schedule in the TLS run; its p99 includes the generator's "
                   "own delay")


def _progress_bar():
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                    TimeElapsedColumn(), transient=True)


@click.command("capacity")
@values_options
@engine_option
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds; each benchmarks every path once (in a rotated order), and the ratios use the medians.")
@click.option("--connections", type=click.IntRange(min=1), default=load_drill.GOAL_CONNECTIONS, show_default=True,
              help="redis-benchmark connections (-c).")
@click.option("--bench-requests", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="redis-benchmark requests per test (-n), for SET and for GET.")
@click.option("--keyspace", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="redis-benchmark key space (-r).")
@click.option("--value-size", type=click.IntRange(min=1), default=2048, show_default=True,
              help="redis-benchmark value size in bytes (-d).")
@click.option("--read-ratio", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Share of GETs in the mix whose rate is compared.")
@click.option("--bench-threads", type=click.IntRange(min=1), default=None,
              help="redis-benchmark --threads [default: its single thread].")
@click.option("--enforce-limits/--no-enforce-limits", default=False, show_default=True,
              help="Enforce the data pods' server and HAProxy containers' rendered CPU and memory limits with "
                   "cgroups; with a server CPU limit low enough that the rest of the chain finds free cores "
                   "(e.g. --set valkey.resources.limits.cpu=400m), the server's quota sets the capacity, as on "
                   "a cluster where each pod has its own CPU.")
@state_dir_option(None, "Parent of the two releases' state dirs (standalone/, replication/) [default: a temporary "
                        "one].")
@json_option
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the HTML report.")
@one_line_failures
def capacity(values_files, sets, engine, rounds, connections, bench_requests, keyspace, value_size, read_ratio,
             bench_threads, enforce_limits, state_dir, json_path, report_path) -> None:
    """HA capacity: a standalone and a replication release side by side; redis-benchmark at the standalone
    server, the primary's pod address, one HAProxy pod and the client Service (HAProxy), every round. Prints the
    ratios against the goals: HAProxy >= 0.8x the primary, replication costing <= 10 %."""
    values = chart.load_values(values_files, sets)
    opts = capacity_drill.CapacityOptions(
        engine=engine, rounds=rounds, connections=connections, value_size=value_size, keyspace=keyspace,
        requests=bench_requests, read_ratio=read_ratio, threads=bench_threads, values=values,
        state_dir=str(state_dir) if state_dir else None, enforce_limits=enforce_limits)
    with _progress_bar() as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: float, total: float) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        result = capacity_drill.compare(opts, progress)
    print_capacity(result.figures)
    if report_path:
        from . import report

        report.write([result.to_dict()], report_path)
        click.echo(f"report written to {report_path}")
    finish_drill(result, json_path)


RATIO_LABELS = {"haproxy_vs_direct": "HAProxy (client Service) / primary",
                "haproxy_pod_vs_direct": "one HAProxy pod (no DNAT) / primary",
                "replication_vs_standalone": "primary with replicas / standalone"}


def print_capacity(f: capacity_drill.HaCapacity) -> None:
    """The medians per path, the CPU cores each group of processes used, and the ratios with their spread."""
    table = Table(title=f"redis-benchmark, {f.connections} connections, {f.value_size}-byte values, "
                        f"median of {f.rounds} round(s)")
    for col in ("path", "SET / GET req/s", f"{f.read_ratio:.0%} GET mix", "CPU us per request (chain)",
                "CPU cores during the run"):
        table.add_column(col)
    for path in capacity_drill.PATHS:
        runs = [r for r in f.runs if r.path == path and r.mix_rps is not None]
        if runs:
            sets_, gets = (statistics.median(r.benches[t].rps for r in runs) for t in ("SET", "GET"))
            cores = ", ".join(f"{g.removeprefix('replication ')} {v:.2f}" for g, v in
                              sorted(f.cores[path].items(), key=lambda kv: -kv[1]) if v >= 0.01)
            chain = f.chain_cpu_us_per_request.get(path)
            table.add_row(path, f"{sets_:,.0f} / {gets:,.0f}", f"{f.mix_rps[path]:,.0f}",
                          "" if chain is None else f"{chain:.0f}", cores)
    Console().print(table)
    if f.limits_enforced:
        click.echo("CPU limits enforced: " + ", ".join(f"{k} {v}m" for k, v in sorted(f.limits_enforced.items())))
        for path in capacity_drill.PATHS:
            throttled = [r.throttled_seconds for r in f.runs if r.path == path]
            worst = {k: max(t.get(k, 0.0) for t in throttled) for t in throttled for k in t}
            click.echo(f"throttled during {path} (max over the rounds): " + (", ".join(
                f"{k} {v:.1f} s" for k, v in sorted(worst.items(), key=lambda kv: -kv[1])) or "nothing"))
    for failed in f.failed_runs:
        click.echo(f"failed: {failed}")
    for r in f.runs:
        for event in r.haproxy_events:
            click.echo(f"HAProxy during {r.path} round {r.round}: {event}")
    for key, label in RATIO_LABELS.items():
        value, spread = getattr(f, key), f.round_ratios.get(key) or []
        if value is not None:
            click.echo(f"{label}: {value:.2f}x" + (f" (rounds {min(spread):.2f}-{max(spread):.2f})" if spread else ""))
