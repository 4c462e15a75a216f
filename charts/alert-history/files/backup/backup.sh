#!/bin/sh
# backup: the backup CronJob's one job. Streams a snapshot over the replication protocol (valkey-cli --rdb)
# into the backup volume, verifies it with the engine's RDB checker, then keeps the newest BACKUP_RETENTION
# files. With BACKUP_SENTINEL_PORT set (replication), the snapshot comes from a healthy replica that the
# Sentinels name, so the primary never forks for it. Any failure exits non-zero and leaves no file that counts.
# Everything comes from the environment:
#   BACKUP_NODES          the data pods' announced names, space-separated (required)
#   BACKUP_USER           the ACL user (backup)       BACKUP_PASSWORD_FILE  its password, from the Secret
#   BACKUP_DIR            the backup volume (/backup) BACKUP_RETENTION      files to keep (7)
#   BACKUP_PREFIX         file name prefix            BACKUP_TIMEOUT        seconds per connection attempt (10)
#   VALKEY_PORT           server port (6379)
#   BACKUP_SENTINEL_PORT, BACKUP_MASTER_SET  replication only: where to ask for replicas
# The password reaches the CLI through REDISCLI_AUTH (read by valkey-cli and redis-cli), never argv.
set -eu
umask 027

log() {
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) backup: $*" >&2
}

die() {
  log "FAILED: $*"
  exit 1
}

nodes=${BACKUP_NODES:?BACKUP_NODES is empty: set it to the announced names of the data pods}
user=${BACKUP_USER:-backup}
password_file=${BACKUP_PASSWORD_FILE:-/etc/valkey-secret/backup-password}
dir=${BACKUP_DIR:-/backup}
retention=${BACKUP_RETENTION:-7}
prefix=${BACKUP_PREFIX:-dump}
timeout_s=${BACKUP_TIMEOUT:-10}
port=${VALKEY_PORT:-6379}
case "$retention" in '' | *[!0-9]* | 0) die "BACKUP_RETENTION '$retention' is not a positive count" ;; esac

cli=$(command -v valkey-cli || command -v redis-cli) || die "neither valkey-cli nor redis-cli is in the image"
checker=$(command -v valkey-check-rdb || command -v redis-check-rdb) ||
  die "neither valkey-check-rdb nor redis-check-rdb is in the image"
[ -s "$password_file" ] || die "the password file $password_file is missing or empty"
REDISCLI_AUTH=$(cat "$password_file")
export REDISCLI_AUTH
[ -d "$dir" ] && [ -w "$dir" ] || die "the backup directory $dir is missing or not writable"

# One bounded CLI call as the backup user: a lost pod's address can hang a connect for minutes.
call() {
  call_host=$1 call_port=$2
  shift 2
  if command -v timeout > /dev/null; then
    timeout "$timeout_s" "$cli" -h "$call_host" -p "$call_port" --user "$user" --no-auth-warning "$@"
  else
    "$cli" -h "$call_host" -p "$call_port" --user "$user" --no-auth-warning "$@"
  fi
}

# The replicas the Sentinels call healthy (flags exactly "slave", link "ok"), as host:port words.
healthy_replicas() {
  for sentinel in $nodes; do
    reply=$(call "$sentinel" "$BACKUP_SENTINEL_PORT" sentinel replicas "${BACKUP_MASTER_SET:-alerthistory}" 2> /dev/null) || continue
    found=$(printf '%s\n' "$reply" | tr -d '\r' | awk '
      function flush() { if (ip != "" && flags == "slave" && link == "ok") printf "%s:%s ", ip, p; ip = ""; p = ""; flags = ""; link = "" }
      NR % 2 == 1 { key = $0; next }
      key == "name" { flush() }
      key == "ip" { ip = $0 } key == "port" { p = $0 } key == "flags" { flags = $0 } key == "master-link-status" { link = $0 }
      END { flush() }')
    if [ -n "$found" ]; then
      printf '%s\n' "$found"
      return 0
    fi
    log "Sentinel $sentinel names no healthy replica"
  done
  return 1
}

if [ -n "${BACKUP_SENTINEL_PORT:-}" ]; then
  sources=$(healthy_replicas) || die "no Sentinel of [$nodes] names a healthy replica; the primary is not used, so that it never forks for a backup"
else
  sources=""
  for node in $nodes; do sources="$sources $node:$port"; done
fi

# Leftovers of a run that was killed never count.
rm -f "$dir/.partial-"*
stamp=$(date -u +%Y%m%dT%H%M%SZ)
partial="$dir/.partial-$prefix-$stamp.rdb"
final="$dir/$prefix-$stamp.rdb"
taken=""
for source in $sources; do
  log "streaming a snapshot from $source"
  # --rdb connects, then waits for the whole transfer: the Job's activeDeadlineSeconds bounds it.
  if "$cli" -h "${source%:*}" -p "${source##*:}" --user "$user" --no-auth-warning --rdb "$partial" >&2; then
    taken=$source
    break
  fi
  log "the snapshot from $source failed"
  rm -f "$partial"
done
[ -n "$taken" ] || die "no source gave a snapshot"
[ -s "$partial" ] || die "the snapshot from $taken is empty"

log "verifying $(wc -c < "$partial") bytes with ${checker##*/}"
if ! "$checker" "$partial" >&2; then
  rm -f "$partial"
  die "${checker##*/} refused the snapshot from $taken"
fi
mv "$partial" "$final"
log "wrote $final"

# Keep the newest $retention verified files (names sort by their UTC timestamp).
# shellcheck disable=SC2012
ls -1 "$dir" | grep -E "^$prefix-[0-9]{8}T[0-9]{6}Z\.rdb\$" | sort -r | tail -n "+$((retention + 1))" |
  while read -r old; do
    rm -f "$dir/$old"
    log "deleted $old (keeping the newest $retention)"
  done
echo "$final"
