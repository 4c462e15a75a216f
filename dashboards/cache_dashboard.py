"""The cache tier's Grafana dashboard, as code.

`python -m dashboards.cache_dashboard` writes charts/alert-history/files/dashboards/alert-history-cache.json
(sorted, stable JSON; the chart ships it in the dashboard ConfigMap). `--check` only compares.

Every target is PromQL over metrics that redis_exporter 1.45/1.55 exports (checked against a real exporter by
tests/rules/test_exporter_metrics.py), plus `alerthistory:redis_container_memory_limit_bytes`, a recording
rule of the chart's PrometheusRule: the container memory limit is known at render time only, and this way
the panel works without kube-state-metrics; and `alerthistory:redis_is_primary` (1 on the primary, 0 on a replica,
per pod), the role timeline and failover count. The replication row's other series exist only with
`valkey.architecture: replication`: replicas' link and offsets, the Sentinels' exporters (in the data pods, so
the same pod selector) and HAProxy's metrics (its pods are in the Pod variable too).

For end-to-end tests: `targets()` lists every (panel, refId, expr) of the generated dashboard and
`panel_exprs(namespace=..., pod=...)` gives (panel title, PromQL) pairs with the Grafana variables resolved,
ready for Prometheus' HTTP API.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from alert_history_cache.drills.panels import REPLICATION_ONLY_METRICS, PanelTarget, board_targets, resolve  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT = REPO_ROOT / "charts" / "alert-history" / "files" / "dashboards" / "alert-history-cache.json"
UID = "alert-history-cache"
TITLE = "alert-history cache tier (Valkey/Redis)"

SEL = 'namespace="$namespace",pod=~"$pod"'
RATE = "$__rate_interval"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
LIMIT_RECORD = "alerthistory:redis_container_memory_limit_bytes"
PRIMARY_RECORD = "alerthistory:redis_is_primary"


def q(expr: str, legend: str = "{{pod}}") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def _targets(builder, queries: list[prometheus.Dataquery]):
    for ref, query in zip("ABCDEFGH", queries):
        builder.with_target(query.ref_id(ref))
    return builder


def series(title: str, description: str, unit: str, queries: list, *, w: int = 12, h: int = 8, **opts):
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .fill_opacity(10)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    if "min" in opts:
        panel.min(opts["min"])
    if "max" in opts:
        panel.max(opts["max"])
    for ref_id, unit in opts.get("right_axis", {}).items():
        # A second unit on the right axis, for the query with this refId.
        panel.override_by_query(
            ref_id,
            [
                model.DynamicConfigValue(id_val="unit", value=unit),
                model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            ],
        )
    return _targets(panel, queries)


def two_state_mapping(zero: tuple[str, str], one: tuple[str, str]) -> list:
    """A 0/1 gauge shown as words in colours, e.g. (("FAILED", "red"), ("OK", "green"))."""
    return [
        model.ValueMap(
            options={
                "0": model.ValueMappingResult(text=zero[0], color=zero[1], index=0),
                "1": model.ValueMappingResult(text=one[0], color=one[1], index=1),
            }
        )
    ]


def ok_mapping() -> list:
    """1 shows OK in green, 0 FAILED in red: the status gauges of the exporter."""
    return two_state_mapping(("FAILED", "red"), ("OK", "green"))


def up_mapping() -> list:
    """1 shows UP in green, 0 DOWN in red."""
    return two_state_mapping(("DOWN", "red"), ("UP", "green"))


def single(title: str, description: str, unit: str, queries: list, *, w: int = 6, h: int = 5, mappings=None):
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if mappings:
        panel.mappings(mappings)
    return _targets(panel, queries)


def role_timeline(title: str, description: str, queries: list, *, w: int = 12, h: int = 6):
    """Primary or replica per pod over time, from the role record."""
    roles = two_state_mapping(("replica", "blue"), ("primary", "green"))
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(w)
        .height(h)
        .mappings(roles)
        .show_value(common.VisibilityMode.AUTO)
    )
    return _targets(panel, queries)


def variables() -> list:
    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        dash.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query("label_values(redis_up, namespace)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC),
        dash.QueryVariable("pod")
        .label("Pod")
        .datasource(DATASOURCE)
        # The data pods, and the HAProxy pods of replication (for the HAProxy panel).
        .query('label_values({__name__=~"redis_up|haproxy_process_uptime_seconds",namespace="$namespace"}, pod)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
    ]


def build() -> model.Dashboard:
    board = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .tags(["alert-history", "valkey", "redis", "cache"])
        .description("The alert-history cache tier: one Valkey/Redis pod per row of series, from redis_exporter.")
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-3h", "now")
        .refresh("30s")
        .timezone("browser")
        .variables(variables())
    )
    panels = [
        dash.Row("Overview"),
        single(
            "Uptime",
            "Seconds since the server started; a drop means a restart.",
            "s",
            [q(f"redis_uptime_in_seconds{{{SEL}}}")],
        ),
        single(
            "Server and exporter up",
            "redis_up: the exporter reaches the server. up: Prometheus reaches the exporter.",
            "none",
            [q(f"redis_up{{{SEL}}}", "server {{pod}}"), q(f"up{{{SEL}}}", "exporter {{pod}}")],
            mappings=up_mapping(),
        ),
        single(
            "Persistence status",
            "Last RDB snapshot, last AOF write and last AOF rewrite: OK or FAILED.",
            "none",
            [
                q(f"redis_rdb_last_bgsave_status{{{SEL}}}", "RDB snapshot {{pod}}"),
                q(f"redis_aof_last_write_status{{{SEL}}}", "AOF write {{pod}}"),
                q(f"redis_aof_last_bgrewrite_status{{{SEL}}}", "AOF rewrite {{pod}}"),
            ],
            mappings=ok_mapping(),
        ),
        single(
            "Memory fragmentation",
            "RSS / used memory. Above 1.5: memory is wasted; below 1: the server swaps.",
            "none",
            [q(f"redis_mem_fragmentation_ratio{{{SEL}}}")],
        ),
        dash.Row("Clients and traffic"),
        series(
            "Connected clients",
            "Connected and blocked clients against maxclients (RedisHighConnectionUsage, RedisTooManyConnections).",
            "short",
            [
                q(f"redis_connected_clients{{{SEL}}}", "connected {{pod}}"),
                q(f"redis_blocked_clients{{{SEL}}}", "blocked {{pod}}"),
                q(f"redis_config_maxclients{{{SEL}}}", "maxclients {{pod}}"),
            ],
            min=0,
        ),
        series(
            "Connection churn",
            "New connections accepted and rejected per second (RedisRejectedConnections).",
            "cps",
            [
                q(f"rate(redis_connections_received_total{{{SEL}}}[{RATE}])", "accepted {{pod}}"),
                q(f"rate(redis_rejected_connections_total{{{SEL}}}[{RATE}])", "rejected {{pod}}"),
            ],
            min=0,
        ),
        series(
            "Commands per second",
            "All commands, and the five busiest commands.",
            "ops",
            [
                q(f"rate(redis_commands_processed_total{{{SEL}}}[{RATE}])", "all {{pod}}"),
                q(f"topk(5, sum by (cmd) (rate(redis_commands_total{{{SEL}}}[{RATE}])))", "{{cmd}}"),
            ],
            min=0,
        ),
        series(
            "Hit rate",
            "Keyspace hits / (hits + misses). Empty without lookups (RedisLowHitRate needs traffic too).",
            "percentunit",
            [
                q(
                    f"rate(redis_keyspace_hits_total{{{SEL}}}[{RATE}])"
                    f" / (rate(redis_keyspace_hits_total{{{SEL}}}[{RATE}])"
                    f" + rate(redis_keyspace_misses_total{{{SEL}}}[{RATE}]))"
                )
            ],
            min=0,
            max=1,
        ),
        series(
            "Network I/O",
            "Bytes per second received from and sent to clients (and replicas).",
            "Bps",
            [
                q(f"rate(redis_net_input_bytes_total{{{SEL}}}[{RATE}])", "in {{pod}}"),
                q(f"rate(redis_net_output_bytes_total{{{SEL}}}[{RATE}])", "out {{pod}}"),
            ],
            min=0,
        ),
        series(
            "Errors",
            "Error replies per second (OOM, WRONGPASS, NOPERM, ...): see also RedisOOMErrors.",
            "ops",
            [q(f"rate(redis_total_error_replies{{{SEL}}}[{RATE}])", "errors {{pod}}")],
            min=0,
        ),
        dash.Row("Memory and keys"),
        series(
            "Memory",
            "Used memory, RSS, maxmemory and the container memory limit (from the chart's recording rule). "
            "RSS reaching the limit gets the pod OOMKilled (RedisOutOfMemory); an allkeys-* cache sits near "
            "maxmemory by design.",
            "bytes",
            [
                q(f"redis_memory_used_bytes{{{SEL}}}", "used {{pod}}"),
                q(f"redis_memory_used_rss_bytes{{{SEL}}}", "RSS {{pod}}"),
                q(f"redis_memory_max_bytes{{{SEL}}} > 0", "maxmemory {{pod}}"),
                q(f"{LIMIT_RECORD}{{{SEL}}}", "container limit {{pod}}"),
            ],
            min=0,
        ),
        series(
            "Keyspace",
            "Keys and keys with a TTL, per database.",
            "short",
            [
                q(f"sum by (pod, db) (redis_db_keys{{{SEL}}})", "keys {{pod}} {{db}}"),
                q(f"sum by (pod, db) (redis_db_keys_expiring{{{SEL}}})", "expiring {{pod}} {{db}}"),
            ],
            min=0,
        ),
        series(
            "Evicted and expired keys",
            "Keys evicted by maxmemory-policy and keys expired by TTL, per second.",
            "ops",
            [
                q(f"rate(redis_evicted_keys_total{{{SEL}}}[{RATE}])", "evicted {{pod}}"),
                q(f"rate(redis_expired_keys_total{{{SEL}}}[{RATE}])", "expired {{pod}}"),
            ],
            min=0,
        ),
        series(
            "CPU",
            "CPU seconds per second of the server (system + user), without fork children.",
            "percentunit",
            [
                q(
                    f"rate(redis_cpu_sys_seconds_total{{{SEL}}}[{RATE}])"
                    f" + rate(redis_cpu_user_seconds_total{{{SEL}}}[{RATE}])"
                )
            ],
            min=0,
        ),
        dash.Row("Persistence and latency"),
        series(
            "Persistence",
            "Unsaved changes since the last RDB snapshot and the AOF size (RedisUnsavedChangesGrowing).",
            "short",
            [
                q(f"redis_rdb_changes_since_last_save{{{SEL}}}", "unsaved changes {{pod}}"),
                q(f"redis_aof_current_size_bytes{{{SEL}}}", "AOF size {{pod}}"),
            ],
            min=0,
            right_axis={"B": "bytes"},
        ),
        series(
            "Time since last snapshot",
            "Seconds since the last successful RDB snapshot, and how long the last fork took.",
            "s",
            [
                q(f"time() - redis_rdb_last_save_timestamp_seconds{{{SEL}}}", "since last save {{pod}}"),
                q(f"redis_latest_fork_seconds{{{SEL}}}", "last fork {{pod}}"),
            ],
            min=0,
        ),
        series(
            "Slow queries",
            "New slow-log entries per interval (from redis_slowlog_last_id; the slow-log length never drops "
            "by itself) and the duration of the last slow command (RedisSlowQueries).",
            "short",
            [
                q(f"increase(redis_slowlog_last_id{{{SEL}}}[{RATE}])", "new slow commands {{pod}}"),
                q(f"redis_slowlog_length{{{SEL}}}", "slow-log length {{pod}}"),
                q(f"redis_last_slow_execution_duration_seconds{{{SEL}}}", "last slow command {{pod}}"),
            ],
            min=0,
            right_axis={"C": "s"},
        ),
        series(
            "Replication",
            "Connected replicas; a primary's replica ack lag and a replica's silence from its primary "
            "(RedisReplicationLag). The lag series exist only where replication runs.",
            "short",
            [
                q(f"redis_connected_slaves{{{SEL}}}", "replicas of {{pod}}"),
                q(
                    f"max without (slave_state) (redis_connected_slave_lag_seconds{{{SEL}}})",
                    "ack lag s {{pod}} {{slave_ip}}",
                ),
                q(f"redis_master_last_io_seconds_ago{{{SEL}}}", "since primary s {{pod}}"),
            ],
            min=0,
        ),
        dash.Row("Replication and failover"),
        role_timeline(
            "Role per pod",
            "Primary or replica, per data pod (from the chart's alerthistory:redis_is_primary record). Two "
            "primaries at once for longer than a scrape interval is split brain (RedisMultiplePrimaries); "
            "none is RedisNoPrimary.",
            [q(f"{PRIMARY_RECORD}{{{SEL}}}")],
        ),
        series(
            "Failovers",
            "Promotions to primary per interval (a pod's role going from replica to primary), and the primary "
            "each Sentinel names: a new address is a failover.",
            "short",
            [
                q(
                    f"sum by (pod) (changes({PRIMARY_RECORD}{{{SEL}}}[{RATE}])"
                    f" - resets({PRIMARY_RECORD}{{{SEL}}}[{RATE}]))",
                    "promoted {{pod}}",
                ),
                q(f"max by (pod, master_address) (redis_sentinel_master_status{{{SEL}}})",
                  "Sentinel {{pod}}: {{master_address}}"),
            ],
            min=0,
        ),
        series(
            "Replication offset lag",
            "Bytes each replica's acknowledged offset is behind its primary's, measured on the primary (one "
            "scrape, so no cross-pod skew; 0 at worst after a failover or restart resets offsets). What a "
            "failover to that replica would lose.",
            "bytes",
            [
                q(
                    f"clamp_min(max by (pod) (redis_master_repl_offset{{{SEL}}}) - on (pod) group_right"
                    f" max by (pod, slave_ip, slave_port) (redis_connected_slave_offset_bytes{{{SEL}}}), 0)",
                    "{{pod}} to {{slave_ip}}",
                ),
            ],
            min=0,
        ),
        single(
            "Replica link status",
            "master_link_status of each replica (RedisReplicaLinkDown); the primary has none.",
            "none",
            [q(f"min without (master_host, master_port) (redis_master_link_up{{{SEL}}})", "{{pod}}")],
            mappings=up_mapping(),
        ),
        single(
            "Sentinel quorum",
            "SENTINEL CKQUORUM on each Sentinel: FAILED means no failover can be authorized "
            "(RedisSentinelQuorumUnreachable).",
            "none",
            [q(f"min without (message) (redis_sentinel_master_ckquorum_status{{{SEL}}})", "{{pod}}")],
            mappings=ok_mapping(),
        ),
        series(
            "HAProxy backend state",
            "Per HAProxy pod: for each data pod, 1 while its server passes the role:master check, and how many "
            "Sentinels name it primary. HAProxy sends clients to the one data pod with both (a majority of "
            "votes); when none has both, RedisHAProxyNoBackend. HAProxy pods show with Pod = All or when selected.",
            "short",
            [
                q(f'haproxy_backend_active_servers{{{SEL},proxy=~"node_[0-9]+"}}', "role:master {{pod}} {{proxy}}"),
                q(f'haproxy_backend_active_servers{{{SEL},proxy=~"sentinels_name_node_[0-9]+"}}',
                  "Sentinel votes {{pod}} {{proxy}}"),
            ],
            min=0,
        ),
    ]
    for p in panels:
        if isinstance(p, dash.Row):
            board.with_row(p)
        else:
            board.with_panel(p)
    return board.build()


def render_json() -> str:
    """The dashboard as sorted, stable JSON (ids numbered in order), newline-terminated."""
    data = json.loads(json.dumps(build(), cls=JSONEncoder))
    for i, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = i
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# Reading the generated JSON back is the toolkit's (the load drill captures every panel with it): one reader.
Target = PanelTarget


def targets(board_json: str | None = None) -> list[Target]:
    """Every query of the dashboard (the committed JSON by default), in panel order."""
    return board_targets(json.loads(board_json if board_json is not None else OUTPUT.read_text()))


def panel_exprs(
    *, namespace: str | None = None, pod: str = ".*", rate_interval: str = "1m", replication: bool = True
) -> list[tuple[str, str]]:
    """(panel title, expr) of every target; resolved when a namespace is given; replication=False drops
    the targets that only have data where replication runs."""
    out = []
    for t in targets():
        if t.replication_only and not replication:
            continue
        expr = t.expr if namespace is None else resolve(t.expr, namespace=namespace, pod=pod, rate_interval=rate_interval)
        out.append((t.panel, expr))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the file differs from a fresh generation")
    args = parser.parse_args(argv)
    fresh = render_json()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != fresh:
            print(f"{args.output} is stale: run python -m dashboards.cache_dashboard", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(fresh)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
