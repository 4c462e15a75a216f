"""The local stack's stand-in for cert-manager: a throwaway CA, and for each rendered Certificate a key pair
with the Certificate's names, written as the Secret it names, with cert-manager's keys (tls.crt, tls.key,
ca.crt). Also a client certificate from the same CA for the stack's own clients (mutual TLS). Uses the
`openssl` CLI; private keys only ever sit in files (mode 0600 in a mode-0700 folder), never in argv.

    ca = LocalCA(state_dir / "tls")
    secrets = ca.issue_all(manifests.of_kind("Certificate"))   # {secretName: {"tls.crt": ..., ...}}
    ca.client_pair()                                           # (client.crt, client.key) paths"""

from __future__ import annotations

import calendar
import math
import os
import secrets as random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .units import duration_seconds

CA_DAYS = 30
SECRET_KEYS = ("tls.crt", "tls.key", "ca.crt")  # what cert-manager writes, whatever the chart is told


class CertError(RuntimeError):
    """A certificate cannot be issued; the message says why."""


def _openssl() -> str:
    found = shutil.which("openssl")
    if not found:
        raise CertError("openssl is not installed (it issues the local stack's TLS certificates): "
                        "apt-get install openssl")
    return found


def _run(*args: str) -> str:
    proc = subprocess.run([_openssl(), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def _days(duration: str | None) -> int:
    """Whole days of a cert-manager duration ("2160h"), at least 1: `openssl x509 -days` counts days."""
    if not duration:
        return 90
    return max(1, math.ceil(duration_seconds(duration) / 86400))


def _new_key(path: Path) -> None:
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


class LocalCA:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        self.cert, self.key = self.folder / "ca.crt", self.folder / "ca.key"
        if not (self.cert.exists() and self.key.exists()):
            self._create()

    def _create(self) -> None:
        _new_key(self.key)
        _run("req", "-x509", "-new", "-key", str(self.key), "-out", str(self.cert), "-days", str(CA_DAYS),
             "-subj", "/CN=alert-history local stack CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def sign(self, name: str, *, common_name: str, dns_names: list[str] = (), ip_addresses: list[str] = (),
             days: int = 90, usages: tuple[str, ...] = ("serverAuth", "clientAuth")) -> tuple[Path, Path]:
        """A new key and a certificate with a random serial, signed by this CA: (cert path, key path)."""
        cert, key = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            new_key, csr, ext = Path(tmp, "key"), Path(tmp, "csr"), Path(tmp, "ext")
            _new_key(new_key)
            _run("req", "-new", "-key", str(new_key), "-out", str(csr), "-subj", f"/CN={common_name}")
            sans = [f"DNS:{d}" for d in dns_names] + [f"IP:{i}" for i in ip_addresses]
            lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                     f"extendedKeyUsage={','.join(usages)}"]
            if sans:
                lines.append(f"subjectAltName={','.join(sans)}")
            ext.write_text("\n".join(lines) + "\n")
            _run("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-set_serial", f"0x{random.token_hex(16)}", "-days", str(days), "-sha256", "-extfile", str(ext),
                 "-out", str(cert))
            os.replace(new_key, key)
        return cert, key

    def secret_data(self, cert: Path, key: Path) -> dict[str, bytes]:
        return {"tls.crt": cert.read_bytes(), "tls.key": key.read_bytes(), "ca.crt": self.cert.read_bytes()}

    def issue(self, certificate: dict, *, days: int | None = None) -> dict[str, bytes]:
        """The Secret data cert-manager would write for one Certificate object."""
        spec = certificate["spec"]
        usages = tuple(u.replace(" auth", "Auth") for u in spec.get("usages", []) if u.endswith(" auth")) \
            or ("serverAuth", "clientAuth")
        cert, key = self.sign(spec["secretName"], common_name=spec.get("commonName") or spec["dnsNames"][0],
                              dns_names=spec.get("dnsNames", []), ip_addresses=spec.get("ipAddresses", []),
                              days=days or _days(spec.get("duration")), usages=usages)
        return self.secret_data(cert, key)

    def issue_all(self, certificates: list[dict]) -> dict[str, dict[str, bytes]]:
        return {c["spec"]["secretName"]: self.issue(c) for c in certificates}

    def client_pair(self) -> tuple[Path, Path]:
        """A client certificate for the stack's own clients (drills, tests, the printed CLI line)."""
        cert, key = self.folder / "client.crt", self.folder / "client.key"
        if not (cert.exists() and key.exists()):
            self.sign("client", common_name="alert-history-local-client", usages=("clientAuth",))
        return cert, key


def serial_of(pem: bytes) -> str:
    """The serial number of a PEM certificate, as openssl prints it (upper-case hex)."""
    proc = subprocess.run([_openssl(), "x509", "-noout", "-serial"], input=pem, capture_output=True)
    if proc.returncode != 0:
        raise CertError(f"not a PEM certificate: {proc.stderr.decode().strip()}")
    return proc.stdout.decode().strip().removeprefix("serial=")


def not_after(pem: bytes) -> float:
    """When a PEM certificate expires, as a Unix timestamp (openssl's notAfter, in UTC)."""
    proc = subprocess.run([_openssl(), "x509", "-noout", "-enddate"], input=pem, capture_output=True)
    if proc.returncode != 0:
        raise CertError(f"not a PEM certificate: {proc.stderr.decode().strip()}")
    text = proc.stdout.decode().strip().removeprefix("notAfter=")  # "Dec  3 04:00:00 2026 GMT"
    return float(calendar.timegm(time.strptime(text, "%b %d %H:%M:%S %Y %Z")))
