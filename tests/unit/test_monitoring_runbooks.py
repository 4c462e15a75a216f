"""docs/runbooks: one page per alert the chart can render, each with the four sections, commands that keep
the admin password out of arguments, and links that resolve. (tests/rules/test_runbook_commands.py runs
the pages' valkey-cli commands against real servers.)"""

from __future__ import annotations

import re

from helpers.values import CI_DIR, load_yaml

from alert_history_cache import chart

RUNBOOKS = chart.REPO_ROOT / "docs" / "runbooks"
PAGES = sorted(p for p in RUNBOOKS.glob("*.md") if p.name != "README.md")


def all_alerts(render_chart) -> set[str]:
    """Every alert the chart can render (the default render has all but the replication, backup and TLS ones)."""
    default = load_yaml(CI_DIR / "default-values.yaml")
    replication = {**default, "valkey": {**default.get("valkey", {}), "architecture": "replication", "replicas": 3},
                   "backup": {**default.get("backup", {}), "enabled": True}}
    tls = load_yaml(CI_DIR / "tls-values.yaml")  # the certificate alerts: TLS with its expiry Probe
    names = set()
    for values in (replication, tls):
        [rule] = render_chart(values).of_kind("PrometheusRule")
        names |= {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    return names


def test_one_page_per_alert_and_no_orphans(render_chart):
    assert {p.stem for p in PAGES} == all_alerts(render_chart)


def test_index_lists_every_page():
    index = (RUNBOOKS / "README.md").read_text()
    for page in PAGES:
        assert f"]({page.name})" in index, page.name


def test_sections_in_order():
    for page in PAGES:
        headings = re.findall(r"^## (.+)$", page.read_text(), flags=re.M)
        assert headings == ["Meaning", "Impact", "Diagnosis", "Mitigation"], page.name
        assert page.read_text().startswith(f"# {page.stem}\n"), page.name


def test_diagnosis_has_commands_and_no_password_in_arguments():
    for page in PAGES:
        text = page.read_text()
        diagnosis = text.split("## Diagnosis", 1)[1].split("## Mitigation", 1)[0]
        assert "```console" in diagnosis and "kubectl " in diagnosis, page.name
        if "vcli " in text:
            assert "export REDISCLI_AUTH=" in diagnosis and "--user admin" in diagnosis, page.name
        for line in re.findall(r"^(?:vcli|valkey-cli|redis-cli) .*$", text, flags=re.M):
            assert not re.search(r"(^|\s)(-a|--pass|--askpass)\s|\bAUTH\s", line), (page.name, line)


def test_relative_links_resolve():
    for page in [*PAGES, RUNBOOKS / "README.md"]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).resolve().is_file(), (page.name, target)
