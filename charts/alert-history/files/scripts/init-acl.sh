#!/bin/sh
# config-init: writes the server's ACL file from the template and the Secret into the memory-backed
# run dir. Passwords are read from files and hashed through stdin, so none reaches a process argument,
# and only their SHA-256 lands in the ACL file. A pod-local probe password is generated on every start.
# For rotation, a Secret key <key>-next adds a second accepted password to the user of <key>.
# With replication, SENTINEL_ACL_TEMPLATE (the Sentinels' extra users) is written the same way to
# $RUN_DIR/sentinel-users.acl, and EXPORTER_SENTINEL_ADDR gets the Sentinel exporter's password file.
# RELOADER_RUN_DIR (replication with TLS on Redis 7 / Valkey 8.1): the tls-reloader's memory-backed volume gets a
# pod-local password of its own, for the Sentinel user that may restart this pod's Sentinel (@reloader@).
set -eu
umask 077
secret_dir=${SECRET_DIR:-/etc/valkey-secret}
run_dir=${RUN_DIR:-/run/valkey}
template=${ACL_TEMPLATE:-/etc/valkey/users.acl.tpl}

sha256_of_stdin() {
  # shellcheck disable=SC2046
  set -- $(sha256sum)
  printf '%s' "$1"
}

# A random password into file $1; prints its hash.
random_password() {
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1"
  sha256_of_stdin < "$1"
}

probe_hash=$(random_password "$run_dir/probe-password")
reloader_hash=""
if [ -n "${RELOADER_RUN_DIR:-}" ]; then
  reloader_hash=$(random_password "$RELOADER_RUN_DIR/sentinel-password")
fi

# Copies an ACL template ($1) to $2, each @secret:<key>@ replaced by the hash of that Secret key (and of
# <key>-next when present), each @probe@ by the probe password's hash, each @reloader@ by the reloader's.
render_acl() {
  while IFS= read -r line || [ -n "$line" ]; do
    out=""
    while :; do
      case "$line" in
        *@secret:*@*)
          out="$out${line%%@secret:*}"
          rest=${line#*@secret:}
          key=${rest%%@*}
          line=${rest#*@}
          if [ ! -s "$secret_dir/$key" ]; then
            echo "config-init: key '$key' is missing or empty in the Secret mounted at $secret_dir" >&2
            exit 1
          fi
          out="$out#$(sha256_of_stdin < "$secret_dir/$key")"
          # Rotation: an optional second password <key>-next is accepted beside the current one.
          if [ -s "$secret_dir/$key-next" ]; then
            out="$out #$(sha256_of_stdin < "$secret_dir/$key-next")"
          fi
          ;;
        *@probe@*)
          out="$out${line%%@probe@*}#$probe_hash"
          line=${line#*@probe@}
          ;;
        *@reloader@*)
          [ -n "$reloader_hash" ] || {
            echo "config-init: $1 names @reloader@ but RELOADER_RUN_DIR is not set" >&2
            exit 1
          }
          out="$out${line%%@reloader@*}#$reloader_hash"
          line=${line#*@reloader@}
          ;;
        *) break ;;
      esac
    done
    printf '%s\n' "$out$line"
  done < "$1" > "$2.new"
  mv "$2.new" "$2"
  echo "config-init: wrote $(wc -l < "$2") ACL users to $2"
}

render_acl "$template" "$run_dir/users.acl"
if [ -n "${SENTINEL_ACL_TEMPLATE:-}" ]; then
  render_acl "$SENTINEL_ACL_TEMPLATE" "$run_dir/sentinel-users.acl"
fi

# The exporter reads its password from a file, not from its environment: redis_exporter's
# REDIS_PASSWORD_FILE is JSON {"<REDIS_ADDR>": "<password>"}, written here into the exporter's own
# memory-backed volume. printf is a shell builtin, so no byte of the password becomes a process argument.
json_string_of_stdin() {
  printf '"'
  for byte in $(od -An -v -tx1); do
    case "$byte" in
      22) printf '\\"' ;;
      5c) printf '\\\\' ;;
      [01]?|7f) printf '\\u00%s' "$byte" ;;
      *) printf "\\$(printf '%03o' "0x$byte")" ;;
    esac
  done
  printf '"'
}

if [ -n "${EXPORTER_SECRET_KEY:-}" ]; then
  exporter_dir=${EXPORTER_DIR:-/run/exporter}
  if [ ! -s "$secret_dir/$EXPORTER_SECRET_KEY" ]; then
    echo "config-init: key '$EXPORTER_SECRET_KEY' is missing or empty in the Secret mounted at $secret_dir" >&2
    exit 1
  fi
  {
    printf '{'
    printf '%s' "$EXPORTER_REDIS_ADDR" | json_string_of_stdin
    printf ': '
    json_string_of_stdin < "$secret_dir/$EXPORTER_SECRET_KEY"
    printf '}\n'
  } > "$exporter_dir/password.json.new"
  mv "$exporter_dir/password.json.new" "$exporter_dir/password.json"
  echo "config-init: wrote the exporter's password file"
  # The Sentinel exporter logs in to the pod's Sentinel as the same user, keyed by the Sentinel's address.
  if [ -n "${EXPORTER_SENTINEL_ADDR:-}" ]; then
    {
      printf '{'
      printf '%s' "$EXPORTER_SENTINEL_ADDR" | json_string_of_stdin
      printf ': '
      json_string_of_stdin < "$secret_dir/$EXPORTER_SECRET_KEY"
      printf '}\n'
    } > "$exporter_dir/sentinel-password.json.new"
    mv "$exporter_dir/sentinel-password.json.new" "$exporter_dir/sentinel-password.json"
    echo "config-init: wrote the Sentinel exporter's password file"
  fi
fi
