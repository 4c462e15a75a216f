"""The one HTTP client of the local Prometheus and Alertmanager (both on 127.0.0.1).

Proxies are never used: the servers are local, and a proxy from the environment (http_proxy) would
otherwise swallow the requests of some callers and not others."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from .waiting import wait_until

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PromAPIError(RuntimeError):
    """Prometheus or Alertmanager answered with an error (or not at all); the message says which."""


def http(method: str, url: str, *, params: dict | None = None, timeout: float = 10) -> bytes:
    """One request without proxies; returns the body, raises PromAPIError on an HTTP or connection error."""
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with _OPENER.open(urllib.request.Request(url, method=method), timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise PromAPIError(f"{method} {url}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise PromAPIError(f"{method} {url}: {exc}") from exc


class _Server:
    """What Prometheus and Alertmanager share: a base URL and the /-/ready endpoint."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def ready(self) -> bool:
        try:
            http("GET", f"{self.url}/-/ready", timeout=2)
            return True
        except PromAPIError:
            return False


class Prometheus(_Server):

    def api(self, path: str, **params) -> dict | list:
        """GET /api/v1/<path> and return its `data`."""
        body = json.loads(http("GET", f"{self.url}/api/v1/{path}", params=params))
        if body.get("status") != "success":
            raise PromAPIError(f"Prometheus {path}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """Instant query: the result vector."""
        return self.api("query", query=promql)["result"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict]:
        return self.api("query_range", query=promql, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")["result"]

    def active_targets(self) -> list[dict]:
        return self.api("targets", state="active")["activeTargets"]

    def rules(self) -> list[dict]:
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]

    def reload(self) -> None:
        """POST /-/reload (needs --web.enable-lifecycle)."""
        http("POST", f"{self.url}/-/reload", timeout=30)

    def firing(self, alertname: str) -> list[dict]:
        """The alert's firing series (ALERTS{alertstate="firing"})."""
        return self.query(f'ALERTS{{alertname="{alertname}",alertstate="firing"}}')

    def alert_series(self, alertname: str) -> list[dict]:
        """The alert's series, pending or firing: empty once it resolved."""
        return self.query(f'ALERTS{{alertname="{alertname}"}}')

    def wait_target_up(self, pod: str, timeout: float = 30) -> dict:
        """An active target of `pod` that Prometheus scraped successfully (new targets reach the scrapers
        every 5 s, so the first scrape comes a few seconds after a start)."""
        def healthy():
            return [t for t in self.active_targets() if t["health"] == "up" and t["labels"].get("pod") == pod]
        return wait_until(healthy, timeout, f"a healthy scrape target for pod {pod}", interval=0.2)[0]

    def wait_scraped_since(self, pod: str, since: float, timeout: float = 30) -> float:
        """Wait for a scrape of `pod` that started at or after `since` (wall time) to be stored: from then on, a
        query over a window that ends at `since` sees the window's last values. Returns that scrape's time."""
        def last_scrape():
            result = self.query(f'max(timestamp(up{{pod="{pod}"}}))')
            t = float(result[0]["value"][1]) if result else 0.0
            return t if t >= since else None
        return wait_until(last_scrape, timeout, f"a scrape of pod {pod} after {since:.1f}", interval=0.5)


class Alertmanager(_Server):
    def alerts(self) -> list[dict]:
        """Alerts Alertmanager holds (API v2)."""
        return json.loads(http("GET", f"{self.url}/api/v2/alerts"))

    def active(self, alertname: str) -> list[dict]:
        """The alert's copies Alertmanager holds active."""
        return [a for a in self.alerts() if a["labels"].get("alertname") == alertname
                and a["status"]["state"] == "active"]
