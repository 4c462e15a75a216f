"""`alert-history-cache backup` and `restore` in a stack started by `up`.

backup: one run of the release's backup CronJob.

The stack's supervising `up` process owns the pods, so the command asks it (control.py) to run the CronJob's
pod once as a Job pod, in its own namespaces with the rendered command, and prints the file it wrote (the
host path inside the backup PVC's folder). It exits non-zero when the Job pod fails."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_common import state_dir_option
from .control import ControlError, request
from .stack import DEFAULT_STATE_DIR, is_running

STATE_HELP = "State dir of the stack (as given to `up`)."


@click.command()
@state_dir_option(DEFAULT_STATE_DIR, STATE_HELP)
@click.option("--cronjob", help="CronJob of the release to run (default: its only one, the backup).")
@click.option("--timeout", type=float, default=3600, show_default=True,
              help="Seconds to wait for the Job pod (it is bounded by its activeDeadlineSeconds too).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result (pod, exit codes, logs) as JSON.")
def backup(state_dir: Path, cronjob: str | None, timeout: float, as_json: bool) -> None:
    """Run the backup CronJob's pod once and print the file it wrote (needs backup.enabled: true)."""
    state_dir = state_dir.resolve()
    if not is_running(state_dir):
        raise click.ClickException(f"no stack is running in {state_dir}: start one with "
                                   f"`alert-history-cache up --detach --state-dir {state_dir} --set backup.enabled=true`")
    try:
        result = request(state_dir, "run-job", timeout=timeout + 30, cronjob=cronjob)
    except ControlError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
    if not result.get("succeeded"):
        logs = ", ".join(result.get("logs", {}).values())
        raise click.ClickException(f"the Job pod {result.get('pod')} failed (exit codes {result.get('exit_codes')}); "
                                   f"see {logs}")
    if not as_json:
        for path in result["files"]:
            click.echo(path)


@click.command()
@state_dir_option(DEFAULT_STATE_DIR, STATE_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds the whole restore may take.")
def restore(state_dir: Path, file: Path, timeout: float) -> None:
    """Restore an RDB backup FILE into the running release: loaded with the AOF off, then a new AOF is written
    (docs/disaster-recovery.md); with replication, Sentinel is held off and the replicas resync."""
    state_dir = state_dir.resolve()
    if not is_running(state_dir):
        raise click.ClickException(f"no stack is running in {state_dir}: start one with "
                                   f"`alert-history-cache up --detach --state-dir {state_dir}`")
    try:
        result = request(state_dir, "restore", timeout=timeout, file=str(file.resolve()))
    except ControlError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
