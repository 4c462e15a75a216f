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
for file in "$TLS_CERT_FILE" "$TLS_KEY_FILE" "$TLS_CA_FILE" "$TLS_ADMIN_PASSWORD_FILE"; do
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

apply() {
  set -- --tls --cacert "$TLS_CA_FILE"
  if [ -n "${VALKEY_TLS_CERT_FILE:-}" ]; then
    set -- "$@" --cert "$VALKEY_TLS_CERT_FILE" --key "$VALKEY_TLS_KEY_FILE"
  fi
  REDISCLI_AUTH=$(cat "$TLS_ADMIN_PASSWORD_FILE")
  export REDISCLI_AUTH
  "$cli" -h 127.0.0.1 -p "${VALKEY_PORT:-6379}" --user "$admin_user" --no-auth-warning "$@" \
    config set tls-cert-file "$TLS_CERT_FILE" tls-key-file "$TLS_KEY_FILE" tls-ca-cert-file "$TLS_CA_FILE" 2>&1
}

loaded=$(generation)
log "watching $dir/..data ($loaded), every ${interval}s"
while :; do
  sleep "$interval"
  current=$(generation)
  [ "$current" = "$loaded" ] && continue
  reply=$(apply)
  if [ "$reply" = "OK" ]; then
    log "loaded the renewed certificate ($loaded -> $current)"
    loaded=$current
  else
    # Retried at the next check: a server that is restarting reads the new files by itself anyway.
    log "CONFIG SET of the renewed certificate failed ($current): $reply"
  fi
done
