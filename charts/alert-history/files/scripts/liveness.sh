#!/bin/sh
# Liveness: only a hung server fails. LOADING and MASTERDOWN are alive (restarting would only start
# the load again); no reply within timeoutSeconds is the kubelet's failure.
. "$(dirname "$0")/probe-common.sh"
reply=$(probe_cli ping 2>&1) || true
case "$reply" in
  PONG | LOADING* | MASTERDOWN*) exit 0 ;;
esac
echo "liveness: PING replied: $reply"
exit 1
