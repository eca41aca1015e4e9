{{/* kubevisa's own objects live in kubevisa-system (src/domain/protected-namespaces.ts): the release must too. */}}
{{- define "kubevisa.namespace" -}}
{{- if ne .Release.Namespace "kubevisa-system" -}}
{{- fail (printf "install kubevisa into the namespace kubevisa-system (helm install ... -n kubevisa-system --create-namespace), not %q: its ServiceAccount and RBAC live there" .Release.Namespace) -}}
{{- end -}}
kubevisa-system
{{- end -}}

{{- define "kubevisa.labels" -}}
app.kubernetes.io/name: kubevisa
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: server
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubevisa.selector" -}}
app.kubernetes.io/name: kubevisa
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "kubevisa.secretName" -}}
{{- if .Values.secrets.create -}}{{ .Release.Name }}-secrets{{- else -}}{{ required "secrets.existingSecret is required when secrets.create is false" .Values.secrets.existingSecret }}{{- end -}}
{{- end -}}
