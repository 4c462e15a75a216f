#!/bin/sh
# preStop hook of the Sentinel container. Kubernetes stops a pod's containers together, so without this
# hook the Sentinel of the primary's pod would leave while ha-prestop.sh is still handing over: one vote
# short, or gone in the middle of the failover it was asked to run. While this pod's server is the primary
# the Sentinels follow, it waits (up to HA_PRESTOP_TIMEOUT seconds, default 30) until another pod is; on a
# replica's pod it returns at once.
set -eu
. "$(dirname "$0")/ha-common.sh"

prestop_timeout=${HA_PRESTOP_TIMEOUT:-30}
retry_interval=${HA_RETRY_INTERVAL:-0.2}

handed_over() {
  # The old primary stays a paused role:master until SIGTERM, so ask who the Sentinels follow.
  is_primary "$my_name" || return 0
  ask_sentinels
  [ -n "$sentinels_primary" ] && [ "$sentinels_primary" != "$my_name" ] && is_primary "$sentinels_primary"
}

deadline=$(($(now) + prestop_timeout))
until handed_over; do
  if [ "$(now)" -ge "$deadline" ]; then
    die "this pod's server is still the primary after ${prestop_timeout}s; stopping the Sentinel anyway"
  fi
  sleep "$retry_interval"
done
log "this pod's server is not the primary the Sentinels follow; the Sentinel may stop"
