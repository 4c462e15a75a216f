"""The local stack's cert-manager stand-in (real openssl) and the kubelet's atomic layout of Secret volumes:
a rendered Certificate becomes a key pair with its names, signed by the throwaway CA; a renewal brings a new
serial; an update of a Secret volume swaps its contents with one rename of ..data."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers.values import with_

from alert_history_cache import local_certs
from alert_history_cache.kube import Objects
from alert_history_cache.volumes import Volumes

TLS = {"fullnameOverride": "alerthistory", "valkey": {"tls": {"enabled": True,
                                                              "certManager": {"issuerRef": {"name": "local"}}}}}


def openssl(*args: str, input: bytes | None = None) -> str:
    return subprocess.run(["openssl", *args], input=input, capture_output=True, check=True).stdout.decode()


@pytest.fixture(scope="module")
def certificate(render_chart):
    [cert] = render_chart(TLS).of_kind("Certificate")
    return cert


def test_the_issued_secret_has_cert_managers_keys_and_the_certificates_names(certificate, tmp_path):
    ca = local_certs.LocalCA(tmp_path / "tls")
    data = ca.issue(certificate)
    assert sorted(data) == ["ca.crt", "tls.crt", "tls.key"]
    (tmp_path / "ca.pem").write_bytes(data["ca.crt"])
    (tmp_path / "srv.pem").write_bytes(data["tls.crt"])
    assert "srv.pem: OK" in openssl("verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "srv.pem"))
    text = openssl("x509", "-noout", "-text", input=data["tls.crt"])
    for name in certificate["spec"]["dnsNames"]:
        assert f"DNS:{name}" in text
    assert "IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text and "TLS Web Client Authentication" in text
    # The key belongs to the certificate.
    pub_of_key = openssl("pkey", "-pubout", input=data["tls.key"])
    assert pub_of_key == openssl("x509", "-noout", "-pubkey", input=data["tls.crt"])


def test_private_keys_stay_in_private_files(certificate, tmp_path):
    ca = local_certs.LocalCA(tmp_path / "tls")
    ca.issue(certificate)
    ca.client_pair()
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    for key in (tmp_path / "tls").glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600, key


def test_a_renewal_has_a_new_serial_and_key_from_the_same_ca(certificate, tmp_path):
    ca = local_certs.LocalCA(tmp_path / "tls")
    first, second = ca.issue(certificate), ca.issue(certificate)
    assert local_certs.serial_of(first["tls.crt"]) != local_certs.serial_of(second["tls.crt"])
    assert first["tls.key"] != second["tls.key"]
    assert first["ca.crt"] == second["ca.crt"]
    assert local_certs.LocalCA(tmp_path / "tls").cert.read_bytes() == first["ca.crt"]  # the CA is kept


def test_duration_becomes_whole_days(render_chart, tmp_path):
    [cert] = render_chart(with_(TLS, **{"valkey.tls.certManager.duration": "36h"})).of_kind("Certificate")
    pem = local_certs.LocalCA(tmp_path / "tls").issue(cert)["tls.crt"]

    def valid_for(seconds: int) -> bool:
        return subprocess.run(["openssl", "x509", "-noout", "-checkend", str(seconds)], input=pem,
                              capture_output=True).returncode == 0

    assert valid_for(int(1.9 * 86400)) and not valid_for(int(2.1 * 86400))  # 36h rounds up to 2 days
    assert local_certs._days("1m") == 1


def test_serial_of_refuses_what_is_not_a_certificate():
    with pytest.raises(local_certs.CertError, match="not a PEM certificate"):
        local_certs.serial_of(b"nothing")


class FakeManifests:
    def get(self, kind, name):
        raise KeyError(name)


def test_a_secret_volume_has_the_kubelets_layout_and_updates_with_one_rename(tmp_path):
    objects = Objects(FakeManifests(), {"tls": {"tls.crt": b"one", "ca.crt": b"ca"}})
    spec = {"securityContext": {}, "volumes": [{"name": "tls", "secret": {"secretName": "tls"}}]}
    vols = Volumes(tmp_path, spec, [], objects)
    vols.run_as_user = os.getuid()  # unprivileged: own the files ourselves
    folder = vols.prepare()["tls"]
    first = os.readlink(folder / "..data")
    assert first.startswith("..") and (folder / first).is_dir()
    assert os.readlink(folder / "tls.crt") == "..data/tls.crt"
    assert (folder / "tls.crt").read_bytes() == b"one"

    objects.external_secrets["tls"] = {"tls.crt": b"two", "tls.key": b"k"}
    assert vols.update_secret("tls") == [folder]
    second = os.readlink(folder / "..data")
    assert second != first and not (folder / first).exists()  # the old generation is gone
    assert (folder / "tls.crt").read_bytes() == b"two" and (folder / "tls.key").read_bytes() == b"k"
    assert not (folder / "ca.crt").exists() and not (folder / "ca.crt").is_symlink()  # a dropped key
    assert sorted(p.name for p in folder.iterdir()) == sorted([second, "..data", "tls.crt", "tls.key"])
    assert Path(folder, "tls.crt").stat().st_mode & 0o777 == 0o400
