"""docs/architecture.md's module map names every module of the toolkit, one row each, and nothing else: a new
module without a row, a row for a module that was renamed or removed, or a row listed twice fails here."""

from __future__ import annotations

import re
from pathlib import Path

from alert_history_cache import chart

DOC = chart.REPO_ROOT / "docs" / "architecture.md"
PACKAGE = chart.REPO_ROOT / "src" / "alert_history_cache"
# The first cell of a table row, a module path in backticks: | `drills/load.py` | ... |
ROW = re.compile(r"^\|\s*`([\w/]+\.py)`\s*\|\s*(.*?)\s*\|\s*$", re.M)


def module_map(text: str) -> list[tuple[str, str]]:
    """(module, job) of each row of the table under '## Module map' (up to the next heading or 'Beside it')."""
    start = text.index("\n## Module map\n")
    rest = text[start + 1:]
    end = min((i for i in (rest.find("\n## ", 1), rest.find("\nBeside it")) if i > 0), default=len(rest))
    return ROW.findall(rest[:end])


def modules(package: Path) -> set[str]:
    """Every module of the package and its subpackages, relative (`drills/load.py`); package `__init__`s aside."""
    return {p.relative_to(package).as_posix() for p in package.rglob("*.py")
            if p.name != "__init__.py" and "__pycache__" not in p.parts}


def disagreements(rows: list[tuple[str, str]], present: set[str]) -> list[str]:
    named = [module for module, _ in rows]
    problems = [f"{m}: a module the map does not name" for m in sorted(present - set(named))]
    problems += [f"{m}: the map names a module that does not exist" for m in sorted(set(named) - present)]
    problems += [f"{m}: named {named.count(m)} times" for m in sorted(set(named)) if named.count(m) > 1]
    problems += [f"{m}: no job given" for m, job in rows if not job]
    return problems


def test_the_module_map_names_every_module_and_nothing_else():
    rows = module_map(DOC.read_text())
    present = modules(PACKAGE)
    assert {"chart.py", "cluster.py", "drills/load.py"} <= present  # the walk found the package
    problems = disagreements(rows, present)
    assert not problems, "docs/architecture.md, 'Module map':\n" + "\n".join(problems)


def test_the_check_catches_a_missing_an_extra_and_a_doubled_row():
    text = ("# Architecture\n\n## Module map\n\n| module | job |\n|---|---|\n"
            "| `chart.py` | renders |\n| `gone.py` | was removed |\n| `drills/load.py` | load |\n"
            "| `drills/load.py` | again |\n| `cli.py` |  |\n\nBeside it:\n\n| path | holds |\n|---|---|\n"
            "| `bench.py` | not in the map |\n\n## Next\n| `later.py` | not in the map either |\n")
    rows = module_map(text)
    assert [m for m, _ in rows] == ["chart.py", "gone.py", "drills/load.py", "drills/load.py", "cli.py"]
    present = {"chart.py", "cli.py", "drills/load.py", "new.py", "drills/new.py"}
    assert disagreements(rows, present) == [
        "drills/new.py: a module the map does not name", "new.py: a module the map does not name",
        "gone.py: the map names a module that does not exist", "drills/load.py: named 2 times",
        "cli.py: no job given"]
