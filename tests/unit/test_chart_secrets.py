"""Passwords live in the Secret and nowhere else; the Secret's keys follow the values."""

from __future__ import annotations

import base64
import json

import pytest
from helpers.values import CI_DIR, load_yaml


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def passwords(values: dict) -> dict[str, str]:
    """Explicit passwords of valkey.password: every value but the Secret's name and key names."""
    p = values.get("valkey", {}).get("password", {})
    return {k: v for k, v in p.items() if v and k != "existingSecret" and not k.lower().endswith("secretkey")}


def secret_data(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_no_password_outside_the_secret(ci_set):
    m, values = ci_set.manifests, ci_set.values
    secrets = m.of_kind("Secret")
    given = passwords(values)
    if values.get("valkey", {}).get("password", {}).get("existingSecret"):
        assert given == {}, "explicit passwords are ignored with existingSecret"
    elif m.of_kind("StatefulSet"):
        # Every ci set with a generated Secret names its passwords, so this test knows what to look for.
        assert {"application", "exporter", "admin"} <= set(given), f"{ci_set.name}: set the passwords"
        assert set(given.values()) <= set(secret_data(secrets[0]).values())

    needles = [s for p in given.values() for s in (p, b64(p))]
    for obj in m:
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(obj)
        leaked = [n for n in needles if n in text]
        assert leaked == [], f"{obj['kind']}/{obj['metadata']['name']} contains a password"
    # NOTES.txt is printed to whoever runs helm install: no password there either.
    for path, text in m.templates.items():
        if not path.endswith((".yaml", ".yml")):
            assert not [n for n in needles if n in text], f"{path} contains a password"


def test_existing_secret_renders_no_secret_and_is_referenced(render_chart):
    values = load_yaml(CI_DIR / "existing-secret-values.yaml")
    p = values["valkey"]["password"]
    m = render_chart(values)
    assert m.of_kind("Secret") == []
    pod = m.of_kind("StatefulSet")[0]["spec"]["template"]
    assert {"name": "secret", "secret": {"secretName": p["existingSecret"], "defaultMode": 0o400}} in pod["spec"]["volumes"]
    refs = {
        (obj["kind"], e["name"], e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for obj in m
        if obj["kind"] in ("StatefulSet", "Pod")
        for c in (obj["spec"].get("template", obj)["spec"]["containers"])
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    # The exporter's password reaches it as a file that config-init writes from the mounted Secret.
    init_env = {e["name"]: e["value"] for e in pod["spec"]["initContainers"][0]["env"]}
    assert init_env["EXPORTER_SECRET_KEY"] == p["exporterSecretKey"]
    # Every reference (the helm test pod's too) points at the given Secret and one of its keys.
    assert {r[2] for r in refs} == {p["existingSecret"]}
    assert {r[3] for r in refs} <= {p["secretKey"], p["exporterSecretKey"], p["adminSecretKey"]}
    # No generated Secret, so nothing to checksum: the operator rolls the pod after changing theirs.
    assert "checksum/secret" not in pod["metadata"]["annotations"]


KEYS = {"secretKey": "app-pw", "exporterSecretKey": "exp.pw", "adminSecretKey": "ADMIN_PW"}
GIVEN = {"application": "application-password-0001", "exporter": "exporter-password-00002", "admin": "admin-password-0000003"}


@pytest.fixture(scope="module")
def custom(render_chart):
    return render_chart({"fullnameOverride": "alerthistory", "valkey": {"password": {**KEYS, **GIVEN}}})


def test_secret_keys_and_explicit_values(custom):
    assert secret_data(custom.get("Secret", "alerthistory-redis")) == {
        "app-pw": GIVEN["application"],
        "exp.pw": GIVEN["exporter"],
        "ADMIN_PW": GIVEN["admin"],
    }
    assert custom.get("Secret", "alerthistory-redis")["type"] == "Opaque"


def test_key_names_reach_the_acl_template_and_the_exporter(custom):
    acl = custom.get("ConfigMap", "alerthistory-redis-config")["data"]["users.acl.tpl"]
    users = {line.split()[1]: line for line in acl.splitlines() if line.startswith("user ")}
    assert "@secret:app-pw@" in users["default"] and "@secret:app-pw@" in users["alerthistory"]
    assert "@secret:exp.pw@" in users["exporter"]
    assert "@secret:ADMIN_PW@" in users["admin"]
    exporter = next(c for c in custom.get("StatefulSet", "alerthistory-redis")["spec"]["template"]["spec"]["containers"]
                    if c["name"] == "exporter")
    env = {e["name"]: e for e in exporter["env"]}
    # No secret in the exporter's environment: config-init writes its password file from the key.
    assert "REDIS_PASSWORD" not in env and env["REDIS_PASSWORD_FILE"]["value"] == "/run/exporter/password.json"
    init = custom.get("StatefulSet", "alerthistory-redis")["spec"]["template"]["spec"]["initContainers"][0]
    assert {"name": "EXPORTER_SECRET_KEY", "value": "exp.pw"} in init["env"]
    assert env["REDIS_USER"]["value"] == "exporter"


def test_generated_passwords_are_random_and_long(render_chart):
    m = render_chart({})
    data = secret_data(m.of_kind("Secret")[0])
    assert set(data) == {"password", "exporter-password", "admin-password"}
    assert all(len(v) >= 32 and v.isalnum() for v in data.values())
    assert len(set(data.values())) == 3
