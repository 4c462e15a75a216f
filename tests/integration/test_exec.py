"""`alert-history-cache exec` against a real local stack: the command runs inside the pod (its network namespace,
hostname, root and volumes) as the container's user with its environment and the engine's binaries under the
image's names, stdin/stdout/stderr pass through, the exit code comes back, and bad pods, containers or state dirs
are named in a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

POD = "alerthistory-redis-0"


def cli(state_dir, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "alert_history_cache.cli", "exec", "--state-dir", str(state_dir),
                           *args], input=input, capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("engine_name, cli_name", [("valkey8", "valkey-cli"), ("redis7", "redis-cli")])
def test_exec_runs_inside_the_pod_as_its_user(make_stack, engine_name, cli_name):
    stack = make_stack(engine=engine_name, serve_control=True).start()
    state = stack.state_dir
    [server] = [c for c in stack.manifests.get("StatefulSet", "alerthistory-redis")["spec"]["template"]["spec"]
                ["containers"] if c["name"] == "valkey"]
    uid = stack.manifests.get("StatefulSet", "alerthistory-redis")["spec"]["template"]["spec"]["securityContext"][
        "runAsUser"]

    who = cli(state, POD, "-c", "valkey", "--", "sh", "-c", "id -u; hostname; command -v valkey-cli; pwd")
    assert who.returncode == 0, who.stderr
    assert who.stdout.split() == [str(uid), POD, "/usr/local/bin/valkey-cli", "/data"]

    # valkey-cli is the engine's CLI, and localhost is the pod's: it reaches the server of this pod.
    version = cli(state, POD, "-c", "valkey", "--", "valkey-cli", "--version")
    assert version.stdout.startswith(cli_name), version.stdout
    ping = cli(state, POD, "-c", "valkey", "--", "valkey-cli", "-p", "6379", "ping")
    assert ping.returncode == 0 and ("NOAUTH" in ping.stdout or "PONG" in ping.stdout), ping.stdout + ping.stderr

    # The container's environment, not this process's.
    env = cli(state, POD, "-c", "valkey", "--", "sh", "-c", 'echo "$HOSTNAME:$PATH:${PYTHONPATH:-none}"')
    assert env.stdout.strip().endswith(":none") and env.stdout.startswith(POD + ":"), env.stdout
    expected_env = {e["name"] for e in server.get("env", []) if "value" in e}
    names = set(cli(state, POD, "-c", "valkey", "--", "sh", "-c", "env").stdout.split("\n"))
    assert {line.split("=", 1)[0] for line in names if line} >= expected_env

    # stdin only with -i (like kubectl exec), stdout and stderr apart, the exit code back.
    piped = cli(state, POD, "-c", "valkey", "-i", "--", "sh", "-c", "cat > /data/from-stdin; wc -c < /data/from-stdin",
                input="twelve bytes")
    assert piped.returncode == 0 and piped.stdout.strip() == "12", piped.stderr
    assert (stack.data_dir / "from-stdin").read_text() == "twelve bytes"
    no_stdin = cli(state, POD, "-c", "valkey", "--", "sh", "-c", "wc -c", input="ignored")
    assert no_stdin.stdout.strip() == "0"
    failed = cli(state, POD, "-c", "valkey", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (failed.returncode, failed.stdout, failed.stderr) == (7, "out\n", "err\n")

    # The default container is the pod's first (config-init is an init container, so: valkey).
    assert cli(state, POD, "--", "hostname").stdout.strip() == POD

    unknown_pod = cli(state, "nope-0", "--", "true")
    assert unknown_pod.returncode != 0 and "nope-0" in unknown_pod.stderr and POD in unknown_pod.stderr
    assert "Traceback" not in unknown_pod.stderr
    unknown_container = cli(state, POD, "-c", "nope", "--", "true")
    assert unknown_container.returncode != 0 and "'nope'" in unknown_container.stderr
    assert "valkey" in unknown_container.stderr and "Traceback" not in unknown_container.stderr


def test_exec_without_a_running_stack(tmp_path, needs_root):
    proc = cli(tmp_path, POD, "--", "true")
    assert proc.returncode != 0
    assert f"no stack is running in {tmp_path.resolve()}" in proc.stderr and "Traceback" not in proc.stderr
