"""docs/requirements.md stays true to the repository: every requirement says where it is proven and the tests
it names exist, the values API keys it lists are in values.yaml, and its alert tables are the alerts the chart
renders. (That every requirement ID cited anywhere is defined there is checked in test_docs_links.py.)"""

from __future__ import annotations

import re
from functools import lru_cache

import yaml
from helpers.values import CI_DIR, load_yaml

from alert_history_cache import chart

DOC = "docs/requirements.md"
ID = re.compile(r"\bR-[A-Z]+-\d+\b")
SECTION = re.compile(r"^### (R-[A-Z0-9-]+)\s*$", re.M)


@lru_cache(maxsize=None)
def sections() -> dict[str, str]:
    """Requirement ID -> the text of its section (up to the next heading)."""
    text = (chart.REPO_ROOT / DOC).read_text()
    marks = list(SECTION.finditer(text))
    out = {}
    for m, nxt in zip(marks, marks[1:] + [None]):
        body = text[m.end(): nxt.start() if nxt else len(text)]
        out[m.group(1)] = re.split(r"^#{1,3} ", body, flags=re.M)[0]
    return out


def test_ids_are_unique_and_well_formed():
    text = (chart.REPO_ROOT / DOC).read_text()
    ids = SECTION.findall(text)
    assert len(ids) == len(set(ids)) >= 20, ids
    assert all(ID.fullmatch(i) for i in ids), ids


def test_the_summary_lists_every_requirement():
    text = (chart.REPO_ROOT / DOC).read_text()
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| \[(R-[A-Z0-9-]+)\]\(#([a-z0-9-]+)\)", summary, re.M) == [
        (i, i.lower()) for i in sections()]


def test_every_requirement_says_where_it_is_proven():
    unproven = [i for i, body in sections().items() if "Proven by" not in body]
    assert not unproven
    for i, body in sections().items():
        assert re.match(r"\s*\*(Original|Project)", body), f"{i} does not say its origin first"


def test_the_tests_it_names_exist():
    """`[tests/x.py](../tests/x.py) ... ::name` names test functions of the file linked last before it."""
    text = (chart.REPO_ROOT / DOC).read_text()
    current, missing = None, []
    for m in re.finditer(r"\]\(\.\./((?:tests|bench)/[^)#]+\.py)\)|`::(\w+)`", text):
        if m.group(1):
            current = m.group(1)
            assert (chart.REPO_ROOT / current).is_file(), current
            continue
        assert current, f"::{m.group(2)} before any test file link"
        source = (chart.REPO_ROOT / current).read_text()
        if not re.search(rf"^(async )?def {m.group(2)}\(", source, re.M):
            missing.append(f"{current}::{m.group(2)}")
    assert not missing, f"{DOC} names tests that do not exist: {missing}"
    # "(case `a`)" / "(cases `a`, `b`)" name files of tests/unit/invalid_values/.
    cases = {p.stem for p in (chart.REPO_ROOT / "tests/unit/invalid_values").glob("*.yaml")}
    named = {n for group in re.findall(r"\bcases?\s+((?:`[a-z0-9-]+`(?:,\s+)?)+)", text)
             for n in re.findall(r"`([a-z0-9-]+)`", group)}
    assert len(named) >= 4 and named <= cases, named - cases


def expand(key: str) -> list[str]:
    """a.{b,c}.d -> a.b.d, a.c.d"""
    m = re.search(r"\{([^}]*)\}", key)
    if not m:
        return [key]
    return [k for part in m.group(1).split(",") for k in expand(key[: m.start()] + part + key[m.end():])]


def test_the_values_api_keys_exist():
    block = re.search(r"```\n(.*?)```", sections()["R-VALUES-1"], re.S).group(1)
    keys = [k for line in block.splitlines() for raw in line.split("#")[0].split() for k in expand(raw)]
    assert len(keys) >= 20, keys
    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    missing = []
    for key in keys:
        node = values
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(key)
                break
            node = node[part]
    assert not missing, f"values API keys of {DOC} missing from values.yaml: {missing}"


def test_the_alert_tables_are_the_rendered_alerts(render_chart):
    def table(req: str) -> list[str]:
        return re.findall(r"^\| (Redis\w+) \|", sections()[req], re.M)

    original, added = table("R-ALERTS-1"), table("R-ALERTS-2")
    assert len(original) == 10 and len(added) == 11
    # The replication render with backups has every alert: the default one's, the replication-only ones and
    # the backup alert.
    values = load_yaml(CI_DIR / "default-values.yaml")
    values["valkey"] = {**values.get("valkey", {}), "architecture": "replication", "replicas": 3}
    values["backup"] = {**values.get("backup", {}), "enabled": True}
    [rule] = render_chart(values).of_kind("PrometheusRule")
    rendered = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert sorted(original + added) == sorted(rendered)
