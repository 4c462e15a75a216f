"""`alert-history-cache drill ...`: each drill boots its own local pod, breaks it and prints its criteria."""

from __future__ import annotations

import sys

import click


@click.group()
def drill() -> None:
    """Run a drill against a local pod and print its criteria; exits non-zero when one fails."""


def finish(result, json_path: str | None) -> None:
    """Print the criteria table, write the JSON results, exit non-zero on a failed criterion."""
    result.print_table()
    if json_path:
        result.write_json(json_path)
        click.echo(f"results written to {json_path}")
    sys.exit(0 if result.passed else 1)


from .cli_load import load  # noqa: E402

drill.add_command(load)


def _drill_command(name: str, module: str, doc: str):
    """`drill persistence|failover`: chart defaults unless -f/--set; own temporary state dir unless given."""
    from . import engines
    from .cli_load import FAILURES, values_options

    @click.command(name, help=doc)
    @values_options
    @click.option("--engine", type=click.Choice(sorted(engines.ENGINE_IMAGES)), default="valkey8", show_default=True)
    @click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                  help="State dir of the drill's pod [default: a temporary one].")
    @click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON.")
    def command(values_files, sets, engine, state_dir, json_path) -> None:
        import importlib

        from . import chart

        drill_module = importlib.import_module(f".drills.{module}", __package__)
        try:
            result = drill_module.run(engine=engine, values=chart.load_values(values_files, sets),
                                      state_dir=state_dir)
        except FAILURES as exc:
            raise click.ClickException(str(exc)) from exc
        finish(result, json_path)

    return command


drill.add_command(_drill_command(
    "persistence", "persistence",
    "Spec 5.4: AOF on, 1000 keys, AOF and RDB files written, all keys back after a restart, engine checkers pass."))
drill.add_command(_drill_command(
    "failover", "failover",
    "Spec 5.3: graceful delete, hard kill and truncated AOF under write load; writes lost and recovery time."))
