{{/* TLS helpers (valkey.tls); docs/security.md, "TLS". */}}

{{/* True when the cache tier renders with TLS on. */}}
{{- define "alert-history.tls.enabled" -}}
{{- if and (include "alert-history.redis.enabled" .) .Values.valkey.tls.enabled -}}true{{- end -}}
{{- end -}}

{{/* Where every container mounts the TLS Secret. Never a subPath: kubelet swaps the ..data link on renewal. */}}
{{- define "alert-history.tls.dir" -}}/etc/valkey-tls{{- end -}}

{{/* The Secret holding the key pair and CA: existingSecret, else the one the Certificate writes. */}}
{{- define "alert-history.tls.secretName" -}}
{{- default (printf "%s-tls" (include "alert-history.redis.fullname" .)) .Values.valkey.tls.existingSecret -}}
{{- end -}}

{{- define "alert-history.tls.certFile" -}}{{ include "alert-history.tls.dir" . }}/{{ .Values.valkey.tls.certKey }}{{- end -}}
{{- define "alert-history.tls.keyFile" -}}{{ include "alert-history.tls.dir" . }}/{{ .Values.valkey.tls.keyKey }}{{- end -}}
{{- define "alert-history.tls.caFile" -}}{{ include "alert-history.tls.dir" . }}/{{ .Values.valkey.tls.caKey }}{{- end -}}

{{/* True when the pod's own clients present a certificate (the server asks for one). */}}
{{- define "alert-history.tls.clientCert" -}}
{{- if ne .Values.valkey.tls.authClients "no" -}}true{{- end -}}
{{- end -}}

