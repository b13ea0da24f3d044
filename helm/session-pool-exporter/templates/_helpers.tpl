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
"true" when the admin API may be on: an admin token in the chart's Secret, named tokens, or an
existing Secret with an admin-token key (the chart cannot look inside it); "" otherwise.
*/}}
{{- define "session-pool-exporter.adminEnabled" -}}
{{- if or .Values.secret.adminToken .Values.config.admin.tokens (and .Values.existingSecret .Values.secretKeys.adminToken) }}true{{ end }}
{{- end }}

{{/*
Refusals the schema cannot express (they compare values): rendered by the Deployment, so every
install and template run checks them.
*/}}
{{- define "session-pool-exporter.checks" -}}
{{- if include "session-pool-exporter.adminEnabled" . }}
{{- if and (not .Values.tls.enabled) (not .Values.admin.allowPlaintext) }}
{{- fail "the admin API is on (an admin token is configured) and would accept writes over plain HTTP: set tls.enabled=true with tls.secretName, or admin.allowPlaintext=true if a service mesh or proxy encrypts the traffic (with existingSecret and no admin token, set secretKeys.adminToken=\"\")" }}
{{- end }}
{{- if eq (int .Values.admin.containerPort) (int .Values.containerPort) }}
{{- fail (printf "admin.containerPort (%d) must differ from containerPort" (int .Values.admin.containerPort)) }}
{{- end }}
{{- if eq (int .Values.service.adminPort) (int .Values.service.port) }}
{{- fail (printf "service.adminPort (%d) must differ from service.port" (int .Values.service.adminPort)) }}
{{- end }}
{{- end }}
{{- if and .Values.sharding.enabled (lt (int .Values.replicaCount) (int .Values.sharding.replicas)) }}
{{- fail (printf "sharding.replicas (%d) is more than replicaCount (%d): a pool cannot be watched by more pods than there are" (int .Values.sharding.replicas) (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.secret.adminToken (not .Values.existingSecret) (not .Values.secretKeys.adminToken) }}
{{- fail "secret.adminToken is set but secretKeys.adminToken is empty: name the Secret key it goes to" }}
{{- end }}
{{- end }}

{{/* The TLS section of the config (certificate and key of the mounted kubernetes.io/tls Secret). */}}
{{- define "session-pool-exporter.tlsConfig" -}}
{{- $dir := include "session-pool-exporter.tlsDir" . }}
{{- toYaml (dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir)) }}
{{- end }}

{{/*
The exporter configuration file. Built from `.Values.config`; the chart sets `listen` and `tls`,
`shard` (count and replicas; each pod's index comes from its ordinal) with `sharding.enabled`,
the admin API's listener (`admin.listen`, `admin.tls`, `admin.allow_plaintext`) when it is on, and
replaces named admin tokens by `token_file` references, so no secret value is ever written here.
*/}}
{{- define "session-pool-exporter.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.containerPort)) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $cfg "tls" (include "session-pool-exporter.tlsConfig" . | fromYaml) }}
{{- end }}
{{- $admin := default dict $cfg.admin }}
{{- $tokens := list }}
{{- range $admin.tokens }}
{{- $tokens = append $tokens (dict "name" .name "role" .role "token_file" (printf "%s/admin-token-%s" (include "session-pool-exporter.tokenDir" $) .name)) }}
{{- end }}
{{- $_ := set $admin "tokens" $tokens }}
{{- if include "session-pool-exporter.adminEnabled" . }}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%d" (int .Values.admin.containerPort)) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $admin "tls" (include "session-pool-exporter.tlsConfig" . | fromYaml) }}
{{- end }}
{{- $_ := set $admin "allow_plaintext" (and (not .Values.tls.enabled) .Values.admin.allowPlaintext) }}
{{- end }}
{{- $_ := set $cfg "admin" $admin }}
{{- if .Values.sharding.enabled }}
{{- $_ := set $cfg "shard" (dict "count" (int .Values.replicaCount) "replicas" (int .Values.sharding.replicas)) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Labels of the `helm test` pod: the release's, but never the Service's selector (it is no exporter). */}}
{{- define "session-pool-exporter.testLabels" -}}
helm.sh/chart: {{ include "session-pool-exporter.chart" . }}
app.kubernetes.io/name: {{ printf "%s-test" (include "session-pool-exporter.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: session-pool-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
