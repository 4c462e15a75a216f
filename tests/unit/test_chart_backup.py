"""backup.enabled: the CronJob, its volume, its script's ConfigMap and the backup ACL user, as rendered.
The script itself runs against real servers in tests/integration/test_backup_script.py."""

from __future__ import annotations

from helpers.values import render

NAME = "alerthistory-redis-backup"
BASE = {"fullnameOverride": "alerthistory"}
REPLICATION = {"architecture": "replication", "replicas": 3}


def backup_values(backup: dict | None = None, valkey: dict | None = None) -> dict:
    return {**BASE, "backup": {"enabled": True, **(backup or {})}, "valkey": valkey or {}}


def job_pod(m) -> dict:
    return m.get("CronJob", NAME)["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_off_by_default():
    m = render(BASE)
    assert m.of_kind("CronJob") == []
    assert NAME not in m.names("PersistentVolumeClaim") + m.names("ConfigMap")
    assert "backup" not in m.get("ConfigMap", "alerthistory-redis-config")["data"]["users.acl.tpl"]
    assert "backup-password" not in m.get("Secret", "alerthistory-redis").get("data", {})


def test_the_cronjob_runs_one_backup_at_a_time_on_its_schedule():
    m = render(backup_values({"schedule": "0 2 * * *", "retention": 3, "timeZone": "UTC"}))
    cronjob = m.get("CronJob", NAME)
    assert cronjob["spec"]["schedule"] == "0 2 * * *"
    assert cronjob["spec"]["timeZone"] == "UTC"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] == 3600
    pod = job_pod(m)
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BACKUP_RETENTION"] == "3"
    assert env["BACKUP_NODES"] == "alerthistory-redis-0.alerthistory-redis-headless.default.svc.cluster.local"
    assert "BACKUP_SENTINEL_PORT" not in env  # standalone: the one server


def test_it_uses_the_server_image_and_writes_to_a_volume_of_its_own():
    m = render(backup_values())
    (container,) = job_pod(m)["containers"]
    sts = m.get("StatefulSet", "alerthistory-redis")["spec"]["template"]["spec"]
    server = next(c for c in sts["containers"] if c["name"] == "valkey")
    assert container["image"] == server["image"]
    assert container["command"] == ["/bin/sh", "/scripts/backup.sh"]
    volumes = {v["name"]: v for v in job_pod(m)["volumes"]}
    assert volumes["backup"]["persistentVolumeClaim"]["claimName"] == NAME
    pvc = m.get("PersistentVolumeClaim", NAME)
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "annotations" not in render(backup_values({"storage": {"keepOnUninstall": False}})).get(
        "PersistentVolumeClaim", NAME)["metadata"]
    assert "backup.sh" in m.get("ConfigMap", NAME)["data"]
    # The data pods' scripts do not carry it: a change of the backup script never rolls them.
    assert "backup.sh" not in m.get("ConfigMap", "alerthistory-redis-scripts")["data"]


def test_the_password_comes_from_the_secret_as_a_file_only():
    m = render(backup_values(valkey={"password": {"backup": "backup-password-value-1234"}}))
    pod = job_pod(m)
    (container,) = pod["containers"]
    assert all("valueFrom" not in e for e in container["env"])
    assert "backup-password-value-1234" not in str(pod)
    secret = next(v for v in pod["volumes"] if v["name"] == "secret")["secret"]
    assert secret["items"] == [{"key": "backup-password", "path": "backup-password"}]
    assert "backup-password" in m.get("Secret", "alerthistory-redis")["data"]


def test_the_backup_user_may_only_stream_snapshots():
    m = render(backup_values())
    acl = m.get("ConfigMap", "alerthistory-redis-config")["data"]["users.acl.tpl"].splitlines()
    assert "user backup on @secret:backup-password@ resetkeys resetchannels -@all +sync +psync +replconf +ping" in acl


def test_with_replication_it_asks_the_sentinels_for_a_replica():
    m = render(backup_values(valkey=REPLICATION))
    (container,) = job_pod(m)["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BACKUP_SENTINEL_PORT"] == "26379" and env["BACKUP_MASTER_SET"] == "alerthistory"
    assert len(env["BACKUP_NODES"].split()) == 3
    sentinel_users = m.get("ConfigMap", "alerthistory-redis-config")["data"]["sentinel-users.acl.tpl"].splitlines()
    assert ("user backup on @secret:backup-password@ resetkeys resetchannels -@all +ping +sentinel|replicas"
            in sentinel_users)


def test_the_networkpolicy_admits_the_backup_pods_only_when_enabled():
    np_values = {"networkPolicy": {"enabled": True}}
    without = render({**BASE, "valkey": np_values}).get("NetworkPolicy", "alerthistory-redis")
    assert "backup" not in str(without["spec"]["ingress"])
    m = render(backup_values(valkey=np_values))
    ingress = m.get("NetworkPolicy", "alerthistory-redis")["spec"]["ingress"]
    backup_rules = [r for r in ingress if "backup" in str(r["from"])]
    assert [[p["port"] for p in r["ports"]] for r in backup_rules] == [[6379]]
    own = m.get("NetworkPolicy", NAME)["spec"]
    assert own["ingress"] == [] and own["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "backup"
