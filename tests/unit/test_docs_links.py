"""The repository stands alone (docs/requirements.md#r-standalone-1): no tracked file reads or cites anything
outside it (the sibling folder a development machine may have, its design notes, or the original task text,
which a clone does not have: the requirements are restated in docs/requirements.md), every requirement ID a
file cites is defined there, and every relative link in the Markdown files reaches a tracked file of the
repository, and a heading there when it names one."""

from __future__ import annotations

import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from alert_history_cache import chart

ROOT = chart.REPO_ROOT
# Folders that are never part of the project when the tree is walked without git (tools, caches, results).
UNTRACKED_DIRS = {".git", ".venv", ".venv-checkov", ".venv-nca", "node_modules", "__pycache__", ".pytest_cache",
                  ".setup-stamps", ".state", "results"}
# Exempt: upstream files kept byte for byte (schemas/crds/README.md), whose wording is not ours to change, and
# this file, which spells out what it forbids.
EXEMPT = re.compile(r"^(schemas/crds/.*\.yaml|tests/unit/test_docs_links\.py)$")

# What a clone does not have: the sibling folder (as a path, or built from the repository's parent), the design
# notes kept there, and the original task text, by name or by section number.
FORBIDDEN = {
    "the sibling shared folder": re.compile(r"\.\./shared\b|\.parent\s*/\s*[\"']shared[\"']"),
    # Not a longer name that ends in it, such as docs/ha-design.md.
    "the design notes file": re.compile(r"(?<![\w-])DESIGN\.md\b", re.I),
    "the original task text ('the spec')": re.compile(r"(?<![a-z])the[ _-]spec(?![a-z])", re.I),
    "the original task text ('spec's')": re.compile(r"(?<![a-z])spec's(?![a-z])", re.I),
    "a section of the original task text ('Spec 5.x')": re.compile(r"(?<![a-z])spec[ _-]?5\.", re.I),
}


