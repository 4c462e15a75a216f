"""The one place that renders the chart: real Helm (helm_python, the Helm Go library), no subprocess."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import helm_python
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "alert-history"
DEFAULT_RELEASE = "alerthistory"
DEFAULT_NAMESPACE = "default"


class RenderError(Exception):
    """Helm refused the values or a template failed; the message is Helm's."""


@functools.lru_cache(maxsize=1)
def _chart(path: str) -> helm_python.Chart:
    return helm_python.Chart.load(path)


def deep_merge(base: dict, override: dict) -> dict:
    """Helm's merge of values files: maps merge key by key, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_values(files: Iterable[str | Path] = (), sets: Iterable[str] = ()) -> dict:
    """User values from -f files (in order) then --set KEY=VALUE pairs, parsed by Helm's own strvals."""
    values: dict = {}
    for f in files:
        try:
            loaded = yaml.safe_load(Path(f).read_text()) or {}
        except yaml.YAMLError as exc:
            raise RenderError(f"-f {f}: not valid YAML: {' '.join(str(exc).split())}") from exc
        if not isinstance(loaded, dict):
            raise RenderError(f"-f {f}: the top level must be a mapping of values, not {type(loaded).__name__}")
        values = deep_merge(values, loaded)
    for s in sets:
        try:
            parsed = helm_python.parse_set_string(s)
        except helm_python.HelmError as exc:
            raise RenderError(f"--set {s}: {' '.join(str(exc).split())}") from exc
        if not parsed:  # strvals gives nothing back for some malformed keys ("a[=1") instead of an error
            raise RenderError(f"--set {s}: sets no value; expected KEY=VALUE in Helm --set syntax, "
                              "e.g. valkey.settings.maxmemory=256mb")
        values = deep_merge(values, parsed)
    return values


@dataclass
class Manifests:
    """Rendered objects, indexed by kind and name, plus the raw documents per template."""

    templates: dict[str, str]
    objects: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path in sorted(self.templates):
            if not path.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(self.templates[path]):
                if doc:
                    self.objects.append(doc)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.objects)

    def __len__(self) -> int:
        return len(self.objects)

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict:
        for o in self.of_kind(kind):
            if o["metadata"]["name"] == name:
                return o
        raise KeyError(f"no {kind} named {name!r}; have {self.names(kind)}")

    def names(self, kind: str) -> list[str]:
        return [o["metadata"]["name"] for o in self.of_kind(kind)]

    @property
    def by_kind(self) -> dict[str, dict[str, dict]]:
        index: dict[str, dict[str, dict]] = {}
        for o in self.objects:
            index.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
        return index

    def to_yaml(self) -> str:
        """All documents like `helm template` prints them, with a source comment per template."""
        parts = []
        for path in sorted(self.templates):
            text = self.templates[path].strip()
            if not text or not path.endswith((".yaml", ".yml")):
                continue
            for doc in _split_documents(text):
                parts.append(f"---\n# Source: {path}\n{doc}\n")
        return "".join(parts)


def _split_documents(text: str) -> list[str]:
    docs, current = [], []
    for line in text.splitlines():
        if line.strip() == "---":
            if any(l.strip() and not l.lstrip().startswith("#") for l in current):
                docs.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    if any(l.strip() and not l.lstrip().startswith("#") for l in current):
        docs.append("\n".join(current).strip())
    return docs


def default_values() -> dict:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def render(
    values: dict | None = None,
    *,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    chart_dir: Path = CHART_DIR,
    is_upgrade: bool = False,
) -> Manifests:
    """Render the chart with user values merged over values.yaml; schema and validateValues apply."""
    chart = _chart(str(chart_dir))
    user = values or {}
    try:
        chart.validate_schema(chart.merge_values(user) if hasattr(chart, "merge_values") else user)
        templates = chart.render(
            user, name=release, namespace=namespace, is_install=not is_upgrade, is_upgrade=is_upgrade
        )
    except helm_python.HelmError as exc:
        raise RenderError(str(exc)) from exc
    return Manifests(templates=templates)


def lint(values: dict | None = None, *, kube_version: str | None = None, chart_dir: Path = CHART_DIR) -> dict[str, Any]:
    """`helm lint --strict` through the Helm library."""
    return helm_python.lint(str(chart_dir), values or {}, strict=True, kube_version=kube_version)
