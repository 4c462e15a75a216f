#!/bin/sh
# tls-reloader: Redis 7 and Valkey 8.1 load their certificate only at start (redis/redis#8756). kubelet renews
# a mounted Secret by writing a new timestamped folder and swapping the ..data link to it atomically; when the
# link changes, this applies the renewed files with one CONFIG SET of the key pair and the CA together (a key
# that does not match its certificate would fail every handshake), as the admin user. Open connections keep
# their session; new handshakes get the new certificate; the server never restarts.
#   TLS_DIR                  the TLS Secret's mount        TLS_RELOAD_INTERVAL  seconds between checks (60)
#   TLS_CERT_FILE TLS_KEY_FILE TLS_CA_FILE  the files the server config names, under TLS_DIR
#   TLS_ADMIN_USER           the admin user                TLS_ADMIN_PASSWORD_FILE  its password, from the Secret
#   VALKEY_TLS_CA_FILE / VALKEY_TLS_CERT_FILE / VALKEY_TLS_KEY_FILE  how this CLI connects (probe-common.sh)
# With replication, Sentinel reloads no certificate (no CONFIG SET of its TLS files, redis/redis#12028): once the
# pod's Sentinel runs on an older generation than the Secret's, this restarts it with SHUTDOWN (kubelet starts it
# again, and ha-sentinel.sh rejoins the primary the others follow). One Sentinel at a time, so the quorum and
# HAProxy's majority hold: pod n waits n x TLS_SENTINEL_RESTART_DELAY seconds after it first sees the renewal,
# and restarts only while every other pod's Sentinel answers and its own sees no failover or down primary.
#   TLS_SENTINEL_GENERATION_FILE  the generation the Sentinel started with (ha-sentinel.sh writes it)
#   TLS_SENTINEL_USER TLS_SENTINEL_PASSWORD_FILE  a Sentinel user that may PING, SHUTDOWN and read SENTINEL
#                            MASTER, with a pod-local password (config-init)
#   TLS_SENTINEL_RESTART_DELAY (30)  HA_NODES SENTINEL_PORT HA_MASTER_SET HA_ORDINAL  as for the ha-*.sh scripts
set -u
dir=${TLS_DIR:-/etc/valkey-tls}
interval=${TLS_RELOAD_INTERVAL:-60}
admin_user=${TLS_ADMIN_USER:-admin}

log() {
  echo "$(date -u +%H:%M:%S) tls-reloader: $*"
}

cli=$(command -v valkey-cli || command -v redis-cli) || {
  log "neither valkey-cli nor redis-cli is in the image"
  exit 1
}
sentinel_file=${TLS_SENTINEL_GENERATION_FILE:-}
for file in "$TLS_CERT_FILE" "$TLS_KEY_FILE" "$TLS_CA_FILE" "$TLS_ADMIN_PASSWORD_FILE" ${sentinel_file:+"${TLS_SENTINEL_PASSWORD_FILE:-TLS_SENTINEL_PASSWORD_FILE (unset)}"}; do
  [ -s "$file" ] || {
    log "$file is missing or empty: check the TLS Secret and valkey.tls.*Key"
    exit 1
  }
done
# --check (the container's probes): the files it reloads from are there.
[ "${1:-}" = "--check" ] && exit 0

# The link target of the Secret's current contents (a folder named after the time kubelet wrote it).
generation() {
  readlink "$dir/..data" 2> /dev/null || echo none
}

# One TLS CLI call to host $1, port $2, with the password of file $3 (none: "-"), bounded to 5 s (a deleted
# pod's address can hang a connect). The password reaches the CLI through REDISCLI_AUTH, never argv.
tls_cli() {
  host=$1 port=$2 password_file=$3
  shift 3
  set -- -h "$host" -p "$port" --no-auth-warning --tls --cacert "$TLS_CA_FILE" "$@"
  if [ -n "${VALKEY_TLS_CERT_FILE:-}" ]; then
    set -- --cert "$VALKEY_TLS_CERT_FILE" --key "$VALKEY_TLS_KEY_FILE" "$@"
  fi
  if [ "$password_file" = - ]; then
    unset REDISCLI_AUTH
  else
    REDISCLI_AUTH=$(cat "$password_file")
    export REDISCLI_AUTH
  fi
  if command -v timeout > /dev/null; then
    set -- timeout 5 "$cli" "$@"
  else
    set -- "$cli" "$@"
  fi
  "$@" 2>&1 | tr -d '\r'
}

