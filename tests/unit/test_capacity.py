"""`drill capacity`'s arithmetic and accounting without a release: medians and ratios over rounds, the rotated
order, CPU cores per process group (on real processes), the goals' verdict, the printed table, bad options."""

from __future__ import annotations

import subprocess
import sys

import port_for
import psutil
import pytest
from click.testing import CliRunner

from alert_history_cache.cli import main
from alert_history_cache.cli_load import print_capacity
from alert_history_cache.drills import capacity
from alert_history_cache.drills.capacity import HaCapacity, PathRun
from alert_history_cache.drills.load_results import Bench
from alert_history_cache.drills.results import DrillResult


def _run(path: str, n: int, mix: float, **cores: float) -> PathRun:
    benches = {t: Bench(t, mix, 1.0, 0.1, 1.0, 2.0, 3.0, 4.0) for t in ("SET", "GET")}
    return PathRun(path=path, round=n, target="10.0.0.1:6379", benches=benches, mix_rps=mix, seconds=2.0,
                   cores=cores)


RUNS = [  # three rounds; the service path is noisy in round 2
    _run("standalone", 1, 60_000, server=0.9), _run("primary", 1, 57_000, primary=0.9, replicas=0.3),
    _run("haproxy-pod", 1, 50_000, haproxy=0.8), _run("service", 1, 48_000, haproxy=0.8),
    _run("standalone", 2, 62_000, server=1.0), _run("primary", 2, 58_000, primary=1.0, replicas=0.2),
    _run("haproxy-pod", 2, 51_000, haproxy=0.7), _run("service", 2, 30_000, haproxy=0.4),
    _run("standalone", 3, 58_000, server=0.8), _run("primary", 3, 56_000, primary=0.8, replicas=0.4),
    _run("haproxy-pod", 3, 49_000, haproxy=0.9), _run("service", 3, 47_000, haproxy=0.9),
]


def test_ratios_come_from_the_medians_over_the_rounds():
    s = capacity.summarize(RUNS)
    assert s["mix_rps"] == {"standalone": 60_000, "primary": 57_000, "haproxy-pod": 50_000, "service": 47_000}
    # one bad round (30k) moves the median, not the ratio, much
    assert s["haproxy_vs_direct"] == pytest.approx(47_000 / 57_000)
    assert s["haproxy_pod_vs_direct"] == pytest.approx(50_000 / 57_000)
    assert s["replication_vs_standalone"] == pytest.approx(57_000 / 60_000)
    assert s["replication_cost"] == pytest.approx(1 - 57_000 / 60_000)
    # each round's own ratio shows the spread
    assert s["round_ratios"]["haproxy_vs_direct"] == pytest.approx([48 / 57, 30 / 58, 47 / 56], abs=1e-4)
    assert s["cores"]["primary"] == {"primary": 0.9, "replicas": 0.3}
    assert s["cores"]["service"] == {"haproxy": 0.8}


def test_cpu_per_request_of_the_chain_a_path_crosses():
    per_request = {"redis-benchmark": 10.0, "replication primary": 20.0, "replication replicas": 8.0,
                   "replication haproxy": 25.0, "replication sidecars": 1.0, "standalone server": 0.5,
                   "standalone sidecars": 0.1, "toolkit": 3.0, "other": 50.0}
    assert capacity.chain_us("service", per_request) == 63.0
    assert capacity.chain_us("standalone", per_request) == 10.5
    runs = [PathRun(path="service", round=n, target="x", benches={}, mix_rps=1.0, seconds=1.0, cores={},
                    cpu_us_per_request={**per_request, "replication haproxy": h}) for n, h in ((1, 25.0), (2, 35.0),
                                                                                             (3, 5.0))]
    assert capacity.summarize(runs)["chain_cpu_us_per_request"] == {"service": 63.0}


def test_a_path_not_measured_gives_no_ratio():
    r = capacity.ratios({"standalone": 60_000.0, "primary": 57_000.0})
    assert r["haproxy_vs_direct"] is None and r["haproxy_pod_vs_direct"] is None
    assert r["replication_cost"] == pytest.approx(0.05)


