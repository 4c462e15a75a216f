"""Recovery benchmark: fill the local pod to maxmemory with 2 KB alerts, SIGKILL the server, time kill-to-ready.

Two persistence modes on the same dataset size: AOF with its RDB preamble (the chart's default, after a
rewrite, so the AOF is one RDB-format base plus a short tail) and RDB only (appendonly off). The kubelet
emulation restarts the container at once (first crash), the server loads from the volume, and the rendered
startup and readiness probes decide when the pod is ready again. Prints the timeline and derives the load
speed in seconds per GiB, hence the startup probe budget to give per GiB of maxmemory.

    python bench/recovery.py [--engine valkey8] [--sizes 384mb:512Mi,1536mb:2Gi] [--cold]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _common import GiB, DrillResult, fill_to_maxmemory, mib, save, say

from alert_history_cache.drills import forks
from alert_history_cache.stack import LocalStack
from alert_history_cache.waiting import wait_until

LOAD_LINE = re.compile(r"DB loaded from (?:disk|append only file|base file \S+|incr file \S+): ([\d.]+) seconds")
SAFETY = 3.0  # budget = SAFETY x the measured load time, plus the probe's own period


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def drop_caches() -> bool:
    """Evict the page cache so the restart reads the files from disk, as a rescheduled pod would."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


class RestartWatcher(threading.Thread):
    """Polls the pod address with raw RESP (AUTH as admin + INFO persistence): when the old server is gone, when
    the new one answers (loading:1 while it loads), and when it says loading:0. Raw sockets keep each poll a
    fresh connection with nothing buffered from the killed server."""

    def __init__(self, host: str, port: int, password: str, user: str = "admin"):
        super().__init__(daemon=True)
        self.addr = (host, port)
        self.hello = f"AUTH {user} {password}\r\nINFO persistence\r\n".encode()
        self.gone = self.answering = self.loaded = None

    def _poll(self) -> str | None:
        with socket.create_connection(self.addr, timeout=1.0) as s:
            s.sendall(self.hello)
            data = b""
            while b"loading:" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        m = re.search(rb"loading:(\d)", data)
        return m.group(1).decode() if m else None

    def run(self) -> None:
        with contextlib.suppress(TimeoutError):  # never loaded: measure() reports the missing times
            wait_until(self._observe, 900, "the restarted server to finish loading", interval=0.005)

    def _observe(self) -> bool:
        """One poll: note when the old server went away, the new one answered and finished loading."""
        try:
            loading = self._poll()
        except OSError:
            if self.gone is None:
                self.gone = time.monotonic()
            return False
        now = time.monotonic()
        if self.gone is not None and loading is not None:
            self.answering = self.answering or now
            if loading == "0":
                self.loaded = now
        return self.loaded is not None