apply() {
  tls_cli 127.0.0.1 "${VALKEY_PORT:-6379}" "$TLS_ADMIN_PASSWORD_FILE" --user "$admin_user" \
    config set tls-cert-file "$TLS_CERT_FILE" tls-key-file "$TLS_KEY_FILE" tls-ca-cert-file "$TLS_CA_FILE"
}

sentinel_port=${SENTINEL_PORT:-26379}
restart_delay=${TLS_SENTINEL_RESTART_DELAY:-30}
host=${HOSTNAME:-}
ordinal=${HA_ORDINAL:-${host##*-}}
if [ -n "$sentinel_file" ]; then
  case "$ordinal" in
    '' | *[!0-9]*)
      log "pod ordinal '$ordinal' is not a number (set HA_ORDINAL or a HOSTNAME ending in -<n>)"
      exit 1
      ;;
  esac
fi
stale_since=""

local_sentinel() {
  tls_cli 127.0.0.1 "$sentinel_port" "$TLS_SENTINEL_PASSWORD_FILE" --user "${TLS_SENTINEL_USER:-tls-reloader}" "$@"
}

# Empty when the Sentinel may restart now, else why not.
sentinel_restart_blocker() {
  i=0
  for node in ${HA_NODES:-}; do
    i=$((i + 1))
    [ "$i" = $((ordinal + 1)) ] && continue
    # Without a login a Sentinel answers NOAUTH: it is up and its TLS port works, which is all this needs.
    case "$(tls_cli "$node" "$sentinel_port" - ping)" in
      PONG | NOAUTH*) ;;
      *) echo "the Sentinel of $node does not answer" && return ;;
    esac
  done
  flags=$(local_sentinel sentinel master "${HA_MASTER_SET:-alerthistory}" | sed -n '/^flags$/{n;p;}')
  case "$flags" in
    '') echo "this pod's Sentinel does not answer" ;;
    *down* | *failover*) echo "this pod's Sentinel sees '$flags'" ;;
  esac
}

# Restarts the pod's Sentinel once it runs on an older generation than $1, staggered by ordinal.
restart_stale_sentinel() {
  started=$(cat "$sentinel_file" 2> /dev/null) || return 0 # not started yet: it will read the current files
  if [ "$started" = "$1" ]; then
    stale_since=""
    return 0
  fi
  now=$(date +%s)
  if [ -z "$stale_since" ]; then
    stale_since=$now
    log "the Sentinel serves the certificate of $started; restarting it in $((ordinal * restart_delay))s"
  fi
  [ $((now - stale_since)) -ge $((ordinal * restart_delay)) ] || return 0
  blocker=$(sentinel_restart_blocker)
  if [ -n "$blocker" ]; then
    log "the Sentinel restart waits: $blocker"
    return 0
  fi
  reply=$(local_sentinel shutdown)
  log "restarting the Sentinel for the renewed certificate ($started -> $1): ${reply:-it closed the connection}"
  stale_since=""
}

loaded=$(generation)
log "watching $dir/..data ($loaded), every ${interval}s"
while :; do
  sleep "$interval"
  current=$(generation)
  if [ "$current" != "$loaded" ]; then
    reply=$(apply)
    if [ "$reply" = "OK" ]; then
      log "loaded the renewed certificate ($loaded -> $current)"
      loaded=$current
    else
      # Retried at the next check: a server that is restarting reads the new files by itself anyway.
      log "CONFIG SET of the renewed certificate failed ($current): $reply"
    fi
  fi
  if [ -n "$sentinel_file" ]; then
    restart_stale_sentinel "$current"
  fi
done