def test_each_round_starts_with_another_path():
    paths = list(capacity.PATHS)
    orders = [capacity.rotation(paths, n) for n in range(len(paths))]
    assert all(sorted(o) == sorted(paths) for o in orders)
    assert [o[0] for o in orders] == paths
    assert capacity.rotation(paths, len(paths)) == paths


def test_cores_per_group_and_the_rest_of_the_host():
    before = {"server": 10.0, "haproxy": 5.0}
    after = {"server": 12.0, "haproxy": 6.0, "redis-benchmark": 1.0}
    cores = capacity.cores_used(before, after, busy=7.0, seconds=2.0)
    assert cores == {"server": 1.0, "haproxy": 0.5, "redis-benchmark": 0.5, "other": 1.5}
    # a host that counted less than the groups (sampling skew) never gives negative "other"
    assert capacity.cores_used(before, after, busy=1.0, seconds=2.0)["other"] == 0.0


def test_tree_cpu_counts_a_process_and_its_children():
    """A real parent whose forked child burns 0.35 s of CPU: the parent's tree holds at least 0.3 s of it, live and
    once reaped (the kernel accounts a reaped child in 10 ms clock ticks, so an exact 0.3 may read 0.29)."""
    burn = ("import os, sys, time\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    while time.process_time() < 0.35: pass\n"
            "    os._exit(0)\n"
            "print('forked', flush=True)\n"
            "sys.stdin.readline()\n"
            "os.waitpid(pid, 0)\n"
            "print('reaped', flush=True)\n"
            "sys.stdin.readline()\n")
    proc = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "forked"
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "reaped"
        assert capacity.tree_cpu(proc.pid) >= 0.3
    finally:
        proc.kill()
        proc.wait()
    assert capacity.tree_cpu(proc.pid) == 0.0  # gone: nothing to count
    assert capacity.tree_cpu(None) == 0.0


def _figures(service: float, primary: float, standalone: float, replicas_connected: int = 2,
             full_syncs: int = 0) -> HaCapacity:
    runs = [_run("standalone", 1, standalone), _run("primary", 1, primary), _run("haproxy-pod", 1, service),
            _run("service", 1, service)]
    return HaCapacity(redis_benchmark="7.0.15", connections=500, value_size=2048, keyspace=1000, requests=100,
                      threads=1, read_ratio=0.9, rounds=1, replicas=2, haproxy_pods=2, auth="x",
                      paths=dict(capacity.PATHS), runs=runs, **capacity.summarize(runs), full_syncs=full_syncs,
                      replicas_connected_min=replicas_connected)


@pytest.mark.parametrize("service,primary,standalone,passed", [
    (48_000, 57_000, 60_000, {"haproxy": True, "cost": True}),
    (40_000, 57_000, 60_000, {"haproxy": False, "cost": True}),  # 0.70x
    (50_000, 52_000, 60_000, {"haproxy": True, "cost": False}),  # 13 % cost
    (50_000, 66_000, 60_000, {"haproxy": False, "cost": True}),  # faster than standalone: within the noise, no cost
])
def test_the_goals_verdict(service, primary, standalone, passed):
    result = DrillResult(drill="capacity", engine="valkey8", figures=_figures(service, primary, standalone))
    capacity.judge(result)
    got = {c.name: c.passed for c in result.criteria}
    assert got["goals: HAProxy capacity vs the primary's"] is passed["haproxy"]
    assert got["goals: capacity cost of replication"] is passed["cost"]
    assert got["replicas stayed connected, no full resync"] is True
    assert result.criteria_sets == ["goals"]


def test_a_dropped_replica_is_reported():
    result = DrillResult(drill="capacity", engine="valkey8", figures=_figures(48_000, 57_000, 60_000,
                                                                              replicas_connected=1, full_syncs=1))
    capacity.judge(result)
    assert not result.passed
    assert [c.name for c in result.criteria if not c.passed] == ["replicas stayed connected, no full resync"]


