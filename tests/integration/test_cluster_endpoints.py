"""Endpoints follow readiness: a SIGSTOPped server fails its readiness probe and leaves the client Service
within a second (new connections to the ClusterIP are refused at once rather than hanging on a frozen
server) while the headless Service (publishNotReadyAddresses) keeps its DNS record; the liveness probe then
kills it, the kubelet restarts it, and the Ready server is back behind the same ClusterIP, again within a
second of its readiness."""

from __future__ import annotations

import signal
import socket
import time

import pytest
import redis

from alert_history_cache.waiting import wait_until

pytestmark = pytest.mark.integration

SERVICE = "alerthistory-redis"
# Probes that notice a frozen server quickly (1 s periods and timeouts, readiness fails at the first miss) and
# a short grace period: a stopped process ignores SIGTERM, so the liveness kill ends with SIGKILL after it.
QUICK = {"valkey": {"probes": {"readiness": {"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1},
                               "liveness": {"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3}},
                    "terminationGracePeriodSeconds": 4, "settings": {"shutdownTimeout": 2}}}


def transition(pod, ready: bool, after: float) -> float:
    return wait_until(lambda: next((at for at, r in pod.kubelet.ready_transitions if r == ready and at >= after),
                                   None), 60, f"pod ready={ready}", interval=0.05)


def programmed_at(cluster, wanted, after: float) -> float:
    """When the proxy was last reprogrammed with the Service's endpoints == wanted, after `after`."""
    def found():
        return next((at for at, eps in cluster.endpoint_history if at >= after and eps[SERVICE] == wanted), None)
    return wait_until(found, 10, f"{SERVICE} endpoints {wanted}", interval=0.02)


def test_sigstopped_server_leaves_the_service_and_its_restart_brings_it_back(make_stack, tmp_path) -> None:
    stack = make_stack(values=QUICK).start()
    cluster, pod = stack.cluster, stack.pod
    assert cluster.service(SERVICE).endpoints == (pod.ip,)
    app = stack.client()
    assert app.set("timer:1", "due")
    restarts = pod.kubelet.status["valkey"].restarts

    t_stop = time.monotonic()
    stack.kill_server(signal.SIGSTOP)
    not_ready = transition(pod, False, t_stop)
    removed = programmed_at(cluster, (), t_stop)
    assert removed - not_ready < 1.0, f"endpoints reprogrammed {removed - not_ready:.2f}s after NotReady"
    assert cluster.service(SERVICE).endpoints == ()
    # No endpoint: the ClusterIP refuses at once (no hang on the frozen server behind it).
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((stack.service_host, stack.port), timeout=5)
    assert time.monotonic() - t0 < 1.0
    status = stack.status()
    assert next(s for s in status["services"] if s["name"] == SERVICE)["endpoints"] == []
    assert status["pods"][0]["ready"] is False
    # The headless Service publishes not-ready addresses: the stable name keeps its record meanwhile.
    fqdn = f"{pod.name}.alerthistory-redis-headless.default.svc"
    hosts = pod.hosts_file.read_text()
    assert f"{pod.ip}\t{fqdn}.cluster.local\t{fqdn}\t" in hosts  # the record, not only the kubelet's own line
    assert f"{pod.ip}\talerthistory-redis-headless.default.svc.cluster.local\t" in hosts

    # Liveness kills the frozen server (a stopped process ignores SIGTERM until SIGKILL after the grace
    # period), the kubelet restarts it, and readiness brings it back.
    back = transition(pod, True, not_ready)
    added = programmed_at(cluster, (pod.ip,), not_ready)
    assert added - back < 1.0, f"endpoints reprogrammed {added - back:.2f}s after Ready"
    assert pod.kubelet.status["valkey"].restarts == restarts + 1
    assert wait_until(lambda: stack.client().get("timer:1"), 10, "the key through the ClusterIP",
                      ignore=(redis.ConnectionError,)) == "due"
    assert next(s for s in stack.status()["services"] if s["name"] == SERVICE)["endpoints"] == [pod.ip]
