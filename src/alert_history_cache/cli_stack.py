"""`alert-history-cache up | down | status`: the local stack from the command line.

`status --json` prints one JSON document (documented in docs/local-stack.md, "status --json"): `running`,
`phase`, `pods` (name, address, ready, containers with restarts, the server's replication `role`),
`services` (name, ClusterIP, ports, endpoints), `secrets` (where the files are), `prometheus` and
`alertmanager` URLs, plus the rest of stack.json."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import psutil
from rich.console import Console
from rich.table import Table

from . import chart
from .cli_common import engine_option, failures, state_dir_option, values_options
from .stack import DEFAULT_STATE_DIR, LocalStack, StackError, cleanup, is_running, read_state, require_root
from .status import status_document
from .waiting import wait_until

REQUEST_FILE = ".up-request.json"


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _secret_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, path = pair.partition("=")
        if not sep or not key or not path:
            _fail(f"--secret-file {pair!r}: expected KEY=PATH")
        if not Path(path).is_file():
            _fail(f"--secret-file {key}: no such file {path}")
        out[key] = str(Path(path).absolute())
    return out


def banner(data: dict, state_dir: Path) -> str:
    """Where everything is and how to connect, from stack.json (no password is printed)."""
    ep, pod, engine = data.get("endpoints", {}), data.get("pod", {}), data.get("engine", {})
    server_ip, _, port = ep.get("server", "?:?").partition(":")  # the client Service's ClusterIP
    secret_dir = ep.get("secret_dir", "")
    users = ep.get("users", {})
    admin = ep.get("admin_user", "admin")
    cli = ep.get("cli", "valkey-cli")
    tls = data.get("tls")
    if tls:  # TLS only: the CLI lines carry the CA (and the client pair when the server asks for one)
        cli += f" --tls --cacert {tls['ca']}" + (f" --cert {tls['cert']} --key {tls['key']}" if tls.get("cert") else "")
    pods = data.get("pods") or [pod]
    names = ", ".join(f"{p.get('name')} {p.get('address') or p.get('ip')}" for p in pods)
    lines = [
        f"Local cluster is ready: {len(pods)} pod(s) in namespace {pod.get('namespace')} ({names}); "
        f"{engine.get('title')} {engine.get('version')} (engine {engine.get('name')}).",
        "An emulation of the chart's pods and Services on this machine (namespaces, rendered config, probes, "
        "nftables Service proxy), not Kubernetes.",
        "",
        f"  server        {server_ip}:{port}   (Service {ep.get('service')}: its ClusterIP, as clients dial it)",
        f"  pod address   {ep.get('pod_server')}   (pod {pod.get('name')}; changes when the pod is recreated)",
    ]
    if tls:
        lines.append(f"  TLS CA        {tls['ca']}   (TLS only on {port}: clients check the server against it)")
        if tls.get("cert"):
            lines.append(f"  client cert   {tls['cert']}   (key {tls['key']}; the server asks for one)")
    if ep.get("metrics"):
        lines.append(f"  metrics       {ep['metrics']}")
    if ep.get("prometheus"):
        lines.append(f"  Prometheus    {ep['prometheus']}")
        lines.append(f"  Alertmanager  {ep['alertmanager']}")
        mon = data.get("monitoring") or {}
        target = mon.get("target")
        lines.append(f"  (the chart's {mon.get('rules', 0)} rules loaded; "
                     + (f"exporter target {target['health']}: {target['scrape_url']})" if target
                        else "no exporter target)"))
        lines += [f"  note: {n}" for n in mon.get("notes", [])]
    lines += [
        "",
        "Connect as the application (the `default` user: password-only AUTH, like alert-history):",
        f'  REDISCLI_AUTH="$(cat {secret_dir}/{users.get("default", "password")})" {cli} -h {server_ip} -p {port}',
        f"As the admin user ({admin}):",
        f'  REDISCLI_AUTH="$(cat {secret_dir}/{users.get(admin, "admin-password")})" {cli} -h {server_ip} -p {port} --user {admin}',
    ]
    if engine.get("cli_note"):
        lines.append(f"  ({engine['cli_note']})")
    lines += [
        "",
        f"Logs:    {ep.get('logs')}/  (valkey.log, exporter.log, config-init.log, kubelet.log, prometheus.log, "
        "alertmanager.log)",
        f"Status:  alert-history-cache status --state-dir {state_dir} [--json]",
        f"Faults:  alert-history-cache fault kill|delete|partition|heal POD --state-dir {state_dir}",
    ]
    return "\n".join(lines)


@click.command()
@values_options
@engine_option
@state_dir_option(DEFAULT_STATE_DIR, "Volume, config, secrets, logs and stack.json of this stack.")
@click.option("--secret-file", "secret_files", multiple=True, metavar="KEY=PATH",
              help="With valkey.password.existingSecret: a key of that Secret, read from a file (repeatable).")
@click.option("--monitoring/--no-monitoring", default=None,
              help="Start Prometheus and Alertmanager (default: monitoring.prometheusEnabled).")
@click.option("--detach", is_flag=True, help="Return once the pod is ready; stop later with `down`.")
@click.option("--supervised", is_flag=True, hidden=True)
def up(values_files, sets, engine, state_dir, secret_files, monitoring, detach, supervised) -> None:
    """Run every pod of the release on this machine, with its Services, Prometheus and Alertmanager.

    Renders the chart (release alerthistory, fullnameOverride alerthistory, your -f/--set on top), then starts
    each pod's containers with their rendered command, env and mounts in the pod's own network namespace.
    Blocks until Ctrl-C, then stops everything gracefully. Needs root."""
    try:
        require_root()
    except StackError as exc:
        _fail(str(exc))
    state_dir = state_dir.resolve()
    if supervised:
        request = json.loads((state_dir / REQUEST_FILE).read_text())
        (state_dir / REQUEST_FILE).unlink()
    else:
        try:
            values = chart.load_values(values_files, sets)
        except chart.RenderError as exc:
            _fail(str(exc))
        request = {"values": values, "engine": engine, "secret_files": _secret_pairs(secret_files),
                   "monitoring": monitoring}
    if detach:
        _detach(state_dir, request)
        return
    _run_foreground(state_dir, request, quiet=supervised)


def _make_stack(state_dir: Path, request: dict) -> LocalStack:
    return LocalStack(values=request["values"], engine=request["engine"], state_dir=state_dir,
                      secret_files=request["secret_files"], monitoring=request["monitoring"], wait_for_scrape=True,
                      serve_control=True)


def _run_foreground(state_dir: Path, request: dict, quiet: bool) -> None:
    stop = threading.Event()
    started = False

    def interrupt(signum, frame):
        # First signal: during start unwind (start() stops what it started), afterwards stop gracefully.
        # Later signals never cut the cleanup short: nothing may be left behind.
        if stop.is_set():
            click.echo("Still stopping; everything is removed in a moment ...", err=True)
            return
        stop.set()
        if not started:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    stack = _make_stack(state_dir, request)
    if not quiet:
        click.echo(f"Starting the local cluster (engine {request['engine']}, state dir {state_dir}); with monitoring, "
                   "`up` also waits for Prometheus' first scrape of the exporter (up to one scrape interval) ...")
    try:
        stack.start()
    except KeyboardInterrupt:
        _fail("interrupted; everything that was started has been stopped", 130)
    except failures() as exc:
        _fail(f"{exc}\n(everything that was started has been stopped; logs in {state_dir / 'logs'})")
    started = True
    click.echo(banner(read_state(state_dir), state_dir))
    if not quiet:
        click.echo("Stop: Ctrl-C")
    while not stop.wait(0.5):
        pass
    click.echo("Stopping (SIGTERM, SIGKILL after terminationGracePeriodSeconds) ...")
    stack.stop()
    click.echo("Stopped; the volume stays in " + str(stack.data_dir))


def _detach(state_dir: Path, request: dict) -> None:
    if is_running(state_dir):
        _fail(f"a stack is already running on {state_dir}: `alert-history-cache down --state-dir {state_dir}`")
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    # Values go through a file, not argv: a --set password must not sit in a long-lived command line.
    req = state_dir / REQUEST_FILE
    fd = os.open(req, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(request, f)
    with open(state_dir / "logs" / "supervisor.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "alert_history_cache.cli", "up", "--supervised",
                                 "--state-dir", str(state_dir)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
    click.echo(f"Starting the local cluster in the background (pid {proc.pid}, engine {request['engine']}) ...")
    t0 = time.time()

    def outcome() -> dict | None:
        data = read_state(state_dir)
        fresh = data.get("updated_at", 0) >= t0 and (data.get("supervisor") or {}).get("pid") == proc.pid
        if (fresh and data.get("phase") in ("running", "failed")) or proc.poll() is not None:
            return {**data, "fresh": fresh}
        return None

    # No deadline of its own: the supervisor gives up after the pods' start budget and says why.
    data = wait_until(outcome, float("inf"), "the stack to start")
    if data["fresh"] and data.get("phase") == "running":
        click.echo(banner(data, state_dir))
        click.echo(f"Stop:    alert-history-cache down --state-dir {state_dir}")
        return
    proc.wait()
    _fail(f"the stack did not start: {data.get('error') if data['fresh'] else 'see the log'}\n"
          f"(log: {state_dir / 'logs' / 'supervisor.log'})")


@click.command()
@state_dir_option(DEFAULT_STATE_DIR, "State dir of the stack (as given to `up`).")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for a graceful stop (default: the "
              "pod's terminationGracePeriodSeconds + 30).")
def down(state_dir: Path, timeout: float | None) -> None:
    """Stop a detached stack (or clean up after one that died): processes, namespace, veth, mounts."""
    try:
        require_root()
    except StackError as exc:
        _fail(str(exc))
    state_dir = state_dir.resolve()
    data = read_state(state_dir)
    if is_running(state_dir):
        pid = (data.get("supervisor") or {}).get("pid")
        grace = _grace(data)
        wait = timeout if timeout is not None else grace + 30
        click.echo(f"Stopping the stack (pid {pid}) ...")
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not is_running(state_dir), wait, "the stack to stop")
        if is_running(state_dir) and pid:
            click.echo(f"not stopped after {wait:.0f}s: killing pid {pid}", err=True)
            os.kill(pid, signal.SIGKILL)
        if pid:  # the lock goes before the process has quite exited: wait for the exit itself
            with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
                psutil.Process(pid).wait(timeout=10)
    done = cleanup(state_dir)
    for line in done:
        click.echo(f"  cleaned up: {line}")
    click.echo("Stopped." if data else f"No stack in {state_dir}.")


def _grace(data: dict) -> float:
    return float((data.get("pod") or {}).get("termination_grace_seconds") or 60)


@click.command()
@state_dir_option(DEFAULT_STATE_DIR, "State dir of the stack (as given to `up`).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON document: pods (address, "
              "readiness, containers, restarts, replication role), Services (ClusterIP, ports, endpoints), Secret "
              "files, Prometheus/Alertmanager URLs; see docs/local-stack.md.")
def status(state_dir: Path, as_json: bool) -> None:
    """Pods and their containers (state, readiness, restarts, probe results), the Services and their endpoints.
    Exit 1 if not running."""
    state_dir = state_dir.resolve()
    data = read_state(state_dir)
    running = is_running(state_dir)
    if as_json:
        click.echo(json.dumps(status_document(state_dir), indent=2, sort_keys=True))
        sys.exit(0 if running else 1)
    if not data:
        _fail(f"no stack in {state_dir}")
    console = Console(width=None if sys.stdout.isatty() else 200)  # pipes and logs get the whole table
    phase = data.get("phase")
    if phase in ("running", "starting", "stopping") and not running:
        phase = f"{phase}, but its process is gone: run `alert-history-cache down --state-dir {state_dir}`"
    engine = data.get("engine", {})
    pod = data.get("pod", {})
    console.print(f"Stack in {state_dir}: [bold]{phase}[/bold]; {engine.get('title')} {engine.get('version')}; "
                  f"pod {pod.get('namespace')}/{pod.get('name')} at {pod.get('ip')} "
                  f"(generation {pod.get('generation')}), ready={pod.get('ready')}")
    table = Table("container", "state", "pid", "ready", "restarts", "startup", "readiness", "liveness",
                  "last probe output", "last exit")
    for name, c in (pod.get("containers") or {}).items():
        probes = c.get("probes", {})

        def cell(kind: str) -> str:
            p = probes.get(kind)
            if not p:
                return "-"
            return f"{p['result']} ({p['runs']} runs, {p['failures']} failing)"
        last = max(probes.values(), key=lambda p: p.get("last_at") or 0, default={})
        exit_info = c.get("last_exit") or {}
        table.add_row(name, f"{c['state']} {c.get('reason') or ''}".strip(), str(c.get("pid") or "-"),
                      str(c.get("ready")), str(c.get("restarts")), cell("startup"), cell("readiness"),
                      cell("liveness"), (last.get("last_output") or "")[:80],
                      f"{exit_info.get('exit_code')} {exit_info.get('reason')}" if exit_info else "-")
    console.print(table)
    pods = Table("pod", "address", "ready", "generation", "containers (restarts)", "partition")
    for p in data.get("pods") or []:
        containers = ", ".join(f"{n} ({c.get('restarts')})" for n, c in (p.get("containers") or {}).items())
        cut = p.get("partition")
        pods.add_row(p["name"], str(p.get("address") or "-"), str(p.get("ready")), str(p.get("generation")),
                     containers, "-" if not cut else f"from {cut.get('from')}")
    console.print(pods)
    services = Table("service", "ClusterIP", "ports", "endpoints")
    for s in data.get("services") or []:
        ports = ", ".join(f"{p['port']}->{p['target_port']}/{p['protocol']}" for p in s.get("ports", []))
        services.add_row(s["name"], s.get("cluster_ip") or "None (headless)", ports,
                         ", ".join(s.get("endpoints")) or "-")
    console.print(services)
    for key, value in (data.get("endpoints") or {}).items():
        if key != "users":
            console.print(f"  {key:<13} {value}")
    if data.get("error"):
        console.print(f"[red]error:[/red] {data['error']}")
    sys.exit(0 if running else 1)
