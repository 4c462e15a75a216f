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
