"""Waiting on Prometheus and Alertmanager of a local stack: an alert firing in both, then resolved in both."""

from __future__ import annotations

from alert_history_cache.waiting import wait_until


def prometheus_firing(stack, name: str) -> list[dict]:
    return stack.query(f'ALERTS{{alertname="{name}",alertstate="firing"}}')


def alertmanager_active(stack, name: str) -> list[dict]:
    return [a for a in stack.alertmanager_alerts()
            if a["labels"].get("alertname") == name and a["status"]["state"] == "active"]


def wait_firing(stack, name: str, timeout: float = 30) -> dict:
    """The alert fires in Prometheus and reaches Alertmanager; returns Alertmanager's copy."""
    wait_until(lambda: prometheus_firing(stack, name), timeout, f"{name} firing in Prometheus", interval=0.25)
    return wait_until(lambda: alertmanager_active(stack, name), timeout, f"{name} in Alertmanager",
                      interval=0.25)[0]


def wait_resolved(stack, name: str, timeout: float = 30) -> None:
    """Prometheus no longer has the alert (pending or firing) and Alertmanager no longer holds it active."""
    wait_until(lambda: not stack.query(f'ALERTS{{alertname="{name}"}}') and not alertmanager_active(stack, name),
               timeout, f"{name} to resolve", interval=0.25)
