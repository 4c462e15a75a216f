"""The certificate-expiry alert end to end on redis7 (the Valkey wheels have no TLS): the chart's Probe sends a
real blackbox exporter to the data pod's TLS port by the pod's name; a renewal to a certificate valid for one
day (threshold 14 days) fires RedisTLSCertificateExpiringSoon in Prometheus and Alertmanager, a renewal to a
90-day one resolves it. A certificate the blackbox module does not trust leaves no expiry series at all: then
RedisTLSProbeFailing fires instead, so the blind spot never looks green."""

from __future__ import annotations

import time

import pytest

from alert_history_cache import engines, local_certs
from alert_history_cache.monitoring_stack import MonitoringOptions
from alert_history_cache.waiting import wait_until
from helpers.alerts import wait_firing, wait_resolved, wait_rules_evaluated_after
from helpers.local_stack import exporter_or_skip

pytestmark = pytest.mark.integration

JOB = 'job="alerthistory-redis-tls",namespace="default"'
RELOAD_INTERVAL = 1
VALUES = {
    "valkey": {"tls": {"enabled": True, "reloadInterval": RELOAD_INTERVAL,
                       "expiryProbe": {"enabled": True, "proberUrl": "blackbox.monitoring.svc:9115",
                                       "interval": "1s", "scrapeTimeout": "1s"}}},
    "monitoring": {"rules": {"redisTLSCertificateExpiringSoon": {"for": "0s"}, "redisTLSProbeFailing": {"for": "0s"}}},
}


def wait_expiry(stack, data: dict[str, bytes]) -> float:
    """Until the probe reports the expiry of this Secret's chain: the earliest of the server certificate and its
    CA (the server sends the CA with its certificate, and the blackbox exporter takes the earliest it was sent)."""
    expected = min(local_certs.not_after(data["tls.crt"]), local_certs.not_after(data["ca.crt"]))
    wait_until(lambda: [s for s in stack.query(f"probe_ssl_earliest_cert_expiry{{{JOB}}}")
                        if float(s["value"][1]) == expected], RELOAD_INTERVAL + 30,
               f"probe_ssl_earliest_cert_expiry {expected:.0f}")
    return (expected - time.time()) / 86400


def secret_data(stack) -> dict[str, bytes]:
    [certificate] = stack.manifests.of_kind("Certificate")
    return stack.cluster.objects.external_secrets[certificate["spec"]["secretName"]]


def test_the_expiry_alert_fires_for_a_short_lived_certificate_and_resolves_after_renewal(make_stack, tmp_path):
    exporter_or_skip()
    try:
        engines.BLACKBOX.binary  # noqa: B018
    except engines.MissingBinary as exc:
        pytest.skip(str(exc))
    stack = make_stack(values=VALUES, engine="redis7", monitoring=True,
                       monitoring_options=MonitoringOptions(evaluation_interval="1s", resend_delay="1s")).start()
    loaded = {r["name"] for g in stack.prometheus_api("rules")["groups"] for r in g["rules"] if r["type"] == "alerting"}
    assert {"RedisTLSCertificateExpiringSoon", "RedisTLSProbeFailing"} <= loaded

    # The probe verifies the pod's certificate by its headless name. The Certificate lasts 90 days, the local CA 30:
    # the earliest, 30 days, is above the 14-day threshold.
    up = wait_until(lambda: stack.query(f"probe_success{{{JOB}}} == 1"), 60, "a successful TLS probe")
    assert up[0]["metric"]["pod"] == "alerthistory-redis-0"
    assert up[0]["metric"]["instance"] == \
        "alerthistory-redis-0.alerthistory-redis-headless.default.svc.cluster.local:6379"
    assert 29 < wait_expiry(stack, secret_data(stack)) <= 30
    wait_rules_evaluated_after(stack, time.time() + 2)
    assert stack.query('ALERTS{alertname=~"RedisTLS.*"}') == []

    # A renewal to one day: the tls-reloader loads it, the next probe sees it, the alert fires.
    run_id = stack.client("admin").info("server")["run_id"]
    short = stack.renew_certificate(days=1)
    alert = wait_firing(stack, "RedisTLSCertificateExpiringSoon", RELOAD_INTERVAL + 30)
    assert alert["labels"]["pod"] == "alerthistory-redis-0" and alert["labels"]["severity"] == "warning"
    assert "expires in 1.0 days" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"].endswith("/RedisTLSCertificateExpiringSoon.md")
    assert wait_expiry(stack, short) <= 1

    # cert-manager's next renewal (90 days) resolves it.
    renewed = stack.renew_certificate()
    wait_resolved(stack, "RedisTLSCertificateExpiringSoon", RELOAD_INTERVAL + 30)
    assert wait_expiry(stack, renewed) > 29
    assert stack.client("admin").info("server")["run_id"] == run_id  # both renewals reached it without a restart

    # A certificate from a CA the blackbox module does not trust: no handshake, no expiry series.
    other = local_certs.LocalCA(tmp_path / "other-ca")
    [certificate] = stack.manifests.of_kind("Certificate")
    stack.update_secret(certificate["spec"]["secretName"], other.issue(certificate, days=1))
    failing = wait_firing(stack, "RedisTLSProbeFailing", RELOAD_INTERVAL + 30)
    assert failing["labels"]["pod"] == "alerthistory-redis-0"
    wait_until(lambda: not stack.query(f"probe_ssl_earliest_cert_expiry{{{JOB}}}"), 30,
               "the expiry series to go stale")
    # The one-day certificate is served now, yet the expiry alert cannot see it: this is what ProbeFailing is for.
    assert not stack.query('ALERTS{alertname="RedisTLSCertificateExpiringSoon",alertstate="firing"}')
