"""net.ipv4.ip_forward while local clusters run: pods reach each other and the Services through the host.

Several stacks may run side by side, so the setting is shared: each stack registers as a holder (its state
dir) under the machine-wide allocation lock; the first holder records the previous value and turns
forwarding on, the last one to leave restores it. `release` is idempotent and is what crash cleanup calls."""

from __future__ import annotations

import json
from pathlib import Path

from .netns import RUN_DIR, allocation_lock

SYSCTL = Path("/proc/sys/net/ipv4/ip_forward")
RECORD = RUN_DIR / "ip-forward.json"


def _read() -> dict:
    try:
        return json.loads(RECORD.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def acquire(holder: str) -> None:
    with allocation_lock():
        data = _read()
        holders = set(data.get("holders", []))
        if not holders:
            data["previous"] = SYSCTL.read_text().strip()
        holders.add(holder)
        data["holders"] = sorted(holders)
        SYSCTL.write_text("1\n")
        RECORD.write_text(json.dumps(data))


def release(holder: str) -> bool:
    """Drop `holder`; restores the previous value when no holder is left. True if this call restored it."""
    with allocation_lock():
        data = _read()
        holders = set(data.get("holders", []))
        if holder not in holders:
            return False
        holders.discard(holder)
        if holders:
            data["holders"] = sorted(holders)
            RECORD.write_text(json.dumps(data))
            return False
        SYSCTL.write_text(data.get("previous", "0") + "\n")
        RECORD.unlink()
        return True


def holders() -> list[str]:
    return list(_read().get("holders", []))
