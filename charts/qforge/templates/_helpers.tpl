{{/* Chart name (nameOverride or "qforge"). */}}
{{- define "qforge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: prefix of every object of the release, at most 63 characters. */}}
{{- define "qforge.fullname" -}}
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

{{- define "qforge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release, without a component. */}}
{{- define "qforge.baseLabels" -}}
helm.sh/chart: {{ include "qforge.chart" . }}
app.kubernetes.io/name: {{ include "qforge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of the controller's objects (Deployment, ConfigMap, RBAC, claim). */}}
{{- define "qforge.labels" -}}
{{ include "qforge.baseLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Labels selecting the controller pod (component "controller"; runner Jobs carry
component "runner" and are never selected by these). */}}
{{- define "qforge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qforge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "qforge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "qforge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The job store's claim: an existing one, or the one this chart creates. */}}
{{- define "qforge.pvcName" -}}
{{- if not (or .Values.persistence.create .Values.persistence.existingClaim) }}
{{- fail "persistence: set persistence.existingClaim, or persistence.create=true to create the job store's claim" }}
{{- end }}
{{- if .Values.persistence.existingClaim }}
{{- .Values.persistence.existingClaim }}
{{- else }}
{{- printf "%s-jobs" (include "qforge.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{- define "qforge.controllerImage" -}}
{{- printf "%s:%s" .Values.controller.image.repository (default .Chart.AppVersion .Values.controller.image.tag) }}
{{- end }}

{{- define "qforge.runnerImage" -}}
{{- printf "%s:%s" .Values.runner.image.repository (default .Chart.AppVersion .Values.runner.image.tag) }}
{{- end }}

{{/* True ("true") when the store can only be attached to one node at a time. */}}
{{- define "qforge.singleNodeStore" -}}
{{- if and (not .Values.persistence.existingClaim) (not (has "ReadWriteMany" .Values.persistence.accessModes)) }}true{{ end }}
{{- end }}

{{/* --- The server (the HTTP front door) ------------------------------------------- */}}

{{/* "<fullname>-server": the server's Deployment, Service, ServiceAccount, Ingress. */}}
{{- define "qforge.serverFullname" -}}
{{- printf "%s-server" (include "qforge.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/* Labels of the server's objects. */}}
{{- define "qforge.serverLabels" -}}
{{ include "qforge.baseLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/* Labels selecting the server pods (never the controller's or a runner's). */}}
{{- define "qforge.serverSelectorLabels" -}}
app.kubernetes.io/name: {{ include "qforge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "qforge.serverServiceAccountName" -}}
{{- if .Values.server.serviceAccount.create }}
{{- default (include "qforge.serverFullname" .) .Values.server.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.server.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the first admin token: an existing one, or the chart's own. */}}
{{- define "qforge.adminTokenSecretName" -}}
{{- if .Values.server.adminToken.existingSecret }}
{{- .Values.server.adminToken.existingSecret }}
{{- else }}
{{- printf "%s-admin-token" (include "qforge.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/* The URL users reach the server at, when the chart's Ingress makes one. */}}
{{- define "qforge.serverURL" -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.server.ingress.tls.enabled) .Values.server.ingress.host }}
{{- end }}

{{/* NetworkPolicy egress rule: DNS (UDP and TCP 53) to any address: cluster DNS lives
at different places (kube-dns pods, node-local-dns on a link-local address). */}}
{{- define "qforge.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
