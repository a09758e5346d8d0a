{{/*
The chart name, or nameOverride; the app.kubernetes.io/name label.
*/}}
{{- define "fargate-health-monitor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: fullnameOverride, or the release name (plus the chart name unless the
release name contains it), at most 63 characters.
*/}}
{{- define "fargate-health-monitor.fullname" -}}
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

{{/*
The chart label's value: name-version.
*/}}
{{- define "fargate-health-monitor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels of every object.
*/}}
{{- define "fargate-health-monitor.labels" -}}
helm.sh/chart: {{ include "fargate-health-monitor.chart" . }}
{{ include "fargate-health-monitor.selectorLabels" . }}
app.kubernetes.io/version: {{ include "fargate-health-monitor.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/component: monitor
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The labels the Deployment, the Service, the PDB and the monitors select the pod by.
*/}}
{{- define "fargate-health-monitor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fargate-health-monitor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The pod's labels: the common labels plus podLabels (which cannot replace a common one), as YAML.
*/}}
{{- define "fargate-health-monitor.podLabels" -}}
{{ include "fargate-health-monitor.labels" . }}
{{- $common := include "fargate-health-monitor.labels" . | fromYaml }}
{{- range $key, $value := .Values.podLabels }}
{{- if not (hasKey $common $key) }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Service's labels: the common labels plus service.labels (likewise), as YAML.
*/}}
{{- define "fargate-health-monitor.serviceLabels" -}}
{{ include "fargate-health-monitor.labels" . }}
{{- $common := include "fargate-health-monitor.labels" . | fromYaml }}
{{- range $key, $value := .Values.service.labels }}
{{- if not (hasKey $common $key) }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The image tag: image.tag, or the chart's appVersion.
*/}}
{{- define "fargate-health-monitor.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | toString }}
{{- end }}

{{/*
The image reference: repository@digest, or repository:tag.
*/}}
{{- define "fargate-health-monitor.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "fargate-health-monitor.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
The service account the pod runs as.
*/}}
{{- define "fargate-health-monitor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fargate-health-monitor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The ConfigMap with config.toml: config.existingConfigMap, or the chart's.
*/}}
{{- define "fargate-health-monitor.configMapName" -}}
{{- default (include "fargate-health-monitor.fullname" .) .Values.config.existingConfigMap }}
{{- end }}

{{/*
The Secret mounted at /etc/fargate-health-monitor/secrets: secrets.existingSecret, or the
chart's (secrets.create); empty when there is none.
*/}}
{{- define "fargate-health-monitor.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.create }}
{{- include "fargate-health-monitor.fullname" . }}
{{- end }}
{{- end }}

{{/*
The state volume's claim: state.persistence.existingClaim, or the chart's.
*/}}
{{- define "fargate-health-monitor.stateClaimName" -}}
{{- default (printf "%s-state" (include "fargate-health-monitor.fullname" .)) .Values.state.persistence.existingClaim }}
{{- end }}

{{/*
The namespaces of the monitoring objects (their own value, or the release namespace).
*/}}
{{- define "fargate-health-monitor.serviceMonitorNamespace" -}}
{{- default .Release.Namespace .Values.serviceMonitor.namespace }}
{{- end }}
{{- define "fargate-health-monitor.podMonitorNamespace" -}}
{{- default .Release.Namespace .Values.podMonitor.namespace }}
{{- end }}

{{/*
The job label Prometheus gives the monitor's series, for FargateHealthMonitorDown:
prometheusRule.job; else what the chart's PodMonitor produces (the value of its jobLabel on the
pod, or "<namespace>/<name>"); else what a ServiceMonitor produces (the value of its jobLabel on
the Service, or the Service's name). This mirrors prometheus-operator: a jobLabel the object
does not carry falls back to the default.
*/}}
{{- define "fargate-health-monitor.job" -}}
{{- $fullname := include "fargate-health-monitor.fullname" . }}
{{- if .Values.prometheusRule.job }}
{{- .Values.prometheusRule.job }}
{{- else if .Values.podMonitor.enabled }}
{{- $labels := include "fargate-health-monitor.podLabels" . | fromYaml }}
{{- if and .Values.podMonitor.jobLabel (index $labels .Values.podMonitor.jobLabel | default "" | toString) }}
{{- index $labels .Values.podMonitor.jobLabel }}
{{- else }}
{{- printf "%s/%s" (include "fargate-health-monitor.podMonitorNamespace" .) $fullname }}
{{- end }}
{{- else }}
{{- $labels := include "fargate-health-monitor.serviceLabels" . | fromYaml }}
{{- if and .Values.serviceMonitor.jobLabel (index $labels .Values.serviceMonitor.jobLabel | default "" | toString) }}
{{- index $labels .Values.serviceMonitor.jobLabel }}
{{- else }}
{{- $fullname }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Combinations of values the schema cannot express; included by the Deployment, which every
release renders.
*/}}
{{- define "fargate-health-monitor.validate" -}}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- fail "serviceMonitor.enabled and podMonitor.enabled: enable one of them, not both (both would scrape the monitor twice, and its alerts would fire twice)" }}
{{- end }}
{{- if and .Values.secrets.create .Values.secrets.existingSecret }}
{{- fail "secrets.create and secrets.existingSecret: use one of them (existingSecret is preferred)" }}
{{- end }}
{{- if and .Values.secrets.create (not .Values.secrets.stringData) }}
{{- fail "secrets.create needs secrets.stringData (file name: content)" }}
{{- end }}
{{- if and (not .Values.config.existingConfigMap) (not (trim (index .Values.config "config.toml" | default ""))) }}
{{- fail "config: set config.toml (the daemon's config) or config.existingConfigMap" }}
{{- end }}
{{- if and .Values.serviceAccount.irsaRoleArn (not .Values.serviceAccount.create) }}
{{- fail "serviceAccount.irsaRoleArn needs serviceAccount.create: annotate your own service account with eks.amazonaws.com/role-arn instead" }}
{{- end }}
{{- end }}
