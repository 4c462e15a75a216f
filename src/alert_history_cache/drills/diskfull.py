"""Disk-full drill (`drill restore --scenario disk-full`): under the recorded write load, the primary's data volume
(a filesystem of its requested size on the local stack) is filled with a file the server can not remove.

What it shows, end to end on the local Prometheus and Alertmanager:
- the AOF write fails and writes are refused with error replies (counted by kind: MISCONF), not silently lost;
  how many writes were still acknowledged after the volume filled is reported;
- RedisAofWriteFailure fires; RedisPersistenceFailure fires once the server's own save rule tries its snapshot
  (the drill waits until that rule has enough changes before it fills the volume);
- the pod stays up (the probes take MISCONF for a live, ready server: a restart would free no space);
- the space comes back (`fault free-disk`) and the server recovers by itself: writes succeed again,
  aof_last_write_status and rdb_last_bgsave_status are ok, both alerts resolve;
- RTO: from the space back to the first acknowledged write; RPO: acknowledged writes missing, counted after the
  recovery and again after a restart of the pod (so from the AOF on the volume): must be 0.
The recovery goal is the 60 s of docs/requirements.md."""

from __future__ import annotations

import time

from ..monitoring_stack import MonitoringOptions
from ..promapi import Alertmanager
from ..waiting import wait_until
from .persistence import log_offset, log_since, stack_for
from .results import DrillResult
from .writeload import WriteLoad, lost_writes

RECOVERY_GOAL_S = 60.0
ALERTS = ("RedisAofWriteFailure", "RedisPersistenceFailure")
# What the server logs about the failure and the recovery (Valkey 8/9 and Redis 7 word them alike).
LOG_MARKS = ("No space left", "Background saving error", "looks solved", "Background saving terminated with success",
             "MISCONF", "can't exit")


def save_rules(admin) -> list[tuple[int, int]]:
    """The server's RDB save rules as (seconds, changes), from CONFIG GET save ("900 1 300 10")."""
    words = (admin.config_get("save").get("save") or "").split()
    return [(int(words[i]), int(words[i + 1])) for i in range(0, len(words) - 1, 2)]


def persistence(admin) -> dict:
    info = admin.info("persistence")
    return {k: info.get(k) for k in ("aof_last_write_status", "aof_last_bgrewrite_status", "rdb_last_bgsave_status",
                                     "rdb_changes_since_last_save", "rdb_last_save_time")}


def alert_timeout(stack, rule_seconds: float = 0) -> float:
    """How long an alert may take to fire: the save rule's wait, the rule's `for`, a scrape and two evaluations,
    with a margin for a loaded machine."""
    from ..units import duration_seconds

    rules = stack.full_values["monitoring"]["rules"]
    hold = max(duration_seconds(rules[a[0].lower() + a[1:]]["for"]) for a in ALERTS)
    scrape = duration_seconds(stack.full_values["valkey"]["exporter"]["serviceMonitor"].get("interval") or "30s")
    evaluation = duration_seconds(stack.monitoring_options.evaluation_interval)
    return rule_seconds + hold + scrape + 2 * evaluation + 60