@lru_cache(maxsize=None)
def tracked_files() -> tuple[str, ...]:
    """Paths (relative, POSIX) of the files a clone has: git's index, or the tree without tool folders."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
        return tuple(sorted(p for p in out.decode().split("\0") if p and (ROOT / p).is_file()))
    except (OSError, subprocess.CalledProcessError):
        found = []
        for top, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in UNTRACKED_DIRS]
            found += [Path(top, f).relative_to(ROOT).as_posix() for f in files]
        return tuple(sorted(found))


def text_of(path: str) -> str | None:
    data = (ROOT / path).read_bytes()
    return None if b"\0" in data else data.decode(errors="replace")


def test_the_file_list_is_the_repository():
    files = set(tracked_files())
    assert {"README.md", "docs/requirements.md", "docs/architecture.md", "tests/unit/test_docs_links.py"} <= files
    assert not any(p.split("/")[0] in UNTRACKED_DIRS for p in files)


@pytest.mark.parametrize("what", FORBIDDEN)
def test_no_tracked_file_cites_what_a_clone_lacks(what):
    pattern = FORBIDDEN[what]
    hits = []
    for path in tracked_files():
        text = None if EXEMPT.match(path) else text_of(path)
        for n, line in enumerate((text or "").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path}:{n}: {line.strip()[:120]}")
    assert not hits, f"{len(hits)} line(s) cite {what}; cite docs/requirements.md instead:\n" + "\n".join(hits)


REQUIREMENT_ID = re.compile(r"\bR-[A-Z]+-\d+\b")


def test_every_cited_requirement_is_defined():
    defined = set(re.findall(r"^### (R-[A-Z0-9-]+)\s*$", (ROOT / "docs" / "requirements.md").read_text(), re.M))
    assert len(defined) >= 20, defined
    missing = []
    for path in tracked_files():
        text = None if EXEMPT.match(path) else text_of(path)
        for n, line in enumerate((text or "").splitlines(), 1):
            missing += [f"{path}:{n}: {i}" for i in REQUIREMENT_ID.findall(line) if i not in defined]
    assert not missing, "requirement IDs not defined in docs/requirements.md:\n" + "\n".join(missing)


def test_the_patterns_catch_what_they_should():
    cases = {
        "the sibling shared folder": ["CRD_DIR = chart.REPO_ROOT.parent / \"shared\" / \"crds\"", "see ../" + "shared" + "/crds",  # split: the repository never holds that path
                                      "ROOT.parent/'shared'"],
        "the design notes file": ["see DESIGN" + ".md", "(design.md)"],
        "the original task text ('the spec')": ["the spec's criteria", "The Spec asks", "meets_the_spec_criteria"],
        "the original task text ('spec's')": ["Spec's 7 minutes"],
        "a section of the original task text ('Spec 5.x')": ["Spec 5.3: failover", "(spec 5.4)", "spec_5.1"],
    }
    for what, lines in cases.items():
        assert all(FORBIDDEN[what].search(line) for line in lines), what
    innocent = ["docs/ha-design.md", "the specified value", "pod spec", 'sts["spec"]["template"]', "the spectrum", "inspect the pod"]
    assert not [line for line in innocent for p in FORBIDDEN.values() if p.search(line)]


# --- Markdown links ------------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)
HTML_ID = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.I)


def markdown_files() -> list[str]:
    return [p for p in tracked_files() if p.endswith(".md")]


def prose(text: str) -> str:
    """The Markdown without fenced code blocks and code spans (a path in code is not a link)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    body = prose(text)
    return INLINE_LINK.findall(body) + REFERENCE_DEF.findall(body)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(path: str) -> frozenset[str]:
    text = FENCE.sub("", (ROOT / path).read_text())
    seen: dict[str, int] = {}
    out = set(HTML_ID.findall(text))
    for heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def broken_links(path: str, text: str | None = None) -> list[str]:
    """Problems of the links in the Markdown file `path` (or in `text`, read as if it were that file)."""
    files = set(tracked_files())
    dirs = {parent.as_posix() for f in files for parent in Path(f).parents if parent != Path(".")}
    problems = []
    for target in links((ROOT / path).read_text() if text is None else text):
        url = urlsplit(target)
        if url.scheme or target.startswith("//"):
            continue  # absolute URLs are not this test's business
        inside = path
        if url.path:
            resolved = Path(os.path.normpath((ROOT / path).parent / unquote(url.path)))
            if not resolved.is_relative_to(ROOT):
                problems.append(f"{path}: {target} points outside the repository")
                continue
            inside = resolved.relative_to(ROOT).as_posix()
            if inside not in files and inside not in dirs:
                problems.append(f"{path}: {target} is not a file of the repository (new? git add it)")
                continue
        if url.fragment and inside.endswith(".md") and url.fragment.lower() not in anchors(inside):
            problems.append(f"{path}: {target} names no heading of {inside}")
    return problems


def test_every_relative_markdown_link_resolves():
    mds = markdown_files()
    assert "README.md" in mds and "docs/requirements.md" in mds and "docs/runbooks/README.md" in mds
    problems = [p for md in mds for p in broken_links(md)]
    assert not problems, "\n".join(problems)


def test_the_link_check_can_fail():
    text = ("[ok](requirements.md#r-persist-1) [gone](nothing.md) [out](../../outside/notes.md) "
            "[anchor](requirements.md#no-such-heading) `[code](not/a/link.md)` [web](https://example.com/x) "
            "[dir](runbooks/) [self](#no-heading-here)\n"
            "```\n[fenced](also/not/a/link.md)\n```\n[ref]: missing-ref.md\n")
    assert links(text) == ["requirements.md#r-persist-1", "nothing.md", "../../outside/notes.md",
                           "requirements.md#no-such-heading", "https://example.com/x", "runbooks/",
                           "#no-heading-here", "missing-ref.md"]
    problems = broken_links("docs/architecture.md", text)  # as if docs/architecture.md said it
    assert [p.split(": ", 2)[1].split(" ")[0] for p in problems] == [
        "nothing.md", "../../outside/notes.md", "requirements.md#no-such-heading", "#no-heading-here",
        "missing-ref.md"], problems


def test_heading_slugs_follow_github():
    assert slug("Passwords across `helm upgrade`") == "passwords-across-helm-upgrade"
    assert slug("R-PERSIST-1") == "r-persist-1"
    assert slug("Load drill: 10,000 req/s, 500 connections") == "load-drill-10000-reqs-500-connections"
    assert slug("See [the README](../README.md)") == "see-the-readme"
