#!/bin/sh
# Runs on every start of the Sentinel container (its command: ha-sentinel.sh valkey-server
# /run/valkey/sentinel.conf --sentinel). Writes a fresh Sentinel config into the memory-backed run dir
# (Sentinel rewrites its config, so never the ConfigMap; never the PVC, it holds passwords), then execs
# its arguments.
#
# The primary to monitor comes from the other Sentinels when they agree on one, else from this pod's own
# server (its role, or the primary it replicates from). So every Sentinel starts on the primary the others
# already follow: Sentinels started on different primaries never merge (bitnami/charts#17047).
# The Sentinel's id is derived from the pod's name, so a restarted Sentinel is the same Sentinel to its
# peers instead of a new member that inflates the count.
#
# Besides ha-common.sh's variables: HA_QUORUM (a majority of HA_NODES), HA_SENTINEL_DOWN_AFTER_MS (5000),
# HA_SENTINEL_FAILOVER_TIMEOUT_MS (20000), HA_SENTINEL_PARALLEL_SYNCS (1), HA_SENTINEL_BIND ("* -::*"),
# HA_SENTINEL_CONF ($RUN_DIR/sentinel.conf), HA_BOOTSTRAP_TIMEOUT (60 s), HA_RETRY_INTERVAL (1 s),
# HA_SENTINEL_EXTRA_USERS (a file of further `user` lines with password hashes, written by config-init: the
# read-only users of HAProxy and the exporter; optional). With valkey.tls: HA_TLS_CERT_FILE, HA_TLS_KEY_FILE,
# HA_TLS_AUTH_CLIENTS and VALKEY_TLS_CA_FILE make the Sentinel port TLS only, and its links to the servers and
# the other Sentinels TLS too (tls-replication); HA_TLS_AUTO_RELOAD_INTERVAL (Valkey 9.1+) its
# tls-auto-reload-interval. HA_TLS_GENERATION_FILE: where to note which generation of the
# TLS Secret (its ..data link) this start reads, so the tls-reloader can tell when this Sentinel, which never
# reloads a certificate, needs a restart.
set -eu
. "$(dirname "$0")/ha-common.sh"

quorum=${HA_QUORUM:-$((node_count / 2 + 1))}
down_after=${HA_SENTINEL_DOWN_AFTER_MS:-12000}
failover_timeout=${HA_SENTINEL_FAILOVER_TIMEOUT_MS:-20000}
parallel_syncs=${HA_SENTINEL_PARALLEL_SYNCS:-1}
bind=${HA_SENTINEL_BIND:-* -::*}
conf=${HA_SENTINEL_CONF:-$run_dir/sentinel.conf}
bootstrap_timeout=${HA_BOOTSTRAP_TIMEOUT:-60}
retry_interval=${HA_RETRY_INTERVAL:-1}

quoted_password() {
  printf '"'
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' < "$sentinel_password_file" | tr -d '\n'
  printf '"'
}

first_word_of_stdin() {
  # shellcheck disable=SC2046
  set -- $(cat)
  printf '%s' "$1"
}

primary=""
deadline=$(($(now) + bootstrap_timeout))
while :; do
  ask_sentinels
  if [ -n "$sentinels_primary" ]; then
    primary=$sentinels_primary reason="the other Sentinels follow it"
  elif [ "$sentinels_conflict" = no ]; then
    own_role=$(server_info_field "$my_name" role)
    if [ "$own_role" = master ]; then
      primary=$my_name reason="no Sentinel names a primary and this pod's server is one"
    elif [ "$own_role" = slave ]; then
      primary=$(server_info_field "$my_name" master_host)
      reason="no Sentinel names a primary and this pod's server replicates from it"
    fi
  fi
  [ -n "$primary" ] && break
  if [ "$(now)" -ge "$deadline" ]; then
    die "no primary to monitor after ${bootstrap_timeout}s (Sentinels reachable: $sentinels_reachable, conflict: $sentinels_conflict, own server role: '${own_role:-}'); exiting so the kubelet retries"
  fi
  sleep "$retry_interval"
done

umask 077
password_hash=$(sha256sum < "$sentinel_password_file" | first_word_of_stdin)
# Rotation: a Secret key <key>-next beside the password file is accepted too (docs/security.md).
if [ -s "$sentinel_password_file-next" ]; then
  password_hash="$password_hash #$(sha256sum < "$sentinel_password_file-next" | first_word_of_stdin)"
fi
extra_users=${HA_SENTINEL_EXTRA_USERS:-}
if [ -n "$extra_users" ] && [ ! -s "$extra_users" ]; then
  die "HA_SENTINEL_EXTRA_USERS names $extra_users, which is missing or empty"
fi
{
  echo "# Written by ha-sentinel.sh on every start; Sentinel rewrites it while it runs."
  if [ -n "${VALKEY_TLS_CA_FILE:-}" ]; then
    echo "port 0"
    echo "tls-port $sentinel_port"
    echo "tls-cert-file $HA_TLS_CERT_FILE"
    echo "tls-key-file $HA_TLS_KEY_FILE"
    echo "tls-ca-cert-file $VALKEY_TLS_CA_FILE"
    echo "tls-auth-clients ${HA_TLS_AUTH_CLIENTS:-no}"
    # Valkey 9.1+ only (older engines refuse the directive): reload renewed files without a restart.
    if [ -n "${HA_TLS_AUTO_RELOAD_INTERVAL:-}" ]; then
      echo "tls-auto-reload-interval $HA_TLS_AUTO_RELOAD_INTERVAL"
    fi
    # Sentinel's own links (to the servers and the other Sentinels) speak TLS too.
    echo "tls-replication yes"
  else
    echo "port $sentinel_port"
  fi
  echo "bind $bind"
  echo "dir $run_dir"
  echo "sentinel myid $(printf '%s' "$my_name" | sha1sum | first_word_of_stdin)"
  # Stable names instead of pod addresses: a recreated pod with a new address is still the same member.
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  echo "sentinel announce-ip $my_name"
  echo "sentinel announce-port $sentinel_port"
  # Sentinel itself requires auth: no default user (resetpass, so protected mode does not refuse peers).
  echo "user default off resetpass -@all"
  echo "user $sentinel_user on #$password_hash ~* &* +@all"
  if [ -n "$extra_users" ]; then
    cat "$extra_users"
  fi
  echo "sentinel sentinel-user $sentinel_user"
  printf 'sentinel sentinel-pass %s\n' "$(quoted_password)"
  echo "sentinel monitor $master_set $primary $server_port $quorum"
  echo "sentinel auth-user $master_set $sentinel_user"
  printf 'sentinel auth-pass %s %s\n' "$master_set" "$(quoted_password)"
  echo "sentinel down-after-milliseconds $master_set $down_after"
  echo "sentinel failover-timeout $master_set $failover_timeout"
  echo "sentinel parallel-syncs $master_set $parallel_syncs"
} > "$conf.new"
mv "$conf.new" "$conf"
if [ -n "${HA_TLS_GENERATION_FILE:-}" ]; then
  readlink "$(dirname "$HA_TLS_CERT_FILE")/..data" > "$HA_TLS_GENERATION_FILE" 2> /dev/null || echo none > "$HA_TLS_GENERATION_FILE"
fi
log "monitoring $primary:$server_port as '$master_set' (quorum $quorum): $reason"

if [ "$#" -gt 0 ]; then
  exec "$@"
fi