def measure(engine: str, maxmemory: str, limit: str, aof: bool, cold: bool) -> dict:
    values = {"valkey": {"settings": {"maxmemory": maxmemory, "appendonly": aof},
                         "resources": {"limits": {"memory": limit}, "requests": {"memory": limit}}}}
    with tempfile.TemporaryDirectory(prefix="ahc-bench-recovery-") as d, \
            LocalStack(values=values, engine=engine, state_dir=d, monitoring=False) as stack:
        app = stack.client("default", decode_responses=False, socket_timeout=60)
        admin = stack.client("admin", socket_timeout=60)
        fill = fill_to_maxmemory(app, admin)
        forks.wait_idle(admin)
        if aof:
            admin.bgrewriteaof()
        else:
            admin.bgsave()
        forks.wait_idle(admin)
        keys_before = admin.dbsize()
        used = int(admin.info("memory")["used_memory"])
        files = {"aof_dir_bytes": dir_bytes(stack.data_dir / "appendonlydir") if aof else 0,
                 "rdb_bytes": (stack.data_dir / "dump.rdb").stat().st_size if (stack.data_dir / "dump.rdb").exists()
                 else 0}
        app.close()
        admin.close()
        cold_ok = drop_caches() if cold else False
        log_offset = stack.server_log_path.stat().st_size
        watcher = RestartWatcher(stack.pod_ip, stack.port, stack.user_password("admin"),
                                 user=stack.full_values["valkey"]["acl"]["adminUser"])
        kill_wall = time.time()
        watcher.start()
        t_kill = time.monotonic()
        stack.kill_server(signal.SIGKILL)
        ready = stack.wait_ready(900)
        watcher.join(timeout=60)
        events = [e for e in stack.events if e["time"] >= kill_wall - 0.01 and e["object"] == "valkey"]
        started = next((e["time"] - kill_wall for e in events if e["reason"] == "Started"), None)
        log = stack.server_log_path.read_bytes()[log_offset:].decode(errors="replace")
        loads = [float(x) for x in LOAD_LINE.findall(log)]
        admin = stack.client("admin")
        keys_after = admin.dbsize()
        admin.close()
    answering = watcher.answering - t_kill if watcher.answering else None
    loaded = watcher.loaded - t_kill if watcher.loaded else None
    # AOF loads log the base file and the whole AOF; the largest figure is the whole load.
    load_s = max(loads) if loads else (loaded - answering if loaded and answering else None)
    return {"mode": "AOF (RDB preamble)" if aof else "RDB only", "maxmemory": maxmemory, "limit": limit, **fill,
            "used_memory": used, **files, "keys_before": keys_before, "keys_after": keys_after,
            "page_cache_dropped": cold_ok, "kill_to_started_s": started, "kill_to_answering_s": answering,
            "kill_to_loaded_s": loaded, "kill_to_ready_s": ready, "server_load_s": load_s,
            "load_s_per_gib": (load_s / (used / GiB)) if load_s else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="valkey8")
    ap.add_argument("--sizes", default="384mb:512Mi,1536mb:2Gi", help="maxmemory:limit pairs")
    ap.add_argument("--cold", action=argparse.BooleanOptionalAction, default=True,
                    help="drop the page cache before the kill (reads from disk, like a rescheduled pod)")
    args = ap.parse_args()
    result = DrillResult(drill="bench-recovery", engine=args.engine)
    with LocalStack(values={}, engine=args.engine, state_dir=tempfile.mkdtemp(prefix="ahc-v-"), monitoring=False) \
            as probe_stack:
        result.versions = {k: str(v) for k, v in probe_stack.versions().items() if v}
        startup = next(c["startupProbe"] for c in probe_stack.pod.spec["containers"] if c.get("startupProbe"))
        readiness = next(c["readinessProbe"] for c in probe_stack.pod.spec["containers"] if c.get("readinessProbe"))
    cases = []
    for pair in args.sizes.split(","):
        maxmemory, limit = pair.split(":")
        for aof in (True, False):
            c = measure(args.engine, maxmemory, limit, aof, args.cold)
            cases.append(c)
            say(f"recovery {args.engine} {c['mode']} maxmemory {maxmemory}", [
                ("keys / used_memory", f"{c['keys_before']} keys, {mib(c['used_memory'])} MiB"),
                ("files on the volume", f"AOF dir {mib(c['aof_dir_bytes'])} MiB, dump.rdb {mib(c['rdb_bytes'])} MiB"),
                ("page cache dropped", c["page_cache_dropped"]),
                ("kill -> container started", f"{c['kill_to_started_s']:.3f} s" if c["kill_to_started_s"] is not None else "?"),
                ("kill -> answering (LOADING)", f"{c['kill_to_answering_s']:.3f} s" if c["kill_to_answering_s"] else "?"),
                ("kill -> loaded", f"{c['kill_to_loaded_s']:.3f} s" if c["kill_to_loaded_s"] else "?"),
                ("kill -> pod ready (probes)", f"{c['kill_to_ready_s']:.3f} s"),
                ("server load time (its log)", f"{c['server_load_s']:.3f} s" if c["server_load_s"] else "?"),
                ("load speed", f"{c['load_s_per_gib']:.2f} s per GiB" if c["load_s_per_gib"] else "?"),
                ("keys after restart", f"{c['keys_after']} (before {c['keys_before']})"),
            ])
    worst = max((c["load_s_per_gib"] or 0) for c in cases)
    period = float(startup.get("periodSeconds", 10))
    threshold = int(startup.get("failureThreshold", 3))
    budget = period * threshold
    per_gib = SAFETY * worst
    covers_gib = (budget - period) / per_gib if per_gib else math.inf
    result.figures.update({
        "cases": cases, "startup_probe": startup, "readiness_probe": readiness,
        "worst_load_s_per_gib": worst, "safety_factor": SAFETY,
        "startup_budget_s": budget, "budget_s_per_gib": per_gib,
        "default_budget_covers_gib": covers_gib,
        "notes": [f"Startup probe budget = periodSeconds x failureThreshold = {budget:.0f} s; at {SAFETY:g}x the "
                  f"slowest measured load ({worst:.2f} s/GiB) it covers {covers_gib:.1f} GiB of data. A network "
                  "volume reads slower than this machine's disk: measure on your storage class.",
                  "Kill-to-ready is dominated by the readiness probe period, not by loading, at these sizes."],
    })
    for c in cases:
        # >=: evictions after the last snapshot (INFO itself can trigger them at maxmemory) shrink the live set
        # below what the RDB holds; nothing present at the kill may be missing.
        result.check(f"{c['mode']} {c['maxmemory']}: every key back", f">= {c['keys_before']} keys",
                     c["keys_after"], c["keys_after"] >= c["keys_before"])
        result.check(f"{c['mode']} {c['maxmemory']}: kill to ready", "< 60 s (recovery requirement, docs/requirements.md)",
                     f"{c['kill_to_ready_s']:.2f} s", c["kill_to_ready_s"] < 60)
        phases = []
        if c["kill_to_started_s"] is not None:
            phases.append({"start": 0.0, "end": c["kill_to_started_s"], "label": "kubelet restart"})
        if c["kill_to_answering_s"]:
            phases.append({"start": c["kill_to_started_s"] or 0.0, "end": c["kill_to_answering_s"],
                           "label": "process start"})
        if c["kill_to_loaded_s"]:
            phases.append({"start": c["kill_to_answering_s"] or 0.0, "end": c["kill_to_loaded_s"], "label": "loading"})
            phases.append({"start": c["kill_to_loaded_s"], "end": c["kill_to_ready_s"], "label": "probes to ready"})
        result.series[f"timeline {c['mode']} {c['maxmemory']}"] = {
            "kind": "timeline", "title": f"Recovery timeline: {c['mode']}, {c['maxmemory']} "
            f"({mib(c['used_memory'])} MiB)", "x_label": "seconds from SIGKILL", "phases": phases,
            "events": [{"t": c["kill_to_ready_s"], "label": "ready"}]}
    say("startup probe budget", [
        ("rendered startup probe", f"period {period:g} s x failureThreshold {threshold} = {budget:g} s"),
        ("slowest load measured", f"{worst:.2f} s/GiB"),
        (f"budget per GiB at {SAFETY:g}x", f"{per_gib:.2f} s/GiB"),
        ("default budget covers", f"{covers_gib:.1f} GiB of data"),
    ])
    save(result, f"recovery-{args.engine}")


if __name__ == "__main__":
    main()
