"""The HA scripts without servers: they parse as POSIX sh (dash is the image's /bin/sh), the chart's scripts
ConfigMap already carries them byte for byte, and none hands a password to a process argument.
Their behaviour against real servers and Sentinels is tests/integration/test_ha_scripts.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "charts" / "alert-history" / "files" / "scripts"
HA_SCRIPTS = sorted(SCRIPTS.glob("ha-*.sh"))


def test_the_ha_scripts_exist():
    assert {p.name for p in HA_SCRIPTS} >= {"ha-common.sh", "ha-bootstrap.sh", "ha-sentinel.sh", "ha-prestop.sh",
                                            "ha-sentinel-prestop.sh", "ha-replica-ready.sh"}


@pytest.mark.parametrize("script", HA_SCRIPTS, ids=lambda p: p.name)
def test_parses_as_posix_sh(script):
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("dash is not installed")
    result = subprocess.run([dash, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", HA_SCRIPTS, ids=lambda p: p.name)
def test_no_password_in_an_argument(script):
    """Passwords go through REDISCLI_AUTH or into memory-backed config files, never -a/--pass/AUTH arguments."""
    code = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"(^|\s)(-a|--pass|--askpass)\s", code)
    assert not re.search(r"\bauth\s+\S+\s+\$", code, re.IGNORECASE)
    assert "requirepass" not in code


def test_scripts_configmap_carries_them(render_chart):
    manifests = render_chart({"fullnameOverride": "alerthistory"})
    data = manifests.get("ConfigMap", "alerthistory-redis-scripts")["data"]
    for script in HA_SCRIPTS:
        assert data[script.name] == script.read_text(), script.name
