#!/bin/sh
# config-init of the HAProxy pods: writes haproxy.cfg from the ConfigMap's template into the memory-backed run
# dir, with HAProxy's health-check login filled in. The login is one RESP command, AUTH <user> <password>,
# written as hex for `tcp-check send-binary`: any byte of the password is safe there, and no password sits in
# the ConfigMap, in a process argument or in the environment (od reads the Secret file on stdin).
#   HAPROXY_USER           the ACL user of the checks (required)
#   HAPROXY_PASSWORD_FILE  its password, a file from the Secret (/etc/haproxy-secret/password)
#   HAPROXY_TEMPLATE       the template, whose @auth-hex@ marks are replaced (/etc/haproxy/haproxy.cfg.tpl)
#   RUN_DIR                where haproxy.cfg is written (/run/haproxy)
#   HAPROXY_TLS_CERT_FILE, HAPROXY_TLS_KEY_FILE  with mutual TLS: joined into $RUN_DIR/check-client.pem, the
#                          client certificate of the TLS checks (HAProxy's `crt` takes one PEM with both)
set -eu
umask 077
password_file=${HAPROXY_PASSWORD_FILE:-/etc/haproxy-secret/password}
template=${HAPROXY_TEMPLATE:-/etc/haproxy/haproxy.cfg.tpl}
run_dir=${RUN_DIR:-/run/haproxy}
user=${HAPROXY_USER:-}

die() {
  echo "haproxy-init: $*" >&2
  exit 1
}

[ -n "$user" ] || die "HAPROXY_USER is empty: set it to the ACL user of HAProxy's checks"
[ -s "$password_file" ] || die "the password file $password_file is missing or empty"
[ -s "$template" ] || die "the template $template is missing or empty"

hex_of_stdin() {
  od -An -v -tx1 | tr -d ' \n'
}

# The password is the file's bytes, exactly as config-init hashes them for the servers' ACL files.
password_length=$(wc -c < "$password_file" | tr -d ' ')
auth_hex=$(
  {
    printf '*3\r\n$4\r\nAUTH\r\n$%s\r\n%s\r\n$%s\r\n' "${#user}" "$user" "$password_length"
    cat "$password_file"
    printf '\r\n'
  } | hex_of_stdin
)
if [ -n "${HAPROXY_TLS_CERT_FILE:-}" ]; then
  for file in "$HAPROXY_TLS_CERT_FILE" "$HAPROXY_TLS_KEY_FILE"; do
    [ -s "$file" ] || die "TLS is on but $file is missing or empty: check the TLS Secret (valkey.tls)"
  done
  cat "$HAPROXY_TLS_CERT_FILE" "$HAPROXY_TLS_KEY_FILE" > "$run_dir/check-client.pem"
fi
sed "s/@auth-hex@/$auth_hex/g" "$template" > "$run_dir/haproxy.cfg.new"
mv "$run_dir/haproxy.cfg.new" "$run_dir/haproxy.cfg"
echo "haproxy-init: wrote $run_dir/haproxy.cfg (checks log in as $user)"
