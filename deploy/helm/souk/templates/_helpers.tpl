{{/* Labels on every Souk process's objects: the same as deploy/kubernetes
adds, plus Helm's own. Object names are not prefixed with the release: one
release per namespace, as with kustomize. */}}
{{- define "souk.labels" -}}
app.kubernetes.io/part-of: souk
{{ include "souk.release" . }}
{{- end }}

{{/* Helm's labels alone: NATS and PostgreSQL have these and their name, not
part-of souk, which the NetworkPolicies use for Souk's own processes. */}}
{{- define "souk.release" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* The labels of one of Souk's Deployments: name and component. */}}
{{- define "souk.component" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "souk.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The NATS servers' per-pod DNS names, as a URL list: nats://nats-0.nats:PORT,… */}}
{{- define "souk.natsRoutes" -}}
{{- $urls := list }}
{{- range $i := until .replicas }}
{{- $urls = append $urls (printf "nats://nats-%d.nats:%d" $i $.port) }}
{{- end }}
{{- join "," $urls }}
{{- end }}
