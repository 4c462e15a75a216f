"""The one parser of each unit the toolkit reads: Kubernetes quantities, Valkey sizes and durations.

Kubernetes quantities ("512Mi", "500m", "1e3") follow the API's suffixes; Valkey sizes ("384mb", "1gb") follow
the server's config syntax (k/kb/m/mb/g/gb, all powers of 1024 but the bare k/m/g, which are powers of 1000);
durations accept what users type in Prometheus and k6 ("500ms", "30s", "5m", "1h30m", "1d") and plain seconds.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_QUANTITY_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([A-Za-z]*)")
_VALKEY_SIZE = {"": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


class UnitError(ValueError):
    """A value is not in the unit's syntax; the message quotes it."""


def quantity(text: str | int | float) -> Decimal:
    """A Kubernetes quantity ("512Mi", "500m", "1e3", 2) as an exact number."""
    if isinstance(text, bool):
        raise UnitError(f"not a Kubernetes quantity: {text!r}")
    match = _QUANTITY.fullmatch(str(text).strip())
    if not match or match.group(2) not in _QUANTITY_SUFFIX:
        raise UnitError(f"not a Kubernetes quantity: {text!r}")
    try:
        return Decimal(match.group(1)) * Decimal(_QUANTITY_SUFFIX[match.group(2)])
    except InvalidOperation as exc:
        raise UnitError(f"not a Kubernetes quantity: {text!r}") from exc


def memory_bytes(text: str | int | None) -> int | None:
    """A Kubernetes memory quantity in bytes (rounded up, as the kubelet does); None for unset."""
    if text in (None, ""):
        return None
    return math.ceil(quantity(text))


def cpu_millis(text: str | int | float | None) -> int | None:
    """A Kubernetes CPU quantity ("500m", "1", 0.5) in millicores (rounded up); None for unset."""
    if text in (None, ""):
        return None
    return math.ceil(quantity(text) * 1000)


def valkey_bytes(text: str | int) -> int:
    """A Valkey/Redis size from its config ("384mb", "1gb", "100000") in bytes."""
    match = re.fullmatch(r"(\d+)([a-z]*)", str(text).strip().lower())
    if not match or match.group(2) not in _VALKEY_SIZE:
        raise UnitError(f"not a Valkey size: {text!r} (use e.g. 384mb, 1gb, 100000)")
    return int(match.group(1)) * _VALKEY_SIZE[match.group(2)]


def duration_seconds(text: str | int | float) -> float:
    """A duration in seconds: "30s", "5m", "1h30m", "250ms", or a plain number of seconds."""
    if isinstance(text, bool):
        raise UnitError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        t = str(text).strip()
        try:
            value = float(t)
        except ValueError:
            parts = _DURATION.findall(t)
            if not t or "".join(n + u for n, u in parts) != t:
                raise UnitError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m, 250ms or seconds)") from None
            value = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise UnitError(f"not a duration: {text!r} (must be finite and not negative)")
    return value
