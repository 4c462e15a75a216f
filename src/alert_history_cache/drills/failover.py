"""Failover drill (the failover requirement in docs/requirements.md): graceful pod deletion, hard kill and a
truncated AOF tail, each under a sustained write load with every acknowledged write recorded; what was lost and
how long recovery took."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from .persistence import AOF_DIR, RECOVERY_GOAL_S, log_offset, log_since, manifest_entries, replay_lines, stack_for
from .results import DrillResult
from .writeload import WriteLoad, lost_writes

LOSS_WINDOW_GOAL_S = 1.0
TRUNCATION_LOG = ("AOF loaded anyway", "short read while loading the AOF", "truncated")

KILL_NOTE = ("SIGKILL ends the process but not the kernel: the server write()s each command to the AOF before "
             "it replies, so every acknowledged write is already in the page cache and survives; the everysec "
             "window (<= 1 s of acknowledged writes) applies to a node or kernel crash, which this drill cannot "
             "cause on a shared machine.")


def command_offsets(data: bytes) -> list[int]:
    """Start offset of each RESP command (*N\\r\\n$len\\r\\narg\\r\\n...) in an AOF incr file."""
    offsets, pos = [], 0
    while pos < len(data) and data[pos:pos + 1] == b"*":
        start = pos
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        argc, pos = int(data[pos + 1:end]), end + 2
        for _ in range(argc):
            end = data.find(b"\r\n", pos)
            if end < 0 or data[pos:pos + 1] != b"$":
                return offsets
            pos = end + 2 + int(data[pos + 1:end]) + 2
        if pos > len(data):
            break
        offsets.append(start)
    return offsets


def truncate_last_command(data_dir: Path) -> dict:
    """Cut the last incr AOF file in the middle of its last command, as a crash mid-write leaves it."""
    incr = [e["file"] for e in manifest_entries(data_dir) if e.get("type") == "i"]
    path = data_dir / AOF_DIR / incr[-1]
    data = path.read_bytes()
    offsets = command_offsets(data)
    last = offsets[-1]
    cut = last + (len(data) - last) // 2
    with open(path, "r+b") as fh:
        fh.truncate(cut)
    return {"file": path.name, "size_before": len(data), "size_after": cut, "last_command_at": last,
            "last_command": data[last:].decode(errors="replace").replace("\r\n", " ").strip()}


def scenario(stack, name: str, sig: int, load_s: float, truncate: bool = False) -> dict:
    """Write load for `load_s`, the disruption, recovery, load again for `load_s`; acknowledged writes checked."""
    load = WriteLoad(make_client=lambda: stack.client("default", socket_timeout=2, socket_connect_timeout=2),
                     prefix=f"failover:{name}").start()
    load.wait_for_acks(50)
    time.sleep(load_s)
    offset = log_offset(stack)
    t_kill = time.monotonic()
    acks_before = len(load.snapshot())
    fig: dict = {"signal": signal.Signals(sig).name}
    stack.delete_pod(sig)
    t_down = time.monotonic()  # the old server is gone: no acknowledgement after this came from it
    if truncate:
        # The pod is down, so nothing writes the file: the writers only see refused connections meanwhile.
        fig["truncation"] = truncate_last_command(stack.data_dir)
    stack.create_pod()
    recovery = stack.wait_ready(RECOVERY_GOAL_S + 30, since=t_kill)
    time.sleep(load_s)  # writes resume against the recovered pod
    load.stop()
    acks = load.snapshot()
    lost = lost_writes(stack.client("default"), acks)
    lines = log_since(stack, offset)
    replayed = replay_lines(lines)
    # The loss window: from the oldest lost acknowledgement to the last acknowledgement the dead server gave.
    last_before = max((a.acked_at for a in acks if a.acked_at <= t_down), default=t_kill)
    window = (last_before - min(a.acked_at for a in lost)) if lost else 0.0
    fig.update({
        "acknowledged_writes": len(acks), "acknowledged_before_kill": acks_before,
        "write_errors_during_outage": load.errors, "lost_acknowledged_writes": len(lost),
        "lost_keys": [a.key for a in lost][:20], "loss_window_seconds": round(max(window, 0.0), 4),
        "recovery_seconds": round(recovery, 3), "replay_log_lines": replayed,
    })
    if truncate:
        fig["truncation_log_lines"] = [l.strip() for l in lines if any(t in l for t in TRUNCATION_LOG)]
    return fig


def run(engine: str = "valkey8", values: dict | None = None, state_dir: str | None = None,
        load_s: float = 2.0) -> DrillResult:
    result = DrillResult(drill="failover", engine=engine)
    with stack_for("failover", engine, values, state_dir) as stack:
        result.versions = {k: str(v) for k, v in stack.versions().items() if v}
        admin = stack.client("admin")
        result.figures["appendfsync"] = admin.config_get("appendfsync").get("appendfsync")
        result.figures["aof_load_truncated"] = admin.config_get("aof-load-truncated").get("aof-load-truncated")
        result.figures["load_seconds_each_side"] = load_s

        g = result.figures["graceful"] = scenario(stack, "graceful", signal.SIGTERM, load_s)
        result.check("graceful delete (SIGTERM): acknowledged writes lost", "0",
                     f"{g['lost_acknowledged_writes']} of {g['acknowledged_writes']}",
                     g["lost_acknowledged_writes"] == 0)
        _recovery(result, "graceful", g)

        k = result.figures["hard_kill"] = scenario(stack, "hard_kill", signal.SIGKILL, load_s)
        k["note"] = KILL_NOTE
        result.check("hard kill (SIGKILL): loss window", f"<= {LOSS_WINDOW_GOAL_S:.0f} s (everysec)",
                     f"{k['loss_window_seconds']} s ({k['lost_acknowledged_writes']} of "
                     f"{k['acknowledged_writes']} lost)", k["loss_window_seconds"] <= LOSS_WINDOW_GOAL_S)
        _recovery(result, "hard_kill", k)

        t = result.figures["truncated_aof"] = scenario(stack, "truncated", signal.SIGKILL, load_s,
                                                       truncate=True)
        quoted = [l for l in t["truncation_log_lines"] if "loaded anyway" in l] or t["truncation_log_lines"][:1]
        result.check("truncated AOF tail loads (aof-load-truncated)",
                     "loads; dropped writes counted",
                     f"dropped {t['lost_acknowledged_writes']} acknowledged write(s) "
                     f"(window {t['loss_window_seconds']} s); log: "
                     f"{quoted[0] if quoted else '(no truncation line)'}",
                     bool(quoted) and bool(t["replay_log_lines"]) and t["lost_acknowledged_writes"] <= 1)
        _recovery(result, "truncated", t)
    result.finished_at = time.time()
    return result


def _recovery(result: DrillResult, name: str, fig: dict) -> None:
    line = fig["replay_log_lines"][-1] if fig["replay_log_lines"] else "(no AOF replay line in the log)"
    result.check(f"{name}: kill to readiness, AOF replayed", f"< {RECOVERY_GOAL_S:.0f} s",
                 f"{fig['recovery_seconds']} s; {line}",
                 fig["recovery_seconds"] < RECOVERY_GOAL_S and bool(fig["replay_log_lines"]))
