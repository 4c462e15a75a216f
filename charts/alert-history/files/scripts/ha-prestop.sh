#!/bin/sh
# preStop hook of the server container. On a replica it returns at once. On the primary it hands over
# before the kubelet's SIGTERM, all within HA_PRESTOP_TIMEOUT seconds (default 30):
#   1. CLIENT PAUSE WRITE: clients can still read, a write waits and is never acknowledged here again.
#   2. Waits up to HA_PRESTOP_SYNC_TIMEOUT seconds (5) until a replica has every write acknowledged
#      before the pause, so the replica Sentinel promotes has them.
#   3. SENTINEL FAILOVER on the first Sentinel that accepts it.
#   4. Once the Sentinels name another pod and that pod answers as primary, makes this server its replica
#      (what Sentinel would do a moment later) and closes the clients' connections: the writes held by the
#      pause fail at once instead of waiting for SIGTERM, and the clients reconnect.
#   5. Keeps answering for HA_PRESTOP_DRAIN_SECONDS (2): a client that HAProxy still sends here gets READONLY
#      at once and retries, until every HAProxy's role check has dropped this server; only then SIGTERM.
# The pause lasts HA_WRITE_PAUSE_SECONDS (default 60; set it to terminationGracePeriodSeconds): the pod is
# going away, and writes resumed here after a failover would be lost. The writes held meanwhile fail with
# READONLY once Sentinel has turned this server into a replica. If no replica takes over in time the pause
# is lifted and the hook fails; the server then shuts down as a standalone would, flushing its AOF.
set -eu
. "$(dirname "$0")/ha-common.sh"

prestop_timeout=${HA_PRESTOP_TIMEOUT:-30}
pause_seconds=${HA_WRITE_PAUSE_SECONDS:-60}
sync_timeout=${HA_PRESTOP_SYNC_TIMEOUT:-5}
drain_seconds=${HA_PRESTOP_DRAIN_SECONDS:-2}
retry_interval=${HA_RETRY_INTERVAL:-0.2}

role=$(server_info_field "$my_name" role)
if [ "$role" != master ]; then
  log "role '${role:-unknown}': not the primary, nothing to hand over"
  exit 0
fi

started=$(now)
deadline=$((started + prestop_timeout))
reply=$(cli_as_sentinel "$my_name" "$server_port" client pause "$((pause_seconds * 1000))" write 2>&1) || true
[ "$reply" = OK ] || die "CLIENT PAUSE WRITE replied: $reply"
log "writes paused for ${pause_seconds}s"

# The highest offset a replica has acknowledged (0 without replicas).
best_replica_offset() {
  cli_as_sentinel "$my_name" "$server_port" info replication 2> /dev/null | tr -d '\r' |
    sed -n 's/^slave[0-9]*:.*,offset=\([0-9]*\),.*/\1/p' | sort -n | tail -n 1
}

target=$(server_info_field "$my_name" master_repl_offset)
sync_deadline=$(($(now) + sync_timeout))
while :; do
  best=$(best_replica_offset)
  if [ "${best:-0}" -ge "${target:-0}" ]; then
    log "a replica has every write (offset $best >= $target)"
    break
  fi
  if [ "$(now)" -ge "$sync_deadline" ]; then
    log "no replica reached offset $target within ${sync_timeout}s (best: ${best:-none}); failing over anyway"
    break
  fi
  sleep "$retry_interval"
done

# The other pods' Sentinels first: this pod's own Sentinel is being stopped with it.
sentinels_in_order=""
for node in $HA_NODES; do
  [ "$node" = "$my_name" ] || sentinels_in_order="$sentinels_in_order $node"
done
sentinels_in_order="$sentinels_in_order $my_name"

failover_sent=no
while [ "$(now)" -lt "$deadline" ]; do
  if [ "$failover_sent" = no ]; then
    for node in $sentinels_in_order; do
      reply=$(cli_as_sentinel "$node" "$sentinel_port" sentinel failover "$master_set" 2>&1) || true
      case "$reply" in
        OK | INPROG*)
          log "SENTINEL FAILOVER on $node: $reply"
          failover_sent=yes
          break
          ;;
        *) log "SENTINEL FAILOVER on $node: $reply" ;;
      esac
    done
  fi
  if [ "$failover_sent" = yes ]; then
    ask_sentinels
    if [ -n "$sentinels_primary" ] && [ "$sentinels_primary" != "$my_name" ] && is_primary "$sentinels_primary"; then
      log "handed over to $sentinels_primary in $(($(now) - started))s"
      reply=$(cli_as_sentinel "$my_name" "$server_port" replicaof "$sentinels_primary" "$server_port" 2>&1) || true
      log "REPLICAOF $sentinels_primary: $reply"
      reply=$(cli_as_sentinel "$my_name" "$server_port" client kill type normal 2>&1) || true
      log "client connections closed: $reply; draining for ${drain_seconds}s"
      sleep "$drain_seconds"
      exit 0
    fi
  fi
  sleep "$retry_interval"
done

cli_as_sentinel "$my_name" "$server_port" client unpause > /dev/null 2>&1 || true
die "no replica took over within ${prestop_timeout}s; writes resumed, the server shuts down as the primary"
