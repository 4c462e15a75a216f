# Sourced by the probes: finds the CLI of the image and authenticates as the pod-local probe user.
# REDISCLI_AUTH (read by valkey-cli and redis-cli) keeps the password out of the process arguments.
cli=$(command -v valkey-cli || command -v redis-cli) || {
  echo "probe: neither valkey-cli nor redis-cli is in the image"
  exit 1
}
REDISCLI_AUTH=$(cat "${RUN_DIR:-/run/valkey}/probe-password")
export REDISCLI_AUTH

# With valkey.tls on, the probes speak TLS only: a missing file fails the probe, naming it, never a plaintext retry.
tls_args=""
if [ -n "${VALKEY_TLS_CA_FILE:-}" ]; then
  for file in "$VALKEY_TLS_CA_FILE" ${VALKEY_TLS_CERT_FILE:-} ${VALKEY_TLS_KEY_FILE:-}; do
    if [ ! -s "$file" ]; then
      echo "probe: TLS is on but $file is missing or empty: check the TLS Secret (valkey.tls)"
      exit 1
    fi
  done
  tls_args="--tls --cacert $VALKEY_TLS_CA_FILE"
  if [ -n "${VALKEY_TLS_CERT_FILE:-}" ]; then
    tls_args="$tls_args --cert $VALKEY_TLS_CERT_FILE --key $VALKEY_TLS_KEY_FILE"
  fi
fi

probe_cli() {
  # shellcheck disable=SC2086 # tls_args holds separate words (paths without spaces: the chart's mount)
  "$cli" -h 127.0.0.1 -p "${VALKEY_PORT:-6379}" --user probe --no-auth-warning $tls_args "$@"
}

# Ready = PING answers PONG (not LOADING, not another error) and INFO says loading:0. MISCONF counts as
# ready: a server that cannot persist (full volume) refuses writes and PING with it but still serves
# reads; RedisAofWriteFailure / RedisPersistenceFailure page for it, and it recovers by itself once space
# is back.
check_ready() {
  reply=$(probe_cli ping 2>&1) || true
  case "$reply" in
    PONG | MISCONF*) ;;
    *)
      echo "$1: PING replied: $reply"
      exit 1
      ;;
  esac
  loading=$(probe_cli info persistence 2>&1 | tr -d '\r' | sed -n 's/^loading://p')
  if [ "$loading" != "0" ]; then
    echo "$1: loading:$loading"
    exit 1
  fi
}
