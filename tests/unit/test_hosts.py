"""The generated hosts files: which names point where, the file's layout, and the in-place rewrite."""

from __future__ import annotations

import os

from alert_history_cache.hosts import PodRecord, ServiceRecord, hosts_entries, render, write_in_place

NS = "default"
POD0 = PodRecord("alerthistory-redis-0", "10.244.1.2", True, "alerthistory-redis-0", "alerthistory-redis-headless", NS)
POD1 = PodRecord("alerthistory-redis-1", "10.244.2.2", True, "alerthistory-redis-1", "alerthistory-redis-headless", NS)
POD2 = PodRecord("alerthistory-redis-2", "10.244.3.2", False, "alerthistory-redis-2", "alerthistory-redis-headless", NS)
PODS = (POD0, POD1, POD2)
NAMES = tuple(p.name for p in PODS)
CLIENT = ServiceRecord("alerthistory-redis", NS, "10.96.0.10", NAMES, False)
HEADLESS = ServiceRecord("alerthistory-redis-headless", NS, None, NAMES, False)


def addresses(entries, name):
    return [ip for ip, names in entries if name in names]


def test_a_cluster_ip_service_gets_its_four_names():
    entries = hosts_entries(PODS, [CLIENT])
    assert entries == [("10.96.0.10", ["alerthistory-redis.default.svc.cluster.local", "alerthistory-redis.default.svc",
                                       "alerthistory-redis.default", "alerthistory-redis"])]


def test_a_headless_service_resolves_to_its_ready_pods():
    entries = hosts_entries(PODS, [HEADLESS])
    for name in ("alerthistory-redis-headless", "alerthistory-redis-headless.default.svc.cluster.local"):
        assert addresses(entries, name) == ["10.244.1.2", "10.244.2.2"]


def test_publish_not_ready_addresses_includes_every_pod_with_an_address():
    headless = ServiceRecord(HEADLESS.name, NS, "None", NAMES + ("not-started",), True)
    no_ip = PodRecord("not-started", None, False, "not-started", HEADLESS.name, NS)
    entries = hosts_entries(PODS + (no_ip,), [headless])
    assert addresses(entries, "alerthistory-redis-headless.default") == ["10.244.1.2", "10.244.2.2", "10.244.3.2"]
    assert addresses(entries, "alerthistory-redis-2.alerthistory-redis-headless") == ["10.244.3.2"]


def test_stable_identities_for_pods_whose_subdomain_names_the_headless_service():
    other = PodRecord("app-0", "10.244.4.2", True, "app-0", None, NS)
    elsewhere = ServiceRecord("app-headless", NS, None, ("app-0",), False)
    entries = hosts_entries(PODS + (other,), [HEADLESS, elsewhere])
    assert addresses(entries, "alerthistory-redis-0.alerthistory-redis-headless.default.svc.cluster.local") == [
        "10.244.1.2"]
    for short in ("alerthistory-redis-1.alerthistory-redis-headless.default.svc",
                  "alerthistory-redis-1.alerthistory-redis-headless.default",
                  "alerthistory-redis-1.alerthistory-redis-headless"):
        assert addresses(entries, short) == ["10.244.2.2"]
    assert addresses(entries, "alerthistory-redis-2.alerthistory-redis-headless") == []  # not Ready
    assert not any(name.startswith("app-0.") for _, names in entries for name in names)  # no subdomain
    assert addresses(entries, "app-headless") == ["10.244.4.2"]


def test_a_pod_not_selected_by_the_headless_service_gets_no_identity():
    headless = ServiceRecord(HEADLESS.name, NS, None, ("alerthistory-redis-1",), False)
    entries = hosts_entries(PODS, [headless])
    assert addresses(entries, "alerthistory-redis-0.alerthistory-redis-headless") == []
    assert addresses(entries, "alerthistory-redis-headless") == ["10.244.2.2"]


def test_short_names_only_for_the_readers_namespace():
    other_ns = ServiceRecord("alerthistory-redis", "staging", "10.96.1.10", (), False)
    entries = hosts_entries(PODS, [CLIENT, other_ns], namespace=NS)
    assert addresses(entries, "alerthistory-redis") == ["10.96.0.10"]
    assert addresses(entries, "alerthistory-redis.staging") == ["10.96.1.10"]
    assert addresses(entries, "alerthistory-redis.staging.svc.cluster.local") == ["10.96.1.10"]


def test_custom_cluster_domain():
    entries = hosts_entries(PODS, [CLIENT], domain="k8s.example")
    assert addresses(entries, "alerthistory-redis.default.svc.k8s.example") == ["10.96.0.10"]


def test_render_starts_like_the_kubelets_file_with_the_pods_own_line():
    text = render(hosts_entries(PODS, [CLIENT, HEADLESS]), own_pod=POD1)
    lines = text.splitlines()
    assert lines[0] == "# Kubernetes-managed hosts file."
    assert lines[1] == "127.0.0.1\tlocalhost"
    assert "::1\tlocalhost ip6-localhost ip6-loopback" in lines
    own = "10.244.2.2\talerthistory-redis-1.alerthistory-redis-headless.default.svc.cluster.local\talerthistory-redis-1"
    assert lines.index(own) < lines.index(next(line for line in lines if line.startswith("10.96.0.10\t")))
    assert text.endswith("\n")


def test_render_without_subdomain_or_address():
    plain = PodRecord("app-0", "10.244.4.2", True, "app-0", None, NS)
    assert "10.244.4.2\tapp-0" in render([], own_pod=plain).splitlines()
    pending = PodRecord("app-1", None, False, "app-1", None, NS)
    assert "app-1" not in render([], own_pod=pending)


def test_write_in_place_keeps_the_inode(tmp_path):
    path = tmp_path / "hosts"
    assert write_in_place(path, "first version, a long line\n") is True
    inode = os.stat(path).st_ino
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert write_in_place(path, "short\n") is True
    assert path.read_text() == "short\n" and os.stat(path).st_ino == inode
    assert write_in_place(path, "short\n") is False  # unchanged: not rewritten
    longer = "x" * 10000 + "\n"
    write_in_place(path, longer)
    assert path.read_text() == longer and os.stat(path).st_ino == inode
