"""HA drills (`drill ha --scenario NAME`): a replicated release (3 data pods with Sentinels, HAProxy behind the
client Service) broken one way per scenario under a recorded write and read load through the client Service.

Each scenario reports the write-unavailable window (first failed write to the first success after the last
failure), acknowledged writes lost (every acknowledged key read back from the final primary), read errors, the
time to the new primary (Sentinel's `+switch-master`), the split-brain figure (how many servers executed client
writes as primary in the same 100 ms sample window) and when the old primary's pod came back as a replica.
Scenarios, figures, goals and what the local cluster changes: docs/ha-drills.md; docs/requirements.md has the
recovery requirement."""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import chart
from ..waiting import wait_until
from .harecorder import CLIENT_ERRORS, ClientLoad, Op, RoleSampler, SentinelEvents
from .results import DrillResult

SERVER = "valkey"
SENTINEL = "sentinel"
BIN = 0.1  # seconds per timeline bucket
WARM_ACKS = 200
HOLD_S = 2.0  # load before the fault and after recovery
UNAVAILABLE_GOAL_S = 2.0  # primary-delete, rolling-update
FAILOVER_MARGIN_S = 5.0  # primary-kill, node-loss: down-after + this
REFUSE_MARGIN_S = 2.0  # partition: min-replicas-max-lag + one REPLCONF ACK period + sampling
NODE_LOSS_DELAY_S = 60.0
SENTINEL_LOSS_HOLD_S = 20.0

def no_retry() -> Retry:
    """redis-py retries a failed command 3 times by default, which would hide every failure from the records."""
    return Retry(NoBackoff(), 0)


SCENARIOS = ("primary-delete", "primary-kill", "node-loss", "partition", "sentinel-loss", "full-restart",
             "rolling-update")
POD_DELETING_SCENARIOS = ("primary-delete", "node-loss", "full-restart", "rolling-update")  # a new incarnation


def release_values(values: dict | None) -> dict:
    """The drill's release: replication with 3 data pods unless the user's values say otherwise."""
    return chart.deep_merge({"valkey": {"architecture": "replication", "replicas": 3}}, values or {})


