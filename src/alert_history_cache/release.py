"""Release hygiene: the chart's versions, what changed since the last release, and `helm package`.

The last release is the newest git tag `alert-history-X.Y.Z` (chart-releaser's tag name). Until the first tag
exists, it is the commit that added the newest released `## [X.Y.Z]` heading to CHANGELOG.md. A change to the
chart's templates, values.yaml or values.schema.json since then needs a version bump in Chart.yaml or an
entry under `## [Unreleased]` in CHANGELOG.md.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import helm_python
import semver
import yaml

from . import chart

TAG_PREFIX = "alert-history-"
# What users see of a release: the templates and the values API.
WATCHED = ("templates", "values.yaml", "values.schema.json")
_HEADING = re.compile(r"^## \[([^\]]+)\]", re.M)


class ReleaseError(Exception):
    """The chart's version, the CHANGELOG or the git history cannot answer the question."""


def chart_metadata(chart_dir: Path = chart.CHART_DIR) -> dict:
    return yaml.safe_load((chart_dir / "Chart.yaml").read_text())


def semver_problems(metadata: dict) -> list[str]:
    """Chart.yaml keys `version` and `appVersion` that are not strict SemVer 2.0 (X.Y.Z[-pre][+build])."""
    problems = []
    for key in ("version", "appVersion"):
        value = str(metadata.get(key, ""))
        if not semver.Version.is_valid(value):
            problems.append(f"Chart.yaml {key}: {value!r} is not a SemVer 2.0 version (X.Y.Z)")
    return problems


def changelog_sections(text: str) -> dict[str, str]:
    """Each `## [NAME]` section of a Keep a Changelog file, by NAME, in file order."""
    matches = list(_HEADING.finditer(text))
    return {m.group(1): text[m.end():(matches[i + 1].start() if i + 1 < len(matches) else len(text))]
            for i, m in enumerate(matches)}


def released_versions(text: str) -> list[str]:
    """The released versions of the CHANGELOG, newest first (every heading but Unreleased)."""
    names = [n for n in changelog_sections(text) if n.lower() != "unreleased"]
    bad = [n for n in names if not semver.Version.is_valid(n)]
    if bad:
        raise ReleaseError(f"CHANGELOG.md: release heading(s) {bad} are not SemVer versions")
    return sorted(names, key=semver.Version.parse, reverse=True)


def unreleased_entries(text: str) -> list[str]:
    """The list items under `## [Unreleased]`."""
    section = changelog_sections(text).get("Unreleased", "")
    return [line for line in section.splitlines() if line.lstrip().startswith(("- ", "* "))]


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    except FileNotFoundError as exc:
        raise ReleaseError("git is not installed; the release check needs the repository's history") from exc
    except subprocess.CalledProcessError as exc:
        raise ReleaseError(f"git {' '.join(args)}: {exc.stderr.strip()}") from exc
    return done.stdout.strip()


@dataclass(frozen=True)
class Baseline:
    version: str
    commit: str
    how: str  # "tag alert-history-X.Y.Z" or "CHANGELOG heading [X.Y.Z]"


def baseline(repo: Path, changelog: str) -> Baseline:
    """The last release: the newest `alert-history-X.Y.Z` tag, else the commit that added the newest
    CHANGELOG release heading."""
    tags = [t[len(TAG_PREFIX):] for t in _git(repo, "tag", "--list", f"{TAG_PREFIX}*").split()]
    tags = [t for t in tags if semver.Version.is_valid(t)]
    if tags:
        newest = max(tags, key=semver.Version.parse)
        return Baseline(newest, _git(repo, "rev-list", "-n1", TAG_PREFIX + newest), f"tag {TAG_PREFIX}{newest}")
    versions = released_versions(changelog)
    if not versions:
        raise ReleaseError("no alert-history-X.Y.Z tag and no released version in CHANGELOG.md")
    newest = versions[0]
    found = _git(repo, "log", "--format=%H", "--reverse", "-S", f"## [{newest}]", "--", "CHANGELOG.md").split()
    if not found:
        raise ReleaseError(f"CHANGELOG.md heading [{newest}] is in no commit (a shallow clone? fetch the history)")
    return Baseline(newest, found[0], f"CHANGELOG heading [{newest}]")


def changed_chart_files(repo: Path, since: str, chart_dir: Path) -> list[str]:
    """Watched chart files that differ between commit `since` and the working tree (committed or not)."""
    rel = chart_dir.resolve().relative_to(repo.resolve())
    paths = [str(rel / w) for w in WATCHED]
    out = _git(repo, "diff", "--name-only", since, "--", *paths)
    untracked = _git(repo, "ls-files", "--others", "--exclude-standard", "--", *paths)
    return sorted(set(out.split()) | set(untracked.split()))


def hygiene_problems(repo: Path = chart.REPO_ROOT, chart_dir: Path | None = None) -> list[str]:
    """Why the chart is not ready to merge as far as versions go; empty when it is."""
    chart_dir = chart_dir or repo / "charts" / "alert-history"
    metadata = chart_metadata(chart_dir)
    problems = semver_problems(metadata)
    if problems:
        return problems
    changelog = (repo / "CHANGELOG.md").read_text()
    version = semver.Version.parse(str(metadata["version"]))
    released = released_versions(changelog)
    if unreleased_entries(changelog) and released:
        # An Unreleased entry satisfies the rule whatever changed, so no history is needed (a shallow clone,
        # or a source archive without .git); only the version must not go back.
        if version < semver.Version.parse(released[0]):
            return [f"Chart.yaml version {version} is older than the last release {released[0]} (CHANGELOG.md)"]
        return []
    base = baseline(repo, changelog)
    if version < semver.Version.parse(base.version):
        return [f"Chart.yaml version {version} is older than the last release {base.version} ({base.how})"]
    if version > semver.Version.parse(base.version):
        return []  # a bump: the release's own CHANGELOG heading is the release manager's step
    changed = changed_chart_files(repo, base.commit, chart_dir)
    if changed and not unreleased_entries(changelog):
        return [f"{', '.join(changed)} changed since {base.version} ({base.how}): bump Chart.yaml version "
                "or add an entry under '## [Unreleased]' in CHANGELOG.md"]
    return []


def package(destination: Path, chart_dir: Path = chart.CHART_DIR) -> Path:
    """`helm package` through the Helm library: `<destination>/alert-history-<version>.tgz` (.helmignore applies)."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with helm_python.Chart.load(str(chart_dir)) as loaded:
            return Path(loaded.save(str(destination)))
    except helm_python.HelmError as exc:
        raise ReleaseError(f"helm package {chart_dir}: {exc}") from exc
