"""Every ```console block of docs/operations.md, docs/troubleshooting.md and docs/disaster-recovery.md either runs
against a local stack and succeeds, or is on NEEDS_A_CLUSTER with the reason; nothing is skipped silently.

How a block runs: in bash (`set -eo pipefail`, aliases on), in a fresh folder that holds `backup.rdb` (a backup
of the stack's dataset, for the steps that start from "your backup"), with the stack's binaries under the image's
names (valkey-cli, valkey-check-rdb, ...) on PATH and `kubectl` mapped by tests/helpers/kubectl_shim.py: `exec`
-> `alert-history-cache exec`, `get secret` -> the stack's Secret files, `port-forward` -> socat to the pod or
ClusterIP (each backgrounded port-forward is waited for). Before it run the set-up blocks it relies on, as a
reader would have run them: the names block at the top of operations.md, and "Log in as the admin user" (for
`-h 127.0.0.1 -p 6379`) or both "Log in to a data pod and its Sentinel" blocks (for `vcli`, `scli`, `ssvc`),
without their closing `unset`, and the `NAME=value` lines of the earlier blocks of its section. A block passes when it exits
0 and prints no error reply (tests/helpers/doc_commands.py).

Which stack: blocks under a heading that starts with "Replication" run on a replication release (3 data pods,
Sentinel, HAProxy), the others on a standalone one; `<!-- docs-test: replication -->` (or `standalone`) on the
line before a block overrides that. Blocks that change the release (FLUSHALL, DEBUG, SHUTDOWN, FAILOVER,
REPLICAOF, CONFIG SET, SENTINEL SET/RESET, rm) run after the others, in the guides' order, on the same stack, which
is thrown away afterwards. A block needs a real cluster when it uses any other kubectl verb or helm: those are
listed, and the list must equal NEEDS_A_CLUSTER (a new such block needs its entry and reason here)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from alert_history_cache import chart
from alert_history_cache.drills.capacity import settled_primary
from alert_history_cache.stack import LocalStack
from alert_history_cache.waiting import wait_until
from helpers.doc_commands import Block, console_blocks, error_reply
from helpers.local_stack import FAST_PROBES, assert_nothing_left, engine_or_skip, root_or_skip

pytestmark = pytest.mark.integration

DOCS = chart.REPO_ROOT / "docs"
GUIDES = ["operations.md", "troubleshooting.md", "disaster-recovery.md"]
SHIM = Path(__file__).parents[1] / "helpers" / "kubectl_shim.py"
MAPPED = {"exec", "port-forward"}  # and `get secret`
DESTRUCTIVE = re.compile(r"\b(flushall|flushdb|debug|shutdown|sentinel failover|replicaof|config set|sentinel (set|reset)|"
                         r"rm -rf?)\b", re.I)
CLUSTER_ONLY = "needs a real cluster"

NEEDS_A_CLUSTER = {
    "operations.md § Deploy [1]": "helm install and helm test",
    "operations.md § Check health [1]": "kubectl get/logs/describe pod and helm test read the API server",
    "operations.md § Change settings [1]": "helm upgrade",
    "operations.md § Grow the volume [1]": "kubectl patch pvc: volume expansion by the StorageClass",
    "operations.md § Check the replication set [1]": "kubectl get pods -o wide: pod status and node placement",
    "operations.md § Drain a node [1]": "kubectl get pods -o wide (nodes); its ssvc line runs in 'Check the "
                                        "replication set'",
    "operations.md § Drain a node [2]": "kubectl drain and kubectl wait: node drains",
    "operations.md § Scale the replication set [1]": "helm upgrade of valkey.replicas (its vcli CONFIG SET line "
                                                     "runs in 'Manual failover')",
    "troubleshooting.md § Troubleshooting [1]": "kubectl get/describe/logs read the API server",
    "troubleshooting.md § Writes fail: persistence errors (a full volume) [1]": "kubectl logs (the server log; on the "
                                                                               "local stack STATE/logs/)",
    "troubleshooting.md § Replication (`valkey.architecture: replication`) [1]": "kubectl get pods/logs/events",
    "troubleshooting.md § Replicas that never sync [2]": "kubectl logs",
    "disaster-recovery.md § Scheduled backups (`backup.enabled`) [1]": "kubectl create job/wait/logs (on the local "
                                                                       "stack: alert-history-cache backup)",
    "disaster-recovery.md § Off-site copies (`backup.rclone`) [1]": "kubectl create secret, helm upgrade, kubectl "
                                                                    "logs (proven on the local stack by "
                                                                    "test_backup_offsite.py against rclone serve "
                                                                    "webdav)",
    "disaster-recovery.md § Offline restore [1]": "kubectl apply of a helper pod that mounts the PVC",
    "disaster-recovery.md § Offline restore [2]": "helm upgrade, kubectl scale and rollout status",
    "disaster-recovery.md § Replication: a volume is lost [1]": "kubectl delete pvc and pod: a new claim from the "
                                                                "StorageClass",
    "disaster-recovery.md § Replication: every pod lost or restarted [1]": "kubectl scale",
    "disaster-recovery.md § Replication: every pod lost or restarted [2]": "kubectl apply of helper pods that mount "
                                                                           "the PVCs",
    "disaster-recovery.md § Replication: every pod lost or restarted [3]": "kubectl delete pvc and apply of a new "
                                                                           "claim",
    "disaster-recovery.md § Replication: every pod lost or restarted [4]": "kubectl exec into the helper pods of "
                                                                           "step 2, kubectl delete pod",
}


def guide_blocks() -> list[Block]:
    return [b for g in GUIDES for b in console_blocks(DOCS / g)]


def cluster_verbs(text: str) -> list[str]:
    """What in a block only a real cluster does: kubectl verbs other than the mapped ones, and helm."""
    found = []
    for m in re.finditer(r"\bkubectl((?:\s+(?:-n|--namespace)\s+\S+)*)\s+([\w-]+)(?:\s+(\S+))?", text):
        verb, what = m.group(2), m.group(3)
        if verb not in MAPPED and not (verb == "get" and what in ("secret", "secrets")):
            found.append(f"kubectl {verb}")
    found += [f"helm {v}" for v in re.findall(r"(?:^|[|;&(]\s*|\s)helm\s+(\w+)", text, re.M)]
    return found


def needs_replication(block: Block) -> bool:
    if block.marker in ("replication", "standalone"):
        return block.marker == "replication"
    return any(h.startswith("Replication") for h in block.headings)


def setup_blocks() -> dict[str, Block]:
    ops = {b.key: b for b in console_blocks(DOCS / "operations.md")}
    return {"names": ops["operations.md § Operations [1]"], "admin": ops["operations.md § Log in as the admin user [1]"],
            "pod": ops["operations.md § Log in to a data pod and its Sentinel [1]"],
            "sentinel": ops["operations.md § Log in to a data pod and its Sentinel [2]"]}


def prelude_for(block: Block) -> list[Block]:
    s = setup_blocks()
    wanted = [s["names"]]
    if re.search(r"-h 127\.0\.0\.1 -p 6379\b", block.text):
        wanted.append(s["admin"])
    if re.search(r"\b(vcli|scli|ssvc)\b", block.text):
        wanted += [s["pod"], s["sentinel"]]
    return [b for b in wanted if b.key != block.key and b.text.strip() not in block.text]


ASSIGNMENT = re.compile(r"^[A-Z_]+=\S+(\s+[A-Z_]+=\S+)*\s*(#.*)?$")


def carried_names(block: Block) -> list[str]:
    """The plain `NAME=value` lines of the earlier blocks of the same section: the reader still has them set."""
    earlier = [b for b in guide_blocks() if b.page == block.page and b.headings == block.headings
               and b.index < block.index]
    return [line for b in earlier for line in b.text.splitlines() if ASSIGNMENT.match(line)]


def with_forward_waits(text: str) -> str:
    """After each backgrounded `kubectl port-forward`, wait until the shim reports its local ports (the reader
    would see kubectl's "Forwarding from ..." first)."""
    out = []
    for line in text.splitlines():
        out.append(line)
        if "port-forward" in line and line.rstrip().endswith("&"):
            for port in re.findall(r"\b(\d+):\d+\b", line):
                out.append(f'until [ -e "$AHC_FORWARDS/{port}" ]; do sleep 0.05; done')
    return "\n".join(out) + "\n"


def script_for(block: Block) -> str:
    setup = "\n".join(line for b in prelude_for(block) for line in b.text.splitlines()
                      if not line.startswith("unset "))
    return ("shopt -s expand_aliases\n" + with_forward_waits(setup) + "\n".join(carried_names(block)) + "\n"
            + "set -eo pipefail\n" + with_forward_waits(block.text))


class Runner:
    def __init__(self, stack: LocalStack, work: Path):
        self.stack, self.work = stack, work
        self.bin = work / "bin"
        self.bin.mkdir(parents=True)
        shim = self.bin / "kubectl"
        shim.write_text(f"#!/bin/sh\nexec {sys.executable} {SHIM} \"$@\"\n")
        shim.chmod(0o755)
        helm = self.bin / "helm"
        helm.write_text(f"#!/bin/sh\necho 'helm: {CLUSTER_ONLY}' >&2\nexit 3\n")
        helm.chmod(0o755)
        self.n = 0

    def run(self, block: Block) -> dict | None:
        """None when the block passed, else what failed."""
        self.n += 1
        folder = self.work / f"block{self.n}"
        (folder / "tmp").mkdir(parents=True)
        (folder / "forwards").mkdir()
        shutil.copy(self.work / "backup.rdb", folder / "backup.rdb")
        env = {**os.environ, "PATH": f"{self.bin}:{self.stack.state_dir / 'bin'}:{os.environ['PATH']}",
               "PYTHONPATH": os.pathsep.join(sys.path), "AHC_STATE_DIR": str(self.stack.state_dir),
               "AHC_FORWARDS": str(folder / "forwards"), "TMPDIR": str(folder / "tmp"), "HOME": str(folder)}
        env.pop("REDISCLI_AUTH", None)
        # Output to a file, not a pipe: the port-forwards a block leaves in the background would hold a pipe open.
        log = folder / "output.txt"
        with open(log, "w") as out_file:
            proc = subprocess.Popen(["bash", "-c", script_for(block)], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out_file, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                out_file.write("\n(docs test: timed out after 90 s)\n")
            finally:
                kill_group(proc.pid)  # the block's background jobs (port-forwards) are in its process group
                proc.wait()
                kill_processes_in(folder)
        out = log.read_text(errors="replace")
        if proc.returncode == 0 and not error_reply(out):
            return None
        return {"block": block.key, "line": block.line, "exit": proc.returncode, "output": out[-1500:]}


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_processes_in(folder: Path) -> None:
    """A server a block daemonized (it left the process group) whose folder is the block's."""
    import psutil

    for p in psutil.process_iter():
        try:
            if p.cwd().startswith(str(folder)):
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def start(values: dict, state_dir: Path) -> LocalStack:
    # Fast probes only standalone: with replication the chart requires a startup budget above the bootstrap's.
    fast = values.get("valkey", {}).get("architecture") != "replication"
    return LocalStack(values=chart.deep_merge(FAST_PROBES if fast else {}, values), engine="valkey8",
                      state_dir=state_dir, monitoring=False, serve_control=True).start()


def test_every_block_is_run_or_listed_as_needing_a_cluster():
    """The list of blocks that need a real cluster, with why, is the committed one; it is printed."""
    blocks = guide_blocks()
    assert len(blocks) > 25
    assert len({b.key for b in blocks}) == len(blocks)
    listed = {b.key: ", ".join(sorted(set(cluster_verbs(b.text)))) for b in blocks if cluster_verbs(b.text)}
    print("Not runnable here (need a real cluster):\n" + "\n".join(f"  {k}: {v} ({NEEDS_A_CLUSTER.get(k)})"
                                                                    for k, v in listed.items()))
    assert sorted(listed) == sorted(NEEDS_A_CLUSTER)
    runnable = [b for b in blocks if b.key not in listed]
    assert any(needs_replication(b) for b in runnable) and any(not needs_replication(b) for b in runnable)


@pytest.mark.parametrize("architecture", ["standalone", "replication"])
def test_guide_blocks_run_on_the_local_stack(architecture, tmp_path):
    root_or_skip()
    engine_or_skip("valkey8")
    if shutil.which("socat") is None:
        pytest.skip("socat is missing (scripts/setup.sh installs it): the blocks' port-forward needs it")
    blocks = [b for b in guide_blocks() if not cluster_verbs(b.text)
              and needs_replication(b) == (architecture == "replication")]
    values = {"valkey": {"architecture": "replication", "replicas": 3}} if architecture == "replication" else {}
    stack = start(values, tmp_path / "state")
    try:
        for pod in ([p.name for p in stack.cluster.plans if p.owner == "alerthistory-redis"]):
            wait_until(lambda pod=pod: stack.cluster.pod(pod).ready, 120, f"pod {pod} to be ready")
        if architecture == "replication":
            # Ready pods are not yet a set Sentinel knows: it finds the replicas in the primary's INFO (every
            # 10 s), and the guides' `SENTINEL REPLICAS` lines list them.
            settled_primary(stack)
        admin = stack.client("admin")
        for i in range(50):
            admin.set(f"docs-test:{i}", i)
        runner = Runner(stack, tmp_path / "work")
        env = {**os.environ, **stack.cli_env("admin")}
        subprocess.run([*stack.cli_argv("admin"), "--rdb", str(runner.work / "backup.rdb")], env=env, check=True,
                       capture_output=True, timeout=60)
        ordered = [b for b in blocks if not DESTRUCTIVE.search(b.text)] + [b for b in blocks if DESTRUCTIVE.search(b.text)]
        print(f"{architecture}: running {len(ordered)} blocks: " + ", ".join(b.key for b in ordered))
        failures = [f for f in (runner.run(b) for b in ordered) if f]
    finally:
        stack.stop()
    assert_nothing_left(stack.state_dir)
    assert failures == [], "\n\n".join(f"{f['block']} (line {f['line']}), exit {f['exit']}:\n"
                                       + textwrap.indent(f["output"], "    ") for f in failures)
