"""What every command shares: the values options (-f/--set), --engine, --state-dir, --json, durations, and the
one way a known failure ends a command (one line on stderr, exit 1, no traceback)."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import click

from . import engines
from .units import UnitError, duration_seconds


def values_options(f):
    """-f/--set, as helm template takes them (later files and --set win)."""
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a value (Helm --set syntax).")(f)
    f = click.option("-f", "--values", "values_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="Values file (repeatable, later files win).")(f)
    return f


def engine_option(f):
    return click.option("--engine", type=click.Choice(list(engines.ENGINES)), default=engines.DEFAULT_ENGINE,
                        show_default=True, help="Server engine (the image the values select is mapped to it).")(f)


def state_dir_option(default: Path | None, help: str):
    return click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=default,
                        show_default=default is not None, help=help)


def json_option(f):
    return click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON.")(f)


class Duration(click.ParamType):
    """A duration as users type it in Prometheus and k6 (30s, 5m, 1h30m, 250ms) or plain seconds; gives seconds."""
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            return duration_seconds(value)
        except UnitError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def failures() -> tuple[type[BaseException], ...]:
    """The errors a command reports as one line: bad values or input, missing programs, a stack that cannot
    start or act, a timeout. Imported late so that `render` does not load the local stack."""
    from .chart import RenderError
    from .drills.capacity import CapacityError
    from .drills.limits import LimitsUnavailable
    from .kube import KubeError
    from .pod import PodStartError
    from .stack import StackError
    return (RenderError, UnitError, KubeError, engines.MissingBinary, StackError, PodStartError, CapacityError,
            LimitsUnavailable, TimeoutError, OSError)


@contextlib.contextmanager
def reported_failures():
    """Turn a known failure into `Error: <message>` and exit status 1."""
    try:
        yield
    except failures() as exc:
        raise click.ClickException(str(exc) or type(exc).__name__) from exc


def one_line_failures(command):
    """Decorator form of reported_failures() for a command's function."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        with reported_failures():
            return command(*args, **kwargs)
    return wrapper
