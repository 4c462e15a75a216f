"""`alert-history-cache drill ...`: each drill boots its own local pod, breaks it and prints its criteria."""

from __future__ import annotations

import importlib

import click

from .cli_common import engine_option, finish_drill, json_option, one_line_failures, state_dir_option, values_options
from .cli_load import load

STATE_DIR_HELP = "State dir of the drill's pod [default: a temporary one]."


@click.group()
def drill() -> None:
    """Run a drill against a local pod and print its criteria; exits non-zero when one fails."""


def _drill_command(name: str, doc: str):
    """`drill persistence|failover`: chart defaults unless -f/--set; own temporary state dir unless given."""

    @click.command(name, help=doc)
    @values_options
    @engine_option
    @state_dir_option(None, STATE_DIR_HELP)
    @json_option
    @one_line_failures
    def command(values_files, sets, engine, state_dir, json_path) -> None:
        from . import chart

        values = chart.load_values(values_files, sets)
        drill_module = importlib.import_module(f".drills.{name}", __package__)
        result = drill_module.run(engine=engine, values=values, state_dir=str(state_dir) if state_dir else None)
        finish_drill(result, json_path)

    return command


drill.add_command(load)
drill.add_command(_drill_command(
    "persistence",
    "The persistence requirement (docs/requirements.md): AOF on, 1000 keys written, AOF and RDB files on the "
    "volume, every key back after a restart, the engine's AOF and RDB checkers pass."))
drill.add_command(_drill_command(
    "failover",
    "The failover requirement (docs/requirements.md): graceful delete, hard kill and a truncated AOF tail under "
    "a write load; acknowledged writes lost, loss window and kill-to-ready time."))
