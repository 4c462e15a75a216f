"""Command line: `alert-history-cache render|package|up|down|status|exec|fault|backup|restore|drill|report`."""

from __future__ import annotations

import click

from . import chart
from .cli_common import OneLineGroup, one_line_failures, values_options
from .cli_drill import drill
from .cli_report import report
from .cli_stack import down, status, up


@click.group(cls=OneLineGroup)
@click.version_option(package_name="alert-history-cache")
def main() -> None:
    """The alert-history cache tier: render the chart, run its pod locally, drill it."""


@main.command()
@values_options
@click.option("--release", default=chart.DEFAULT_RELEASE, show_default=True, help="Release name.")
@click.option("--namespace", default=chart.DEFAULT_NAMESPACE, show_default=True, help="Release namespace.")
@one_line_failures
def render(values_files: tuple[str, ...], sets: tuple[str, ...], release: str, namespace: str) -> None:
    """Print the rendered manifests, like `helm template`."""
    manifests = chart.render(chart.load_values(values_files, sets), release=release, namespace=namespace)
    click.echo(manifests.to_yaml(), nl=False)


@main.command()
@click.option("--destination", "-d", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder the chart archive is written to.")
@one_line_failures
def package(destination: str) -> None:
    """Package the chart like `helm package` (through the Helm library) and print the archive's path."""
    from pathlib import Path

    from . import release

    click.echo(release.package(Path(destination)))


for _command in (drill, report, up, down, status):
    main.add_command(_command)

from .cli_backup import backup, restore  # noqa: E402
from .cli_exec import exec_  # noqa: E402
from .cli_fault import fault  # noqa: E402

main.add_command(exec_)
main.add_command(fault)
main.add_command(backup)
main.add_command(restore)


if __name__ == "__main__":
    main()
