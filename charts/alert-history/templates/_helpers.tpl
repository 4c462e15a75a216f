{{/* Chart name, truncated to the DNS label limit (it is the app.kubernetes.io/name label value). */}}
{{- define "alert-history.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Release prefix of every name: fullnameOverride, or <release>-<chart> unless the release already holds the chart
name. Cut to 41 characters: the longest derived name, <fullname>-redis-test-connection (22 more), must fit a
63-character DNS label, and the StatefulSet <fullname>-redis (at most 47) stays under the 52 characters that keep
its pods' controller-revision-hash label (<name>-<10-character hash>) a valid label value.
Helm accepts release names with dots and a leading digit; Service names are DNS-1035 labels, so dots become
dashes and a name that would start with a digit gets the prefix "r-".
*/}}
{{- define "alert-history.fullname" -}}
{{- $full := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $full = .Values.fullnameOverride -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- $full = .Release.Name -}}
{{- else -}}
{{- $full = printf "%s-%s" .Release.Name $name -}}
{{- end -}}
{{- end -}}
{{- $full = replace "." "-" $full -}}
{{- if regexMatch "^[^a-z]" $full -}}
{{- $full = printf "r-%s" $full -}}
{{- end -}}
{{- regexReplaceAll "-+$" ($full | trunc 41) "" -}}
{{- end -}}

{{/* The cache tier's base name: <fullname>-redis (the StatefulSet, the client Service, the pod prefix). */}}
{{- define "alert-history.redis.fullname" -}}
{{- printf "%s-redis" (include "alert-history.fullname" .) -}}
{{- end -}}

