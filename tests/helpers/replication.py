"""Plain servers on 127.0.0.1 for the rule tests that need a real primary and replica without a local stack
(tests/rules/test_replication_lag_defaults_fire.py), and the names their scrape labels use."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from mirakuru import TCPExecutor

NS = "cache"
DATA_JOB = "alerthistory-redis-metrics"


def plain_server(engine, port: int, d: Path, *extra: str) -> TCPExecutor:
    """valkey-server/redis-server on 127.0.0.1:port, no persistence, data in d (created); extra: more flags."""
    d.mkdir()
    return TCPExecutor([str(engine.server), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "",
                        "--appendonly", "no", "--repl-diskless-sync-delay", "0", *extra],
                       host="127.0.0.1", port=port, timeout=30)


@contextlib.contextmanager
def frozen(executor):
    """SIGSTOP a process (a hung server or node) until the block ends."""
    os.kill(executor.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(executor.process.pid, signal.SIGCONT)
