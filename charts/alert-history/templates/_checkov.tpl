{{/*
checkov checks the chart skips by design, as `checkov.io/skipN: CHECK=reason` annotations, only where the values
make the check fail. docs/security.md lists each with its reason; tests/security/test_checkov.py proves zero failures.
Call with (dict "root" $ "kind" "statefulset"), (dict "root" $ "kind" "haproxy"), (dict "root" $ "kind" "backup")
or (dict "root" $ "kind" "test-pod").
*/}}
{{- define "alert-history.checkovSkips" -}}
{{- $v := .root.Values.valkey -}}
{{- $e := $v.exporter -}}
{{- $exporter := and (eq .kind "statefulset") $e.enabled -}}
{{- $skips := list -}}
{{- if eq .kind "haproxy" -}}
{{- $h := $v.haproxy.image -}}
{{- if not $h.digest -}}
{{- $skips = append $skips "CKV_K8S_43=a digest cannot be defaulted; pin the HAProxy image with valkey.haproxy.image.digest" -}}
{{- end -}}
{{- if and (not $h.digest) (ne $h.pullPolicy "Always") -}}
{{- $skips = append $skips "CKV_K8S_15=IfNotPresent by default so a registry outage cannot block a restart of HAProxy; pin a digest or set valkey.haproxy.image.pullPolicy to Always" -}}
{{- end -}}
{{- else if and (eq .kind "backup") .root.Values.backup.rclone.enabled -}}
{{- $r := .root.Values.backup.rclone.image -}}
{{- if or (not $v.image.digest) (not $r.digest) -}}
{{- $skips = append $skips "CKV_K8S_43=a digest cannot be defaulted; pin the images with valkey.image.digest and backup.rclone.image.digest" -}}
{{- end -}}
{{- if or (and (not $v.image.digest) (ne $v.image.pullPolicy "Always")) (and (not $r.digest) (ne $r.pullPolicy "Always")) -}}
{{- $skips = append $skips "CKV_K8S_15=IfNotPresent by default so a registry outage cannot block a backup; pin a digest or set valkey.image.pullPolicy and backup.rclone.image.pullPolicy to Always" -}}
{{- end -}}
{{- else -}}
{{- if or (not $v.image.digest) (and $exporter (not $e.image.digest)) -}}
{{- $skips = append $skips "CKV_K8S_43=a digest cannot be defaulted; pin the images with valkey.image.digest and valkey.exporter.image.digest" -}}
{{- end -}}
{{- if or (and (not $v.image.digest) (ne $v.image.pullPolicy "Always")) (and $exporter (not $e.image.digest) (ne $e.image.pullPolicy "Always")) -}}
{{- $skips = append $skips "CKV_K8S_15=IfNotPresent by default so a registry outage cannot block a restart of the cache; pin a digest or set the pullPolicy values to Always" -}}
{{- end -}}
{{- end -}}
{{- if lt (int $v.containerSecurityContext.runAsUser) 10000 -}}
{{- $skips = append $skips "CKV_K8S_40=runs as the uid that the valkey and redis images own their files as (999); runAsUser changes it" -}}
{{- end -}}
{{- if has .kind (list "statefulset" "haproxy" "backup") -}}
{{- if not $v.networkPolicy.enabled -}}
{{- $skips = append $skips "CKV2_K8S_6=the NetworkPolicy is opt-in (valkey.networkPolicy.enabled) because its application selector must match your pods" -}}
{{- end -}}
{{- if eq .kind "backup" -}}
{{- $skips = append $skips "CKV_K8S_8=a Job pod that exits when its backup is written and verified; probes do not apply" -}}
{{- $skips = append $skips "CKV_K8S_9=a Job pod that exits when its backup is written and verified; probes do not apply" -}}
{{- end -}}
{{- else -}}
{{- $skips = append $skips "CKV_K8S_8=a one-shot helm test pod that exits after a few commands; probes do not apply" -}}
{{- $skips = append $skips "CKV_K8S_9=a one-shot helm test pod that exits after a few commands; probes do not apply" -}}
{{- $skips = append $skips "CKV_K8S_35=a one-shot test client; the CLI reads the password from REDISCLI_AUTH, never from an argument" -}}
{{- $skips = append $skips "CKV2_K8S_6=a one-shot test client; the cache's NetworkPolicy admits it by the application labels" -}}
{{- end -}}
{{- range $i, $skip := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end -}}
{{- end -}}
