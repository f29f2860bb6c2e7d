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

{{/* `mode`, checked: embedded (one `fleetsync run` StatefulSet) or kafka (coordinator and agent
Deployments, no volume). Kafka mode needs `[bus] kind = "kafka"` in config. */}}
{{- define "fleetsync.mode" -}}
{{- $mode := .Values.mode | default "embedded" }}
{{- if not (has $mode (list "embedded" "kafka")) }}
{{- fail (printf "mode %q: must be embedded or kafka" $mode) }}
{{- end }}
{{- if and (eq $mode "kafka") (not (regexMatch "(?m)^\\s*kind\\s*=\\s*\"kafka\"" .Values.config)) }}
{{- fail "mode kafka: config must set [bus] kind = \"kafka\" (the coordinators and agents talk through the brokers)" }}
{{- end }}
{{- if and (eq $mode "kafka") .Values.backup.enabled }}
{{- fail "mode kafka: backup.enabled is not supported (the backup volume would be shared by every coordinator replica); use mode embedded, or run `fleetsync backup create` from a Job of your own" }}
{{- end }}
{{- $mode }}
{{- end }}

{{/* The container settings shared by the coordinator and agent pods of mode kafka:
(dict "ctx" $ "args" ARGS). Only the config, /tmp and a scratch state_dir (emptyDir). */}}
{{- define "fleetsync.kafkaContainer" -}}
{{- $ := .ctx -}}
- name: fleetsync
  image: {{ include "fleetsync.image" $ | quote }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  args:
    {{- toYaml .args | nindent 4 }}
  env:
    - name: FLEETSYNC_STATE_DIR
      value: /var/lib/fleetsync
    - name: FLEETSYNC_METRICS_LISTEN
      value: {{ printf "0.0.0.0:%v" $.Values.metrics.port | quote }}
    - name: RUST_LOG
      value: {{ $.Values.logLevel | quote }}
    # The replica's name on the jobs topic: the pod's (a container restarted in the same pod
    # marks its unfinished jobs interrupted).
    - name: FLEETSYNC_REPLICA
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    {{- with $.Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  envFrom:
    - secretRef:
        name: {{ include "fleetsync.secretName" $ }}
  ports:
    - name: metrics
      containerPort: {{ $.Values.metrics.port }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /metrics
      port: metrics
    {{- toYaml $.Values.probes.startup | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /metrics
      port: metrics
    {{- toYaml $.Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /health
      port: metrics
    {{- toYaml $.Values.probes.readiness | nindent 4 }}
  {{- with $.Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: config
      mountPath: /etc/fleetsync
      readOnly: true
    - name: state
      mountPath: /var/lib/fleetsync
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/* The pod-level settings shared by the pods of mode kafka (from securityContext on). */}}
{{- define "fleetsync.kafkaPod" -}}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "fleetsync.fullname" . }}
      items:
        - key: fleetsync.toml
          path: fleetsync.toml
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  # Scratch only: nothing in it is needed across restarts in mode kafka.
  - name: state
    emptyDir:
      sizeLimit: {{ .Values.scratchSizeLimit | quote }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The pod template annotations (config checksums, scrape hints). */}}
{{- define "fleetsync.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
