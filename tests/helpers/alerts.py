"""Waiting on Prometheus and Alertmanager of a local stack: an alert firing in both, then resolved in both."""

from __future__ import annotations

from datetime import datetime

from alert_history_cache.waiting import wait_until


def prometheus_firing(stack, name: str) -> list[dict]:
    return stack.query(f'ALERTS{{alertname="{name}",alertstate="firing"}}')


def has_labels(labels: dict, expected: dict | None) -> bool:
    """Every expected label has that value; an expected None means the label is absent."""
    return all(labels.get(k) == (None if v is None else str(v)) for k, v in (expected or {}).items())


def alertmanager_active(stack, name: str, labels: dict | None = None) -> list[dict]:
    return [a for a in stack.alertmanager_alerts()
            if a["labels"].get("alertname") == name and a["status"]["state"] == "active"
            and has_labels(a["labels"], labels)]


def wait_firing(stack, name: str, timeout: float = 30, labels: dict | None = None) -> dict:
    """The alert fires in Prometheus and reaches Alertmanager (with these labels, if given); returns
    Alertmanager's copy."""
    wait_until(lambda: [a for a in prometheus_firing(stack, name) if has_labels(a["metric"], labels)], timeout,
               f"{name} {labels or ''} firing in Prometheus", interval=0.25)
    return wait_until(lambda: alertmanager_active(stack, name, labels), timeout,
                      f"{name} {labels or ''} in Alertmanager", interval=0.25)[0]


def wait_resolved(stack, name: str, timeout: float = 30) -> None:
    """Prometheus no longer has the alert (pending or firing) and Alertmanager no longer holds it active."""
    wait_until(lambda: not stack.query(f'ALERTS{{alertname="{name}"}}') and not alertmanager_active(stack, name),
               timeout, f"{name} to resolve", interval=0.25)


def wait_rules_evaluated_after(stack, t: float, timeout: float = 30) -> None:
    """Every rule group has been evaluated at or after wall-clock time `t` (its lastEvaluation, from /api/v1/rules):
    what a test waits for before it asserts that nothing fires."""
    def evaluated() -> bool:
        groups = stack.prometheus_api("rules")["groups"]
        return bool(groups) and all(datetime.fromisoformat(g["lastEvaluation"]).timestamp() >= t for g in groups)
    wait_until(evaluated, timeout, f"every rule group to be evaluated after {t:.1f}", interval=0.25)