@dataclass
class Drill:
    """One scenario's run: the stack, its recorders, and what the scenario did when."""

    stack: object
    scenario: str
    pods: list[str] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # what happened when (monotonic)
    notes: list[str] = field(default_factory=list)
    direct: ClientLoad | None = None  # partition: a client that still reaches the old primary

    def __post_init__(self):
        st = self.stack
        v = st.full_values["valkey"]
        self.sentinel_port = int(v["sentinel"]["port"])
        self.sentinel_user = v["acl"]["sentinelUser"]
        self.sentinel_password = st.password(v["password"]["sentinelSecretKey"])
        self.master_set = v["sentinel"]["masterSet"]
        self.down_after_s = int(v["sentinel"]["downAfterMilliseconds"]) / 1000
        self.max_lag_s = float(v["replication"]["minReplicasMaxLag"])
        sts = st.cluster.plans[0].owner
        self.pods = [p.name for p in st.cluster.plans if p.owner == sts]
        self.admin_password = st.user_password("admin")
        self.admin_user = st.credentials.admin_user
        # valkey.tls: the servers and Sentinels speak TLS only; the drill's clients use the stack's CA.
        self.tls = st.credentials.tls.redis_kwargs() if st.credentials.tls else {}

    # -- clients ------------------------------------------------------------------------------------------
    def address(self, pod: str) -> str | None:
        p = self.stack.cluster.pods.get(pod)
        return p.ip if p else None  # a terminating pod runs (and answers) until its network is gone

    def admin_at(self, address: str, timeout: float = 0.5) -> redis.Redis:
        return redis.Redis(host=address, port=self.stack.port, username=self.admin_user,
                           password=self.admin_password, socket_timeout=timeout, socket_connect_timeout=timeout,
                           decode_responses=True, retry=no_retry(), **self.tls)

    def sentinel_at(self, address: str, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(host=address, port=self.sentinel_port, username=self.sentinel_user,
                           password=self.sentinel_password, socket_timeout=timeout,
                           socket_connect_timeout=timeout, decode_responses=True, retry=no_retry(), **self.tls)

    def app_client(self) -> redis.Redis:
        return self.stack.client("default", socket_timeout=1.0, socket_connect_timeout=1.0, retry=no_retry())

    def pod_of(self, host: str) -> str:
        return host.split(".", 1)[0]

    def sentinel_views(self, pods: list[str] | None = None) -> dict[str, str | None]:
        """Pod -> the primary's pod its Sentinel names (None: no answer)."""
        out: dict[str, str | None] = {}
        for pod in pods or self.pods:
            addr = self.address(pod)
            try:
                c = self.sentinel_at(addr)
                try:
                    host = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_set)
                finally:
                    c.close()
                out[pod] = self.pod_of(host[0]) if host else None
            except (*CLIENT_ERRORS, TypeError):
                out[pod] = None
        return out

    def primary(self) -> str | None:
        """The primary every answering Sentinel names, when they agree and it answers role:master."""
        named = {p for p in self.sentinel_views().values() if p}
        if len(named) != 1:
            return None
        (pod,) = named
        return pod if self.role(pod) == "master" else None

    def role(self, pod: str) -> str | None:
        addr = self.address(pod)
        if not addr:
            return None
        try:
            c = self.admin_at(addr)
            try:
                return c.info("replication").get("role")
            finally:
                c.close()
        except CLIENT_ERRORS:
            return None

    def settled(self) -> str | None:
        """The primary, once every Sentinel names it, knows both replicas and both other Sentinels, and every
        replica's link is up: a release that can fail over."""
        primary = self.primary()
        if not primary:
            return None
        for pod in self.pods:
            try:
                c = self.sentinel_at(self.address(pod))
                try:
                    m = c.execute_command("SENTINEL", "MASTER", self.master_set)
                finally:
                    c.close()
            except (*CLIENT_ERRORS, TypeError):
                return None
            m = dict(zip(m[::2], m[1::2])) if isinstance(m, list) else m
            if int(m.get("num-slaves", 0)) < len(self.pods) - 1 or int(m.get("num-other-sentinels", 0)) < len(
                    self.pods) - 1:
                return None
        for pod in self.pods:
            if pod != primary:
                c = self.admin_at(self.address(pod))
                try:
                    if c.info("replication").get("master_link_status") != "up":
                        return None
                except CLIENT_ERRORS:
                    return None
                finally:
                    c.close()
        return primary

    # -- recording ---------------------------------------------------------------------------------------
    def record(self, events_pod: str) -> None:
        self.t0 = time.monotonic()
        self.sampler = RoleSampler(self.pods, self.address, self.admin_at, interval=BIN).start()
        self.events = SentinelEvents(lambda: self.address(events_pod), self.sentinel_at).start()
        self.load = ClientLoad(self.app_client, prefix=f"ha:{self.scenario}").start()

    def mark(self, name: str) -> float:
        self.marks[name] = time.monotonic()
        return self.marks[name]

    def acks_after(self, t: float) -> int:
        return sum(1 for w in self.load.acked() if w.started >= t)

    def wait_writes_back(self, after: float, timeout: float) -> float:
        """Until a write through the client Service started after `after` and every writer since the last
        failure succeeds again; returns that write's acknowledgement time."""
        def back() -> float | None:
            writes = [w for w in list(self.load.writes) if w.ended >= after]
            fails = [w for w in writes if not w.ok]
            last_fail = max((w.ended for w in fails), default=after)
            oks = [w.ended for w in writes if w.ok and w.started >= last_fail]
            return min(oks) if len(oks) >= 20 else None
        return wait_until(back, timeout, f"writes through the client Service after the {self.scenario} fault",
                          interval=0.1)

    def wait_replica(self, pod: str, after: float, timeout: float) -> float:
        def rejoined() -> float | None:
            for s in list(self.sampler.samples[pod]):
                if s.at >= after and s.role == "slave":
                    return s.at
            return None
        return wait_until(rejoined, timeout, f"{pod} back as a replica", interval=0.2)

    def stop_recording(self) -> None:
        self.load.stop()
        if self.direct:
            self.direct.stop()
        self.sampler.stop()
        self.events.stop()
        self.t_end = time.monotonic()


