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

{{/* repository:tag, or repository@digest when a digest is given. Call with an image dict. */}}
{{- define "alert-history.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
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

{{/*
Cross-field checks that the schema cannot express. Every failure is collected, then the render fails once,
naming each key.
*/}}
{{- define "alert-history.validateValues" -}}
{{- $errors := list -}}
{{- $v := .Values.valkey -}}
{{- if include "alert-history.redis.enabled" . -}}
{{- if gt (int $v.replicas) 1 -}}
{{- $errors = append $errors (printf "valkey.replicas: %v pods would be independent caches; replication is not implemented yet, use 0 or 1" $v.replicas) -}}
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
{{- if $p.existingSecret -}}
{{- $given := list -}}
{{- range $k := list "application" "exporter" "admin" "applicationNext" "exporterNext" "adminNext" -}}
{{- if get $p $k -}}{{- $given = append $given (printf "valkey.password.%s" $k) -}}{{- end -}}
{{- end -}}
{{- if $given -}}
{{- $errors = append $errors (printf "%s: ignored with valkey.password.existingSecret %q; put the password into that Secret instead" (join ", " $given) $p.existingSecret) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\ninvalid values:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}

{{/* Container security context that meets the "restricted" Pod Security Standard. */}}
{{- define "alert-history.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.valkey.securityContext.runAsUser }}
runAsGroup: {{ .Values.valkey.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
