"""Small pieces of Kubernetes semantics the local pod needs: quantities, label selectors, named ports,
$(VAR) expansion and env resolution (value, secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

from .units import quantity


class KubeError(ValueError):
    """The rendered objects ask for something the local pod cannot provide; the message says what."""


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """matchLabels/matchExpressions (or a plain map, as Services use) against a label set."""
    if not selector:
        return False
    match_labels = selector.get("matchLabels", {}) if "matchLabels" in selector or "matchExpressions" in selector \
        else selector
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in selector.get("matchExpressions", []) if isinstance(selector.get("matchExpressions"), list) else []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def container_port(container: dict, port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise KubeError(f"container {container['name']!r} has no port named {port!r}")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values; $$ escapes, unknown refs stay."""
    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, text)


class Objects:
    """Secrets and ConfigMaps the pod can read: the rendered ones plus secrets given from outside
    (for valkey.password.existingSecret)."""

    def __init__(self, manifests, external_secrets: dict[str, dict[str, bytes]] | None = None):
        self.manifests = manifests
        self.external_secrets = external_secrets or {}

    def secret(self, name: str) -> dict[str, bytes]:
        if name in self.external_secrets:
            return self.external_secrets[name]
        try:
            obj = self.manifests.get("Secret", name)
        except KeyError:
            raise KubeError(
                f"Secret {name!r} is not rendered by the chart (valkey.password.existingSecret?): give its keys "
                f"with --secret-file KEY=PATH (or secret_files={{KEY: PATH}})") from None
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return data

    def config_map(self, name: str) -> dict[str, bytes]:
        obj = self.manifests.get("ConfigMap", name)
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data


def resolve_env(container: dict, objects: Objects, fields: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom first, then env in order)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            data = _optional(lambda: objects.secret(source["secretRef"]["name"]), source["secretRef"])
        else:
            data = _optional(lambda: objects.config_map(source["configMapRef"]["name"]), source["configMapRef"])
        env.update({prefix + k: v.decode() for k, v in (data or {}).items()})
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        ref = item.get("valueFrom", {})
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            value = _key(_optional(lambda: objects.secret(r["name"]), r), r, "Secret")
        elif "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            value = _key(_optional(lambda: objects.config_map(r["name"]), r), r, "ConfigMap")
        elif "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
            if label:
                value = fields.get(f"{label.group(1)}:{label.group(2)}", "")
            elif path in fields:
                value = fields[path]
            else:
                raise KubeError(f"env {name}: fieldRef {path!r} is not provided by the local pod")
        elif "resourceFieldRef" in ref:
            r = ref["resourceFieldRef"]
            kind, res = r["resource"].split(".", 1)
            amount = container.get("resources", {}).get(kind, {}).get(res)
            if amount is None:
                raise KubeError(f"env {name}: container has no {r['resource']}")
            value = str(math.ceil(quantity(amount) / quantity(r.get("divisor", "1"))))
        else:
            raise KubeError(f"env {name}: unsupported valueFrom {sorted(ref)}")
        if value is not None:
            env[name] = value
    return env


def _optional(get, ref: dict):
    try:
        return get()
    except (KeyError, KubeError):
        if ref.get("optional"):
            return None
        raise


def _key(data: dict | None, ref: dict, kind: str) -> str | None:
    if data is None:
        return None
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise KubeError(f"{kind} {ref['name']!r} has no key {ref['key']!r}")
    return data[ref["key"]].decode()


def read_secret_files(pairs: dict[str, str | Path]) -> dict[str, bytes]:
    """--secret-file KEY=PATH pairs -> secret data."""
    out = {}
    for key, path in pairs.items():
        data = Path(path).read_bytes()
        out[key] = data[:-1] if data.endswith(b"\n") and not data.endswith(b"\n\n") else data
    return out
