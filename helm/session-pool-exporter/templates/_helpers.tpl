{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "session-pool-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, unless it already contains the chart name. */}}
{{- define "session-pool-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, as used by the helm.sh/chart label. */}}
{{- define "session-pool-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the exporter's pods. */}}
{{- define "session-pool-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "session-pool-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "session-pool-exporter.labels" -}}
helm.sh/chart: {{ include "session-pool-exporter.chart" . }}
{{ include "session-pool-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: session-pool-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Name of the ServiceAccount the pods run as. */}}
{{- define "session-pool-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "session-pool-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the Mongo URI and admin tokens (the chart's or an existing one). */}}
{{- define "session-pool-exporter.secretName" -}}
{{- default (include "session-pool-exporter.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Container image reference: repository plus digest, or plus tag (default: appVersion). */}}
{{- define "session-pool-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* URL scheme the exporter serves: https with TLS on. */}}
{{- define "session-pool-exporter.scheme" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* Directory where named admin tokens are mounted as files. */}}
{{- define "session-pool-exporter.tokenDir" -}}
/etc/session-pool-exporter/tokens
{{- end }}

{{/* Directory where the TLS certificate and key are mounted. */}}
{{- define "session-pool-exporter.tlsDir" -}}
/etc/session-pool-exporter/tls
{{- end }}

{{/*
The exporter configuration file. Built from `.Values.config`; the chart sets `listen` and `tls`,
and replaces named admin tokens by `token_file` references, so no secret value is ever written here.
*/}}
{{- define "session-pool-exporter.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.containerPort)) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $cfg "tls" (dict "cert_file" (printf "%s/tls.crt" (include "session-pool-exporter.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "session-pool-exporter.tlsDir" .))) }}
{{- end }}
{{- $admin := default dict $cfg.admin }}
{{- $tokens := list }}
{{- range $admin.tokens }}
{{- $tokens = append $tokens (dict "name" .name "role" .role "token_file" (printf "%s/admin-token-%s" (include "session-pool-exporter.tokenDir" $) .name)) }}
{{- end }}
{{- $_ := set $admin "tokens" $tokens }}
{{- $_ := set $cfg "admin" $admin }}
{{- toYaml $cfg }}
{{- end }}
