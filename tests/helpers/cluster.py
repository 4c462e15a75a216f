"""What a local cluster test checks after it stops: no nft table, ClusterIP or ip_forward hold of its stack."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from alert_history_cache import services
from alert_history_cache.cluster import proxy_table
from alert_history_cache.service_proxy import FORWARDING_DIR, tables_with_prefix


def assert_cluster_gone(state_dir: Path) -> None:
    """No nft table, ClusterIP or ip_forward hold of this stack remains (namespaces, veths, mounts and
    processes: conftest.assert_nothing_left)."""
    state_dir = Path(state_dir).resolve()
    assert proxy_table(state_dir) not in tables_with_prefix("ahc_"), "the stack's nft table is left"
    assert services.allocations(str(state_dir)) == [], "ClusterIPs still allocated"
    assert not (FORWARDING_DIR / str(os.getpid())).exists(), "this process still holds ip_forward"


def forwarding_holders() -> list[int]:
    """Live processes that hold net.ipv4.ip_forward=1 (service_proxy.ensure_forwarding)."""
    return [int(f.name) for f in FORWARDING_DIR.glob("[0-9]*") if psutil.pid_exists(int(f.name))]
