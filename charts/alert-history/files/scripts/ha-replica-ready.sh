#!/bin/sh
# Readiness with replication: the standalone rules (PONG, loading:0), and a replica is Ready only while its
# link to the primary is up and no full sync is in progress, so no client reads a dataset that is stale or
# about to be replaced. A primary is Ready on the standalone rules. Liveness stays liveness.sh: a replica in
# a long full sync still answers PING and must not be restarted (that would start the sync over).
. "$(dirname "$0")/probe-common.sh"
check_ready readiness
replication=$(probe_cli info replication 2>&1 | tr -d '\r')
field() {
  printf '%s\n' "$replication" | sed -n "s/^$1://p"
}
role=$(field role)
case "$role" in
  master) exit 0 ;;
  slave) ;;
  *)
    echo "readiness: INFO replication: $replication"
    exit 1
    ;;
esac
if [ "$(field master_sync_in_progress)" != 0 ]; then
  echo "readiness: replica of $(field master_host), full sync in progress"
  exit 1
fi
if [ "$(field master_link_status)" != up ]; then
  echo "readiness: replica of $(field master_host), master_link_status:$(field master_link_status)"
  exit 1
fi
