"""The load drill's figures as types: what the drill writes, what the report, bench/run_all.py and the tests read.

They serialize to the JSON the drill has always written (`to_dict`), and read it back (`from_dict`, which ignores
keys it does not know, so results of other versions still load). Fields marked `optional` are left out of the
JSON when unset (the capacity anchor and the enforced limits exist only when asked for).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

OPTIONAL = {"optional": True}


def to_dict(obj: Any) -> Any:
    """A figures dataclass (and what it holds) as plain JSON data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("optional") and getattr(obj, f.name) is None)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _build(hint: Any, value: Any) -> Any:
    """`value` (JSON data) as `hint`: dataclasses, their lists and dicts, and optional ones, recursively."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    if origin is list and args and isinstance(value, list):
        return [_build(args[0], v) for v in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: _build(args[1], v) for k, v in value.items()}
    return value


def from_dict(cls: type, data: dict) -> Any:
    """A figures dataclass from its JSON data; unknown keys are ignored, missing optional ones are None."""
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _build(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
    return cls(**kwargs)


class Figures:
    """Shared by the figures dataclasses: JSON out and back."""

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return from_dict(cls, data)


@dataclass
class Latency(Figures):
    """Latency from each request's scheduled start, over some of the requests (all, hold, steady, fork)."""
    requests: int
    ok: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    mean_ms: float | None


@dataclass
class ForkWindow(Figures):
    """A BGSAVE or AOF rewrite, in seconds from the run's start."""
    kind: str  # "bgsave" | "aof-rewrite"
    start: float
    end: float
    triggered: bool  # started by the drill (not by the server's own save rules)
    fork_usec: int | None = None


@dataclass
class Generator(Figures):
    """How well the load generator kept its schedule: if it fell behind, the latencies include its own delay."""
    workers: int
    dispatch_lag_p50_ms: float | None
    dispatch_lag_p99_ms: float | None
    dispatch_lag_max_ms: float | None
    dispatch_lag_p99_steady_ms: float | None
    dispatch_lag_p99_fork_ms: float | None
    queued_for_connection: int
    worker_cpu: list[float]
    fell_behind: bool = False
    why: list[str] = field(default_factory=list)
    fell_behind_during_fork: bool = False


@dataclass
class Cpu(Figures):
    """Cores used during the hold; all None when the sampler had fewer than two samples."""
    host_cores_busy: float | None = None
    server_cores: float | None = None
    generator_cores: float | None = None
    other_cores: float | None = None
    host_cores: int | None = None


@dataclass
class Window(Figures):
    """Wall-clock span of the run (for Prometheus queries over it)."""
    start: float
    end: float


@dataclass
class Bench(Figures):
    """One redis-benchmark test (redis-benchmark 7 --csv)."""
    test: str
    rps: float
    avg_ms: float
    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class Capacity(Figures):
    """redis-benchmark against the pod (production config) and, optionally, the same binary's stock defaults."""
    redis_benchmark: str
    connections: int
    value_size: int
    keyspace: int
    requests: int
    threads: int
    auth: str
    production_window: list[float]
    production: dict[str, Bench]
    production_mix_rps: float
    stock: dict[str, Bench] | None = field(default=None, metadata=OPTIONAL)
    stock_mix_rps: float | None = field(default=None, metadata=OPTIONAL)
    production_vs_stock: float | None = field(default=None, metadata=OPTIONAL)
    production_limits: dict | None = field(default=None, metadata=OPTIONAL)


@dataclass
class RunFigures(Figures):
    """What one load run measured (drills.load.analyze): rates, errors, latencies, forks, connections, memory."""
    scheduled: int
    offered_rate: float | None
    achieved_rate: float | None  # replies inside the hold, per second: what the server delivered
    errors: int
    error_rate: float
    outcomes: dict[str, int]
    error_samples: list[str]
    hit_rate: float | None
    latency_all: Latency
    latency_hold: Latency
    latency_steady: Latency
    latency_fork: Latency
    service_p99_ms: float | None
    fork_windows: list[ForkWindow]
    fork_usec: list[int | None]
    latest_fork_usec: int | None
    connections_requested: int
    connections_opened: int
    connections_lost: int
    connect_errors: list[str]
    connections_held_min: int | None
    connected_clients_max: int | None
    rejected_connections: int
    server_hits: int
    server_misses: int
    evicted_keys: int
    used_memory_max: int | None
    used_memory_rss_max: int | None
    pss_peak_server_plus_child: int | None
    maxmemory: int | None
    generator: Generator
    cpu: Cpu
    cache_aside_fills: int
    cache_aside_fill_errors: int


@dataclass
class TlsCost(Figures):
    """`drill load --compare-tls`: the same load on a plaintext and a TLS release, one after the other in one run.
    Ratios are TLS / plaintext: capacity (redis-benchmark's GET/SET mix) below 1 and p99 above 1 are TLS's cost."""
    rate: float = 0.0
    connections: int = 0
    plaintext_mix_rps: float | None = None
    tls_mix_rps: float | None = None
    capacity_ratio: float | None = None
    plaintext_p99_ms: float | None = None  # steady hold (no BGSAVE/AOF rewrite), from each scheduled start
    tls_p99_ms: float | None = None
    p99_ratio: float | None = None
    plaintext_achieved_rate: float | None = None
    tls_achieved_rate: float | None = None
    tls_generator_fell_behind: bool = False
    tls_run: dict[str, Any] = field(default_factory=dict)  # the TLS run's whole figures, as its own drill writes them


@dataclass
class LoadFigures(RunFigures):
    """A whole load drill: the run's figures plus its options, warm-up, sampler, window and capacity anchor."""
    options: dict[str, Any] = field(default_factory=dict)
    prefill_keys: int = 0
    prefill_seconds: float = 0.0
    dataset_bytes_before: int | None = None
    sampler_errors: list[str] = field(default_factory=list)
    fork_actions: list[dict[str, Any]] = field(default_factory=list)
    window: Window | None = None
    limits_enforced: dict | None = field(default=None, metadata=OPTIONAL)
    capacity: Capacity | None = field(default=None, metadata=OPTIONAL)
    rate_vs_capacity: float | None = field(default=None, metadata=OPTIONAL)
    tls_cost: TlsCost | None = field(default=None, metadata=OPTIONAL)

    @classmethod
    def of_run(cls, run: RunFigures, **extra) -> "LoadFigures":
        return cls(**{f.name: getattr(run, f.name) for f in dataclasses.fields(RunFigures)}, **extra)
