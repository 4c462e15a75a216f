"""The chart README's parameter table is generated from values.yaml by readme-generator-for-helm:
the committed table must match a fresh generation, and the generator must refuse an undocumented key."""

from __future__ import annotations

import difflib
import shutil
import subprocess

import pytest

from alert_history_cache.chart import CHART_DIR, REPO_ROOT

README = CHART_DIR / "README.md"
VALUES = CHART_DIR / "values.yaml"
GENERATE = REPO_ROOT / "scripts" / "generate-readme.sh"

pytestmark = pytest.mark.skipif(
    not (shutil.which("node") and shutil.which("npm")),
    reason="node/npm not installed (scripts/setup.sh installs them)",
)


def generate(readme, values=VALUES) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(GENERATE), str(readme), str(values)], capture_output=True, text=True, timeout=300
    )


def rows(markdown: str) -> dict[str, list[str]]:
    """Parameter rows by name, cells stripped (one new key re-pads every row of its table)."""
    out = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            out[cells[0]] = cells[1:]
    return out


def test_committed_parameter_table_matches_values_yaml(tmp_path):
    copy = tmp_path / "README.md"
    shutil.copy(README, copy)
    result = generate(copy)
    assert result.returncode == 0, f"readme-generator refused values.yaml:\n{result.stdout}{result.stderr}"
    committed, fresh = README.read_text(), copy.read_text()
    assert "## Parameters" in fresh and "`profile`" in rows(fresh)
    old, new = rows(committed), rows(fresh)
    stale = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True), fresh.splitlines(keepends=True), "committed", "generated", n=1
        )
    )
    assert not diff, (
        "charts/alert-history/README.md is stale: run `bash scripts/generate-readme.sh` and commit it\n"
        f"parameters added, removed or changed: {stale}\n" + diff[:2000]
    )


def test_generator_refuses_an_undocumented_key(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(VALUES.read_text() + "\nundocumentedKey: 1\n")
    copy = tmp_path / "README.md"
    shutil.copy(README, copy)
    result = generate(copy, values)
    assert result.returncode != 0
    assert "Missing metadata for key: undocumentedKey" in result.stdout + result.stderr
