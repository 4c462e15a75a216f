"""The replication alerts, and RedisReplicationLag, fire end to end on a local replication release: 3 data pods
(server, Sentinel and their exporters), 2 HAProxy pods, Prometheus scraping them through the rendered
ServiceMonitor and evaluating the rendered PrometheusRule, Alertmanager receiving the alerts.

Each alert's real cause is induced on the pods as tests/rules/replication-alert-drills.yaml plans it (partitions
through the stack's fault API, SIGSTOP of Sentinel containers, ACL SETUSER, CONFIG SET and REPLICAOF as the admin
user); the alert must reach Alertmanager with the plan's labels while the plan's `watch` condition shows the
cause; once the fault is undone nothing may fire and the release must be settled again (pod 0 the primary every
Sentinel names, every replica linked) before the next fault. The plan's values shorten every `for` to 5 s and
scrape every second; probes run every second (FAST_PROBES, as the HA drill tests do). The order matters: a
Sentinel resumed from SIGSTOP stays in TILT mode for 30 s (it acts on nothing, marks no peer down), so the two
faults that stop Sentinels come last, the one that needs a working Sentinel first."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import pytest
import redis
import yaml

from alert_history_cache import chart
from alert_history_cache.drills import ha
from alert_history_cache.monitoring_stack import MonitoringOptions
from alert_history_cache.waiting import wait_until

from helpers.alerts import wait_firing, wait_rules_evaluated_after
from helpers.cluster import assert_cluster_gone

pytestmark = pytest.mark.integration

PLAN = yaml.safe_load((Path(__file__).resolve().parents[1] / "rules" / "replication-alert-drills.yaml").read_text())
# The startup budget must cover the bootstrap's wait for a primary (the chart checks it); a short preStop budget,
# because stopping the stack deletes every pod at once and the primary's hook waits for a failover that cannot come.
HA_FAST = {"valkey": {"probes": {"startup": {"failureThreshold": 120}}, "replication": {"preStopTimeout": 10}}}
VALUES = chart.deep_merge(HA_FAST, PLAN["values"])
STS = "alerthistory-redis"
PRIMARY, REPLICA_1, REPLICA_2 = (f"{STS}-{i}" for i in range(3))
FIRE_S = 60      # fault -> firing in Alertmanager: `for` 5 s + scrapes, evaluations and sends of 1 s, with margin
SETTLE_S = 120   # fault undone -> nothing firing, release settled


def flags(sentinel_state: dict) -> set[str]:
    """SENTINEL MASTER's flags, e.g. {"master", "s_down"}."""
    return set(sentinel_state["flags"].split(","))


class Release:
    """The running release: its Drill view (roles, Sentinels, settled) and the faults of the plan."""

    def __init__(self, stack):
        self.stack = stack
        self.drill = ha.Drill(stack, "alerts")
        self.ns = stack.namespace
        self.haproxy_pods = sorted(p for p in stack.cluster.pods if p.startswith(f"{STS}-haproxy-"))

    def admin(self, pod: str):
        return self.drill.admin_at(self.drill.address(pod), timeout=5)

    def sentinel_replies(self, command: str) -> list:
        """One reply per Sentinel (SENTINEL <command> <master set>), as redis-py parses it (MASTER: a dict,
        REPLICAS: a list of dicts)."""
        out = []
        for pod in self.drill.pods:
            c = self.drill.sentinel_at(self.drill.address(pod))
            try:
                reply = c.execute_command("SENTINEL", command, self.drill.master_set)
            finally:
                c.close()
            out.append(reply)
        return out

    # -- the plan --------------------------------------------------------------------------------------------
    def expected(self, name: str) -> dict[str, list[dict]]:
        """Alert -> the label sets Alertmanager must hold, with the placeholders filled in."""
        entry = PLAN["alerts"][name]
        out: dict[str, list[dict]] = {}
        for alert, label_sets in {name: entry["expect"], **entry.get("also", {})}.items():
            for labels in label_sets:
                filled = {k: v.replace("<ns>", self.ns) if isinstance(v, str) else v for k, v in labels.items()}
                if filled.get("pod") == "<haproxy pod>":
                    out.setdefault(alert, []).extend({**filled, "pod": pod} for pod in self.haproxy_pods)
                else:
                    out.setdefault(alert, []).append(filled)
        return out

    def watch(self, name: str) -> list[dict]:
        return self.stack.query(PLAN["alerts"][name]["watch"].replace("<ns>", self.ns))

    def active_alerts(self) -> list[str]:
        prometheus = [f"{a['metric']['alertname']} ({a['metric']['alertstate']})" for a in self.stack.query("ALERTS")]
        alertmanager = [f"{a['labels']['alertname']} (Alertmanager)" for a in self.stack.alertmanager_alerts()
                        if a["status"]["state"] == "active"]
        return prometheus + alertmanager

    def settled(self) -> str | None:
        """The primary, once nothing fires and the release can fail over again (ha.Drill.settled)."""
        return None if self.active_alerts() else self.drill.settled()

    # -- faults ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def partitioned(self, pod: str, peers: list[str] | None = None):
        self.stack.cluster.partition(pod, peers)
        try:
            yield
        finally:
            self.stack.cluster.heal(pod)

    @contextlib.contextmanager
    def sentinels_stopped(self, pods: list[str]):
        for pod in pods:
            self.stack.cluster.kill(pod, ha.SENTINEL, signal.SIGSTOP)
        try:
            yield
        finally:
            for pod in pods:
                self.stack.cluster.kill(pod, ha.SENTINEL, signal.SIGCONT)

    @contextlib.contextmanager
    def lagging_replica(self):
        with self.partitioned(REPLICA_1, [PRIMARY]):
            yield

    @contextlib.contextmanager
    def replication_login_refused(self):
        user = self.stack.full_values["valkey"]["acl"]["replicationUser"]
        admin = self.admin(PRIMARY)
        admin.execute_command("ACL", "SETUSER", user, "off")
        admin.execute_command("CLIENT", "KILL", "USER", user)
        try:
            yield
        finally:
            admin.execute_command("ACL", "SETUSER", user, "on")

    @contextlib.contextmanager
    def primary_lost_none_promotable(self):
        replicas = {pod: self.admin(pod) for pod in (REPLICA_1, REPLICA_2)}
        before = {pod: c.config_get("replica-priority")["replica-priority"] for pod, c in replicas.items()}
        for c in replicas.values():
            c.config_set("replica-priority", 0)
        try:
            # Sentinel reads a replica's priority from its INFO (every 10 s): it must know before the primary goes.
            wait_until(lambda: all(int(r["slave-priority"]) == 0
                                   for reply in self.sentinel_replies("REPLICAS") for r in reply),
                       30, "every Sentinel to see replica-priority 0 on both replicas", interval=0.5)
            with self.partitioned(PRIMARY):
                yield
            # No failover may start between the heal and the priorities' return: wait until no Sentinel holds the
            # primary down.
            wait_until(lambda: all(not ({"s_down", "o_down"} & flags(m)) for m in self.sentinel_replies("MASTER")),
                       60, "every Sentinel to see the primary up again", interval=0.5)
        finally:
            for pod, c in replicas.items():
                c.config_set("replica-priority", before[pod])

    @contextlib.contextmanager
    def quorum_lost(self):
        with self.sentinels_stopped([REPLICA_1, REPLICA_2]):
            yield

    @contextlib.contextmanager
    def rogue_primary(self):
        with self.sentinels_stopped(self.drill.pods):
            rogue = self.admin(REPLICA_2)
            rogue.execute_command("REPLICAOF", "NO", "ONE")
            try:
                yield
            finally:
                rogue.execute_command("REPLICAOF", f"{PRIMARY}.{STS}-headless.{self.ns}.svc.cluster.local",
                                      self.stack.port)
                wait_until(lambda: rogue.info("replication").get("master_link_status") == "up", 60,
                           f"{REPLICA_2} to replicate from {PRIMARY} again", interval=0.5)


