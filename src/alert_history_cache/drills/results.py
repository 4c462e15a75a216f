"""A drill's outcome: measured figures, pass/fail per criterion, engine and machine; printed and saved as JSON."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table


class ResultsError(ValueError):
    """A results file is not what a drill writes; the message names the file."""


@dataclass
class Criterion:
    name: str
    goal: str
    measured: Any
    passed: bool


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
    }


@dataclass
class DrillResult:
    drill: str
    engine: str
    versions: dict[str, str] = field(default_factory=dict)
    figures: Any = field(default_factory=dict)  # a dict, or a figures dataclass (drills/load_results.py)
    criteria: list[Criterion] = field(default_factory=list)
    criteria_sets: list[str] = field(default_factory=lambda: ["requirements"])  # which sets `criteria` hold
    series: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    machine: dict[str, Any] = field(default_factory=machine)

    def check(self, name: str, goal: str, measured: Any, passed: bool) -> bool:
        self.criteria.append(Criterion(name, goal, measured, bool(passed)))
        return bool(passed)

    @property
    def passed(self) -> bool:
        return bool(self.criteria) and all(c.passed for c in self.criteria)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # figures a drill types (load_results) keep their own JSON shape: they drop unset keys
        if hasattr(self.figures, "to_dict"):
            d["figures"] = self.figures.to_dict()
        d["passed"] = self.passed
        return d

    def write_json(self, path: str | Path) -> None:
        self.finished_at = self.finished_at or time.time()
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")

    def print_table(self, console: Console | None = None) -> None:
        console = console or Console()
        table = Table(title=f"drill {self.drill} on {self.engine} ({self.versions.get('server', '?')})",
                      caption=f"criteria applied: {' + '.join(self.criteria_sets)}")
        table.add_column("criterion")
        table.add_column("goal")
        table.add_column("measured")
        table.add_column("result")
        for c in self.criteria:
            table.add_row(c.name, c.goal, _fmt(c.measured), "[green]pass[/]" if c.passed else "[red]FAIL[/]")
        console.print(table)
        verdict = "[green]all criteria passed[/]" if self.passed else "[red]criteria failed[/]"
        console.print(verdict)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
