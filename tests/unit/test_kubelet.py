"""kubelet.py without processes: the probe state machine (thresholds, startup gating, readiness, kills), the
crash-loop back-off, and the httpGet/tcpSocket probe handlers against real local servers.

The kubelet here holds real Container objects that are never started (starting one needs root); probe results
are fed in one at a time through `record`, the one place that reaches into the kubelet's result handling."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from alert_history_cache.container import Container, ContainerSpec
from alert_history_cache.kubelet import Backoff, Kubelet, ProbeState

NAME = "valkey"


def container(name: str = NAME, probes: dict | None = None, ports: list[dict] | None = None) -> Container:
    return Container(ContainerSpec(name=name, argv=["valkey-server"], env={}, rootfs=None,
                                   netns_path=Path("/nonexistent"), log_path=Path("/nonexistent/log"),
                                   probes=probes or {}, raw={"name": name, "ports": ports or []}))


def running_kubelet(*containers: Container) -> Kubelet:
    """A kubelet whose containers count as running (as after their start), none started by a startup probe."""
    k = Kubelet("127.0.0.1", list(containers) or [container()], grace=0.1)
    for name, c in k.containers.items():
        st = k.status[name]
        st.state, st.reason = "running", ""
        st.started = "startup" not in c.spec.probes
    return k


def record(k: Kubelet, kind: str, ok: bool, name: str = NAME, output: str = "") -> None:
    """One probe result, as a probe worker reports it for the container's current incarnation."""
    k._record(name, kind, k.status[name].incarnation, ok, output or ("PONG" if ok else "error"), 0.01)


def events(k: Kubelet, reason: str) -> list[str]:
    return [e["message"] for e in k.events if e["reason"] == reason]


# -- probe state ----------------------------------------------------------------------------------------

def test_probe_defaults_are_kubernetes_defaults():
    p = ProbeState.from_spec("liveness", {})
    assert (p.period, p.timeout, p.failure_threshold, p.success_threshold) == (10, 1, 3, 1)


def test_initial_results():
    """Readiness starts failed (not ready until a probe passes), liveness succeeded, startup unknown."""
    assert {k: ProbeState.from_spec(k, {}).result for k in ("readiness", "liveness", "startup")} == {
        "readiness": "failure", "liveness": "success", "startup": "unknown"}


def test_reset_keeps_the_probe_definition_and_clears_the_counters():
    p = ProbeState.from_spec("readiness", {"periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 4,
                                           "successThreshold": 5})
    p.result, p.successes, p.failures, p.runs, p.last_output = "success", 5, 0, 12, "PONG"
    p.reset()
    assert (p.period, p.timeout, p.failure_threshold, p.success_threshold) == (2, 3, 4, 5)
    assert (p.result, p.successes, p.failures, p.runs, p.last_output) == ("failure", 0, 0, 0, "")


# -- liveness -------------------------------------------------------------------------------------------

def test_liveness_tolerates_failures_below_the_threshold_and_the_next_one_kills():
    k = running_kubelet(container(probes={"liveness": {"failureThreshold": 3}}))
    for _ in range(2):
        record(k, "liveness", False)
    st = k.status[NAME]
    assert st.probes["liveness"].result == "success" and not st.killing
    assert len(events(k, "Unhealthy")) == 2 and events(k, "Killing") == []

    record(k, "liveness", False)
    assert st.probes["liveness"].result == "failure" and st.killing
    assert events(k, "Killing") == [f"Container {NAME} failed liveness probe, will be restarted"]


def test_liveness_failures_must_be_consecutive():
    k = running_kubelet(container(probes={"liveness": {"failureThreshold": 3}}))
    for ok in (False, False, True, False, False):
        record(k, "liveness", ok)
    st = k.status[NAME]
    assert st.probes["liveness"].result == "success" and not st.killing
    assert (st.probes["liveness"].failures, st.probes["liveness"].runs) == (2, 5)


def test_results_are_ignored_while_killing_and_from_an_older_incarnation():
    k = running_kubelet(container(probes={"liveness": {"failureThreshold": 1}}))
    record(k, "liveness", False)
    st = k.status[NAME]
    assert st.killing and st.probes["liveness"].runs == 1
    record(k, "liveness", True)
    assert st.probes["liveness"].runs == 1, "a result arriving during the kill is dropped"

    st.killing, st.incarnation = False, st.incarnation + 1  # the restarted container
    k._record(NAME, "liveness", st.incarnation - 1, False, "stale", 0.01)
    assert st.probes["liveness"].runs == 1, "a result of the previous incarnation is dropped"


# -- readiness ------------------------------------------------------------------------------------------

def test_readiness_needs_success_threshold_consecutive_successes():
    k = running_kubelet(container(probes={"readiness": {"successThreshold": 2, "failureThreshold": 1}}))
    assert not k.pod_ready
    record(k, "readiness", True)
    assert not k.status[NAME].ready
    record(k, "readiness", False)
    record(k, "readiness", True)
    assert not k.status[NAME].ready, "a failure in between starts the count again"
    record(k, "readiness", True)
    assert k.status[NAME].ready and k.pod_ready


def test_readiness_stays_ready_below_the_failure_threshold():
    k = running_kubelet(container(probes={"readiness": {"failureThreshold": 3}}))
    record(k, "readiness", True)
    for _ in range(2):
        record(k, "readiness", False)
    assert k.pod_ready
    record(k, "readiness", False)
    assert not k.pod_ready
    assert [ready for _, ready in k.ready_transitions] == [True, False]
    assert events(k, "Killing") == [], "readiness never kills"


