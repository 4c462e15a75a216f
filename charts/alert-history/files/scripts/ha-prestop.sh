#!/bin/sh
# preStop hook of the server container. On a replica it returns at once. On the primary it hands over
# before the kubelet's SIGTERM, all within HA_PRESTOP_TIMEOUT seconds (default 30):
#   1. CLIENT PAUSE WRITE: clients can still read, a write waits and is never acknowledged here again.
#   2. Waits up to HA_PRESTOP_SYNC_TIMEOUT seconds (5) until every online replica has applied every write
#      acknowledged before the pause (asking the replicas themselves), so the one Sentinel promotes has them.
#   3. SENTINEL FAILOVER on the first Sentinel that accepts it.
#   4. Once a majority of the Sentinels name another pod and that pod answers as primary, makes this server its replica
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
# The writes are held meanwhile: poll often, each poll is a few short valkey-cli calls.
poll_interval=${HA_PRESTOP_POLL_INTERVAL:-0.05}
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

# Asks each replica how far it has applied the stream (its own slave_repl_offset): the primary's view of a
# replica's offset moves only with the replica's REPLCONF ACK, once a second, which would hold the paused
# writes for up to a second more. Sets replicas_caught_up (how many reached $target) and replicas_behind
# (how many answered but did not yet).
replicas_progress() {
  replicas_caught_up=0 replicas_behind=0
  for replica in $replicas; do
    applied=$(server_info_field "$replica" slave_repl_offset)
    if [ -z "$applied" ]; then
      continue
    elif [ "$applied" -ge "$target" ]; then
      replicas_caught_up=$((replicas_caught_up + 1))
    else
      replicas_behind=$((replicas_behind + 1))
    fi
  done
}

resume_and_fail() {
  cli_as_sentinel "$my_name" "$server_port" client unpause > /dev/null 2>&1 || true
  die "$*; writes resumed, the server shuts down as the primary"
}

# One INFO after the pause: the offset every replica must reach, and the replicas streamed to (by their
# announced names).
info=$(cli_as_sentinel "$my_name" "$server_port" info replication 2> /dev/null | tr -d '\r')
target=$(printf '%s\n' "$info" | sed -n 's/^master_repl_offset://p')
target=${target:-0}
replicas=$(printf '%s\n' "$info" | sed -n 's/^slave[0-9]*:ip=\([^,]*\),.*state=online.*/\1/p')
sync_deadline=$(($(now) + sync_timeout))
while :; do
  replicas_progress
  # No replica answers (the whole release is going away, as in an uninstall): nothing can take over.
  [ $((replicas_caught_up + replicas_behind)) -gt 0 ] || resume_and_fail "no replica answers (online: ${replicas:-none})"
  # Every online replica, so the one Sentinel picks (the highest offset it sees) has every write.
  if [ "$replicas_caught_up" -gt 0 ] && [ "$replicas_behind" -eq 0 ]; then
    log "every online replica ($replicas_caught_up) has every write (offset $target)"
    break
  fi
  if [ "$(now)" -ge "$sync_deadline" ]; then
    log "after ${sync_timeout}s $replicas_caught_up replica(s) reached offset $target, $replicas_behind did not; failing over anyway"
    break
  fi
  sleep "$poll_interval"
done

# The other pods' Sentinels first: this pod's own Sentinel is being stopped with it.
sentinels_in_order=""
for node in $HA_NODES; do
  [ "$node" = "$my_name" ] || sentinels_in_order="$sentinels_in_order $node"
done
sentinels_in_order="$sentinels_in_order $my_name"

# True while another pod's server answers at all (as replica, or as the primary being promoted).
another_server_answers() {
  for node in $HA_NODES; do
    [ "$node" = "$my_name" ] || [ -z "$(server_info_field "$node" role)" ] || return 0
  done
  return 1
}

# The pod that a majority of the Sentinels name as primary (HAProxy's routing rule), or nothing yet. Asks the
# other pods' Sentinels first and stops at the majority: each call is a connection (a TLS handshake with
# valkey.tls) while the writes are held.
majority=$(($(printf '%s\n' $HA_NODES | wc -l) / 2 + 1))
majority_primary() {
  named=""
  for node in $sentinels_in_order; do
    reply=$(cli_as_sentinel "$node" "$sentinel_port" sentinel get-master-addr-by-name "$master_set" 2> /dev/null |
      tr -d '\r') || continue
    name=$(printf '%s\n' "$reply" | sed -n 1p)
    case "$(printf '%s\n' "$reply" | sed -n 2p)" in '' | *[!0-9]*) continue ;; esac # nil or an error reply
    named="$named $name"
    if [ "$(printf '%s\n' $named | grep -cxF "$name")" -ge "$majority" ]; then
      printf '%s\n' "$name"
      return 0
    fi
  done
}

failover_sent=no
answers_checked=$(now) # the replicas have just answered
while [ "$(now)" -lt "$deadline" ]; do
  if [ "$(now)" != "$answers_checked" ]; then # once a second: it costs a call per pod
    answers_checked=$(now)
    another_server_answers || resume_and_fail "no other pod's server answers any more"
  fi
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
    new_primary=$(majority_primary)
    if [ -n "$new_primary" ] && [ "$new_primary" != "$my_name" ] && is_primary "$new_primary"; then
      log "handed over to $new_primary in $(($(now) - started))s"
      reply=$(cli_as_sentinel "$my_name" "$server_port" replicaof "$new_primary" "$server_port" 2>&1) || true
      log "REPLICAOF $new_primary: $reply"
      reply=$(cli_as_sentinel "$my_name" "$server_port" client kill type normal 2>&1) || true
      log "client connections closed: $reply; draining for ${drain_seconds}s"
      sleep "$drain_seconds"
      exit 0
    fi
    sleep "$poll_interval"
  else
    sleep "$retry_interval"
  fi
done

resume_and_fail "no replica took over within ${prestop_timeout}s"
