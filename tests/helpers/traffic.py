"""Background client traffic at a steady rate, for tests that need load while they watch Prometheus."""

from __future__ import annotations

import threading


class Traffic:
    """A background loop calling `op(i)` about `rate` times a second until stopped."""

    def __init__(self, op, rate: float = 50):
        self.op, self.rate, self.calls = op, rate, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.op(self.calls)
            self.calls += 1
            self._stop.wait(1 / self.rate)  # paces the loop to `rate` calls a second; wakes at once on stop

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