def test_the_pod_is_ready_when_every_container_is():
    k = running_kubelet(container(NAME, probes={"readiness": {}}), container("exporter", probes={"readiness": {}}))
    record(k, "readiness", True)
    assert k.status[NAME].ready and not k.pod_ready
    record(k, "readiness", True, name="exporter")
    assert k.pod_ready
    record(k, "readiness", False, name="exporter")
    record(k, "readiness", False, name="exporter")
    record(k, "readiness", False, name="exporter")
    assert not k.pod_ready and k.status[NAME].ready


# -- startup --------------------------------------------------------------------------------------------

def test_startup_failures_below_the_threshold_wait_and_the_next_one_kills():
    k = running_kubelet(container(probes={"startup": {"failureThreshold": 4}, "liveness": {}}))
    st = k.status[NAME]
    for _ in range(3):
        record(k, "startup", False)
    assert not st.started and not st.killing and st.probes["startup"].result == "unknown"
    record(k, "startup", False)
    assert st.killing and events(k, "Killing") == [f"Container {NAME} failed startup probe, will be restarted"]


def test_a_passed_startup_probe_starts_the_container_once():
    k = running_kubelet(container(probes={"startup": {"failureThreshold": 4}, "readiness": {}}))
    st = k.status[NAME]
    record(k, "startup", False)
    record(k, "startup", True)
    assert st.started and st.probes["startup"].result == "success"
    assert not st.ready, "readiness still has to pass"
    record(k, "readiness", True)
    assert st.ready and k.pod_ready


def test_without_a_readiness_probe_a_started_container_is_ready():
    k = running_kubelet(container(probes={"startup": {}}))
    assert not k.pod_ready
    record(k, "startup", True)
    assert k.pod_ready


# -- crash-loop back-off --------------------------------------------------------------------------------

def delays(backoff: Backoff, crash_times: list[float]) -> list[float]:
    """For each crash, how long after it the container may start again."""
    return [backoff.next_start(t) - t for t in crash_times]


def crash_loop(backoff: Backoff, crashes: int, runs_for: float = 1.0) -> list[float]:
    """Delays of a container that crashes `runs_for` seconds after each restart."""
    got, t = [], 0.0
    for _ in range(crashes):
        due = backoff.next_start(t)
        got.append(due - t)
        t = due + runs_for
    return got


def test_back_off_doubles_from_the_base_to_the_cap():
    assert crash_loop(Backoff(), 9) == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_back_off_with_the_stacks_own_base_and_cap():
    assert crash_loop(Backoff(2.0, 8.0), 6) == [0, 2, 4, 8, 8, 8]


def test_back_off_resets_after_ten_minutes_without_a_crash():
    b = Backoff()
    assert delays(b, [0, 1, 12]) == [0, 10, 20]
    assert delays(b, [12 + 601]) == [0], "more than 10 minutes (2 x the cap) since the last crash: at once"
    assert delays(b, [614]) == [10], "and the doubling starts again from the base"


def test_back_off_does_not_reset_within_ten_minutes():
    b = Backoff()
    assert delays(b, [0, 1]) == [0, 10]
    assert delays(b, [1 + 599]) == [20]


# -- httpGet and tcpSocket probes -----------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self):  # noqa: N802 - the http.server API
        _Handler.seen.append({"path": self.path, "agent": self.headers.get("User-Agent"),
                              "x": self.headers.get("X-Probe")})
        status = int(self.path.strip("/") or 200)
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/200")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_port(http_server):
    _Handler.seen.clear()
    return http_server.server_address[1]


@contextlib.contextmanager
def silent_listener():
    """A port that accepts connections (in the backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def run_probe(spec: dict, ports: list[dict] | None = None, timeout: float = 2) -> tuple[bool, str]:
    c = container(ports=ports)
    return Kubelet("127.0.0.1", [c], grace=0.1)._run_probe(c, spec, timeout)


@pytest.mark.parametrize("status, ok", [(200, True), (204, True), (302, True), (399, True), (400, False),
                                        (500, False), (503, False)])
def test_http_probe_succeeds_on_2xx_and_3xx(http_port, status, ok):
    assert run_probe({"httpGet": {"path": f"/{status}", "port": http_port}}) == (ok, f"HTTP {status}")


def test_http_probe_resolves_named_ports_and_sends_headers(http_port):
    spec = {"httpGet": {"path": "/200", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}}
    assert run_probe(spec, ports=[{"name": "http", "containerPort": http_port}]) == (True, "HTTP 200")
    assert _Handler.seen == [{"path": "/200", "agent": "kube-probe/1.30", "x": "yes"}]


def test_http_probe_that_outlasts_its_timeout_fails():
    with silent_listener() as port:
        ok, output = run_probe({"httpGet": {"path": "/", "port": port}}, timeout=0.3)
    assert not ok and output.startswith("probe timed out")


def test_tcp_probe(http_port):
    assert run_probe({"tcpSocket": {"port": http_port}}) == (True, "")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    ok, output = run_probe({"tcpSocket": {"port": free}})
    assert not ok and output.startswith("probe error:") and "refused" in output


def test_unknown_probe_kind_fails_with_its_name():
    assert run_probe({"grpc": {"port": 1}}) == (False, "unsupported probe ['grpc']")