# -- scenarios ---------------------------------------------------------------------------------------------
# Each gets the drill with the load running, breaks the release and waits until it has recovered; the criteria
# are checked afterwards from the records.

def primary_delete(d: Drill, old: str) -> None:
    d.mark("fault")
    d.stack.cluster.delete_pod(old)  # preStop hand-over, SIGTERM, then the StatefulSet recreates it
    d.mark("recreated")


def primary_kill(d: Drill, old: str) -> None:
    d.mark("fault")
    d.stack.cluster.kill(old, SERVER, signal.SIGKILL)


def node_loss(d: Drill, old: str, delay: float = NODE_LOSS_DELAY_S) -> None:
    d.mark("fault")
    d.stack.cluster.freeze(old)
    d.notes.append(f"{old} partitioned from everything and every process SIGSTOPped (a dead node); force-deleted "
                   f"{delay:.0f} s later, then recreated by the StatefulSet")
    wait_until(lambda: d.events.first("+switch-master", d.marks["fault"]), d.down_after_s + 30,
               "+switch-master after the node loss", interval=0.1)
    time.sleep(max(0.0, d.marks["fault"] + delay - time.monotonic()))  # the scenario's timeline: node gone 60 s
    d.mark("force_delete")
    d.stack.cluster.delete_pod(old, force=True)


def partition(d: Drill, old: str) -> None:
    peers = [p for p in d.pods if p != old]
    d.direct = ClientLoad(lambda: d.stack.client("default", pod=old, socket_timeout=1.0, socket_connect_timeout=1.0,
                                                           retry=no_retry()),
                          prefix="ha:partition-direct", writers=1, readers=0).start()
    wait_until(lambda: len(d.direct.acked()) >= 20, 10, "the direct client's writes to the primary")
    d.mark("fault")
    d.stack.cluster.partition(old, peers)  # cut from the other data pods (their servers and Sentinels)
    d.notes.append(f"{old} cut off from {', '.join(peers)}; a client on the host still reaches it at its address")

    def refused() -> float | None:
        ops = [w for w in list(d.direct.writes) if w.started >= d.marks["fault"]]
        fails = [w for w in ops if not w.ok and "NOREPLICAS" in w.error]
        if not fails:
            return None
        first = fails[0].started
        later_ok = [w for w in ops if w.ok and w.started > first]
        return None if later_ok else first
    wait_until(lambda: d.events.first("+switch-master", d.marks["fault"]), d.down_after_s + 30,
               "+switch-master after the partition", interval=0.1)
    d.marks["refused"] = wait_until(refused, d.max_lag_s + 20, "the isolated primary refusing the direct client",
                                    interval=0.1)
    time.sleep(1.0)  # a few more refused writes on record
    d.direct.stop()
    d.mark("heal")
    d.stack.cluster.heal(old)


def sentinel_loss(d: Drill, old: str, hold: float = SENTINEL_LOSS_HOLD_S) -> None:
    lost = [p for p in d.pods if p != d.events_pod][:2]
    d.notes.append(f"Sentinels of {', '.join(lost)} stopped (SIGSTOP: a killed one would be restarted by the kubelet "
                   f"at once) for {hold:.0f} s; the Sentinel of {d.events_pod} is the only one left")
    d.mark("fault")
    for pod in lost:
        d.stack.cluster.kill(pod, SENTINEL, signal.SIGSTOP)
    time.sleep(hold)  # nothing may happen meanwhile: the criteria check that nothing did
    d.mark("restore")
    for pod in lost:
        d.stack.cluster.kill(pod, SENTINEL, signal.SIGCONT)


