"""`alert-history-cache fault kill|delete|partition|freeze|heal|fill-disk|free-disk`: faults on demand in a stack started by `up`.

The stack's supervising `up` process owns every pod, so the command sends it a request (control.py) and
prints its answer as JSON. Latency injection is not offered: this kernel has no `netem` qdisc."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import click

from .cli_common import BYTES, state_dir_option
from .control import ControlError, request
from .stack import DEFAULT_STATE_DIR, is_running

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "STOP": signal.SIGSTOP, "CONT": signal.SIGCONT}
STATE_HELP = "State dir of the stack (as given to `up`)."


def _send(state_dir: Path, action: str, **args) -> None:
    state_dir = state_dir.resolve()
    if not is_running(state_dir):
        raise click.ClickException(f"no stack is running in {state_dir}: start one with "
                                   f"`alert-history-cache up --detach --state-dir {state_dir}`")
    try:
        result = request(state_dir, action, **args)
    except ControlError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))


@click.group()
def fault() -> None:
    """Faults on demand: kill a container, delete a pod, partition a pod, heal it, fill its disk."""


@fault.command()
@click.argument("pod")
@click.option("-c", "--container", help="Container (default: the pod's first container).")
@click.option("--signal", "sig", type=click.Choice(list(SIGNALS), case_sensitive=False), default="KILL",
              show_default=True, help="KILL: a crash; TERM: a clean exit; STOP: a hung process (CONT resumes it).")
@state_dir_option(DEFAULT_STATE_DIR, STATE_HELP)
def kill(pod: str, container: str | None, sig: str, state_dir: Path) -> None:
    """Signal one container's main process; the kubelet emulation restarts it (restartPolicy Always, back-off)."""
    _send(state_dir, "kill", pod=pod, container=container, signal=int(SIGNALS[sig.upper()]))


@fault.command()
@click.argument("pod")
@click.option("--force", is_flag=True, help="Immediate SIGKILL, no preStop (like kubectl delete --grace-period=0 "
              "--force).")
@state_dir_option(DEFAULT_STATE_DIR, STATE_HELP)
def delete(pod: str, force: bool, state_dir: Path) -> None:
    """Delete a pod (preStop, SIGTERM, SIGKILL after the grace period); its controller recreates it at a new
    address (a StatefulSet pod keeps its name and PVC)."""
    _send(state_dir, "delete", pod=pod, force=force)


@fault.command()
@click.argument("pod")
@click.option("--from", "peers", multiple=True, metavar="POD", help="Cut only the traffic to and from this pod "
              "(repeatable); default: everything but the pod's own localhost.")
@state_dir_option(DEFAULT_STATE_DIR, STATE_HELP)
def partition(pod: str, peers: tuple[str, ...], state_dir: Path) -> None:
    """Drop a pod's traffic with nftables inside its network namespace (packets vanish: peers time out)."""
    _send(state_dir, "partition", pod=pod, peers=list(peers) if peers else None)


@fault.command()
@click.argument("pod")
@state_dir_option(DEFAULT_STATE_DIR, STATE_HELP)
def freeze(pod: str, state_dir: Path) -> None:
    """A lost node: partition POD from everything, stop its kubelet (no probes, no restarts) and SIGSTOP every
    process of the pod, which keeps its processes but answers nothing. End it with `fault delete POD --force`
    (the node-loss drill does so 60 s later)."""
    _send(state_dir, "freeze", pod=pod)


@fault.command()
@click.argument("pod", required=False)
@state_dir_option(DEFAULT_STATE_DIR, STATE_HELP)
def heal(pod: str | None, state_dir: Path) -> None:
    """Remove the partition of POD (default: of every pod)."""
    _send(state_dir, "heal", pod=pod)


@fault.command("fill-disk")
@click.argument("pod")
@click.option("--claim", metavar="NAME", help="The PVC to fill (default: the pod's data volume, its first "
              "volumeClaimTemplate).")
@click.option("--leave", type=BYTES, default="0", show_default=True, metavar="BYTES",
              help="Bytes to leave free (64Mi, 1G, or bytes).")
@state_dir_option(DEFAULT_STATE_DIR, STATE_HELP)
def fill_disk(pod: str, claim: str | None, leave: int, state_dir: Path) -> None:
    """Fill POD's volume (its PVC is a filesystem of the requested size) with a file owned by root that the server
    can not remove: writes to it fail with ENOSPC, as on a full volume. `fault free-disk POD` removes it."""
    _send(state_dir, "fill-disk", pod=pod, claim=claim, leave=leave)


@fault.command("free-disk")
@click.argument("pod")
@click.option("--claim", metavar="NAME", help="The PVC (default: the pod's data volume).")
@state_dir_option(DEFAULT_STATE_DIR, STATE_HELP)
def free_disk(pod: str, claim: str | None, state_dir: Path) -> None:
    """Remove the file `fault fill-disk` left on POD's volume: the space is back at once."""
    _send(state_dir, "free-disk", pod=pod, claim=claim)
