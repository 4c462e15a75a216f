"""`alert-history-cache exec POD [-c CONTAINER] -- CMD...`: a command inside a running pod, like `kubectl exec`.

The stack's supervising `up` process knows the pods (control.py); it answers how to enter the container (the
same nsenter + setpriv entry the exec probes use: the pod's network, mount and UTS namespaces, the container's
root with its image binaries on PATH, its user and its environment). This process then runs that with its own
stdout and stderr (and stdin with -i), and exits with the command's exit code."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import click

from .cli_common import state_dir_option
from .control import ControlError, request
from .stack import DEFAULT_STATE_DIR, StackError, is_running, require_root


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod")
@click.option("-c", "--container", help="Container (default: the pod's first container, as kubectl's).")
@click.option("-i", "--stdin", "pass_stdin", is_flag=True, help="Pass stdin to the command (kubectl exec -i).")
@click.option("-t", "--tty", is_flag=True, help="Accepted for kubectl's -t: the command gets this process's "
              "terminal with -i, no new one.")
@state_dir_option(DEFAULT_STATE_DIR, "State dir of the stack (as given to `up`).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(pod: str, container: str | None, pass_stdin: bool, tty: bool, state_dir: Path,
          command: tuple[str, ...]) -> None:
    """Run COMMAND in a container of POD as its user, with its environment: `exec POD -c valkey -- valkey-cli ping`.
    Exits with the command's exit code. Needs root and a stack started by `up`."""
    try:
        require_root()
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    state_dir = state_dir.resolve()
    if not is_running(state_dir):
        raise click.ClickException(f"no stack is running in {state_dir}: start one with "
                                   f"`alert-history-cache up --detach --state-dir {state_dir}`")
    try:
        plan = request(state_dir, "exec", timeout=30, pod=pod, container=container, argv=list(command))
    except ControlError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        proc = subprocess.run(plan["argv"], env=plan["env"], stdin=None if pass_stdin else subprocess.DEVNULL)
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
    code = proc.returncode
    sys.exit(128 - code if code < 0 else code)  # killed by a signal: 128 + its number, as a shell reports it
