"""`kubectl` for the guides' blocks on the local stack (tests/integration/test_guide_commands.py): the verbs that
reach a release from outside, mapped to what the local stack has; everything else refuses, so a block that
needs a real cluster can never pass by accident.

  exec [-i] [-t] POD [-c C] -- CMD   ->  alert-history-cache exec (the pod's namespaces, user and env)
  get secret NAME -o jsonpath='{.data.KEY}'  ->  the base64 of the Secret's file in the stack's state dir
  port-forward pod/NAME|svc/NAME L:R...      ->  socat from 127.0.0.1:L to the pod's address or the ClusterIP

Environment: AHC_STATE_DIR (the stack), AHC_FORWARDS (a folder where each port-forward reports its ports)."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from alert_history_cache.stack_state import read_state

STATE = Path(os.environ["AHC_STATE_DIR"])


def fail(message: str, code: int = 1):
    print(f"kubectl (docs test): {message}", file=sys.stderr)
    sys.exit(code)


def strip_namespace(args: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        if args[i] in ("-n", "--namespace"):
            i += 2
            continue
        if args[i].startswith("--namespace="):
            i += 1
            continue
        out.append(args[i])
        i += 1
    return out


def do_exec(args: list[str]) -> None:
    cmd = args[args.index("--") + 1:] if "--" in args else fail("exec without -- before the command")
    opts, flags, i = args[:args.index("--")], [], 0
    pod = container = None
    while i < len(opts):
        a = opts[i]
        if a in ("-c", "--container"):
            container, i = opts[i + 1], i + 2
            continue
        if re.fullmatch(r"-[it]+", a) or a in ("--stdin", "--tty"):
            if "i" in a.lstrip("-") and a != "--tty":
                flags.append("-i")
        else:
            pod = a.removeprefix("pod/")
        i += 1
    if not pod:
        fail("exec: no pod named (is the pod's variable set?)")
    argv = [sys.executable, "-m", "alert_history_cache.cli", "exec", "--state-dir", str(STATE), *flags, pod,
            *(["-c", container] if container else []), "--", *cmd]
    os.execv(sys.executable, argv)


def secret_dir(name: str) -> Path:
    found = sorted(STATE.glob(f"secrets/{name}")) + sorted(STATE.glob(f"pods/*/secrets/{name}"))
    if not found:
        fail(f'Error from server (NotFound): secrets "{name}" not found')
    return found[0]


def do_get(args: list[str]) -> None:
    if len(args) < 3 or args[1] not in ("secret", "secrets"):
        fail(f"kubectl get {' '.join(args[1:2])}: needs a real cluster (the docs test runs only get secret)", 3)
    output = next((args[i + 1] for i, a in enumerate(args) if a == "-o"), None) or next(
        (a.split("=", 1)[1] if a.startswith("-o=") else a[2:] for a in args if a.startswith("-o")), "")
    m = re.fullmatch(r"jsonpath=\{\.data\.([\w.-]+)\}", output.removeprefix("=").strip("'"))
    if not m:
        fail(f"kubectl get secret -o {output}: only -o jsonpath='{{.data.KEY}}' is mapped", 3)
    path = secret_dir(args[2]) / m.group(1)
    if path.is_file():  # kubectl prints nothing for a key the Secret lacks
        sys.stdout.write(base64.b64encode(path.read_bytes()).decode())


def address(target: str) -> str:
    kind, _, name = target.rpartition("/")
    state = read_state(STATE)
    if kind in ("svc", "service"):
        for s in state.get("services") or []:
            if s["name"] == name and s.get("cluster_ip"):
                return s["cluster_ip"]
        fail(f'Error from server (NotFound): services "{name}" not found')
    for p in state.get("pods") or []:
        if p["name"] == name and (p.get("address") or p.get("ip")):
            return p.get("address") or p["ip"]
    fail(f'Error from server (NotFound): pods "{name}" not found')


def do_port_forward(args: list[str]) -> None:
    target, mappings = args[1], [a for a in args[2:] if re.fullmatch(r"\d+:\d+", a)]
    reports = Path(os.environ["AHC_FORWARDS"])
    try:
        host = address(target)
    except SystemExit:
        for m in mappings:
            (reports / m.split(":")[0]).write_text("failed")
        raise
    procs = [subprocess.Popen(["socat", f"TCP-LISTEN:{m.split(':')[0]},bind=127.0.0.1,reuseaddr,fork",
                               f"TCP:{host}:{m.split(':')[1]}"]) for m in mappings]
    from alert_history_cache.waiting import wait_until

    for m, proc in zip(mappings, procs):
        local = m.split(":")[0]
        wait_until(lambda: proc.poll() is not None or f"127.0.0.1:{local}" in listening(), 10,
                   f"socat on {local}")
        (reports / local).write_text("ok" if proc.poll() is None else "failed")
    signal.signal(signal.SIGTERM, lambda *_: [p.terminate() for p in procs] and sys.exit(0))
    for p in procs:
        p.wait()


def listening() -> str:
    return subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout


def main() -> None:
    args = strip_namespace(sys.argv[1:])
    verb = args[0] if args else ""
    if verb == "exec":
        do_exec(args[1:])
    elif verb == "get":
        do_get(args)
    elif verb == "port-forward":
        do_port_forward(args)
    else:
        fail(f"kubectl {verb}: needs a real cluster; the docs test does not run it", 3)


if __name__ == "__main__":
    main()
