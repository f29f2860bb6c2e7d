{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "fleetsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart name unless it contains it. */}}
{{- define "fleetsync.fullname" -}}
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

{{- define "fleetsync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fleetsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleetsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fleetsync.labels" -}}
helm.sh/chart: {{ include "fleetsync.chart" . }}
{{ include "fleetsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret holding the environment: the user's, or the chart's. */}}
{{- define "fleetsync.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- include "fleetsync.fullname" . }}
{{- end }}
{{- end }}

{{- define "fleetsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The claim holding `[backup] dir`: the user's, or the chart's. */}}
{{- define "fleetsync.backupClaim" -}}
{{- if .Values.backup.existingClaim }}
{{- .Values.backup.existingClaim }}
{{- else }}
{{- printf "%s-backups" (include "fleetsync.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The backup encryption key variable, from the user's Secret (a list item of env). */}}
{{- define "fleetsync.backupKeyEnv" -}}
{{- with .Values.backup.encryptionKey }}
{{- if .secretName -}}
- name: {{ required "backup.encryptionKey.env is required with secretName" .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ required "backup.encryptionKey.secretKey is required with secretName" .secretKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* One container of the backup CronJob: (dict "c" <shared settings> "name" N "args" A). */}}
{{- define "fleetsync.backupContainer" -}}
- name: {{ .name }}
  image: {{ .c.image | quote }}
  imagePullPolicy: {{ .c.pullPolicy }}
  args:
    {{- toYaml .args | nindent 4 }}
  env:
    - name: RUST_LOG
      value: {{ .c.logLevel | quote }}
    {{- with .c.env }}
    {{- . | nindent 4 }}
    {{- end }}
  envFrom:
    - secretRef:
        name: {{ .c.secret }}
  {{- with .c.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .c.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: config
      mountPath: /etc/fleetsync
      readOnly: true
    - name: backups
      mountPath: {{ .c.mountPath }}
    - name: tmp
      mountPath: /tmp
{{- end }}