def test_figures_round_trip_and_print(capsys):
    f = _figures(48_000, 57_000, 60_000)
    back = HaCapacity.from_dict(f.to_dict())
    assert back.runs[1].benches["GET"].rps == 57_000 and back.haproxy_vs_direct == pytest.approx(48 / 57)
    print_capacity(back)
    out = capsys.readouterr().out
    assert "HAProxy (client Service) / primary: 0.84x" in out
    assert "primary with replicas / standalone: 0.95x" in out
    assert "57,000" in out


@pytest.mark.parametrize("argv,option", [
    (["--rounds", "0"], "--rounds"),
    (["--connections", "0"], "--connections"),
    (["--read-ratio", "1.5"], "--read-ratio"),
    (["--bench-requests", "many"], "--bench-requests"),
])
def test_bad_options_are_one_line_naming_them(argv, option):
    result = CliRunner().invoke(main, ["drill", "capacity", *argv])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and option in lines[0], result.stderr


def test_a_bad_set_is_one_line():
    result = CliRunner().invoke(main, ["drill", "capacity", "--set", "a[=1"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--set a[=1" in lines[0], result.stderr


def test_a_benchmark_that_hangs_is_killed_and_named():
    """redis-benchmark keeps retrying a port where nothing listens: the timeout kills it and says where."""
    try:
        capacity.redis_benchmark()
    except capacity.CapacityError as exc:
        pytest.skip(str(exc))
    port = port_for.select_random()  # nothing listens there
    with pytest.raises(capacity.CapacityError, match=f"127.0.0.1:{port} ran longer than 2 s"):
        capacity.benchmark("127.0.0.1", port, connections=1, value_size=10, keyspace=10, requests=10, timeout=2)
    assert not [p for p in psutil.Process().children() if p.name() == "redis-benchmark"]


def test_a_failed_run_has_no_figure_and_fails_the_run():
    failed = PathRun(path="service", round=2, target="10.96.0.2:6379", benches={}, mix_rps=None, seconds=1.0,
                     cores={}, error="redis-benchmark exited 1: Error: Server closed the connection",
                     haproxy_events=["alerthistory-redis-haproxy-x: Server node_0/redis is DOWN, reason: Layer7 "
                                     "timeout"])
    runs = [*RUNS[:4], failed]
    assert capacity.summarize(runs)["mix_rps"]["service"] == 48_000  # the failed run counts for nothing
    f = _figures(48_000, 57_000, 60_000)
    f.runs.append(failed)
    f.failed_runs = ["service round 2: redis-benchmark exited 1: Error: Server closed the connection"]
    result = DrillResult(drill="capacity", engine="valkey8", figures=f)
    capacity.judge(result)
    (bad,) = [c for c in result.criteria if not c.passed]
    assert bad.name == "every benchmark completed"
    assert "Server closed the connection" in bad.measured and "DOWN during service round 2" in bad.measured


def test_haproxy_check_events_since_the_last_call(tmp_path):
    log = tmp_path / "alerthistory-redis-haproxy-abc-x1.haproxy.log"
    log.write_text("old line: Server node_1/redis is DOWN\n")
    logs = capacity.HAProxyLogs([log, tmp_path / "missing.haproxy.log"])
    assert logs.events() == []  # what the log held before is not counted
    with open(log, "a") as f:
        f.write('[WARNING]  (1196) : Server node_0/redis is DOWN, reason: Layer7 timeout, check duration: 1006ms.\n'
                'Server node_0/redis is DOWN, reason: Layer7 timeout, check duration: 1006ms.\n'
                'some other line\n'
                'Server node_0/redis is UP, reason: Layer7 check passed\n')
    assert logs.events() == [
        "alerthistory-redis-haproxy-abc-x1: Server node_0/redis is DOWN, reason: Layer7 timeout, check duration: "
        "1006ms.",
        "alerthistory-redis-haproxy-abc-x1: Server node_0/redis is UP, reason: Layer7 check passed"]
    assert logs.events() == []
