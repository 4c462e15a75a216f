"""The runbooks' `vcli ...` commands run against a real server as the chart's admin ACL user, the password
in REDISCLI_AUTH exactly as the pages set it up: every command must be accepted (no error reply).

The replication pages' `scli ...` commands run against a real Sentinel that monitors that server (which has
a real replica), logged in as the `sentinel` user with the password from SENTINEL_AUTH, as the pages'
alias does: none of them is left out for want of a replication release."""

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
from alert_history_cache.waiting import wait_until
from helpers.doc_commands import console_blocks, error_reply

pytestmark = pytest.mark.integration

RUNBOOKS = chart.REPO_ROOT / "docs" / "runbooks"
ADMIN_PASSWORD = "admin-test-password"
SENTINEL_PASSWORD = "sentinel-test-password"
MASTER_SET = "alerthistory"  # the Sentinel master set the pages name


def vcli_commands(alias: str = "vcli") -> list[tuple[str, str]]:
    """(page, command) of every `vcli` (or `scli`) line in a console block; the part before the first pipe."""
    out = []
    for page in sorted(RUNBOOKS.glob("Redis*.md")):
        for block in console_blocks(page):
            for line in block.text.splitlines():
                if line.startswith(f"{alias} "):
                    command = line.split(" | ", 1)[0].split("  #", 1)[0].strip()
                    out.append((page.stem, command))
    return out


def alias_of(page_text: str, alias: str = "vcli") -> list[str]:
    [found] = re.findall(rf"alias {alias}='([^']+)'", page_text)
    return shlex.split(found)


def test_pages_have_commands():
    assert len(vcli_commands()) > 30
    assert len(vcli_commands("scli")) >= 10


def test_every_scli_page_sets_up_the_same_alias():
    """Each page that uses scli defines it, with the Sentinel password from SENTINEL_AUTH only."""
    pages = {page for page, _ in vcli_commands("scli")}
    aliases = {tuple(alias_of((RUNBOOKS / f"{p}.md").read_text(), "scli")) for p in pages}
    assert len(aliases) == 1, aliases
    [alias] = aliases
    assert alias[0] == "REDISCLI_AUTH=$SENTINEL_AUTH" and alias[1] == "valkey-cli", alias
    assert alias[alias.index("--user") + 1] == "sentinel"
    for p in pages:
        assert "export SENTINEL_AUTH=" in (RUNBOOKS / f"{p}.md").read_text(), p


def _accepted(cli: list[str], commands: list[tuple[str, str]], env: dict) -> list[tuple]:
    failures = []
    for page, command in commands:
        proc = subprocess.run([*cli, *shlex.split(command)[1:]], env=env, capture_output=True, text=True, timeout=30)
        output = proc.stdout + proc.stderr
        if proc.returncode != 0 or error_reply(output):
            failures.append((page, command, proc.returncode, output[:200]))
    return failures


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
    replica_port, sentinel_port = port_for.select_random(), port_for.select_random()
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    cmd = [str(engine.server), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path / "primary"),
           "--save", "60 1"]
    replica_cmd = [str(engine.server), "--port", str(replica_port), "--bind", "127.0.0.1", "--dir",
                   str(tmp_path / "replica"), "--save", "", "--replicaof", "127.0.0.1", str(port)]
    # Sentinel as the chart runs it: no default user, a `sentinel` user with a password (written to a
    # config file it may rewrite, so the password never reaches argv).
    sentinel_conf = tmp_path / "sentinel.conf"
    sentinel_conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"user default off resetpass -@all\nuser sentinel on >{SENTINEL_PASSWORD} ~* &* +@all\n"
        f"sentinel monitor {MASTER_SET} 127.0.0.1 {port} 1\n"
    )
    scli_alias = alias_of(next((RUNBOOKS / f"{p}.md").read_text() for p, _ in vcli_commands("scli")), "scli")
    scli = [str(engine.cli), *scli_alias[2:]]
    scli[scli.index("-p") + 1] = str(sentinel_port)
    with TCPExecutor(cmd, host="127.0.0.1", port=port, timeout=30):
        client = redis.Redis(port=port)
        client.execute_command("ACL", "SETUSER", *acl)
        client.set("k", "v", ex=60)
        with TCPExecutor(replica_cmd, host="127.0.0.1", port=replica_port, timeout=30), TCPExecutor(
            [str(engine.server), str(sentinel_conf), "--sentinel"], host="127.0.0.1", port=sentinel_port, timeout=30
        ):
            replica = redis.Redis(port=replica_port)
            wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 30,
                       "the replica to sync", interval=0.2)
            sentinel = redis.Redis(port=sentinel_port, username="sentinel", password=SENTINEL_PASSWORD)
            wait_until(lambda: sentinel.execute_command("SENTINEL", "REPLICAS", MASTER_SET), 30,
                       "the Sentinel to discover the replica", interval=0.2)
            env = {**os.environ, "REDISCLI_AUTH": ADMIN_PASSWORD}
            failures = _accepted(cli, vcli_commands(), env)
            failures += _accepted(scli, vcli_commands("scli"), {**os.environ, "REDISCLI_AUTH": SENTINEL_PASSWORD})
    assert failures == []
