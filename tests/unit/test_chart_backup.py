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


# --- backup.rclone: off-site copies -------------------------------------------------------------------------
RCLONE = {"enabled": True, "remote": "offsite:alert-history/", "existingSecret": "alert-history-rclone"}


def test_rclone_makes_the_backup_an_init_container_and_the_upload_the_container():
    m = render(backup_values({"rclone": RCLONE, "retention": 4}))
    pod = job_pod(m)
    (backup,) = pod["initContainers"]
    (upload,) = pod["containers"]
    # The backup is unchanged, it only runs first: the upload starts once a verified file exists.
    assert backup["name"] == "backup" and backup["command"] == ["/bin/sh", "/scripts/backup.sh"]
    assert upload["name"] == "upload" and upload["image"] == "rclone/rclone:1.69.1"
    assert upload["command"] == ["/bin/sh", "/scripts/upload.sh"]
    env = {e["name"]: e["value"] for e in upload["env"]}
    backup_env = {e["name"]: e["value"] for e in backup["env"]}
    assert env == {"RCLONE_REMOTE": "offsite:alert-history/", "RCLONE_CONFIG": "/etc/rclone/rclone.conf",
                   "BACKUP_DIR": "/backup", "BACKUP_PREFIX": backup_env["BACKUP_PREFIX"], "BACKUP_RETENTION": "4",
                   "BACKUP_PRUNE": "true"}
    mounts = {v["name"]: v for v in upload["volumeMounts"]}
    assert mounts["backup"] == {"name": "backup", "mountPath": "/backup", "readOnly": True}
    assert "secret" not in mounts  # the server password stays with the backup container
    assert upload["securityContext"] == backup["securityContext"]
    assert "upload.sh" in m.get("ConfigMap", NAME)["data"]
    assert "upload.sh" not in render(backup_values()).get("ConfigMap", NAME)["data"]


def test_the_rclone_config_comes_from_the_users_secret_as_a_file():
    m = render(backup_values({"rclone": {**RCLONE, "secretKey": "offsite.conf"}}))
    pod = job_pod(m)
    config = next(v for v in pod["volumes"] if v["name"] == "rclone-config")["secret"]
    assert config == {"secretName": "alert-history-rclone", "defaultMode": 0o400,
                      "items": [{"key": "offsite.conf", "path": "rclone.conf"}]}
    (upload,) = pod["containers"]
    assert all("valueFrom" not in e for e in upload["env"])
    assert {"name": "rclone-config", "mountPath": "/etc/rclone", "readOnly": True} in upload["volumeMounts"]


def test_rclone_is_refused_without_a_secret_or_a_remote():
    import pytest

    from alert_history_cache.chart import RenderError

    with pytest.raises(RenderError, match=r"backup.rclone.existingSecret: empty with backup.rclone.enabled"):
        render(backup_values({"rclone": {**RCLONE, "existingSecret": ""}}))
    with pytest.raises(RenderError, match=r"backup.rclone.remote: empty with backup.rclone.enabled"):
        render(backup_values({"rclone": {**RCLONE, "remote": ""}}))
    # On-the-fly remotes would carry their options, keys included, in the arguments.
    with pytest.raises(RenderError, match="remote"):
        render(backup_values({"rclone": {**RCLONE, "remote": ":s3,access_key_id=AKIA:bucket/"}}))
    with pytest.raises(RenderError, match="egress"):
        render(backup_values({"rclone": {**RCLONE, "egress": [{"too": []}]}}))


def test_rclone_egress_joins_the_backup_networkpolicy():
    np_values = {"networkPolicy": {"enabled": True}}
    without = render(backup_values(valkey=np_values)).get("NetworkPolicy", NAME)["spec"]["egress"]
    default = render(backup_values({"rclone": RCLONE}, valkey=np_values)).get("NetworkPolicy", NAME)["spec"]["egress"]
    assert default == [*without, {"ports": [{"port": 443, "protocol": "TCP"}]}]
    sftp = [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"port": 22, "protocol": "TCP"}]}]
    custom = render(backup_values({"rclone": {**RCLONE, "egress": sftp}}, valkey=np_values)).get(
        "NetworkPolicy", NAME)["spec"]["egress"]
    assert custom == [*without, *sftp]