def run(engine: str = "valkey8", values: dict | None = None, state_dir: str | None = None,
        warmup_acks: int = 2000, monitoring_options: MonitoringOptions | None = None) -> DrillResult:
    result = DrillResult(drill="restore-disk-full", engine=engine)
    fig = result.figures
    options = monitoring_options or MonitoringOptions(resend_delay="5s")
    with stack_for("disk-full", engine, values, state_dir, monitoring=True, monitoring_options=options) as stack:
        result.versions = {k: str(v) for k, v in stack.versions().items() if v}
        name = stack.primary_name
        stack.wait_target_up(60)
        prometheus, alertmanager = stack.prometheus, Alertmanager(stack.alertmanager_url)
        admin = stack.client("admin")
        rules = save_rules(admin)
        if not rules:
            raise ValueError("disk-full: valkey.settings.save is empty, so no snapshot is ever tried and "
                             "RedisPersistenceFailure cannot fire; run the drill with save rules")
        rule = min(rules)  # the rule with the shortest wait fires first once it has its changes
        fig["save_rule"] = f"{rule[0]} {rule[1]}"
        load = WriteLoad(make_client=lambda: stack.client("default", socket_timeout=5), prefix="diskfull").start()
        offset = log_offset(stack)
        restarts_before = stack.cluster.pod(name).kubelet.status["valkey"].restarts
        try:
            load.wait_for_acks(warmup_acks, timeout=60)
            # The save rule needs its changes before the volume fills: the writes stop then.
            wait_until(lambda: persistence(admin)["rdb_changes_since_last_save"] >= rule[1], 120,
                       f"{rule[1]} changes for the save rule {rule[0]} {rule[1]}", interval=0.1)
            fill_started = time.monotonic()
            filled = stack.cluster.fill_disk(name)
            filled_at = time.monotonic()
            fig["fill"] = {k: filled[k] for k in ("size_bytes", "filler_bytes", "free_bytes")}
            fig["fill_seconds"] = round(filled_at - fill_started, 3)
            first_refusal = wait_until(lambda: load.first_error_at.get("MISCONF"), 30,
                                       "a write refused with MISCONF", interval=0.01)
            # The server takes writes until its next AOF write fails; replies in flight then still arrive.
            fig["first_refusal_after_fill_started_seconds"] = round(first_refusal - fill_started, 3)
            fig["acknowledged_after_fill_started"] = len([a for a in load.snapshot() if a.acked_at > fill_started])
            fig["acknowledged_after_first_refusal"] = len([a for a in load.snapshot() if a.acked_at > first_refusal])
            fired = {}
            last_save = persistence(admin)["rdb_last_save_time"]
            wait_for_rule = max(0.0, last_save + rule[0] - time.time())
            for alert in ALERTS:
                wait_until(lambda: prometheus.firing(alert), alert_timeout(stack, wait_for_rule),
                           f"{alert} firing in Prometheus", interval=0.5)
                wait_until(lambda: alertmanager.active(alert), 60, f"{alert} in Alertmanager", interval=0.5)
                fired[alert] = round(time.monotonic() - filled_at, 1)
            fig["alerts_in_alertmanager_after_fill_seconds"] = fired
            full = persistence(admin)
            fig["while_full"] = full
            result.check("the AOF write fails on the full volume", "aof_last_write_status err",
                         full["aof_last_write_status"], full["aof_last_write_status"] == "err")
            result.check("the server's own snapshot fails on the full volume", "rdb_last_bgsave_status err",
                         full["rdb_last_bgsave_status"], full["rdb_last_bgsave_status"] == "err")
            result.check("both alerts fire end to end (Prometheus and Alertmanager)", ", ".join(ALERTS),
                         sorted(fired), sorted(fired) == sorted(ALERTS))
            refused_writes = load.errors_by_kind.get("MISCONF", 0)
            result.check("writes are refused with error replies while the volume is full", "MISCONF replies > 0",
                         dict(load.errors_by_kind), refused_writes > 0)
            restarts = stack.cluster.pod(name).kubelet.status["valkey"].restarts - restarts_before
            result.check("the server stays up (no restart while the volume is full)", "0 restarts", restarts,
                         restarts == 0)

            acks_before_free = len(load.acks)
            stack.cluster.free_disk(name)
            freed_at = time.monotonic()
            serving_at = wait_until(lambda: next((a.acked_at for a in load.snapshot()[acks_before_free:]
                                                  if a.acked_at > freed_at), None), 120,
                                    "an acknowledged write after the space came back", interval=0.01)
            rto = serving_at - freed_at
            healthy = wait_until(lambda: (lambda p: p if p["aof_last_write_status"] == "ok"
                                          and p["rdb_last_bgsave_status"] == "ok" else None)(persistence(admin)),
                                 120, "aof_last_write_status and rdb_last_bgsave_status ok", interval=0.1)
            fig["after_free"] = healthy
            resolved = {}
            for alert in ALERTS:
                wait_until(lambda: not prometheus.alert_series(alert) and not alertmanager.active(alert),
                           alert_timeout(stack), f"{alert} to resolve", interval=0.5)
                resolved[alert] = round(time.monotonic() - freed_at, 1)
            fig["alerts_resolved_after_free_seconds"] = resolved
            load.wait_for_acks(len(load.acks) + 500, timeout=60)
        finally:
            load.stop()
        acks = load.snapshot()
        lost = lost_writes(stack.client("admin"), acks)
        # Again from the volume: a graceful restart of the pod loads the AOF written since the space came back.
        stack.cluster.delete_pod(name, recreate=False)
        pod = stack.cluster.create_pod(name)
        stack.cluster.wait_pod_ready(pod, 120)
        lost_after_restart = lost_writes(stack.client("admin"), acks)
        fig.update(rto_seconds=round(rto, 3), acknowledged_writes=len(acks), write_errors=load.errors,
                   write_errors_by_kind=dict(load.errors_by_kind), rpo_writes_lost=len(lost),
                   rpo_writes_lost_after_restart=len(lost_after_restart),
                   server_log=[line.strip() for line in log_since(stack, offset)
                               if any(m in line for m in LOG_MARKS)][:12])
        result.check("recovers by itself: space back to serving writes", f"< {RECOVERY_GOAL_S:.0f} s",
                     round(rto, 3), rto < RECOVERY_GOAL_S)
        result.check("alerts resolve after the recovery", ", ".join(ALERTS), sorted(resolved),
                     sorted(resolved) == sorted(ALERTS))
        result.check("RPO: every acknowledged write is there after the recovery", "0 missing", len(lost), not lost)
        result.check("RPO: and after a restart, from the AOF on the volume", "0 missing", len(lost_after_restart),
                     not lost_after_restart)
    result.finished_at = time.time()
    return result
