"""The runbooks' `vcli ...` commands run against a real server as the chart's admin ACL user, the password
in REDISCLI_AUTH exactly as the pages set it up: every command must be accepted (no error reply)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import port_for
import pytest
import redis
from mirakuru import TCPExecutor

from alert_history_cache import chart, engines

pytestmark = pytest.mark.integration

RUNBOOKS = chart.REPO_ROOT / "docs" / "runbooks"
ADMIN_PASSWORD = "admin-test-password"


def vcli_commands() -> list[tuple[str, str]]:
    """(page, command) of every `vcli` line in a console block; the part before the first pipe."""
    out = []
    for page in sorted(RUNBOOKS.glob("Redis*.md")):
        for block in re.findall(r"```console\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.splitlines():
                if line.startswith("vcli "):
                    command = line.split(" | ", 1)[0].split("  #", 1)[0].strip()
                    out.append((page.stem, command))
    return out


def alias_of(page_text: str) -> list[str]:
    [alias] = re.findall(r"alias vcli='([^']+)'", page_text)
    return shlex.split(alias)


def test_pages_have_commands():
    assert len(vcli_commands()) > 30


@pytest.mark.parametrize("engine_name", ["valkey8", "redis7"])
def test_every_vcli_command_is_accepted(engine_name, tmp_path):
    engine = engines.get(engine_name)
    try:
        engine.check()
    except engines.MissingBinary as exc:
        pytest.skip(str(exc))
    port = port_for.select_random()
    tpl = chart.render({"fullnameOverride": "alerthistory"}).get("ConfigMap", "alerthistory-redis-config")
    [admin] = [l for l in tpl["data"]["users.acl.tpl"].splitlines() if l.startswith("user admin ")]
    acl = [f">{ADMIN_PASSWORD}" if t.startswith("@secret:") else t for t in admin.split()[1:]]
    alias = alias_of((RUNBOOKS / "RedisDown.md").read_text())
    assert alias[0] == "valkey-cli"
    cli = [str(engine.cli), *alias[1:]]
    cli[cli.index("-p") + 1] = str(port)
    cmd = [str(engine.server), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "60 1"]
    with TCPExecutor(cmd, host="127.0.0.1", port=port, timeout=30):
        client = redis.Redis(port=port)
        client.execute_command("ACL", "SETUSER", *acl)
        client.set("k", "v", ex=60)
        env = {**os.environ, "REDISCLI_AUTH": ADMIN_PASSWORD}
        failures = []
        for page, command in vcli_commands():
            proc = subprocess.run(
                [*cli, *shlex.split(command)[1:]], env=env, capture_output=True, text=True, timeout=30
            )
            output = proc.stdout + proc.stderr
            if proc.returncode != 0 or re.search(r"^(\(error\) )?(ERR|NOPERM|WRONGPASS|NOAUTH)", output, re.M):
                failures.append((page, command, proc.returncode, output[:200]))
    assert failures == []