{{- define "alert-history.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* True when the cache tier renders at all. */}}
{{- define "alert-history.redis.enabled" -}}
{{- if and (eq .Values.profile "standard") .Values.valkey.enabled -}}true{{- end -}}
{{- end -}}

{{- define "alert-history.labels" -}}
helm.sh/chart: {{ include "alert-history.chart" . }}
app.kubernetes.io/name: {{ include "alert-history.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: alert-history
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of the cache tier's objects; the component is redis. */}}
{{- define "alert-history.redis.labels" -}}
{{ include "alert-history.labels" . }}
app.kubernetes.io/component: redis
{{- end -}}

{{/* Pod selector of the cache tier; never change it (StatefulSet selectors are immutable). */}}
{{- define "alert-history.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alert-history.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "alert-history.annotations" -}}
{{- with .Values.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end -}}

{{/*
[registry/]repository:tag, or [registry/]repository@digest when a digest is given; global.imageRegistry wins over
the image's own registry. Call with (dict "image" $v.image "root" $).
*/}}
{{- define "alert-history.image" -}}
{{- $i := .image -}}
{{- $registry := default $i.registry ((.root.Values.global | default dict).imageRegistry) -}}
{{- $repository := ternary (printf "%s/%s" $registry $i.repository) $i.repository (ne $registry "") -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (toString $i.tag) -}}
{{- end -}}
{{- end -}}

{{/* The pods' ServiceAccount name; empty means the namespace's default account. */}}
{{- define "alert-history.redis.serviceAccountName" -}}
{{- $sa := .Values.valkey.serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "alert-history.redis.fullname" .) $sa.name -}}
{{- else -}}
{{- $sa.name -}}
{{- end -}}
{{- end -}}

{{/* A map of scalars in YAML flow style, {cpu: 10m, memory: 16Mi}: the small fixed resources of helper containers. */}}
{{- define "alert-history.flowMap" -}}
{{- $parts := list -}}
{{- range $k, $v := . -}}
{{- $parts = append $parts (printf "%s: %v" $k $v) -}}
{{- end -}}
{{- printf "{%s}" (join ", " $parts) -}}
{{- end -}}

{{/* valkey or redis: which binaries the server image ships. */}}
{{- define "alert-history.redis.engine" -}}
{{- if ne .Values.valkey.engine "auto" -}}
{{- .Values.valkey.engine -}}
{{- else if contains "valkey" (lower .Values.valkey.image.repository) -}}
valkey
{{- else -}}
redis
{{- end -}}
{{- end -}}

{{- define "alert-history.redis.serverBinary" -}}
{{- printf "%s-server" (include "alert-history.redis.engine" .) -}}
{{- end -}}

{{- define "alert-history.redis.secretName" -}}
{{- default (include "alert-history.redis.fullname" .) .Values.valkey.password.existingSecret -}}
{{- end -}}

{{- define "alert-history.redis.headlessName" -}}
{{- printf "%s-headless" (include "alert-history.redis.fullname" .) -}}
{{- end -}}

{{- define "alert-history.redis.metricsName" -}}
{{- printf "%s-metrics" (include "alert-history.redis.fullname" .) -}}
{{- end -}}

{{/* True when the cache tier renders with valkey.architecture: replication (Sentinel in every data pod, HAProxy). */}}
{{- define "alert-history.redis.replication" -}}
{{- if and (include "alert-history.redis.enabled" .) (eq .Values.valkey.architecture "replication") -}}true{{- end -}}
{{- end -}}

{{- define "alert-history.redis.sentinelName" -}}
{{- printf "%s-sentinel" (include "alert-history.redis.fullname" .) -}}
{{- end -}}

{{- define "alert-history.redis.haproxyName" -}}
{{- printf "%s-haproxy" (include "alert-history.redis.fullname" .) -}}
{{- end -}}

{{- define "alert-history.redis.haproxyMetricsName" -}}
{{- printf "%s-haproxy-metrics" (include "alert-history.redis.fullname" .) -}}
{{- end -}}

{{/* Labels of the HAProxy objects; the component is haproxy, so no data-pod selector matches its pods. */}}
{{- define "alert-history.haproxy.labels" -}}
{{ include "alert-history.labels" . }}
app.kubernetes.io/component: haproxy
{{- end -}}

{{/* HAProxy's nbthread: valkey.haproxy.threads, else its CPU limit rounded up; empty without either (HAProxy then
starts one thread per CPU of the node, all throttled together by the pod's quota). */}}
{{- define "alert-history.haproxy.threads" -}}
{{- $h := .Values.valkey.haproxy -}}
{{- $limits := (($h.resources | default dict).limits | default dict) -}}
{{- if $h.threads -}}
{{- $h.threads -}}
{{- else if $limits.cpu -}}
{{- $m := int64 (include "alert-history.millicores" $limits.cpu) -}}
{{- max 1 (min 64 (div (add $m 999) 1000)) -}}
{{- end -}}
{{- end -}}

{{/* Pod selector of the HAProxy Deployment; never change it (Deployment selectors are immutable). */}}
{{- define "alert-history.haproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alert-history.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: haproxy
{{- end -}}

{{/* The stable DNS name the data pod of ordinal .ordinal announces: <pod>.<headless>.<namespace>.svc.<clusterDomain>. */}}
{{- define "alert-history.redis.podDNSName" -}}
{{- $root := .root -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "alert-history.redis.fullname" $root) (int .ordinal) (include "alert-history.redis.headlessName" $root) $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end -}}

{{/* Every data pod's announced name in ordinal order, space-separated (HA_NODES of the HA scripts). */}}
{{- define "alert-history.redis.nodes" -}}
{{- $names := list -}}
{{- range $i := until (int .Values.valkey.replicas) -}}
{{- $names = append $names (include "alert-history.redis.podDNSName" (dict "root" $ "ordinal" $i)) -}}
{{- end -}}
{{- join " " $names -}}
{{- end -}}

{{/* The Sentinel quorum: valkey.sentinel.quorum, or a majority of the Sentinels (one per data pod). */}}
{{- define "alert-history.sentinel.quorum" -}}
{{- $q := int .Values.valkey.sentinel.quorum -}}
{{- if eq $q 0 -}}{{- add (div (int .Values.valkey.replicas) 2) 1 -}}{{- else -}}{{- $q -}}{{- end -}}
{{- end -}}

{{/* The environment the HA scripts share in the server and Sentinel containers (docs/ha-design.md). */}}
{{- define "alert-history.redis.haEnv" -}}
{{- $v := .Values.valkey -}}
{{ include "alert-history.redis.haNodesEnv" . }}
- name: HA_SENTINEL_USER
  value: {{ $v.acl.sentinelUser | quote }}
- name: HA_SENTINEL_PASSWORD_FILE
  value: {{ printf "/etc/valkey-secret/%s" $v.password.sentinelSecretKey | quote }}
- name: HA_BOOTSTRAP_TIMEOUT
  value: {{ $v.replication.bootstrapTimeout | quote }}
{{- end -}}

{{/* Where the data pods' Sentinels are, without any password: for the tls-reloader too. */}}
{{- define "alert-history.redis.haNodesEnv" -}}
{{- $v := .Values.valkey -}}
- name: HA_NODES
  value: {{ include "alert-history.redis.nodes" . | quote }}
- name: SENTINEL_PORT
  value: {{ $v.sentinel.port | quote }}
- name: HA_MASTER_SET
  value: {{ $v.sentinel.masterSet | quote }}
{{- end -}}

{{- define "alert-history.redis.configName" -}}
{{- printf "%s-config" (include "alert-history.redis.fullname" .) -}}
{{- end -}}

{{- define "alert-history.redis.scriptsName" -}}
{{- printf "%s-scripts" (include "alert-history.redis.fullname" .) -}}
{{- end -}}

{{/*
Bytes of a Valkey memory setting (384mb, 1gb, 100000) or a Kubernetes quantity (512Mi, 1G, 0.5Gi).
Valkey: k=1000 kb=1024 m=10^6 mb=2^20 g=10^9 gb=2^30, case-insensitive. Kubernetes: Ki Mi Gi Ti binary, k M G T decimal.
Prints an integer, or "invalid".
*/}}
{{- define "alert-history.bytes" -}}
{{- $s := toString . | trim -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s -}}
{{- $unit := trimPrefix $num $s -}}
{{- $mult := dict "" 1.0 "b" 1.0 "k" 1000.0 "kb" 1024.0 "m" 1000000.0 "mb" 1048576.0 "g" 1000000000.0 "gb" 1073741824.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "K" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 -}}
{{- $lower := dict "k" true "kb" true "m" true "mb" true "g" true "gb" true "b" true -}}
{{- if hasKey $lower (lower $unit) -}}
{{- $unit = lower $unit -}}
{{- end -}}
{{- if and $num (hasKey $mult $unit) -}}
{{- mulf (float64 $num) (get $mult $unit) | int64 -}}
{{- else -}}
invalid
{{- end -}}
{{- end -}}

{{/* Millicores of a Kubernetes CPU quantity (500m, 0.5, 2 or a number). */}}
{{- define "alert-history.millicores" -}}
{{- $s := toString . | trim -}}
{{- if hasSuffix "m" $s -}}
{{- trimSuffix "m" $s | float64 | int64 -}}
{{- else -}}
{{- mulf (float64 $s) 1000.0 | int64 -}}
{{- end -}}
{{- end -}}

{{/*
Cross-field checks that the schema cannot express. Every failure is collected, then the render fails once,
naming each key.
*/}}
{{- define "alert-history.validateValues" -}}
{{- $errors := list -}}
{{- $v := .Values.valkey -}}
{{- if include "alert-history.redis.enabled" . -}}
{{- $replication := eq $v.architecture "replication" -}}
{{- range (include "alert-history.tls.errors" . | trim | splitList "\n") -}}
{{- if . -}}{{- $errors = append $errors . -}}{{- end -}}
{{- end -}}
{{- if and (not $replication) (gt (int $v.replicas) 1) -}}
{{- $errors = append $errors (printf "valkey.replicas: %v pods would be independent caches with valkey.architecture standalone; use 0 or 1, or valkey.architecture: replication with at least 3" $v.replicas) -}}
{{- end -}}
{{- if $replication -}}
{{- $r := $v.replication -}}
{{- if lt (int $v.replicas) 3 -}}
{{- $errors = append $errors (printf "valkey.replicas: %v with valkey.architecture replication; it needs at least 3 (a primary and two replicas, so a majority of the Sentinels survives the loss of one pod)" $v.replicas) -}}
{{- end -}}
{{- if gt (int $v.sentinel.quorum) (int $v.replicas) -}}
{{- $errors = append $errors (printf "valkey.sentinel.quorum: %v is more than the %v Sentinels (one per data pod); no failover could ever be agreed" $v.sentinel.quorum $v.replicas) -}}
{{- end -}}
{{- if ge (int $r.minReplicasToWrite) (int $v.replicas) -}}
{{- $errors = append $errors (printf "valkey.replication.minReplicasToWrite: %v needs more replicas than the %v data pods minus the primary; the primary would refuse every write" $r.minReplicasToWrite $v.replicas) -}}
{{- end -}}
{{- if le (int $v.terminationGracePeriodSeconds) (add (int $r.preStopTimeout) (int $r.preStopDrainSeconds) (int $v.settings.shutdownTimeout)) -}}
{{- $errors = append $errors (printf "valkey.terminationGracePeriodSeconds: %v must be greater than valkey.replication.preStopTimeout (%v) + valkey.replication.preStopDrainSeconds (%v) + valkey.settings.shutdownTimeout (%v); the preStop failover, its drain and the shutdown share the grace period" $v.terminationGracePeriodSeconds $r.preStopTimeout $r.preStopDrainSeconds $v.settings.shutdownTimeout) -}}
{{- end -}}
{{- if lt (int $r.preStopTimeout) (add (int $r.preStopSyncTimeout) 5) -}}
{{- $errors = append $errors (printf "valkey.replication.preStopTimeout: %v leaves less than 5 s for the failover after valkey.replication.preStopSyncTimeout (%v)" $r.preStopTimeout $r.preStopSyncTimeout) -}}
{{- end -}}
{{- $startup := mul (int $v.probes.startup.periodSeconds) (int $v.probes.startup.failureThreshold) -}}
{{- if le $startup (add (int $r.bootstrapTimeout) 30) -}}
{{- $errors = append $errors (printf "valkey.probes.startup: periodSeconds x failureThreshold = %ds must exceed valkey.replication.bootstrapTimeout (%v) + 30 s; the role is decided before the server loads its data" $startup $r.bootstrapTimeout) -}}
{{- end -}}
{{- $ports := dict "valkey.service.port" $v.service.port "valkey.sentinel.port" $v.sentinel.port -}}
{{- if $v.exporter.enabled -}}
{{- $_ := set $ports "valkey.exporter.port" $v.exporter.port -}}
{{- $_ := set $ports "valkey.exporter.sentinelPort" $v.exporter.sentinelPort -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $key := keys $ports | sortAlpha -}}
{{- $port := toString (get $ports $key) -}}
{{- if hasKey $seen $port -}}
{{- $errors = append $errors (printf "%s: %s is also %s; the data pod's containers share one network" $key $port (get $seen $port)) -}}
{{- else -}}
{{- $_ := set $seen $port $key -}}
{{- end -}}
{{- end -}}
{{- if eq (int $v.haproxy.metricsPort) (int $v.service.port) -}}
{{- $errors = append $errors (printf "valkey.haproxy.metricsPort: %v is also valkey.service.port, which HAProxy listens on" $v.haproxy.metricsPort) -}}
{{- end -}}
{{- /*
RedisReplicationLag: both lag series end at repl-timeout (the primary drops a silent replica; the replica's
link goes down). The scrapes that are sure to fall between lag > threshold and then must cover `for` plus one
evaluation interval (the scrape interval when evaluationInterval is empty), or the alert can never fire.
*/ -}}
{{- $lag := .Values.monitoring.rules.redisReplicationLag | default dict -}}
{{- $scrape := float64 (include "alert-history.monitoring.seconds" $v.exporter.serviceMonitor.interval) -}}
{{- if and (include "alert-history.monitoring.enabled" .) $lag.enabled (gt $scrape 0.0) -}}
{{- $replTimeout := 60 -}}
{{- range regexFindAll "(?im)^[ \\t]*repl-timeout[ \\t]+[0-9]+" (toString $v.extraConfig) -1 -}}
{{- $replTimeout = int (regexFind "[0-9]+$" .) -}}
{{- end -}}
{{- $eval := float64 (include "alert-history.monitoring.seconds" $.Values.monitoring.prometheusRule.evaluationInterval) -}}
{{- if eq $eval 0.0 -}}{{- $eval = $scrape -}}{{- end -}}
{{- $forS := float64 (include "alert-history.monitoring.seconds" $lag.for) -}}
{{- /* lag > threshold means threshold + 1 whole seconds; the primary drops the replica once lag exceeds repl-timeout. */ -}}
{{- $scrapes := floor (divf (subf $replTimeout $lag.threshold 1) $scrape) -}}
{{- if lt (mulf (max 0 $scrapes) $scrape) (addf $forS $eval) -}}
{{- $errors = append $errors (printf "monitoring.rules.redisReplicationLag.threshold (%v) with monitoring.rules.redisReplicationLag.for (%v) can never fire: the lag series end at repl-timeout (%d s), so scrapes every %vs (valkey.exporter.serviceMonitor.interval) are sure to show a lag above the threshold for only %vs, less than `for` plus one evaluation interval (%vs, monitoring.prometheusRule.evaluationInterval or else the scrape interval); lower the threshold or `for`" $lag.threshold $lag.for $replTimeout $scrape (mulf (max 0 $scrapes) $scrape) $eval) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $max := include "alert-history.bytes" $v.settings.maxmemory -}}
{{- $limitQ := "" -}}
{{- if and $v.resources $v.resources.limits -}}{{- $limitQ = $v.resources.limits.memory | default "" -}}{{- end -}}
{{- if eq $max "invalid" -}}
{{- $errors = append $errors (printf "valkey.settings.maxmemory: %q is not a memory size such as 384mb or 1gb" (toString $v.settings.maxmemory)) -}}
{{- else if $limitQ -}}
{{- $limit := include "alert-history.bytes" $limitQ -}}
{{- if eq $limit "invalid" -}}
{{- $errors = append $errors (printf "valkey.resources.limits.memory: %q is not a Kubernetes memory quantity such as 512Mi" (toString $limitQ)) -}}
{{- else -}}
{{- $ceiling := div (mul (int64 $limit) (int64 $v.settings.maxmemoryLimitPercent)) 100 -}}
{{- if eq (int64 $max) 0 -}}
{{- $errors = append $errors (printf "valkey.settings.maxmemory: 0 (unlimited) with valkey.resources.limits.memory %s lets the dataset grow until the pod is OOMKilled; set maxmemory to at most %d bytes (%v%% of the limit)" (toString $limitQ) $ceiling $v.settings.maxmemoryLimitPercent) -}}
{{- else if gt (int64 $max) $ceiling -}}
{{- $errors = append $errors (printf "valkey.settings.maxmemory: %s (%s bytes) must not exceed %v%% of valkey.resources.limits.memory %s, that is %d bytes; fork and buffers need the rest (valkey.settings.maxmemoryLimitPercent)" (toString $v.settings.maxmemory) $max $v.settings.maxmemoryLimitPercent (toString $limitQ) $ceiling) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if le (int $v.terminationGracePeriodSeconds) (int $v.settings.shutdownTimeout) -}}
{{- $errors = append $errors (printf "valkey.terminationGracePeriodSeconds: %v must be greater than valkey.settings.shutdownTimeout (%v), or a deleted pod is killed before its AOF is flushed" $v.terminationGracePeriodSeconds $v.settings.shutdownTimeout) -}}
{{- end -}}
{{- if and (not $v.settings.appendonly) (empty $v.settings.save) -}}
{{- $errors = append $errors "valkey.settings.appendonly: false together with an empty valkey.settings.save turns persistence off, but the data volume implies persistence; enable one of them" -}}
{{- end -}}
{{- $p := $v.password -}}
{{- $keys := list $p.secretKey $p.exporterSecretKey $p.adminSecretKey -}}
{{- if ne (len (uniq $keys)) 3 -}}
{{- $errors = append $errors (printf "valkey.password.secretKey, valkey.password.exporterSecretKey, valkey.password.adminSecretKey: must be three different keys, got %v" $keys) -}}
{{- end -}}
{{- $users := list $v.acl.applicationUser $v.acl.exporterUser $v.acl.adminUser "default" "probe" -}}
{{- if ne (len (uniq $users)) 5 -}}
{{- $errors = append $errors (printf "valkey.acl.applicationUser, valkey.acl.exporterUser, valkey.acl.adminUser: must differ from each other and from the reserved users default and probe, got %v" (list $v.acl.applicationUser $v.acl.exporterUser $v.acl.adminUser)) -}}
{{- end -}}
{{- if $replication -}}
{{- $haKeys := concat $keys (list $p.replicationSecretKey $p.sentinelSecretKey $p.haproxySecretKey) -}}
{{- if ne (len (uniq $haKeys)) 6 -}}
{{- $errors = append $errors (printf "valkey.password.replicationSecretKey, valkey.password.sentinelSecretKey, valkey.password.haproxySecretKey: must differ from each other and from the other password keys, got %v" $haKeys) -}}
{{- end -}}
{{- $haUsers := concat $users (list $v.acl.replicationUser $v.acl.sentinelUser $v.acl.haproxyUser) -}}
{{- if ne (len (uniq $haUsers)) 8 -}}
{{- $errors = append $errors (printf "valkey.acl.replicationUser, valkey.acl.sentinelUser, valkey.acl.haproxyUser: must differ from each other, from the other users and from default and probe, got %v" (list $v.acl.replicationUser $v.acl.sentinelUser $v.acl.haproxyUser)) -}}
{{- end -}}
{{- end -}}
{{- if and $v.pdb.enabled (eq (int $v.pdb.maxUnavailable) 0) -}}
{{- $errors = append $errors "valkey.pdb.maxUnavailable: 0 blocks every node drain forever; use 1 or disable the PDB" -}}
{{- end -}}
{{- $budget := mul (int $v.probes.startup.periodSeconds) (int $v.probes.startup.failureThreshold) -}}
{{- if lt $budget 30 -}}
{{- $errors = append $errors (printf "valkey.probes.startup: periodSeconds x failureThreshold = %ds is below 30s, too short to load even a small dataset" $budget) -}}
{{- end -}}
{{- if and .Values.monitoring.prometheusEnabled (not $v.exporter.enabled) -}}
{{- $errors = append $errors "monitoring.prometheusEnabled: true needs valkey.exporter.enabled: true (the ServiceMonitor scrapes the exporter)" -}}
{{- end -}}
{{- if and $v.exporter.enabled (eq (int $v.exporter.port) (int $v.service.port)) -}}
{{- $errors = append $errors (printf "valkey.exporter.port: %v is also valkey.service.port; the exporter and the server share the pod's network" $v.exporter.port) -}}
{{- end -}}
{{- if regexMatch "(?im)^[ \\t]*(requirepass|masterauth|masteruser|user|aclfile)([ \\t]|$)" (toString $v.extraConfig) -}}
{{- $errors = append $errors "valkey.extraConfig: requirepass, masterauth, masteruser, user and aclfile lines are refused; passwords would sit in a ConfigMap (they belong in the Secret) and user lines beside aclfile stop the server" -}}
{{- end -}}
{{- /* What the API server would refuse at apply time, refused here with the key named. */ -}}
{{- if regexMatch "^0+(\\.0+)?([KMGTPE]i?|k|m)?$" (toString $v.storage.requestedSize) -}}
{{- $errors = append $errors (printf "valkey.storage.requestedSize: %q requests no storage; the API server refuses a PersistentVolumeClaim with a zero request" (toString $v.storage.requestedSize)) -}}
{{- end -}}
{{- $allResources := dict "valkey.resources" $v.resources "valkey.exporter.resources" $v.exporter.resources "valkey.configInit.resources" $v.configInit.resources -}}
{{- if $replication -}}
{{- $_ := set $allResources "valkey.sentinel.resources" $v.sentinel.resources -}}
{{- $_ := set $allResources "valkey.haproxy.resources" $v.haproxy.resources -}}
{{- end -}}
{{- range $key, $res := $allResources -}}
{{- $req := $res.requests | default dict -}}
{{- $lim := $res.limits | default dict -}}
{{- if and $req.memory $lim.memory (ne (include "alert-history.bytes" $req.memory) "invalid") (ne (include "alert-history.bytes" $lim.memory) "invalid") -}}
{{- if gt (int64 (include "alert-history.bytes" $req.memory)) (int64 (include "alert-history.bytes" $lim.memory)) -}}
{{- $errors = append $errors (printf "%s.requests.memory: %v is above %s.limits.memory %v; the API server refuses a request above its limit" $key $req.memory $key $lim.memory) -}}
{{- end -}}
{{- end -}}
{{- if and $req.cpu $lim.cpu -}}
{{- if gt (int64 (include "alert-history.millicores" $req.cpu)) (int64 (include "alert-history.millicores" $lim.cpu)) -}}
{{- $errors = append $errors (printf "%s.requests.cpu: %v is above %s.limits.cpu %v; the API server refuses a request above its limit" $key $req.cpu $key $lim.cpu) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Container names are unique across the pod's init and regular containers. */ -}}
{{- $containers := list "config-init" "valkey" -}}
{{- if $v.exporter.enabled -}}{{- $containers = append $containers "exporter" -}}{{- end -}}
{{- if $replication -}}
{{- $containers = append $containers "sentinel" -}}
{{- if $v.exporter.enabled -}}{{- $containers = append $containers "sentinel-exporter" -}}{{- end -}}
{{- end -}}
{{- if and $v.tls.enabled (not (include "alert-history.tls.builtinReload" $)) -}}{{- $containers = append $containers "tls-reloader" -}}{{- end -}}
{{- /* Volume names: the chart's own, then valkey.extraVolumes. */ -}}
{{- $volumes := list "data" "config" "scripts" "secret" "run" "tmp" -}}
{{- if $v.exporter.enabled -}}{{- $volumes = append $volumes "exporter-run" -}}{{- end -}}
{{- if $replication -}}{{- $volumes = append $volumes "ha-secret" -}}{{- end -}}
{{- if $v.tls.enabled -}}{{- $volumes = concat $volumes (list "tls" "tls-admin") -}}{{- end -}}
{{- range $i, $vol := $v.extraVolumes -}}
{{- if has $vol.name $volumes -}}
{{- $errors = append $errors (printf "valkey.extraVolumes[%d].name: %q is already a volume of the pod (%s)" $i $vol.name (join ", " $volumes)) -}}
{{- end -}}
{{- $volumes = append $volumes $vol.name -}}
{{- end -}}
{{- $paths := list "/data" "/etc/valkey" "/scripts" "/run/valkey" "/tmp" -}}
{{- if $replication -}}{{- $paths = append $paths "/etc/valkey-secret" -}}{{- end -}}
{{- if $v.tls.enabled -}}{{- $paths = append $paths "/etc/valkey-tls" -}}{{- end -}}
{{- range $i, $m := $v.extraVolumeMounts -}}
{{- if not (has $m.name $volumes) -}}
{{- $errors = append $errors (printf "valkey.extraVolumeMounts[%d].name: no volume %q in the pod; add it to valkey.extraVolumes" $i $m.name) -}}
{{- end -}}
{{- if has (trimSuffix "/" $m.mountPath) $paths -}}
{{- $errors = append $errors (printf "valkey.extraVolumeMounts[%d].mountPath: %s is already mounted in the valkey container" $i $m.mountPath) -}}
{{- end -}}
{{- $paths = append $paths (trimSuffix "/" $m.mountPath) -}}
{{- end -}}
{{- range $list := list "initContainers" "sidecars" -}}
{{- range $i, $c := get $v $list -}}
{{- if has $c.name $containers -}}
{{- $errors = append $errors (printf "valkey.%s[%d].name: %q is already a container of the pod (%s)" $list $i $c.name (join ", " $containers)) -}}
{{- end -}}
{{- $containers = append $containers $c.name -}}
{{- $own := list -}}
{{- range $j, $m := $c.volumeMounts -}}
{{- if not (has $m.name $volumes) -}}
{{- $errors = append $errors (printf "valkey.%s[%d].volumeMounts[%d].name: no volume %q in the pod; add it to valkey.extraVolumes" $list $i $j $m.name) -}}
{{- end -}}
{{- if has (trimSuffix "/" $m.mountPath) $own -}}
{{- $errors = append $errors (printf "valkey.%s[%d].volumeMounts[%d].mountPath: %s is mounted twice in container %s" $list $i $j $m.mountPath $c.name) -}}
{{- end -}}
{{- $own = append $own (trimSuffix "/" $m.mountPath) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $p.existingSecret -}}
{{- $given := list -}}
{{- range $k := list "application" "exporter" "admin" "applicationNext" "exporterNext" "adminNext" "replication" "sentinel" "haproxy" "replicationNext" "sentinelNext" "haproxyNext" "backup" "backupNext" -}}
{{- if get $p $k -}}{{- $given = append $given (printf "valkey.password.%s" $k) -}}{{- end -}}
{{- end -}}
{{- if $given -}}
{{- $errors = append $errors (printf "%s: ignored with valkey.password.existingSecret %q; put the password into that Secret instead" (join ", " $given) $p.existingSecret) -}}
{{- end -}}
{{- end -}}
{{- /* Backups */ -}}
{{- if .Values.backup.enabled -}}
{{- if eq (int $v.replicas) 0 -}}
{{- $errors = append $errors "backup.enabled: valkey.replicas is 0, so there is no server to back up; set valkey.replicas or backup.enabled: false" -}}
{{- end -}}
{{- if has .Values.backup.acl.user (list $v.acl.applicationUser $v.acl.exporterUser $v.acl.adminUser $v.acl.replicationUser $v.acl.sentinelUser $v.acl.haproxyUser "default" "probe") -}}
{{- $errors = append $errors (printf "backup.acl.user: %q is already another ACL user of the chart; the backup user must have a name of its own" .Values.backup.acl.user) -}}
{{- end -}}
{{- if regexMatch "^0+(\\.0+)?([KMGTPE]i?|k|m)?$" (toString .Values.backup.storage.requestedSize) -}}
{{- $errors = append $errors (printf "backup.storage.requestedSize: %q requests no storage; the API server refuses a PersistentVolumeClaim with a zero request" (toString .Values.backup.storage.requestedSize)) -}}
{{- end -}}
{{- $window := add (int .Values.backup.startingDeadlineSeconds) (int .Values.backup.activeDeadlineSeconds) -}}
{{- if le (float64 (include "alert-history.monitoring.seconds" .Values.backup.alert.maxAge)) (float64 $window) -}}
{{- $errors = append $errors (printf "backup.alert.maxAge: %s is not above backup.startingDeadlineSeconds + backup.activeDeadlineSeconds (%d s); a run that starts late and takes its whole deadline would fire RedisBackupTooOld. Set it to the schedule's interval plus those deadlines" .Values.backup.alert.maxAge $window) -}}
{{- end -}}
{{- $rc := .Values.backup.rclone -}}
{{- if and $rc.enabled (not $rc.existingSecret) -}}
{{- $errors = append $errors (printf "backup.rclone.existingSecret: empty with backup.rclone.enabled; create a Secret whose key %q holds the rclone config file that defines the remote, and name it here" $rc.secretKey) -}}
{{- end -}}
{{- if and $rc.enabled (not $rc.remote) -}}
{{- $errors = append $errors "backup.rclone.remote: empty with backup.rclone.enabled; set the destination folder as <remote name in the rclone config>:<path>/, for example offsite:alert-history/" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\ninvalid values:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}

{{/* A seccompProfile from values: type, plus localhostProfile when set. */}}
{{- define "alert-history.seccompProfile" -}}
type: {{ .type }}
{{- with .localhostProfile }}
localhostProfile: {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
Container security context of every container the chart defines, from valkey.containerSecurityContext. The schema
keeps it within the "restricted" Pod Security Standard.
*/}}
{{- define "alert-history.containerSecurityContext" -}}
{{- $c := .Values.valkey.containerSecurityContext -}}
runAsNonRoot: {{ $c.runAsNonRoot }}
runAsUser: {{ $c.runAsUser }}
runAsGroup: {{ $c.runAsGroup }}
allowPrivilegeEscalation: {{ $c.allowPrivilegeEscalation }}
readOnlyRootFilesystem: {{ $c.readOnlyRootFilesystem }}
privileged: {{ $c.privileged }}
capabilities:
  drop: {{ toJson $c.capabilities.drop }}
  {{- with $c.capabilities.add }}
  add: {{ toJson . }}
  {{- end }}
seccompProfile:
  {{- include "alert-history.seccompProfile" $c.seccompProfile | nindent 2 }}
{{- end -}}

{{/*
Pod security context from valkey.podSecurityContext. Call with (dict "root" $ "volumes" true): the fsGroup fields
only matter to a pod with volumes (the StatefulSet, not the helm test pod).
*/}}
{{- define "alert-history.podSecurityContext" -}}
{{- $p := .root.Values.valkey.podSecurityContext -}}
runAsNonRoot: {{ $p.runAsNonRoot }}
runAsUser: {{ $p.runAsUser }}
runAsGroup: {{ $p.runAsGroup }}
{{- if .volumes }}
fsGroup: {{ $p.fsGroup }}
fsGroupChangePolicy: {{ $p.fsGroupChangePolicy }}
{{- end }}
{{- with $p.supplementalGroups }}
supplementalGroups: {{ toJson . }}
{{- end }}
{{- with $p.sysctls }}
sysctls:
  {{- toYaml . | nindent 2 }}
{{- end }}
seccompProfile:
  {{- include "alert-history.seccompProfile" $p.seccompProfile | nindent 2 }}
{{- end -}}

{{/* Backups (backup.*): on when backup.enabled and the cache tier renders. */}}
{{- define "alert-history.backup.enabled" -}}
{{- if and (include "alert-history.redis.enabled" .) .Values.backup.enabled -}}true{{- end -}}
{{- end -}}

{{- define "alert-history.backup.name" -}}
{{- printf "%s-backup" (include "alert-history.redis.fullname" .) -}}
{{- end -}}

{{/* Labels of the backup objects; the component is backup, so no data-pod selector matches its pods. */}}
{{- define "alert-history.backup.labels" -}}
{{ include "alert-history.labels" . }}
app.kubernetes.io/component: backup
{{- end -}}

{{- define "alert-history.backup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alert-history.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: backup
{{- end -}}
