"""Waiting on Prometheus and Alertmanager of a local stack: an alert firing in both, then resolved in both."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def prometheus_firing(stack, name: str) -> list[dict]:
    return stack.query(f'ALERTS{{alertname="{name}",alertstate="firing"}}')


def alertmanager_active(stack, name: str) -> list[dict]:
    return [a for a in stack.alertmanager_alerts()
            if a["labels"].get("alertname") == name and a["status"]["state"] == "active"]


def wait_firing(stack, name: str, timeout: float = 30) -> dict:
    """The alert fires in Prometheus and reaches Alertmanager; returns Alertmanager's copy."""
    wait_for(lambda: prometheus_firing(stack, name), timeout, f"{name} firing in Prometheus")
    return wait_for(lambda: alertmanager_active(stack, name), timeout, f"{name} in Alertmanager")[0]


def wait_resolved(stack, name: str, timeout: float = 30) -> None:
    """Prometheus no longer has the alert (pending or firing) and Alertmanager no longer holds it active."""
    wait_for(lambda: not stack.query(f'ALERTS{{alertname="{name}"}}') and not alertmanager_active(stack, name),
             timeout, f"{name} to resolve")
