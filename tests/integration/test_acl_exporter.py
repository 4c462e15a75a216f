"""The exporter user has exactly what redis_exporter needs.

The real redis_exporter runs with the rendered container's env (REDIS_ADDR, REDIS_USER, and REDIS_PASSWORD_FILE
written by config-init from the Secret) against a server booted from the rendered config, once as the exporter
user and once as admin; and on the local stack, the pod's own exporter against a host-run one as admin. Both
must export the same metric families, the server's ACL LOG must hold no refusal of the exporter, and every
metric the rules and the dashboard query must be there (replication metrics need a replica).
"""

from __future__ import annotations

import json
import re
import subprocess

import port_for
import pytest
import redis
from mirakuru import HTTPExecutor

from alert_history_cache import engines

from helpers.local_stack import engine_or_skip, exporter_or_skip, root_or_skip
from helpers.metrics import families, scrape
from helpers.servers import NAME, rendered_server, stack_server

pytestmark = pytest.mark.integration

# Referenced by a rule or a panel but exported only in situations a single idle primary does not have.
CONDITIONAL = {
    "redis_connected_slave_lag_seconds": "one series per connected replica",
    "redis_master_last_io_seconds_ago": "exported by a replica only",
    "redis_master_link_up": "exported by a replica only",
    "redis_slave_repl_offset": "exported by a replica only",
    "redis_connected_slave_offset_bytes": "one series per connected replica",
    # The Sentinel's own exporter exports these (tests/rules/test_exporter_metrics.py runs it on a real Sentinel).
    "redis_sentinel_master_status": "exported by a Sentinel's exporter only",
    "redis_sentinel_master_ckquorum_status": "exported by a Sentinel's exporter only",
}

# A metric name: not the tail of a recording rule's name (`alerthistory:redis_...`) or of a longer word.
METRIC = re.compile(r"(?<![:\w])(redis_[a-z0-9_]+)\b")


def used_metrics(manifests) -> set[str]:
    """redis_* metric names in the PrometheusRule expressions and the dashboard's queries."""
    exprs = []
    for rule_obj in manifests.of_kind("PrometheusRule"):
        for group in rule_obj["spec"]["groups"]:
            exprs += [r["expr"] for r in group["rules"]]
    for cm in manifests.of_kind("ConfigMap"):
        for key, text in cm.get("data", {}).items():
            if key.endswith(".json"):
                exprs += re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', text)
    names = set()
    for expr in exprs:
        names |= set(METRIC.findall(json.loads(f'"{expr}"') if "\\" in expr else expr))
    return names


def exporter_env(manifests, server, password_file, listen: str, user: str | None = None) -> dict:
    """The rendered exporter container's env, with the pod's addresses and paths mapped to this machine."""
    sts = manifests.get("StatefulSet", NAME)
    (container,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "exporter"]
    assert all("valueFrom" not in item for item in container["env"]), "no secret in the exporter's environment"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["REDIS_ADDR"] == "redis://127.0.0.1:6379" and env["REDIS_EXPORTER_WEB_LISTEN_ADDRESS"] == ":9121"
    assert env["REDIS_USER"] == server.acl["exporterUser"]
    assert env["REDIS_PASSWORD_FILE"] == "/run/exporter/password.json"
    assert {"name": "exporter-run", "mountPath": "/run/exporter", "readOnly": True} in container["volumeMounts"]
    env.update(REDIS_ADDR=server.exporter_addr, REDIS_EXPORTER_WEB_LISTEN_ADDRESS=listen,
               REDIS_PASSWORD_FILE=str(password_file))
    if user:
        env["REDIS_USER"] = user
    return env


def scrape_families(manifests, server, tmp_path, user: str | None = None, password: str | None = None
                    ) -> tuple[set[str], str]:
    """One scrape of the real exporter: as the exporter user with the password file config-init wrote, or as
    another user with a password file of the same format."""
    password_file = server.paths["exporter"] / "password.json"
    if user:
        password_file = tmp_path / f"password-{user}.json"
        password_file.write_text(json.dumps({server.exporter_addr: password}))
    port = port_for.select_random()
    listen = f"127.0.0.1:{port}"
    log = (tmp_path / f"exporter-{user or 'exporter'}.log").open("w")
    exporter = HTTPExecutor([str(engines.EXPORTER.binary)], url=f"http://{listen}/metrics", timeout=30,
                            envvars=exporter_env(manifests, server, password_file, listen, user),
                            stdout=log, stderr=subprocess.STDOUT)
    with exporter:
        body = scrape(f"http://{listen}/metrics")
    log.close()
    return families(body), body


@pytest.fixture
def server(engine, tmp_path):
    exporter_or_skip()
    with rendered_server(engine, tmp_path) as s:
        yield s