def full_restart(d: Drill, old: str) -> None:
    cluster = d.stack.cluster
    everything = list(cluster.pods)
    d.mark("fault")
    d.acks_before_delete = d.load.acked()
    with concurrent.futures.ThreadPoolExecutor(len(everything)) as pool:  # every pod at once
        list(pool.map(lambda p: cluster.delete_pod(p, recreate=False), everything))
    d.mark("all_deleted")
    # The HAProxy Deployment recreates its pods at once; the StatefulSet its own in order (OrderedReady).
    # HAProxy's resolvers find the data pods' names as each appears.
    for pod in [p for p in everything if p not in d.pods]:
        cluster.create_pod(pod)
    for pod in d.pods:
        cluster.create_pod(pod)
        cluster.wait_pod_ready(cluster.pod(pod), 120)
    d.mark("recreated")
    d.notes.append("every pod deleted gracefully at once; HAProxy's pods recreated at once, the data pods in order")


def rolling_update(d: Drill, old: str) -> None:
    cluster = d.stack.cluster
    d.mark("fault")
    for pod in reversed(d.pods):  # the StatefulSet's RollingUpdate: highest ordinal first, each Ready before next
        d.mark(f"roll:{pod}")
        cluster.delete_pod(pod)
        cluster.wait_pod_ready(cluster.pod(pod), 120)
    d.mark("rolled")
    d.notes.append("the roll replaces each data pod in turn (highest ordinal first, the next once it is Ready), "
                   "as the StatefulSet controller does after a template change; the local cluster recreates the "
                   "same pod spec")


RUNNERS: dict[str, Callable] = {"primary-delete": primary_delete, "primary-kill": primary_kill,
                                "node-loss": node_loss, "partition": partition, "sentinel-loss": sentinel_loss,
                                "full-restart": full_restart, "rolling-update": rolling_update}


# -- figures -----------------------------------------------------------------------------------------------

