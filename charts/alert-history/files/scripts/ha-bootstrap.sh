#!/bin/sh
# Runs on EVERY start of the server container (its command: ha-bootstrap.sh valkey-server /etc/valkey/valkey.conf),
# not in an init container: init containers do not run again when only the server container restarts, and a
# role decided once at pod creation is how a restarted old primary becomes a second primary.
#
# Decides this pod's role from what the Sentinels say (docs/ha-design.md, "Bootstrap decision table"), writes
# $RUN_DIR/replication.conf (included at the end of valkey.conf), then execs its arguments. Never makes a
# second primary: a pod starts as primary only when the Sentinels name it and it has data, or when no Sentinel
# names any primary and it is pod 0. In every other case it waits for a primary and fails after
# HA_BOOTSTRAP_TIMEOUT seconds (default 60, below the startup probe's budget) so the kubelet retries.
#
# Besides ha-common.sh's variables: DATA_DIR (/data), HA_REPLICATION_USER (replication),
# HA_REPLICATION_PASSWORD_FILE ($SECRET_DIR/replication-password), HA_RETRY_INTERVAL (1 s).
set -eu
. "$(dirname "$0")/ha-common.sh"

data_dir=${DATA_DIR:-/data}
replication_user=${HA_REPLICATION_USER:-replication}
replication_password_file=${HA_REPLICATION_PASSWORD_FILE:-$secret_dir/replication-password}
bootstrap_timeout=${HA_BOOTSTRAP_TIMEOUT:-60}
retry_interval=${HA_RETRY_INTERVAL:-1}
[ -s "$replication_password_file" ] || die "the replication password file $replication_password_file is missing or empty"

has_data() {
  [ -s "$data_dir/dump.rdb" ] || [ -n "$(ls -A "$data_dir/appendonlydir" 2> /dev/null)" ]
}

# A config-file string: the password between double quotes, with \ and " escaped.
quoted_password() {
  printf '"'
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' < "$replication_password_file" | tr -d '\n'
  printf '"'
}

role=""
deadline=$(($(now) + bootstrap_timeout))
while :; do
  ask_sentinels
  if [ "$sentinels_conflict" = yes ]; then
    reason="the Sentinels name different primaries (they converge after a failover): waiting (row 8)"
  elif [ -n "$sentinels_primary" ] && [ "$sentinels_primary" = "$my_name" ]; then
    if has_data; then
      role=primary reason="the Sentinels name this pod as primary and its data is present (row 3)"
    else
      # Starting empty as the known primary would make every replica resync to an empty dataset.
      reason="the Sentinels name this pod as primary but $data_dir holds no data: waiting for them to fail over (row 4)"
    fi
  elif [ -n "$sentinels_primary" ]; then
    if is_primary "$sentinels_primary"; then
      role=replica primary=$sentinels_primary reason="the Sentinels name $sentinels_primary as primary (row 5)"
    else
      reason="the Sentinels name $sentinels_primary, which does not answer as a primary: waiting (row 6)"
    fi
  elif [ "$ordinal" = 0 ]; then
    role=primary reason="no Sentinel names a primary ($sentinels_reachable reachable) and this is pod 0 (rows 1-2)"
  else
    reason="no Sentinel names a primary ($sentinels_reachable reachable) and this is not pod 0: waiting (row 7)"
  fi
  [ -n "$role" ] && break
  if [ "$(now)" -ge "$deadline" ]; then
    die "no role after ${bootstrap_timeout}s: $reason; exiting so the kubelet retries"
  fi
  log "$reason"
  sleep "$retry_interval"
done

umask 077
{
  echo "# Written by ha-bootstrap.sh on every start: $role, because $reason."
  echo "replica-announce-ip $my_name"
  echo "replica-announce-port $server_port"
  echo "masteruser $replication_user"
  printf 'masterauth %s\n' "$(quoted_password)"
  if [ "$role" = replica ]; then
    echo "replicaof $primary $server_port"
  else
    # Overrides a replicaof that a CONFIG REWRITE may have left in a writable main config.
    echo "replicaof no one"
  fi
} > "$run_dir/replication.conf.new"
mv "$run_dir/replication.conf.new" "$run_dir/replication.conf"
echo "$role" > "$run_dir/ha-role"
log "starting as $role: $reason"

if [ "$#" -gt 0 ]; then
  exec "$@"
fi