def hits_misses_and_an_error(app) -> None:
    """A hit, a miss and a refused command (NOPERM), so the keyspace and error-stat families exist."""
    app.set("group:1", "v")
    app.get("group:1")
    app.get("group:missing")
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.flushall()


def test_exporter_user_exports_every_family(server, tmp_path):
    admin = server.admin()
    app = server.app()
    # Traffic that makes the conditional families appear: hits, misses, an error reply, a slow-log entry.
    hits_misses_and_an_error(app)
    admin.config_set("slowlog-log-slower-than", 0)
    app.ping()
    admin.config_set("slowlog-log-slower-than", server.values["valkey"]["settings"]["slowlogThreshold"])

    as_admin, _ = scrape_families(server.manifests, server, tmp_path, server.acl["adminUser"], server.admin_password)
    admin.acl_log_reset()
    as_user, body = scrape_families(server.manifests, server, tmp_path)

    assert len(as_admin) > 100, sorted(as_admin)
    assert as_user == as_admin, {"missing as exporter": sorted(as_admin - as_user),
                                 "extra": sorted(as_user - as_admin)}
    refused = [(e["reason"], e["object"]) for e in admin.acl_log(count=1000) if e["username"] == server.acl["exporterUser"]]
    assert refused == [], "the exporter user was refused commands"
    assert re.search(r"^redis_up 1$", body, re.M)
    assert re.search(r'^redis_exporter_last_scrape_error\{err=""\} 0$', body, re.M)

    used = used_metrics(server.manifests)
    assert used, "the chart renders rules or a dashboard that query redis_* metrics"
    missing = used - as_user - set(CONDITIONAL)
    assert missing == set(), f"metrics the rules or the dashboard query but the exporter does not export: {missing}"


def test_exporter_user_cannot_read_or_write_data(server):
    exporter = server.exporter()
    for cmd in (("GET", "group:1"), ("SET", "group:1", "x"), ("SCAN", "0"), ("FLUSHALL",), ("CONFIG", "SET", "save", "")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            exporter.execute_command(*cmd)


def test_a_narrower_user_loses_families(server, tmp_path):
    """Control: with INFO alone the exporter loses the CONFIG, SLOWLOG and LATENCY families and the ACL LOG
    shows the refusals, so the comparison above can fail."""
    admin = server.admin()
    admin.acl_setuser("narrow", enabled=True, passwords=["+narrow-password-for-test"], commands=["-@all", "+info"])
    as_admin, _ = scrape_families(server.manifests, server, tmp_path, server.acl["adminUser"], server.admin_password)
    as_narrow, _ = scrape_families(server.manifests, server, tmp_path, "narrow", "narrow-password-for-test")
    assert {"redis_config_maxclients", "redis_slowlog_last_id", "redis_slowlog_length"} <= as_admin - as_narrow
    refused = {e["object"] for e in admin.acl_log(count=1000) if e["username"] == "narrow"}
    assert {"config|get", "slowlog|get", "slowlog|len", "latency|latest"} <= refused


@pytest.mark.parametrize("engine_name", ["valkey8", "redis7"])
def test_stack_exporter_as_its_user_exports_every_family(engine_name, tmp_path):
    """On the local stack: the pod's own exporter (rendered env, password file from config-init, exporter user)
    against a host-run exporter as admin, both scraping the pod."""
    root_or_skip()
    engine_or_skip(engine_name)
    exporter_or_skip()
    with stack_server(engine_name, tmp_path / "state") as server:
        admin = server.admin()
        app = server.app()
        hits_misses_and_an_error(app)
        admin.acl_log_reset()
        pod_metrics = server.stack.endpoints()["metrics"]
        body = scrape(pod_metrics)
        as_user = families(body)
        assert re.search(r"^redis_up 1$", body, re.M), "the pod's exporter authenticates as its user"

        addr = f"redis://{server.host}:{server.port}"
        password_file = tmp_path / "admin.json"
        password_file.write_text(json.dumps({addr: server.admin_password}))
        listen = f"127.0.0.1:{port_for.select_random()}"
        env = {"REDIS_ADDR": addr, "REDIS_USER": server.acl["adminUser"], "REDIS_PASSWORD_FILE": str(password_file),
               "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": listen}
        with HTTPExecutor([str(engines.EXPORTER.binary)], url=f"http://{listen}/metrics", timeout=30, envvars=env):
            as_admin = families(scrape(f"http://{listen}/metrics"))

        assert as_user == as_admin, {"missing as exporter": sorted(as_admin - as_user)}
        assert [e for e in admin.acl_log(count=1000) if e["username"] == server.acl["exporterUser"]] == []
        assert used_metrics(server.manifests) - as_user - set(CONDITIONAL) == set()
