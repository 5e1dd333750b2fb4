{{/*
Names and labels. They follow the production chart delegation-verify-coordinator
so that `helm upgrade` from it keeps every object's name and the Deployment's
(immutable) selector: the app name stays "delegation-verify-coordinator".
*/}}
{{- define "uptime-coordinator.name" -}}
{{- default "delegation-verify-coordinator" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "uptime-coordinator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "uptime-coordinator.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The workers' name, as the production chart derives it. */}}
{{- define "uptime-coordinator.workerFullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "coordinator" .Release.Name }}
{{- .Release.Name | replace "-coordinator" "" | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "uptime-coordinator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "uptime-coordinator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "uptime-coordinator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "uptime-coordinator.labels" -}}
helm.sh/chart: {{ include "uptime-coordinator.chart" . }}
{{ include "uptime-coordinator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "uptime-coordinator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "uptime-coordinator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "uptime-coordinator.workerServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "uptime-coordinator.workerFullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "uptime-coordinator.image" -}}
{{- $repo := default "ghcr.io/delegation-program/uptime-coordinator" .Values.image.repository }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- printf "%s:%s" $repo (toString $tag) }}
{{- end }}

{{/* The Secret the coordinator and the verifier Jobs read secrets from. */}}
{{- define "uptime-coordinator.secretName" -}}
{{- default (include "uptime-coordinator.fullname" .) .Values.workerSecret.existingSecret }}
{{- end }}

{{/* The worker entrypoint ConfigMap, named as the production chart names it. */}}
{{- define "uptime-coordinator.workerConfigMap" -}}
{{- printf "%s-worker" .Release.Name }}
{{- end }}

{{/* Variables whose values are secret: never a plain env value. */}}
{{- define "uptime-coordinator.secretVariables" -}}
{{- list "POSTGRES_PASSWORD" "POSTGRES_RO_PASSWORD" "CASSANDRA_PASSWORD" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "WEBHOOK_URL" "ADMIN_API_TOKEN" | toJson }}
{{- end }}

{{/*
The secret values the chart puts into its Secret, as a YAML map of variable
name to value: from the values, and from coordinator.envVars entries that
name a secret variable with a plain value.
*/}}
{{- define "uptime-coordinator.secretData" -}}
{{- $c := .Values.coordinator }}
{{- $data := dict }}
{{- with $c.postgres.password }}{{ $_ := set $data "POSTGRES_PASSWORD" (toString .) }}{{ end }}
{{- with $c.postgres.roPassword }}{{ $_ := set $data "POSTGRES_RO_PASSWORD" (toString .) }}{{ end }}
{{- if and $c.aws.accessKeyID $c.aws.secretAccessKey }}
{{- $_ := set $data "AWS_ACCESS_KEY_ID" (toString $c.aws.accessKeyID) }}
{{- $_ := set $data "AWS_SECRET_ACCESS_KEY" (toString $c.aws.secretAccessKey) }}
{{- end }}
{{- with .Values.cassandra.password }}{{ $_ := set $data "CASSANDRA_PASSWORD" (toString .) }}{{ end }}
{{- with .Values.alerts.webhookURL }}{{ $_ := set $data "WEBHOOK_URL" (toString .) }}{{ end }}
{{- with .Values.serve.adminAPIToken }}{{ $_ := set $data "ADMIN_API_TOKEN" (toString .) }}{{ end }}
{{- with .Values.alerts.subscriptions }}{{ $_ := set $data "alert-subscriptions.yaml" (toYaml (dict "subscriptions" .)) }}{{ end }}
{{- $secretVars := include "uptime-coordinator.secretVariables" . | fromJsonArray }}
{{- range $c.envVars }}
{{- if and (has .name $secretVars) (hasKey . "value") (not .valueFrom) }}
{{- $_ := set $data .name (toString .value) }}
{{- end }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/* The Postgres environment (init containers and the coordinator). */}}
{{- define "uptime-coordinator.postgresEnv" -}}
{{- $c := .Values.coordinator }}
{{- $secret := include "uptime-coordinator.secretName" . }}
{{- $data := include "uptime-coordinator.secretData" . | fromYaml }}
{{- $existing := .Values.workerSecret.existingSecret }}
- name: POSTGRES_HOST
  value: {{ tpl $c.postgres.host . | quote }}
- name: POSTGRES_PORT
  value: {{ $c.postgres.port | quote }}
- name: POSTGRES_DB
  value: {{ required "coordinator.postgres.db is required" $c.postgres.db | quote }}
- name: POSTGRES_USER
  value: {{ required "coordinator.postgres.user is required" $c.postgres.user | quote }}
{{- range $name := list "POSTGRES_PASSWORD" "POSTGRES_RO_PASSWORD" }}
{{- if or (hasKey $data $name) $existing }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $name }}
      {{- if $existing }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- with $c.postgres.roUser }}
- name: POSTGRES_RO_USER
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{- define "uptime-coordinator.podSecurity" -}}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Where the subscriptions file (ALERT_SUBSCRIPTIONS_FILE) is mounted, if any. */}}
{{- define "uptime-coordinator.subscriptionsDir" -}}
{{- if or .Values.alerts.subscriptions (and .Values.workerSecret.existingSecret .Values.alerts.subscriptionsFromExistingSecret) -}}
/etc/uptime-coordinator/alerts
{{- end }}
{{- end }}
