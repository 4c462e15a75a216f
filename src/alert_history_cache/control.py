"""How a command reaches a running stack: request files in STATE/.control/, served by the supervising `up`.

`alert-history-cache fault ...` runs in another process than the stack, which owns every pod's processes
(so `down` and cleanup still find everything). The client writes `<id>.request.json` (atomically, mode
0600), the stack's control thread picks it up within 0.1 s, acts, and writes `<id>.reply.json`
({"ok": true, "result": ...} or {"ok": false, "error": "..."}); the client waits for it and removes both.
Plain files need no socket path (limited to 108 bytes) and work for any state dir the lock file works for."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Callable

from .waiting import wait_until

CONTROL_DIR = ".control"


class ControlError(RuntimeError):
    """The stack refused or failed the request, or did not answer; the message says which."""


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, default=str)
    os.replace(tmp, path)


class ControlServer:
    def __init__(self, state_dir: Path, handler: Callable[[dict], dict]):
        self.dir = Path(state_dir) / CONTROL_DIR
        self.handler = handler
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        for old in self.dir.iterdir():  # requests nobody answered before a restart
            old.unlink()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stop.wait(0.1):
            for path in sorted(self.dir.glob("*.request.json")):
                rid = path.name.removesuffix(".request.json")
                taken = self.dir / f"{rid}.taken"
                path.rename(taken)  # taken once, even if the next scan comes before the answer
                threading.Thread(target=self._answer, args=(rid, taken), daemon=True, name=f"control-{rid}").start()

    def _answer(self, rid: str, taken: Path) -> None:
        reply_path = self.dir / f"{rid}.reply.json"
        try:
            request = json.loads(taken.read_text())
            reply = {"ok": True, "result": self.handler(request)}
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller as its message
            reply = {"ok": False, "error": str(exc) or type(exc).__name__}
        finally:
            with contextlib.suppress(FileNotFoundError):
                taken.unlink()
        _write(reply_path, reply)


def request(state_dir: Path, action: str, timeout: float = 120, **args) -> dict:
    """Send one request to the stack of `state_dir` and return its result; raises ControlError."""
    folder = Path(state_dir) / CONTROL_DIR
    if not folder.is_dir():
        raise ControlError(f"no running stack serves requests in {state_dir}: start one with "
                           f"`alert-history-cache up --detach --state-dir {state_dir}`")
    rid = uuid.uuid4().hex
    _write(folder / f"{rid}.request.json", {"action": action, "args": args})
    reply_path = folder / f"{rid}.reply.json"
    try:
        wait_until(reply_path.exists, timeout, f"the stack's answer to {action}", interval=0.05)
    except TimeoutError as exc:
        with contextlib.suppress(FileNotFoundError):
            (folder / f"{rid}.request.json").unlink()
        raise ControlError(str(exc)) from None
    reply = json.loads(reply_path.read_text())
    reply_path.unlink()
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "failed"))
    return reply["result"]
