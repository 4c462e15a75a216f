"""`alert-history-cache status --json`: the machine-readable status of a stack, for scripts and tests.

Built from stack.json (written by the running stack) plus what only a live look can tell: whether the stack
process still runs, and each server container's replication role (`ROLE`, asked as the admin user with the
password from the pod's Secret file; null when the server does not answer). The layout is documented in
docs/local-stack.md; `details` carries the full stack.json (probes, events, networks) for debugging."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import redis

from .credentials import TlsFiles
from .stack_state import is_running, read_state


def replication_role(host: str, port: int, user: str | None, password_file: str | None,
                     timeout: float = 1.0, tls: dict | None = None) -> str | None:
    """`master`, `slave` or `sentinel` as the server reports it; None if it does not answer. `tls`: the stack's
    CA and client pair (stack.json's "tls"), for a TLS-only server."""
    try:
        password = Path(password_file).read_text() if password_file else None
        ssl = TlsFiles(**{k: Path(v) if v else None for k, v in tls.items()}).redis_kwargs() if tls else {}
        client = redis.Redis(host=host, port=port, username=user, password=password, socket_timeout=timeout,
                             socket_connect_timeout=timeout, **ssl)
        try:
            role = client.execute_command("ROLE")
        finally:
            client.close()
    except (OSError, redis.RedisError):
        return None
    first = role[0]
    return first.decode() if isinstance(first, bytes) else str(first)


def _pod_summary(pod: dict) -> dict:
    containers = [{"name": name, "state": c.get("state"), "ready": c.get("ready"), "restarts": c.get("restarts"),
                   "pid": c.get("pid"), "last_exit": c.get("last_exit")}
                  for name, c in (pod.get("containers") or {}).items()]
    return {"name": pod["name"], "namespace": pod.get("namespace"), "address": pod.get("address", pod.get("ip")),
            "ready": bool(pod.get("ready")), "generation": pod.get("generation"), "owner": pod.get("owner"),
            "terminating": pod.get("terminating", False), "partition": pod.get("partition"),
            "frozen": pod.get("frozen", False),
            "containers": containers}


def status_document(state_dir: Path, *, roles: bool = True) -> dict:
    data = read_state(state_dir)
    running = is_running(state_dir)
    pods = [_pod_summary(p) for p in data.get("pods") or ([data["pod"]] if data.get("pod") else [])]
    server = data.get("server") or {}
    if roles and running and server:
        # The server's password file lives in each pod's own Secret folder.
        secret_dirs = (data.get("secrets") or {}).get("pods") or {}
        keys = (data.get("secrets") or {}).get("keys") or {}
        user = server.get("auth_user")
        jobs = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            for pod in pods:
                if pod["address"] and any(c["name"] == server.get("container") for c in pod["containers"]):
                    folder = secret_dirs.get(pod["name"])
                    pw = str(Path(folder) / keys[user]) if folder and user in keys else server.get("auth_password_file")
                    jobs[pod["name"]] = pool.submit(replication_role, pod["address"], int(server["port"]), user, pw,
                                                    tls=data.get("tls"))
        for pod in pods:
            for c in pod["containers"]:
                if c["name"] == server.get("container"):
                    c["role"] = jobs[pod["name"]].result() if pod["name"] in jobs else None
    ep = data.get("endpoints") or {}
    return {
        "running": running,
        "phase": data.get("phase"),
        "state_dir": data.get("state_dir", str(state_dir)),
        "engine": data.get("engine"),
        "pods": pods,
        "services": data.get("services") or [],
        "client": {"service": ep.get("service"), "address": ep.get("server")} if ep else None,
        "secrets": data.get("secrets") or {},
        "prometheus": data.get("prometheus"),
        "alertmanager": data.get("alertmanager"),
        "logs": str(Path(data.get("state_dir", state_dir)) / "logs"),
        "error": data.get("error"),
        "details": data,
    }