{{/*
True when the server reloads its certificate by itself: Valkey 9.1 and later (tls-auto-reload-interval). Redis 7 and
Valkey 8.1 never do (redis/redis#8756), so the tls-reloader container does it for them; an image tag that names no
version (latest, a digest only) gets the reloader too, which works on every version.
*/}}
{{- define "alert-history.tls.builtinReload" -}}
{{- if eq (include "alert-history.redis.engine" .) "valkey" -}}
{{- $m := regexFind "^v?[0-9]+\\.[0-9]+" (toString .Values.valkey.image.tag) | trimPrefix "v" -}}
{{- if $m -}}
{{- $major := int (index (splitList "." $m) 0) -}}
{{- $minor := int (index (splitList "." $m) 1) -}}
{{- if or (gt $major 9) (and (eq $major 9) (ge $minor 1)) -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Every name a client may dial, one per line: the client Service (short to fully qualified), the headless Service and
each data pod's name under it, the Sentinel Service with replication, and localhost for the pod's own containers.
*/}}
{{- define "alert-history.tls.dnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- $domain := .Values.clusterDomain -}}
{{- $services := list (include "alert-history.redis.fullname" .) (include "alert-history.redis.headlessName" .) -}}
{{- if include "alert-history.redis.replication" . -}}
{{- $services = append $services (include "alert-history.redis.sentinelName" .) -}}
{{- end -}}
{{- range $services }}
{{ . }}
{{ . }}.{{ $ns }}
{{ . }}.{{ $ns }}.svc
{{ . }}.{{ $ns }}.svc.{{ $domain }}
{{- end }}
{{- range $i := until (int .Values.valkey.replicas) }}
{{ include "alert-history.redis.podDNSName" (dict "root" $ "ordinal" $i) }}
{{- end }}
localhost
{{- end -}}

{{/* The CLI's TLS environment of the probes and HA scripts (read by probe-common.sh and ha-common.sh). */}}
{{- define "alert-history.tls.cliEnv" -}}
{{- if include "alert-history.tls.enabled" . }}
- name: VALKEY_TLS_CA_FILE
  value: {{ include "alert-history.tls.caFile" . | quote }}
{{- if include "alert-history.tls.clientCert" . }}
- name: VALKEY_TLS_CERT_FILE
  value: {{ include "alert-history.tls.certFile" . | quote }}
- name: VALKEY_TLS_KEY_FILE
  value: {{ include "alert-history.tls.keyFile" . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The TLS Secret volume of the data pods and the helm test pod. */}}
{{- define "alert-history.tls.volume" -}}
- name: tls
  secret:
    secretName: {{ include "alert-history.tls.secretName" . }}
    defaultMode: 0400
{{- end -}}

{{/* Render-time refusals of valkey.tls, one message per line (validateValues collects them). */}}
{{- define "alert-history.tls.errors" -}}
{{- $v := .Values.valkey -}}
{{- $t := $v.tls -}}
{{- if $t.enabled -}}
{{- if and (not $t.existingSecret) (not $t.certManager.issuerRef.name) }}
valkey.tls.enabled: true needs valkey.tls.existingSecret (a Secret with the keys {{ $t.certKey }}, {{ $t.keyKey }}, {{ $t.caKey }}) or valkey.tls.certManager.issuerRef.name (a cert-manager Certificate then writes the Secret)
{{- end }}
{{- if ne (len (uniq (list $t.certKey $t.keyKey $t.caKey))) 3 }}
valkey.tls.certKey, valkey.tls.keyKey, valkey.tls.caKey: must be three different keys, got {{ list $t.certKey $t.keyKey $t.caKey }}
{{- end }}
{{- $taken := dict (toString $v.service.port) "valkey.service.port" -}}
{{- if $v.exporter.enabled -}}{{- $_ := set $taken (toString $v.exporter.port) "valkey.exporter.port" -}}{{- end -}}
{{- if eq $v.architecture "replication" -}}{{- $_ := set $taken (toString $v.sentinel.port) "valkey.sentinel.port" -}}{{- end -}}
{{- if and (ne (int $t.plaintextPort) 0) (eq $v.architecture "replication") }}
valkey.tls.plaintextPort: a plaintext port with valkey.architecture replication is not supported (HAProxy and Sentinel speak TLS only); migrate with downtime or while standalone
{{- end }}
{{- if and (ne (int $t.plaintextPort) 0) (hasKey $taken (toString $t.plaintextPort)) }}
valkey.tls.plaintextPort: {{ $t.plaintextPort }} is also {{ get $taken (toString $t.plaintextPort) }}; the plaintext port needs a port of its own
{{- end }}
{{- $probe := $t.expiryProbe | default dict -}}
{{- if and $probe.enabled (not $probe.proberUrl) }}
valkey.tls.expiryProbe.proberUrl: empty; with valkey.tls.expiryProbe.enabled it must be the host:port of your blackbox exporter (for example prometheus-blackbox-exporter.monitoring.svc:9115)
{{- end }}
{{- if and $probe.enabled (gt (float64 (include "alert-history.monitoring.seconds" $probe.scrapeTimeout)) (float64 (include "alert-history.monitoring.seconds" $probe.interval))) }}
valkey.tls.expiryProbe.scrapeTimeout: {{ $probe.scrapeTimeout }} must not exceed valkey.tls.expiryProbe.interval ({{ $probe.interval }}); Prometheus refuses such a scrape config
{{- end }}
{{- /* A renewal that works must never fire the expiry alert: its threshold sits below cert-manager's renewal
     point, renewBefore (the chart always sets it, so cert-manager's default of 2/3 of the life never applies). */}}
{{- $rule := (index .Values.monitoring.rules "redisTLSCertificateExpiringSoon") | default dict -}}
{{- if and $probe.enabled $rule.enabled $t.certManager.issuerRef.name }}
{{- $renewAt := float64 (include "alert-history.monitoring.seconds" $t.certManager.renewBefore) -}}
{{- if ge (mulf (float64 $rule.thresholdDays) 86400.0) $renewAt }}
monitoring.rules.redisTLSCertificateExpiringSoon.thresholdDays: {{ $rule.thresholdDays }} days is not below the renewal point of valkey.tls.certManager ({{ divf $renewAt 86400.0 }} days before expiry): every renewal would fire the alert first; lower it or raise valkey.tls.certManager.renewBefore
{{- end }}
{{- end }}
{{- else -}}
{{- if ($t.expiryProbe | default dict).enabled }}
valkey.tls.expiryProbe.enabled: true but valkey.tls.enabled is false; there is no certificate to probe
{{- end }}
{{- if $t.certManager.issuerRef.name }}
valkey.tls.certManager.issuerRef.name: {{ $t.certManager.issuerRef.name | quote }} is set but valkey.tls.enabled is false; no Certificate would be used
{{- end }}
{{- if ne (int $t.plaintextPort) 0 }}
valkey.tls.plaintextPort: {{ $t.plaintextPort }} is set but valkey.tls.enabled is false; the server port is plaintext already
{{- end }}
{{- end -}}
{{- end -}}

{{/* redis_exporter's TLS settings: the CA, and with client certificates the pod's key pair. */}}
{{- define "alert-history.tls.exporterEnv" -}}
{{- if include "alert-history.tls.enabled" . }}
- name: REDIS_EXPORTER_TLS_CA_CERT_FILE
  value: {{ include "alert-history.tls.caFile" . | quote }}
{{- if include "alert-history.tls.clientCert" . }}
- name: REDIS_EXPORTER_TLS_CLIENT_CERT_FILE
  value: {{ include "alert-history.tls.certFile" . | quote }}
- name: REDIS_EXPORTER_TLS_CLIENT_KEY_FILE
  value: {{ include "alert-history.tls.keyFile" . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* True when the Probe of the served certificates and its alerts render. */}}
{{- define "alert-history.tls.expiryProbe" -}}
{{- if and (include "alert-history.tls.enabled" .) (include "alert-history.monitoring.enabled" .) (.Values.valkey.tls.expiryProbe | default dict).enabled -}}true{{- end -}}
{{- end -}}

{{/* The Probe's job label and its PromQL label matchers (the Probe's targets carry its namespace). */}}
{{- define "alert-history.tls.probeJob" -}}{{ include "alert-history.redis.fullname" . }}-tls{{- end -}}
{{/* True when the tls-reloader restarts the pods' Sentinels after a renewal: replication with TLS on an engine whose
Sentinel never reloads a certificate (the statefulset's volumes and env, and the Sentinel user in configmap.yaml). */}}
{{- define "alert-history.tls.sentinelRestart" -}}
{{- if and (include "alert-history.redis.replication" .) (include "alert-history.tls.enabled" .) (not (include "alert-history.tls.builtinReload" .)) -}}true{{- end -}}
{{- end -}}

{{/* The ports the expiry Probe dials on each data pod, space-separated: the server's, and with replication the Sentinel's. */}}
{{- define "alert-history.tls.probePorts" -}}
{{- $v := .Values.valkey -}}
{{- $v.service.port }}{{ if include "alert-history.redis.replication" . }} {{ $v.sentinel.port }}{{ end -}}
{{- end -}}

{{- define "alert-history.tls.probeSelector" -}}
{{- printf "job=%q,namespace=%q" (include "alert-history.tls.probeJob" .) .Release.Namespace -}}
{{- end -}}
