"""The release's users and their passwords (read from the Secret files the stack wrote), and clients that log
in as they do: the application (`default`: password-only AUTH, as alert-history's go-redis sends it), the
named application user, the exporter and the admin user. No password ever goes into argv or a log.
With valkey.tls on, every client speaks TLS, checks the server's chain against the CA and, when the server
asks for client certificates, presents the local CA's client certificate (`TlsFiles`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import redis


class CredentialsError(ValueError):
    pass


@dataclass(frozen=True)
class TlsFiles:
    """What a client of a TLS-only server needs: the CA, and a client key pair for mutual TLS."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def redis_kwargs(self) -> dict:
        # The chain is checked; the host name is not, as clients here dial ClusterIPs and pod addresses that the
        # certificate (DNS names, as cert-manager issues them) does not list.
        out = {"ssl": True, "ssl_ca_certs": str(self.ca), "ssl_cert_reqs": "required", "ssl_check_hostname": False}
        if self.cert:
            out.update(ssl_certfile=str(self.cert), ssl_keyfile=str(self.key))
        return out

    def cli_args(self) -> list[str]:
        out = ["--tls", "--cacert", str(self.ca)]
        if self.cert:
            out += ["--cert", str(self.cert), "--key", str(self.key)]
        return out

    def as_dict(self) -> dict:
        return {"ca": str(self.ca), "cert": str(self.cert) if self.cert else None,
                "key": str(self.key) if self.key else None}


class Credentials:
    def __init__(self, full_values: dict, secret_dir: Path, tls: TlsFiles | None = None):
        self.acl = full_values["valkey"]["acl"]
        self.keys = full_values["valkey"]["password"]
        self.secret_dir = secret_dir
        self.tls = tls
        self.replication = full_values["valkey"].get("architecture") == "replication"
        self.backup_user = (full_values.get("backup") or {}).get("acl", {}).get("user") \
            if (full_values.get("backup") or {}).get("enabled") else None

    @property
    def users(self) -> dict[str, str]:
        """ACL user -> key of its password in the Secret (the replication users and the backup user only where
        the values render them)."""
        users = {"default": self.keys["secretKey"], self.acl["applicationUser"]: self.keys["secretKey"],
                 self.acl["exporterUser"]: self.keys["exporterSecretKey"],
                 self.acl["adminUser"]: self.keys["adminSecretKey"]}
        if self.replication:
            users.update({self.acl["replicationUser"]: self.keys["replicationSecretKey"],
                          self.acl["sentinelUser"]: self.keys["sentinelSecretKey"],
                          self.acl["haproxyUser"]: self.keys["haproxySecretKey"]})
        if self.backup_user:
            users[self.backup_user] = self.keys["backupSecretKey"]
        return users

    @property
    def admin_user(self) -> str:
        return self.acl["adminUser"]

    def user(self, name: str) -> str:
        """A user name, or one of the aliases app/application, admin, exporter."""
        aliases = {"app": "default", "application": "default", "admin": self.acl["adminUser"],
                   "exporter": self.acl["exporterUser"]}
        name = aliases.get(name, name)
        if name not in self.users:
            raise CredentialsError(f"unknown user {name!r}; the chart's users are {sorted(self.users)}")
        return name

    def password(self, key: str) -> str:
        """A key of the Secret (as written to STATE/secrets/<name>/<key>)."""
        return (self.secret_dir / key).read_text()

    def password_file(self, user: str) -> Path:
        return self.secret_dir / self.users[self.user(user)]

    def user_password(self, user: str) -> str:
        return self.password(self.users[self.user(user)])

    def client(self, host: str, port: int, user: str = "default", **kwargs) -> redis.Redis:
        """redis-py client; `default` sends AUTH <password> only, the others a username too."""
        name = self.user(user)
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 10)
        if self.tls:
            kwargs = {**self.tls.redis_kwargs(), **kwargs}
        return redis.Redis(host=host, port=port, username=None if name == "default" else name,
                           password=self.user_password(name), **kwargs)

    def cli_argv(self, cli: Path, host: str, port: int, user: str = "default") -> list[str]:
        """valkey-cli/redis-cli argv; pair with cli_env() for the password (REDISCLI_AUTH)."""
        name = self.user(user)
        argv = [str(cli), "-h", host, "-p", str(port), "--no-auth-warning", *(self.tls.cli_args() if self.tls else [])]
        return argv if name == "default" else [*argv, "--user", name]

    def cli_env(self, user: str = "default") -> dict[str, str]:
        return {**os.environ, "REDISCLI_AUTH": self.user_password(user)}
