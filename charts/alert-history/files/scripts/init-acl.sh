#!/bin/sh
# config-init: writes the server's ACL file from the template and the Secret into the memory-backed
# run dir. Passwords are read from files and hashed through stdin, so none reaches a process argument,
# and only their SHA-256 lands in the ACL file. A pod-local probe password is generated on every start.
# For rotation, a Secret key <key>-next adds a second accepted password to the user of <key>.
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

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run_dir/probe-password"
probe_hash=$(sha256_of_stdin < "$run_dir/probe-password")

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
      *) break ;;
    esac
  done
  printf '%s\n' "$out$line"
done < "$template" > "$run_dir/users.acl.new"
mv "$run_dir/users.acl.new" "$run_dir/users.acl"
echo "config-init: wrote $(wc -l < "$run_dir/users.acl") ACL users"
