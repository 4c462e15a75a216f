{{/* Seconds of a Prometheus duration (90s, 1m30s, 2h): prints a number, 0 for "0" or an empty string. */}}
{{- define "alert-history.monitoring.seconds" -}}
{{- $total := 0.0 -}}
{{- $mult := dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 "d" 86400.0 "w" 604800.0 "y" 31536000.0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" (toString .) -1 -}}
{{- $n := regexFind "^[0-9]+" . -}}
{{- $total = addf $total (mulf (float64 $n) (get $mult (trimPrefix $n .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* True when the monitoring objects render: cache tier on, monitoring on, and an exporter to scrape. */}}
{{- define "alert-history.monitoring.enabled" -}}
{{- if and (include "alert-history.redis.enabled" .) .Values.monitoring.prometheusEnabled .Values.valkey.exporter.enabled -}}true{{- end -}}
{{- end -}}

{{/*
PromQL label matchers of the release's exporter targets. The ServiceMonitor's job label is the metrics Service's
name (prometheus-operator's default), and the targets carry the release namespace whatever namespace the
ServiceMonitor lives in.
*/}}
{{- define "alert-history.monitoring.selector" -}}
{{- printf "job=%q,namespace=%q" (include "alert-history.redis.metricsName" .) .Release.Namespace -}}
{{- end -}}

{{/* standalone | replication; the values key may be missing in older values files. */}}
{{- define "alert-history.monitoring.architecture" -}}
{{- .Values.valkey.architecture | default "standalone" -}}
{{- end -}}

{{/*
Label matchers of the Sentinel exporters and of HAProxy's own metrics endpoint. Each is scraped as its own job,
named after the Service that exposes it (prometheus-operator's default job label): the Sentinel Service carries
the sentinel-metrics port, HAProxy has its own metrics Service. So the data-pod alerts above never see Sentinel's
or HAProxy's series.
*/}}
{{- define "alert-history.monitoring.sentinelSelector" -}}
{{- printf "job=%q,namespace=%q" (include "alert-history.redis.sentinelName" .) .Release.Namespace -}}
{{- end -}}

{{- define "alert-history.monitoring.haproxySelector" -}}
{{- printf "job=%q,namespace=%q" (printf "%s-haproxy-metrics" (include "alert-history.redis.fullname" .)) .Release.Namespace -}}
{{- end -}}
