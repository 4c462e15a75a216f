"""The toolkit's one parser per unit: Kubernetes quantities, Valkey sizes, durations."""

from decimal import Decimal

import pytest

from alert_history_cache.units import (UnitError, cpu_millis, duration_seconds, memory_bytes, quantity,
                                       valkey_bytes)


@pytest.mark.parametrize("text, number", [
    ("512Mi", 512 * 2**20), ("1Gi", 2**30), ("1G", 10**9), ("500m", Decimal("0.5")), ("1e3", 1000),
    (2, 2), ("0.5", Decimal("0.5")), ("1.5Gi", 3 * 2**29), (".5", Decimal("0.5")), ("100k", 100_000),
])
def test_quantity(text, number):
    assert quantity(text) == number


@pytest.mark.parametrize("text", ["", "Mi", "5 Mi", "5mb", "5MiB", "1,5Gi", "abc", "--1", True])
def test_quantity_refuses(text):
    with pytest.raises(UnitError, match="not a Kubernetes quantity"):
        quantity(text)


def test_memory_and_cpu():
    assert memory_bytes("1Gi") == 2**30
    assert memory_bytes("1.5") == 2      # bytes round up, as the kubelet does
    assert memory_bytes(None) is None and memory_bytes("") is None
    assert cpu_millis("500m") == 500 and cpu_millis("1") == 1000 and cpu_millis(0.25) == 250
    assert cpu_millis("1500u") == 2 and cpu_millis(None) is None


@pytest.mark.parametrize("text, number", [
    ("384mb", 384 * 2**20), ("1gb", 2**30), ("1g", 10**9), ("100000", 100_000), (42, 42), ("10kb", 10240),
])
def test_valkey_bytes(text, number):
    assert valkey_bytes(text) == number


@pytest.mark.parametrize("text", ["384Mi", "1.5gb", "-1", "mb", ""])
def test_valkey_bytes_refuses(text):
    with pytest.raises(UnitError, match="not a Valkey size"):
        valkey_bytes(text)


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1m30s", 90), ("45", 45), (12, 12), (1.5, 1.5),
    ("2.5", 2.5), ("1d", 86400), ("0s", 0),
])
def test_duration(text, seconds):
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "30 s", "5x", "1h30", "-5s", "-1", "nan", "inf", True, "30sec"])
def test_duration_refuses(text):
    with pytest.raises(UnitError, match="not a duration"):
        duration_seconds(text)
