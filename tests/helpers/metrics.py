"""Reading a Prometheus exposition page (redis_exporter's /metrics) through the project's one HTTP client."""

from __future__ import annotations

import re

from alert_history_cache.promapi import http


def scrape(url: str) -> str:
    """The /metrics page at `url` (no proxies)."""
    return http("GET", url).decode()


def families(page: str, prefix: str = "redis_") -> set[str]:
    """Metric family names declared by `# TYPE` lines that start with `prefix`."""
    return {line.split()[2] for line in page.splitlines() if line.startswith(f"# TYPE {prefix}")}


def sample_names(page: str) -> set[str]:
    """Names of the samples on the page (one per series name, labels stripped)."""
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in page.splitlines() if line and not line.startswith("#")}
