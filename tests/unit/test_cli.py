"""The command line: every module imports on its own with no import cycle, and bad input ends a command with one
line naming the option (through the real CLI code, click's CliRunner)."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

import alert_history_cache
from alert_history_cache.cli import main
from alert_history_cache.cli_load import load

PACKAGE_DIR = Path(alert_history_cache.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def module_level_imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports at import time (statements at its top level)."""
    out = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                full = f"{prefix}.{a.name}"
                out.add(full if full in known else prefix)
    return {m for m in out if m in known and m != name}


def test_the_package_has_no_import_cycle():
    known = modules()
    graph = {name: module_level_imports(name, path, known) for name, path in known.items()}
    assert graph["alert_history_cache.cli_drill"] >= {"alert_history_cache.cli_load"}  # the graph sees imports

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    return trail + [dep]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, trail + [dep]))
        return None

    cycles = [c for name in graph if (c := cycle_from(name))]
    assert not cycles, cycles


def _import_alone(name: str) -> tuple[str, int, str]:
    code = (f"import importlib, sys; importlib.import_module({name!r}); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('alert_history_cache.cli'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return name, proc.returncode, proc.stdout.strip() + proc.stderr[-2000:]


def test_every_module_imports_alone_in_a_fresh_interpreter():
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = {name: (rc, out) for name, rc, out in pool.map(_import_alone, modules())}
    failed = {name: out for name, (rc, out) in results.items() if rc != 0}
    assert not failed, failed
    # drill load's module needs nothing of the drill group's (the old cycle went cli_drill -> cli_load -> cli_drill)
    assert "alert_history_cache.cli_drill" not in results["alert_history_cache.cli_load"][1].split()
    assert "alert_history_cache.cli_load" in results["alert_history_cache.cli_drill"][1].split()


def _one_line_error(result, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and all(w in lines[0] for w in words), lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    return lines[0]


@pytest.mark.parametrize("command", [["render"], ["drill", "load"], ["drill", "persistence"], ["drill", "failover"]])
@pytest.mark.parametrize("bad", ["a[=1", "novalue"])
def test_a_bad_set_is_one_line(command, bad):
    result = CliRunner().invoke(main, [*command, "--set", bad])
    assert result.exit_code == 1
    _one_line_error(result, f"--set {bad}")


def test_a_bad_values_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("valkey: [unclosed\n")
    result = CliRunner().invoke(main, ["render", "-f", str(bad)])
    assert result.exit_code == 1
    _one_line_error(result, str(bad), "YAML")


@pytest.mark.parametrize("argv,option", [
    (["drill", "load", "--duration", "5x"], "--duration"),
    (["drill", "load", "--duration", "-5s"], "--duration"),
    (["drill", "load", "--ttl", "soon"], "--ttl"),
    (["drill", "load", "--ttl", "250ms"], "--ttl"),
    (["report", "--scrape-interval", "fast", "x.json"], "--scrape-interval"),
    (["drill", "load", "--engine", "redis99"], "--engine"),
])
def test_a_bad_option_value_is_one_line_naming_it(argv, option, tmp_path):
    if argv[0] == "report":
        (tmp_path / "x.json").write_text("{}")
        argv = [*argv[:-1], str(tmp_path / "x.json")]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    _one_line_error(result, option)


def test_a_bad_results_file_is_one_line(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("not json")
    result = CliRunner().invoke(main, ["report", str(path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    _one_line_error(result, str(path))
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400), ("45", 45), ("2.5", 2.5)])
def test_durations_take_what_users_type(text, seconds):
    params = load.make_context("load", ["--duration", text, "--ttl", text]).params
    assert params["duration"] == seconds
    assert params["ttl"] == math.ceil(seconds) and isinstance(params["ttl"], int)  # SET EX: whole seconds


def test_the_engine_choices_are_the_one_engine_list():
    from alert_history_cache import engines

    choices = next(p for p in load.params if p.name == "engine").type.choices
    assert list(choices) == list(engines.ENGINES) == list(engines.ENGINE_IMAGES)
    assert all(engines.get(name).image == engines.ENGINE_IMAGES[name] for name in engines.ENGINES)


def test_earlier_names_of_the_criteria_and_profile_still_parse():
    params = load.make_context("load", ["--criteria", "spec", "--profile", "spec"]).params
    assert params["criteria"] == "requirements" and params["profile"] == "requirements"
    assert load.make_context("load", ["--criteria", "all"]).params["criteria"] == "goals"
    assert load.make_context("load", []).params["criteria"] == "auto"


def test_render_with_good_values_prints_the_manifests():
    result = CliRunner().invoke(main, ["render", "--set", "valkey.settings.maxmemory=256mb"])
    assert result.exit_code == 0, result.output
    assert "kind: StatefulSet" in result.stdout and "maxmemory 256mb" in result.stdout
