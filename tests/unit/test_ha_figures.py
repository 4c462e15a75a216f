"""The HA drills' figures from their records: outages of the write load, the windows in which a pod executed
client writes as primary, and the split-brain figure (the most pods doing so at once)."""

from __future__ import annotations

from alert_history_cache.drills.ha import accepting_intervals, max_overlap, outages
from alert_history_cache.drills.harecorder import Op, RoleSample


def ok(start: float, end: float) -> Op:
    return Op(start, end, True, "k", "v")


def failed(start: float, end: float) -> Op:
    return Op(start, end, False, "k", "v", "ConnectionError")


def test_outage_runs_from_the_first_failure_to_the_next_acknowledgement():
    writes = [ok(0.0, 0.1), failed(1.0, 1.5), failed(1.6, 1.7), ok(1.8, 2.2), ok(2.3, 2.4)]
    assert outages(writes, after=0.5) == [(1.0, 2.2)]


def test_separate_outages_stay_separate_and_an_unended_one_runs_to_the_last_write():
    writes = [failed(1.0, 1.1), ok(1.2, 1.3), failed(5.0, 5.1), failed(6.0, 6.5)]
    assert outages(writes, after=0.0) == [(1.0, 1.3), (5.0, 6.5)]


def test_writes_before_the_fault_do_not_count():
    assert outages([failed(0.1, 0.2), ok(0.3, 0.4)], after=1.0) == []


def sample(pod: str, at: float, role: str | None, calls: int | None, run_id: str = "a") -> RoleSample:
    return RoleSample(pod, at, role, "10.244.0.2", run_id=run_id if role else None, set_calls=calls)


def test_a_primary_accepts_writes_only_while_its_set_counter_rises_as_primary():
    s = [sample("p", 0.0, "master", 10), sample("p", 0.1, "master", 20), sample("p", 0.2, "master", 20),
         sample("p", 0.3, "slave", 25), sample("p", 0.4, "slave", 30)]
    assert accepting_intervals(s) == [(0.0, 0.1)]


def test_a_restarted_server_or_a_long_silence_does_not_stretch_the_window():
    restarted = [sample("p", 0.0, "master", 100), sample("p", 0.1, "master", 150, run_id="b")]
    assert accepting_intervals(restarted) == []
    silent = [sample("p", 0.0, "master", 10), sample("p", 5.0, "master", 20)]
    assert accepting_intervals(silent) == [(0.0, 0.2)]


def test_split_brain_counts_pods_accepting_writes_at_the_same_time():
    clean = {"a": [(0.0, 1.0)], "b": [(1.5, 2.0)], "c": []}
    assert max_overlap(clean)[0] == 1
    split = {"a": [(0.0, 1.0)], "b": [(0.9, 2.0)], "c": []}
    best, overlaps = max_overlap(split)
    assert best == 2 and overlaps[0]["pods"] == ["a", "b"]
    assert max_overlap({"a": [], "b": []})[0] == 0
