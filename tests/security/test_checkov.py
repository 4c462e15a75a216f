"""checkov on the rendered manifests of every ci values set: zero failed checks.

A check skipped by design carries its reason in a `checkov.io/skipN` annotation (templates/_checkov.tpl) and is
listed with that reason in docs/security.md. Each skip must be needed: with the skip annotations removed, the
same checks fail, and no other. Rendered into the namespace `alert-history` (the chart has no namespace of
its own; installing into `default` is what CKV_K8S_21 would rightly flag).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from alert_history_cache.chart import CHART_DIR, REPO_ROOT, render

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
SECURITY_DOC = REPO_ROOT / "docs" / "security.md"
CI_DIR = CHART_DIR / "ci"
CI_SETS = sorted(p.name.removesuffix("-values.yaml") for p in CI_DIR.glob("*-values.yaml"))
NAMESPACE = "alert-history"

pytestmark = pytest.mark.skipif(not CHECKOV.exists(), reason=f"{CHECKOV} missing (scripts/setup.sh installs it)")


def rendered(name: str) -> list[dict]:
    values = yaml.safe_load((CI_DIR / f"{name}-values.yaml").read_text()) or {}
    return list(render(values, namespace=NAMESPACE))


def without_skips(objects: list[dict]) -> list[dict]:
    out = []
    for obj in objects:
        obj = json.loads(json.dumps(obj))
        annotations = obj.get("metadata", {}).get("annotations") or {}
        for key in [k for k in annotations if k.startswith("checkov.io/skip")]:
            del annotations[key]
        out.append(obj)
    return out


def run_checkov(directory: Path) -> dict[str, dict]:
    """checkov over one folder per values set; returns set name -> {failed: [...], skipped: [...], summary}."""
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    reports = json.loads(proc.stdout) if proc.stdout.strip() else []
    reports = reports if isinstance(reports, list) else [reports]
    out: dict[str, dict] = {}
    for report in reports:
        if "results" not in report:
            continue
        for status in ("failed_checks", "skipped_checks", "passed_checks"):
            for check in report["results"].get(status, []):
                name = check["file_path"].strip("/").split("/")[0]
                entry = out.setdefault(name, {"failed_checks": [], "skipped_checks": [], "passed_checks": []})
                entry[status].append(check)
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
    return out


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> tuple[dict, dict]:
    with_skips = tmp_path_factory.mktemp("checkov-rendered")
    no_skips = tmp_path_factory.mktemp("checkov-no-skips")
    for name in CI_SETS:
        objects = rendered(name)
        if not objects:
            continue
        for root, objs in ((with_skips, objects), (no_skips, without_skips(objects))):
            (root / name).mkdir()
            (root / name / "rendered.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return run_checkov(with_skips), run_checkov(no_skips)


def test_every_ci_set_is_scanned(scans):
    results, _ = scans
    assert len(CI_SETS) >= 5
    empty = [name for name in CI_SETS if not rendered(name)]
    assert empty == ["lite"], "only the lite profile renders nothing"
    for name in set(CI_SETS) - set(empty):
        assert len(results[name]["passed_checks"]) > 50, f"{name}: checkov saw too little"


def test_zero_failed_checks(scans):
    results, _ = scans
    failed = [f"{name}: {c['check_id']} {c['check_name']} on {c['resource']}"
              for name, r in results.items() for c in r["failed_checks"]]
    assert failed == []


def test_every_skip_has_a_reason_and_is_needed(scans):
    results, bare = scans
    for name, r in results.items():
        skipped = {(c["check_id"], c["resource"]) for c in r["skipped_checks"]}
        for c in r["skipped_checks"]:
            assert len(c["check_result"].get("suppress_comment", "")) > 20, f"{name}: {c['check_id']} has no reason"
        # Without the annotations, exactly the skipped checks fail.
        failed_bare = {(c["check_id"], c["resource"]) for c in bare[name]["failed_checks"]}
        assert failed_bare == skipped, f"{name}: skips not needed {sorted(skipped - failed_bare)}, " \
                                       f"failures not skipped {sorted(failed_bare - skipped)}"


def test_skipped_checks_are_documented_with_their_reasons(scans):
    results, _ = scans
    doc = SECURITY_DOC.read_text()
    reasons = {(c["check_id"], c["check_result"]["suppress_comment"])
               for r in results.values() for c in r["skipped_checks"]}
    assert reasons
    for check_id, reason in sorted(reasons):
        row = [line for line in doc.splitlines() if check_id in line and line.startswith("|")]
        assert row, f"docs/security.md does not list {check_id}"
        assert any(_words(reason) <= _words(line) for line in row), \
            f"docs/security.md's row for {check_id} does not give its reason: {reason!r}"


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower().replace("`", "")))
