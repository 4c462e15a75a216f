"""Command line: `alert-history-cache render|up|down|status|fault|drill|report`."""

from __future__ import annotations

import sys

import click

from . import chart


def values_options(f):
    """-f/--set options shared by every command that renders the chart."""
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a value (Helm --set syntax).")(f)
    f = click.option("-f", "--values", "values_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="Values file (repeatable, later files win).")(f)
    return f


@click.group()
@click.version_option(package_name="alert-history-cache")
def main() -> None:
    """The alert-history cache tier: render the chart, run its pod locally, drill it."""


@main.command()
@values_options
@click.option("--release", default=chart.DEFAULT_RELEASE, show_default=True, help="Release name.")
@click.option("--namespace", default=chart.DEFAULT_NAMESPACE, show_default=True, help="Release namespace.")
def render(values_files: tuple[str, ...], sets: tuple[str, ...], release: str, namespace: str) -> None:
    """Print the rendered manifests, like `helm template`."""
    try:
        values = chart.load_values(values_files, sets)
        manifests = chart.render(values, release=release, namespace=namespace)
    except chart.RenderError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(manifests.to_yaml(), nl=False)


from .cli_drill import drill  # noqa: E402

main.add_command(drill)

from .cli_report import report  # noqa: E402

main.add_command(report)

from .cli_stack import down, status, up  # noqa: E402

for _command in (up, down, status):
    main.add_command(_command)

from .cli_fault import fault  # noqa: E402

main.add_command(fault)


if __name__ == "__main__":
    main()
