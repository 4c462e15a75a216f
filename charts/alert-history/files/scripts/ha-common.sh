# Sourced by the ha-*.sh scripts (replication + Sentinel). Everything comes from the environment, so the
# templates set it and the tests can run the same scripts on 127.0.0.x addresses:
#   HA_NODES          announced names of all data pods, in ordinal order, space-separated (required), e.g.
#                     "alerthistory-redis-0.alerthistory-redis-headless.ns.svc.cluster.local ..."
#   HA_ORDINAL        this pod's ordinal (default: the number at the end of $HOSTNAME)
#   VALKEY_PORT       server port (6379)        SENTINEL_PORT   Sentinel port (26379)
#   HA_MASTER_SET     Sentinel master set name (alerthistory)
#   HA_SENTINEL_USER  the user Sentinel and these scripts log in as, on servers and Sentinels (sentinel)
#   HA_SENTINEL_PASSWORD_FILE  its password, a file from the Secret ($SECRET_DIR/sentinel-password)
#   HA_CALL_TIMEOUT   seconds one CLI call may take (3)
#   RUN_DIR           memory-backed emptyDir for generated config (/run/valkey)
#   SECRET_DIR        the Secret's mount (/etc/valkey-secret)
#   VALKEY_TLS_CA_FILE  with valkey.tls: every call speaks TLS, checked against this CA (and presents
#                     VALKEY_TLS_CERT_FILE / VALKEY_TLS_KEY_FILE when set: mutual TLS)
# Passwords reach the CLI through REDISCLI_AUTH (read by valkey-cli and redis-cli), never argv.

run_dir=${RUN_DIR:-/run/valkey}
secret_dir=${SECRET_DIR:-/etc/valkey-secret}
server_port=${VALKEY_PORT:-6379}
sentinel_port=${SENTINEL_PORT:-26379}
master_set=${HA_MASTER_SET:-alerthistory}
sentinel_user=${HA_SENTINEL_USER:-sentinel}
sentinel_password_file=${HA_SENTINEL_PASSWORD_FILE:-$secret_dir/sentinel-password}
call_timeout=${HA_CALL_TIMEOUT:-3}

log() {
  echo "$(date -u +%H:%M:%S) ${0##*/}: $*" >&2
}

die() {
  log "$*"
  exit 1
}

[ -n "${HA_NODES:-}" ] || die "HA_NODES is empty: set it to the announced names of the data pods"
ha_cli=$(command -v valkey-cli || command -v redis-cli) || die "neither valkey-cli nor redis-cli is in the image"
[ -s "$sentinel_password_file" ] || die "the Sentinel password file $sentinel_password_file is missing or empty"
REDISCLI_AUTH=$(cat "$sentinel_password_file")
export REDISCLI_AUTH

ordinal=${HA_ORDINAL:-${HOSTNAME##*-}}
case "$ordinal" in
  '' | *[!0-9]*) die "HA_ORDINAL '$ordinal' is not a pod ordinal (set HA_ORDINAL or a HOSTNAME ending in -<n>)" ;;
esac
node_count=0
my_name=""
for node in $HA_NODES; do
  [ "$node_count" = "$ordinal" ] && my_name=$node
  node_count=$((node_count + 1))
done
[ -n "$my_name" ] || die "HA_ORDINAL $ordinal is outside HA_NODES ($node_count names)"

ha_tls=""
if [ -n "${VALKEY_TLS_CA_FILE:-}" ]; then
  [ -s "$VALKEY_TLS_CA_FILE" ] || die "TLS is on but the CA file $VALKEY_TLS_CA_FILE is missing or empty"
  ha_tls="--tls --cacert $VALKEY_TLS_CA_FILE"
  if [ -n "${VALKEY_TLS_CERT_FILE:-}" ]; then
    ha_tls="$ha_tls --cert $VALKEY_TLS_CERT_FILE --key $VALKEY_TLS_KEY_FILE"
  fi
fi

# One CLI call as the Sentinel user, bounded by HA_CALL_TIMEOUT: a deleted pod's address can hang a
# connect for minutes, and redis-cli 7.0 has no connect timeout of its own.
cli_as_sentinel() {
  cli_host=$1 cli_port=$2
  shift 2
  # shellcheck disable=SC2086 # ha_tls: separate words (the chart's mount paths), or none
  set -- $ha_tls "$@"
  if command -v timeout > /dev/null; then
    timeout "$call_timeout" "$ha_cli" -h "$cli_host" -p "$cli_port" --user "$sentinel_user" --no-auth-warning "$@"
  else
    "$ha_cli" -h "$cli_host" -p "$cli_port" --user "$sentinel_user" --no-auth-warning "$@"
  fi
}

# The value of one INFO field of a server (empty when the server does not answer).
server_info_field() {
  cli_as_sentinel "$1" "$server_port" info replication 2> /dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# Asks every pod's Sentinel for the primary of the master set. Sets:
#   sentinels_reachable  how many Sentinels answered at all
#   sentinels_primary    the primary they name, when every Sentinel that names one names the same
#   sentinels_conflict   "yes" when they name different primaries (they converge within seconds)
ask_sentinels() {
  sentinels_reachable=0
  sentinels_primary=""
  sentinels_conflict=no
  for node in $HA_NODES; do
    reply=$(cli_as_sentinel "$node" "$sentinel_port" sentinel get-master-addr-by-name "$master_set" 2> /dev/null) || continue
    reply=$(printf '%s\n' "$reply" | tr -d '\r')
    name=$(printf '%s\n' "$reply" | sed -n 1p)
    port=$(printf '%s\n' "$reply" | sed -n 2p)
    case "$port" in
      '' | *[!0-9]*)
        if [ -n "$name" ]; then # an error reply (NOAUTH, WRONGPASS, NOPERM ...): a Sentinel we cannot use
          log "Sentinel $node: $name"
          continue
        fi
        sentinels_reachable=$((sentinels_reachable + 1)) # nil: it monitors no such master set
        continue
        ;;
    esac
    sentinels_reachable=$((sentinels_reachable + 1))
    if [ -z "$sentinels_primary" ]; then
      sentinels_primary=$name
    elif [ "$sentinels_primary" != "$name" ]; then
      sentinels_conflict=yes
    fi
  done
  if [ "$sentinels_conflict" = yes ]; then
    sentinels_primary=""
  fi
}

# True when the named server answers and says it is a primary.
is_primary() {
  [ "$(server_info_field "$1" role)" = "master" ]
}

now() {
  date +%s
}
