"""`alert-history-cache drill ...`: each drill boots its own local pod, breaks it and prints its criteria."""

from __future__ import annotations

import importlib

import click

from .cli_common import (DURATION, engine_option, finish_drill, json_option, one_line_failures, state_dir_option,
                         values_options)
from .cli_load import capacity, load
from .drills.ha import SCENARIOS as HA_SCENARIOS

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
drill.add_command(capacity)
drill.add_command(_drill_command(
    "persistence",
    "The persistence requirement (docs/requirements.md): AOF on, 1000 keys written, AOF and RDB files on the "
    "volume, every key back after a restart, the engine's AOF and RDB checkers pass."))
drill.add_command(_drill_command(
    "failover",
    "The failover requirement (docs/requirements.md): graceful delete, hard kill and a truncated AOF tail under "
    "a write load; acknowledged writes lost, loss window and kill-to-ready time."))


@drill.command("restore")
@click.option("--scenario", default="flushall", show_default=True,
              type=click.Choice(["flushall", "volume-lost", "corrupted-aof", "disk-full"]),
              help="flushall: FLUSHALL as admin; volume-lost: the pod deleted with its PVC, back empty "
                   "(each after a backup, then the backup restored); corrupted-aof: garbage in the middle of the "
                   "AOF, the crash loop, the check-aof --fix repair and what it dropped; disk-full: the data "
                   "volume filled, the persistence alerts end to end, writes refused, the recovery once space "
                   "is back (with Prometheus and Alertmanager).")
@values_options
@engine_option
@state_dir_option(None, STATE_DIR_HELP)
@json_option
@one_line_failures
def restore(scenario, values_files, sets, engine, state_dir, json_path) -> None:
    """Restore drill under a recorded write load: the release's backup Job, the fault, `restore`; RTO, RPO
    (acknowledged writes lost) and every recorded write checked against the restored data. disk-full needs no
    backup: the server recovers by itself once space is back."""
    from . import chart
    from .drills import restore as restore_drill

    values = chart.load_values(values_files, sets)
    result = restore_drill.run(engine=engine, values=values, state_dir=str(state_dir) if state_dir else None,
                               scenario=scenario)
    finish_drill(result, json_path)


@drill.command("ha")
@click.option("--scenario", required=True, type=click.Choice(HA_SCENARIOS),
    help="What breaks (docs/ha-drills.md has the goal of each).")
@values_options
@engine_option
@state_dir_option(None, STATE_DIR_HELP)
@json_option
@click.option("--node-loss-delay", type=DURATION, default="60s", show_default=True,
              help="node-loss: how long the frozen pod stays before it is force-deleted.")
@click.option("--sentinel-loss-hold", type=DURATION, default="20s", show_default=True,
              help="sentinel-loss: how long 2 of the 3 Sentinels stay stopped.")
@one_line_failures
def ha(scenario, values_files, sets, engine, state_dir, json_path, node_loss_delay, sentinel_loss_hold) -> None:
    """HA drill on a replicated release (3 data pods with Sentinels, HAProxy behind the client Service) under a
    recorded write and read load through the client Service: writes unavailable, acknowledged writes lost, read
    errors, time to the new primary, the split-brain figure and the old primary's return as a replica."""
    from . import chart
    from .drills import ha as ha_drill

    values = chart.load_values(values_files, sets)
    result = ha_drill.run(scenario, engine=engine, values=values, state_dir=str(state_dir) if state_dir else None,
                          node_loss_delay=node_loss_delay, sentinel_loss_hold=sentinel_loss_hold)
    finish_drill(result, json_path)
