"""Release hygiene: SemVer versions, no chart change without a version bump or an Unreleased CHANGELOG entry
(against the last release: its tag, or until the first tag the CHANGELOG's newest released heading), and the
`helm package` archive renders as the chart directory does."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.values import CI_DIR, CI_SETS, load_yaml

from alert_history_cache import chart, release
from alert_history_cache.cli import main


def test_the_chart_versions_are_semver():
    assert release.semver_problems(release.chart_metadata()) == []


def test_a_version_that_is_not_semver_is_named():
    assert release.semver_problems({"version": "0.1", "appVersion": "8.1"}) == [
        "Chart.yaml version: '0.1' is not a SemVer 2.0 version (X.Y.Z)",
        "Chart.yaml appVersion: '8.1' is not a SemVer 2.0 version (X.Y.Z)"]


def test_this_checkout_changes_the_chart_only_with_a_bump_or_a_changelog_entry():
    assert release.hygiene_problems() == []


# --- the rule, on a scratch repository ------------------------------------------------------------------------

CHANGELOG = "# Changelog\n\n## [Unreleased]\n\n{unreleased}\n## [0.1.0]\n\n### Added\n- the chart\n"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose chart was released as 0.1.0 (CHANGELOG heading, no tag yet)."""
    shutil.which("git") or pytest.fail("git is required")
    chart_dir = tmp_path / "charts" / "alert-history"
    (chart_dir / "templates").mkdir(parents=True)
    (chart_dir / "Chart.yaml").write_text("apiVersion: v2\nname: alert-history\nversion: 0.1.0\nappVersion: 8.1.8\n")
    (chart_dir / "values.yaml").write_text("a: 1\n")
    (chart_dir / "templates" / "cm.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "CHANGELOG.md").write_text(CHANGELOG.format(unreleased=""))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "release 0.1.0")
    return tmp_path


def test_an_unchanged_chart_passes(repo):
    assert release.hygiene_problems(repo) == []


@pytest.mark.parametrize("path", ["templates/cm.yaml", "templates/new.yaml", "values.yaml"])
def test_a_chart_change_without_bump_or_entry_fails_naming_the_file(repo, path):
    (repo / "charts" / "alert-history" / path).write_text("changed: true\n")
    problems = release.hygiene_problems(repo)
    assert len(problems) == 1
    assert f"charts/alert-history/{path} changed since 0.1.0 (CHANGELOG heading [0.1.0])" in problems[0]


def test_a_changelog_entry_or_a_bump_lets_a_change_through(repo):
    (repo / "charts" / "alert-history" / "templates" / "cm.yaml").write_text("kind: Secret\n")
    git(repo, "commit", "-qam", "change")
    assert release.hygiene_problems(repo) != []
    (repo / "CHANGELOG.md").write_text(CHANGELOG.format(unreleased="### Changed\n- cm is a Secret\n"))
    assert release.hygiene_problems(repo) == []
    (repo / "CHANGELOG.md").write_text(CHANGELOG.format(unreleased=""))
    chart_yaml = repo / "charts" / "alert-history" / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.1.0", "version: 0.2.0"))
    assert release.hygiene_problems(repo) == []


def test_a_tag_is_the_baseline_once_there_is_one(repo):
    (repo / "charts" / "alert-history" / "values.yaml").write_text("a: 2\n")
    git(repo, "commit", "-qam", "change")
    git(repo, "tag", "alert-history-0.1.0")
    assert release.baseline(repo, CHANGELOG.format(unreleased="")).how == "tag alert-history-0.1.0"
    assert release.hygiene_problems(repo) == []  # the change is part of the tagged release
    (repo / "charts" / "alert-history" / "values.yaml").write_text("a: 3\n")
    assert "since 0.1.0 (tag alert-history-0.1.0)" in release.hygiene_problems(repo)[0]


def test_a_version_older_than_the_release_fails(repo):
    chart_yaml = repo / "charts" / "alert-history" / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.1.0", "version: 0.0.9"))
    assert release.hygiene_problems(repo) == [
        "Chart.yaml version 0.0.9 is older than the last release 0.1.0 (CHANGELOG heading [0.1.0])"]


# --- helm package ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return release.package(tmp_path_factory.mktemp("package"))


def test_the_archive_is_named_by_the_version_and_leaves_ci_values_out(archive):
    assert archive.name == f"alert-history-{release.chart_metadata()['version']}.tgz"
    names = tarfile.open(archive).getnames()
    assert "alert-history/values.schema.json" in names and "alert-history/templates/_helpers.tpl" in names
    assert not [n for n in names if n.startswith("alert-history/ci/")]


@pytest.mark.parametrize("name", CI_SETS)
def test_the_archive_renders_like_the_chart_directory(archive, name):
    values = load_yaml(CI_DIR / f"{name}-values.yaml")
    from_archive = chart.render(values, chart_dir=archive)
    assert len(from_archive) > 0 or name == "lite"
    assert from_archive.to_yaml() == chart.render(values).to_yaml()


def test_the_archive_refuses_bad_values_like_the_directory(archive):
    with pytest.raises(chart.RenderError, match="maxmemory"):
        chart.render({"valkey": {"settings": {"maxmemory": "lots"}}}, chart_dir=archive)


def test_the_package_command_prints_the_archive(tmp_path):
    result = CliRunner().invoke(main, ["package", "--destination", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert path.parent == tmp_path and path.is_file()
    assert release.chart_metadata()["version"] in path.name
