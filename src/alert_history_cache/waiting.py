"""The one way the toolkit waits: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, *, interval: float = 0.1,
               ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call `condition` every `interval` seconds until it returns something truthy, and return that.

    Exceptions in `ignore` count as "not yet" (a server still starting, a connection refused). After `timeout`
    seconds raise TimeoutError naming `what` and the last result or error, so a failure says what it saw."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = condition()
        except ignore as exc:
            value, last = None, exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r:.300})")
        time.sleep(interval)