def outages(writes: list[Op], after: float) -> list[tuple[float, float]]:
    """Merged [first failed write's start, first acknowledgement after it] intervals of writes ending after
    `after`; an outage that never ended runs to the last write."""
    writes = sorted((w for w in writes if w.ended >= after), key=lambda w: w.started)
    ok_ends = sorted(w.ended for w in writes if w.ok)
    end_of_run = max((w.ended for w in writes), default=after)
    spans = []
    for f in (w for w in writes if not w.ok):
        nxt = next((e for e in ok_ends if e >= f.ended), end_of_run)
        spans.append((f.started, nxt))
    merged: list[tuple[float, float]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def accepting_intervals(samples) -> list[tuple[float, float]]:
    """Windows between two consecutive samples of one pod in which it was primary in both and executed client
    writes (its SET counter rose, same process). A gap longer than 1 s counts as its first 2 sample periods
    (a frozen or partitioned pod's writes happened before it stopped answering)."""
    out = []
    for a, b in zip(samples, samples[1:]):
        if (a.role == b.role == "master" and a.run_id == b.run_id and a.set_calls is not None
                and b.set_calls is not None and b.set_calls > a.set_calls):
            out.append((a.at, min(b.at, a.at + 2 * BIN) if b.at - a.at > 1.0 else b.at))
    return out


def max_overlap(per_pod: dict[str, list[tuple[float, float]]]) -> tuple[int, list[dict]]:
    """The most pods accepting writes at one time, and the times when more than one did."""
    edges = sorted([(s, 1, p) for p, iv in per_pod.items() for s, _ in iv] +
                   [(e, -1, p) for p, iv in per_pod.items() for _, e in iv], key=lambda x: (x[0], x[1]))
    active: dict[str, int] = {}
    best, overlaps = (1 if any(per_pod.values()) else 0), []
    for t, step, pod in edges:
        active[pod] = active.get(pod, 0) + step
        live = sorted(p for p, n in active.items() if n > 0)
        if len(live) > 1:
            overlaps.append({"t": t, "pods": live})
        best = max(best, len(live))
    return best, overlaps[:20]


def error_kinds(d: Drill, ops: list[Op]) -> dict:
    """Failed operations by error (its first words), with when the first and last of each came."""
    out: dict[str, dict] = {}
    for op in ops:
        if not op.ok:
            kind = " ".join(op.error.split()[:4])
            k = out.setdefault(kind, {"count": 0, "first": _rel(d, op.started), "last": None})
            k["count"] += 1
            k["last"] = _rel(d, op.started)
    return out


def lost_writes(d: Drill, acked: list[Op], primary: str) -> list[Op]:
    """Acknowledged writes missing (or with another value) on the final primary, read at its own address."""
    c = d.admin_at(d.address(primary), timeout=10)
    lost = []
    try:
        for i in range(0, len(acked), 1000):
            chunk = acked[i:i + 1000]
            for op, value in zip(chunk, c.mget([o.key for o in chunk])):
                if value != op.value:
                    lost.append(op)
    finally:
        c.close()
    return lost


ROLE_LEVEL = {"master": 2, "slave": 1, None: 0}


def timeline_series(d: Drill) -> dict:
    t0 = d.t0
    n = int((d.t_end - t0) / BIN) + 1
    x = [round(i * BIN, 1) for i in range(n)]
    ok, failed = [0] * n, [0] * n
    for w in list(d.load.writes):
        i = min(n - 1, max(0, int((w.ended - t0) / BIN)))
        (ok if w.ok else failed)[i] += 1
    marks = [{"start": round(t - t0, 2), "end": round(t - t0, 2) + 0.1, "label": name}
             for name, t in sorted(d.marks.items(), key=lambda kv: kv[1])]
    roles: dict[str, list] = {}
    for k, pod in enumerate(d.pods):
        line: list = [None] * n
        for s in d.sampler.samples[pod]:
            i = int((s.at - t0) / BIN)
            if 0 <= i < n:
                line[i] = ROLE_LEVEL.get(s.role, 0) + 0.06 * k  # offset so equal roles stay visible
        last = 0.0 + 0.06 * k
        for i, v in enumerate(line):  # carry the last sample over buckets without one
            line[i] = last = v if v is not None else last
        roles[pod] = line
    return {
        f"ha:{d.scenario}:writes": {"kind": "line", "title": f"{d.scenario}: writes per 100 ms (client Service)",
                                    "x_label": "seconds", "y_label": "writes", "x": x,
                                    "lines": {"acknowledged": ok, "failed": failed}, "spans": marks},
        f"ha:{d.scenario}:roles": {"kind": "line", "title": f"{d.scenario}: role of each data pod",
                                   "x_label": "seconds", "y_label": "role", "x": x, "lines": roles,
                                   "y_ticks": {"0": "no answer", "1": "replica", "2": "primary"},
                                   "spans": marks},
    }


def _rel(d: Drill, t: float | None) -> float | None:
    return None if t is None else round(t - d.t0, 3)


def evaluate(d: Drill, result: DrillResult, old: str) -> None:
    fault = d.marks["fault"]
    writes = list(d.load.writes)
    acked = [w for w in writes if w.ok]
    direct_acked = d.direct.acked() if d.direct else []
    final = wait_until(d.primary, 60, "one primary named by every Sentinel after the drill", interval=0.5)
    lost = lost_writes(d, acked + direct_acked, final)
    spans = outages(writes, fault)
    span = (spans[-1][1] - spans[0][0]) if spans else 0.0
    ack_times = sorted([fault] + [w.ended for w in acked if w.ended >= fault])
    gap = max((b - a for a, b in zip(ack_times, ack_times[1:])), default=0.0)
    total = sum(e - s for s, e in spans)
    switch = d.events.first("+switch-master", fault)
    per_pod = {p: accepting_intervals([s for s in d.sampler.samples[p] if s.at >= d.t0]) for p in d.pods}
    split, overlaps = max_overlap(per_pod)
    # The old primary's pod back as a replica: a replica sample after the fault, from a new incarnation when
    # the pod was deleted (the hand-over itself makes the dying server a replica for its last moments).
    before = [s.run_id for s in d.sampler.samples[old] if s.at < fault and s.run_id]
    deleted = d.scenario in POD_DELETING_SCENARIOS
    back = next((s.at for s in d.sampler.samples[old] if s.at >= fault and s.role == "slave"
                 and not (deleted and before and s.run_id == before[-1])), None)
    latest = {p: d.role(p) for p in d.pods}
    reads = list(d.load.reads)
    fig = result.figures
    fig.update({
        "scenario": d.scenario, "old_primary": old, "final_primary": final, "roles_at_end": latest,
        "down_after_seconds": d.down_after_s, "min_replicas_max_lag_seconds": d.max_lag_s,
        "marks_seconds": {k: _rel(d, t) for k, t in d.marks.items()},
        "writes": len(writes), "acknowledged_writes": len(acked), "failed_writes": len(writes) - len(acked),
        # A write that hangs is as unavailable as one that fails: the window is the longer of the two measures.
        "write_unavailable_seconds": round(max(span, gap), 3), "failed_write_span_seconds": round(span, 3),
        "longest_acknowledgement_gap_seconds": round(gap, 3), "write_unavailable_total_seconds": round(total, 3),
        "outages_seconds": [[_rel(d, s), _rel(d, e)] for s, e in spans][:20],
        "acknowledged_writes_lost": len(lost), "lost_keys": [w.key for w in lost][:20],
        "reads": len(reads), "read_errors": sum(1 for r in reads if not r.ok),
        "switch_master_seconds": round(switch[0] - fault, 3) if switch else None,
        "switch_master_event": switch[1] if switch else None,
        "servers_accepting_writes_at_once": split, "split_brain_overlaps": [
            {"t": _rel(d, o["t"]), "pods": o["pods"]} for o in overlaps],
        "old_primary_back_as_replica_seconds": round(back - fault, 3) if back else None,
        "sentinel_events": [{"t": _rel(d, t), "event": ch, "data": data} for t, ch, data in d.events.events][:200],
        "write_errors_by_kind": error_kinds(d, writes),
        "notes": d.notes,
    })
    if lost:
        last_ack_before = max((w.ended for w in acked + direct_acked if w.ended <= fault), default=fault)
        fig["loss_window_seconds"] = round(max(w.ended for w in lost) - min(w.ended for w in lost), 3)
        fig["lost_acknowledged_after_fault_seconds"] = round(max(w.ended for w in lost) - fault, 3)
        fig["last_ack_before_fault_seconds"] = _rel(d, last_ack_before)
    if d.direct:
        fig["direct_client"] = {"writes": len(d.direct.writes), "acknowledged": len(direct_acked),
                                "refused_after_seconds": round(d.marks["refused"] - fault, 3),
                                "acknowledged_after_fault": sum(1 for w in direct_acked if w.ended >= fault)}
    if d.scenario == "full-restart":
        before = d.acks_before_delete
        missing = lost_writes(d, before, final)
        fig["acknowledged_before_deletion"] = len(before)
        fig["acknowledged_before_deletion_lost"] = len(missing)
    result.series.update(timeline_series(d))
    CRITERIA[d.scenario](d, result, fig)
    one = sum(1 for r in latest.values() if r == "master")
    result.check("exactly one primary at the end (every pod answering)", "1 primary, the rest replicas",
                 f"{latest}", one == 1 and all(latest.values()))


# -- criteria per scenario (the goals table of docs/ha-drills.md) ---------------------------------------------

def _no_split(result: DrillResult, fig: dict) -> None:
    result.check("servers accepting client writes at the same time (split brain)", "1",
                 fig["servers_accepting_writes_at_once"], fig["servers_accepting_writes_at_once"] == 1)


def _c_primary_delete(d, result, fig):
    result.check("writes unavailable (first failed write to first success after)",
                 f"<= {UNAVAILABLE_GOAL_S:.0f} s", fig["write_unavailable_seconds"],
                 fig["write_unavailable_seconds"] <= UNAVAILABLE_GOAL_S)
    result.check("acknowledged writes lost", "0", fig["acknowledged_writes_lost"], fig["acknowledged_writes_lost"] == 0)
    result.check("new primary (+switch-master)", "seen", fig["switch_master_seconds"],
                 fig["switch_master_seconds"] is not None)
    result.check("old primary's pod back as a replica", "yes", fig["old_primary_back_as_replica_seconds"],
                 fig["old_primary_back_as_replica_seconds"] is not None)
    _no_split(result, fig)


def _c_primary_kill(d, result, fig):
    goal = d.down_after_s + FAILOVER_MARGIN_S
    result.check("writes back after the kill", f"<= down-after + {FAILOVER_MARGIN_S:.0f} s = {goal:.0f} s",
                 fig["write_unavailable_seconds"], fig["write_unavailable_seconds"] <= goal)
    window = fig.get("loss_window_seconds", 0.0)
    result.check("acknowledged writes lost (bounded by replication lag)",
                 "counted; all acknowledged within 1 s (one REPLCONF ACK period) before the kill",
                 f"{fig['acknowledged_writes_lost']} lost (window {window} s)",
                 fig["acknowledged_writes_lost"] == 0 or (
                     window <= 1.0 and fig["lost_acknowledged_after_fault_seconds"] <= 1.0))
    result.check("old primary's pod back as a replica or still the primary",
                 "serving", fig["roles_at_end"][d.old], fig["roles_at_end"][d.old] in ("master", "slave"))
    _no_split(result, fig)


def _c_node_loss(d, result, fig):
    goal = d.down_after_s + FAILOVER_MARGIN_S
    result.check("new primary (+switch-master) after the node loss", f"<= down-after + {FAILOVER_MARGIN_S:.0f} s "
                 f"= {goal:.0f} s", fig["switch_master_seconds"],
                 fig["switch_master_seconds"] is not None and fig["switch_master_seconds"] <= goal)
    result.check("the returning pod rejoins as a replica", "replica", fig["old_primary_back_as_replica_seconds"],
                 fig["old_primary_back_as_replica_seconds"] is not None and fig["roles_at_end"][d.old] == "slave")
    result.check("acknowledged writes lost", "counted", fig["acknowledged_writes_lost"], True)
    _no_split(result, fig)


def _c_partition(d, result, fig):
    goal = d.max_lag_s + REFUSE_MARGIN_S
    refused = fig["direct_client"]["refused_after_seconds"]
    result.check("isolated primary refuses the direct client's writes (NOREPLICAS)",
                 f"within min-replicas-max-lag ({d.max_lag_s:.0f} s) + {REFUSE_MARGIN_S:.0f} s", refused,
                 refused <= goal)
    after = fig.get("lost_acknowledged_after_fault_seconds", 0.0)
    result.check("acknowledged writes lost", f"counted; all acknowledged within {goal:.0f} s of the partition",
                 f"{fig['acknowledged_writes_lost']} lost, last {after} s after the partition",
                 after <= goal)
    result.check("new primary (+switch-master)", "seen", fig["switch_master_seconds"],
                 fig["switch_master_seconds"] is not None)
    result.check("old primary back as a replica after the heal", "replica", fig["roles_at_end"][d.old],
                 fig["roles_at_end"][d.old] == "slave")
    _no_split(result, fig)


def _c_sentinel_loss(d, result, fig):
    result.check("no failover while 2 of 3 Sentinels are gone", "no +switch-master", fig["switch_master_event"],
                 fig["switch_master_event"] is None)
    result.check("the primary keeps serving", d.old, fig["final_primary"], fig["final_primary"] == d.old)
    result.check("writes keep flowing", "no failed write, no gap over 1 s",
                 f"{fig['failed_writes']} failed, longest gap {fig['longest_acknowledgement_gap_seconds']} s",
                 fig["failed_writes"] == 0 and fig["longest_acknowledgement_gap_seconds"] <= 1.0)
    result.check("acknowledged writes lost", "0", fig["acknowledged_writes_lost"], fig["acknowledged_writes_lost"] == 0)


def _c_full_restart(d, result, fig):
    result.check("every write acknowledged before the deletion is present", "0 lost",
                 f"{fig['acknowledged_before_deletion_lost']} of {fig['acknowledged_before_deletion']}",
                 fig["acknowledged_before_deletion_lost"] == 0)
    _no_split(result, fig)


def _c_rolling_update(d, result, fig):
    result.check("total write errors during the roll", f"<= {UNAVAILABLE_GOAL_S:.0f} s",
                 fig["write_unavailable_total_seconds"], fig["write_unavailable_total_seconds"] <= UNAVAILABLE_GOAL_S)
    result.check("acknowledged writes lost", "0", fig["acknowledged_writes_lost"], fig["acknowledged_writes_lost"] == 0)
    _no_split(result, fig)


CRITERIA = {"primary-delete": _c_primary_delete, "primary-kill": _c_primary_kill, "node-loss": _c_node_loss,
            "partition": _c_partition, "sentinel-loss": _c_sentinel_loss, "full-restart": _c_full_restart,
            "rolling-update": _c_rolling_update}


# -- the run -------------------------------------------------------------------------------------------------

def run(scenario: str = "primary-delete", engine: str = "valkey8", values: dict | None = None,
        state_dir: str | None = None, node_loss_delay: float = NODE_LOSS_DELAY_S,
        sentinel_loss_hold: float = SENTINEL_LOSS_HOLD_S) -> DrillResult:
    if scenario not in RUNNERS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    from ..stack import LocalStack

    result = DrillResult(drill=f"ha:{scenario}", engine=engine, criteria_sets=["goals"])
    ctx = contextlib.nullcontext(state_dir) if state_dir else tempfile.TemporaryDirectory(prefix="ahc-ha-")
    with ctx as sd, LocalStack(values=release_values(values), engine=engine, state_dir=sd, monitoring=False) as st:
        result.versions = {k: str(v) for k, v in st.versions().items() if v}
        d = Drill(st, scenario)
        old = wait_until(d.settled, 90, "a settled replication set (one primary, Sentinels know every member)",
                         interval=0.5)
        d.old = old
        # The events come from a Sentinel that the fault leaves alone.
        d.events_pod = next(p for p in reversed(d.pods) if p != old)
        d.record(d.events_pod)
        d.load.pause = 0.005
        wait_until(lambda: len(d.load.acked()) >= WARM_ACKS, 30, f"{WARM_ACKS} acknowledged writes")
        time.sleep(HOLD_S)  # a steady load on record before the fault
        runner = RUNNERS[scenario]
        if scenario == "node-loss":
            runner(d, old, node_loss_delay)
        elif scenario == "sentinel-loss":
            runner(d, old, sentinel_loss_hold)
        else:
            runner(d, old)
        d.wait_writes_back(d.marks["fault"], 120)
        if d.events.first("+switch-master", d.marks["fault"]) and scenario != "full-restart":
            with contextlib.suppress(TimeoutError):  # a criterion says so when it never happens
                d.wait_replica(old, d.marks["fault"], 90)
        wait_until(d.settled, 90, "a settled replication set after the drill", interval=0.5)
        time.sleep(HOLD_S)  # load on record after recovery
        d.stop_recording()
        evaluate(d, result, old)
    result.finished_at = time.time()
    return result
