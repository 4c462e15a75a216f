#!/bin/sh
# Liveness: only a hung server fails. LOADING and MASTERDOWN are alive (restarting would only start
# the load again), and so is MISCONF (a full or failing volume: a restart frees no space, the server
# cannot save on SIGTERM, and the kill after the grace period drops acknowledged writes still in its
# AOF buffer); no reply within timeoutSeconds is the kubelet's failure.
. "$(dirname "$0")/probe-common.sh"
reply=$(probe_cli ping 2>&1) || true
case "$reply" in
  PONG | LOADING* | MASTERDOWN* | MISCONF*) exit 0 ;;
esac
echo "liveness: PING replied: $reply"
exit 1