# Each fault with the plan entries it proves, in an order that leaves the release healthy for the next.
STEPS = [
    ("lagging_replica", ["RedisReplicationLag"]),
    ("replication_login_refused", ["RedisReplicaLinkDown"]),
    ("primary_lost_none_promotable", ["RedisNoPrimary", "RedisHAProxyNoBackend"]),
    ("quorum_lost", ["RedisSentinelQuorumUnreachable"]),
    ("rogue_primary", ["RedisMultiplePrimaries"]),
]


def test_the_plan_has_one_step_per_alert():
    assert sorted(n for _, names in STEPS for n in names) == sorted(PLAN["alerts"])


def test_replication_alerts_fire_and_resolve(make_stack):
    started = time.monotonic()
    stack = make_stack(values=VALUES, monitoring=True,
                       monitoring_options=MonitoringOptions(evaluation_interval="1s", resend_delay="1s")).start()
    release = Release(stack)
    assert len(release.haproxy_pods) == 2
    assert wait_until(release.drill.settled, 90, "a settled replication set", interval=0.5) == PRIMARY
    # Every target of the three ServiceMonitor endpoints (3 servers, 3 Sentinels, 2 HAProxy pods) is up.
    wait_until(lambda: sum(t["health"] == "up" for t in stack.prometheus.active_targets()) == 8, 60,
               "8 targets up", interval=0.5)
    # Baseline: a healthy release pages for nothing, once every rule has run on more than `for` of scrapes; and no
    # watch condition holds.
    wait_rules_evaluated_after(stack, time.time() + 6, timeout=30)
    assert release.active_alerts() == []
    assert {name: release.watch(name) for name in PLAN["alerts"]} == {name: [] for name in PLAN["alerts"]}
    timings = {}

    for fault, names in STEPS:
        t0 = time.monotonic()
        with getattr(release, fault)():
            for name in names:
                for alert, label_sets in release.expected(name).items():
                    for labels in label_sets:
                        got = wait_firing(stack, alert, FIRE_S, labels)
                        assert got["labels"]["component"] == "redis" and got["labels"]["severity"]
                        assert got["annotations"]["runbook_url"].endswith(f"/{alert}.md")
                assert release.watch(name), f"{name}: its cause does not show: {PLAN['alerts'][name]['watch']}"
            if "RedisHAProxyNoBackend" in {a for n in names for a in release.expected(n)}:
                # What the alert says: HAProxy closes every new client connection (here through the client Service).
                with pytest.raises(redis.ConnectionError):
                    stack.client(socket_timeout=5, socket_connect_timeout=5, retry=ha.no_retry()).ping()
            fired = time.monotonic() - t0
        try:
            primary = wait_until(release.settled, SETTLE_S, f"nothing firing and a settled release after {fault}",
                                 interval=0.5)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: still active {release.active_alerts()}") from exc
        assert primary == PRIMARY, f"{fault} caused a failover"
        timings[fault] = (round(fired, 1), round(time.monotonic() - t0, 1))

    stack.stop()
    assert_cluster_gone(stack.state_dir)
    print(f"replication alerts: {timings} (fired, settled seconds); {time.monotonic() - started:.0f} s in all")
