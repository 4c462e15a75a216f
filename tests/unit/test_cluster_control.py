"""The control dir a running stack serves (`fault` requests from another process), the ClusterIP allocation
two stacks share, and the status document built from stack.json."""

from __future__ import annotations

import json
import os
import threading

import pytest

from alert_history_cache import control, services
from alert_history_cache.stack_state import write_json
from alert_history_cache.status import status_document


def test_a_request_gets_its_answer_and_a_failure_its_message(tmp_path) -> None:
    seen = []

    def handler(request: dict) -> dict:
        seen.append((request, threading.current_thread().name))
        if request["action"] == "boom":
            raise ValueError("no pod 'x'")
        return {"echo": request["args"]}

    server = control.ControlServer(tmp_path, handler)
    server.start()
    try:
        assert control.request(tmp_path, "delete", timeout=10, pod="p-0", force=True) == \
            {"echo": {"pod": "p-0", "force": True}}
        with pytest.raises(control.ControlError, match="no pod 'x'"):
            control.request(tmp_path, "boom", timeout=10)
        assert [r["action"] for r, _ in seen] == ["delete", "boom"]
        assert all(name.startswith("control-") for _, name in seen)
        assert list((tmp_path / control.CONTROL_DIR).iterdir()) == [], "requests and replies are removed"
        assert (tmp_path / control.CONTROL_DIR).stat().st_mode & 0o777 == 0o700
    finally:
        server.stop()


def test_no_server_no_answer(tmp_path) -> None:
    with pytest.raises(control.ControlError, match="no running stack"):
        control.request(tmp_path, "heal", timeout=1)
    (tmp_path / control.CONTROL_DIR).mkdir()
    with pytest.raises(control.ControlError, match="timed out after 0.3s waiting for the stack's answer to heal"):
        control.request(tmp_path, "heal", timeout=0.3)
    assert list((tmp_path / control.CONTROL_DIR).iterdir()) == [], "an unanswered request is withdrawn"


@pytest.mark.skipif(os.geteuid() != 0, reason="ClusterIP records live in /run/alert-history-cache (root)")
def test_two_stacks_never_share_a_cluster_ip(tmp_path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    got = []
    try:
        threads = [threading.Thread(target=lambda o=o, i=i: got.append(services.allocate(o, f"ns/svc{i}")))
                   for i in range(10) for o in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 20 and len(set(got)) == 20
        assert all(ip.startswith("10.96.") and ip not in ("10.96.0.1", "10.96.0.10") for ip in got)
        assert len(services.allocations(a)) == len(services.allocations(b)) == 10
        taken = services.allocations(a)[0]
        with pytest.raises(services.ServiceError, match=f"clusterIP {taken} is already allocated"):
            services.allocate(b, "ns/fixed", wanted=taken)
    finally:
        for ip in got:
            services.release(ip)
    assert services.allocations(a) == services.allocations(b) == []


def test_status_document_from_stack_json(tmp_path) -> None:
    pod = {"name": "x-0", "namespace": "ns", "address": "10.244.9.2", "ready": True, "generation": 2,
           "owner": {"kind": "StatefulSet", "name": "x"}, "partition": None,
           "containers": {"valkey": {"state": "running", "ready": True, "restarts": 1, "pid": 5, "last_exit": None}}}
    svc = {"name": "x", "cluster_ip": "10.96.0.5", "ports": [], "endpoints": ["10.244.9.2"]}
    write_json(tmp_path / "stack.json", {"phase": "stopped", "state_dir": str(tmp_path), "pods": [pod],
                                         "services": [svc], "secrets": {"dir": "/s", "keys": {"default": "password"}},
                                         "endpoints": {"service": "x", "server": "10.96.0.5:6379"},
                                         "server": {"container": "valkey", "port": 6379}})
    doc = status_document(tmp_path)
    assert doc["running"] is False and doc["phase"] == "stopped"
    assert doc["pods"] == [{"name": "x-0", "namespace": "ns", "address": "10.244.9.2", "ready": True,
                            "generation": 2, "owner": {"kind": "StatefulSet", "name": "x"}, "terminating": False,
                            "partition": None, "frozen": False,
                            "containers": [{"name": "valkey", "state": "running", "ready": True, "restarts": 1,
                                            "pid": 5, "last_exit": None}]}]
    assert doc["services"] == [svc] and doc["client"] == {"service": "x", "address": "10.96.0.5:6379"}
    assert doc["secrets"]["dir"] == "/s" and doc["prometheus"] is None
    assert json.loads(json.dumps(doc)) == doc
