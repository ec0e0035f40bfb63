{{/* Names and labels shared by every template. */}}
{{- define "courtside.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "courtside.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "courtside.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "courtside.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "courtside.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "courtside.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: courtside
{{- end -}}

{{/* Selector labels for one component: include with (dict "ctx" . "component" "api"). */}}
{{- define "courtside.selectorLabels" -}}
app.kubernetes.io/name: {{ include "courtside.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "courtside.componentLabels" -}}
{{ include "courtside.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "courtside.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The ServiceAccount of one component, a key of .Values.serviceAccounts: include with
(dict "ctx" . "component" "outboxRelay"). Each component has its own, so each pod holds only
its own cloud identity (IRSA role). Created ones are <fullname>-<component in kebab case>
(courtside-outbox-relay), the names the IAM roles' trust policies expect; with create: false
the schema requires a name. */}}
{{- define "courtside.serviceAccountName" -}}
{{- $account := index .ctx.Values.serviceAccounts .component -}}
{{- if $account.create -}}
{{- default (printf "%s-%s" (include "courtside.fullname" .ctx) (kebabcase .component)) $account.name -}}
{{- else -}}
{{- required (printf "serviceAccounts.%s.name is required when create is false" .component) $account.name -}}
{{- end -}}
{{- end -}}

{{- define "courtside.secretName" -}}
{{- default (printf "%s-secrets" (include "courtside.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* Environment every container gets: the ConfigMap and the Secret. */}}
{{- define "courtside.envFrom" -}}
- configMapRef:
    name: {{ include "courtside.fullname" . }}-config
- secretRef:
    name: {{ include "courtside.secretName" . }}
{{- end -}}

{{- define "courtside.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "courtside.containerSecurityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end -}}

{{/* Spread replicas over zones and nodes: include with (dict "ctx" . "component" "api"). */}}
{{- define "courtside.topologySpread" -}}
{{- if .ctx.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .ctx.Values.topologySpread.maxSkew }}
    topologyKey: {{ .ctx.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "courtside.selectorLabels" . | nindent 8 }}
  - maxSkew: {{ .ctx.Values.topologySpread.maxSkew }}
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "courtside.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* A writable /tmp, since the root filesystem is read-only. */}}
{{- define "courtside.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end -}}
{{- define "courtside.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* One JWT secret: the given value, the stored one (secrets.generate), a new random one
(secrets.generate, first install), or a failed render naming the value to set. */}}
{{- define "courtside.jwtSecret" -}}
{{- $given := index .root.Values.secrets .key | default "" -}}
{{- if $given -}}
{{- if lt (len $given) 32 -}}
{{- fail (printf "secrets.%s is shorter than 32 characters: use 32 or more random ones, or set secrets.generate=true" .key) -}}
{{- end -}}
{{- if and (contains "change-me" (lower $given)) (ne .root.Values.config.environment "development") -}}
{{- fail (printf "secrets.%s is a public placeholder: set a random value, or secrets.generate=true" .key) -}}
{{- end -}}
{{- $given -}}
{{- else if .root.Values.secrets.generate -}}
{{- with index .stored .key }}{{ b64dec . }}{{ else }}{{ randAlphaNum 48 }}{{ end -}}
{{- else -}}
{{- fail (printf "secrets.%s is required: set it (32+ random characters), set secrets.generate=true to generate one that is kept across upgrades, or name an existingSecret that holds it" .key) -}}
{{- end -}}
{{- end -}}

{{/* The pod-level imagePullSecrets of every pod the chart makes (values.imagePullSecrets,
[{name: ...}]): include it at the pod spec's indentation with nindent. */}}
{{- define "courtside.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* "true" when the KEDA objects are rendered: keda.enabled, and the cluster serves
keda.sh/v1alpha1 (else the install would fail on an unknown kind), unless
keda.skipCapabilityCheck says it will (helm template, GitOps tools without the API list). */}}
{{- define "courtside.kedaEnabled" -}}
{{- if and .Values.keda.enabled (or .Values.keda.skipCapabilityCheck (.Capabilities.APIVersions.Has "keda.sh/v1alpha1")) -}}
true
{{- end -}}
{{- end -}}

{{/* Values without which the release installs but cannot work: the render fails naming
them. With existingSecret the Secret's keys are the operator's business (the chart cannot
read them at render time). */}}
{{- define "courtside.requiredValues" -}}
{{- if not .Values.existingSecret }}
{{- $_ := required "secrets.DATABASE_URL is required (the runtime role's URL, postgresql+asyncpg://...): set it, or name an existingSecret that holds it" .Values.secrets.DATABASE_URL }}
{{- $_ := required "secrets.REDIS_URL is required: set it, or name an existingSecret that holds it" .Values.secrets.REDIS_URL }}
{{- if or .Values.migrations.enabled .Values.operator.enabled }}
{{- $_ := required "secrets.MIGRATION_DATABASE_URL is required (the owner role's URL, for the migrations and the operator): set it, or name an existingSecret that holds it" .Values.secrets.MIGRATION_DATABASE_URL }}
{{- end }}
{{- if or .Values.workers.outboxRelay.enabled .Values.workers.scheduler.enabled }}
{{- $_ := required "secrets.RELAY_DATABASE_URL is required (the relay role's URL, for the outbox relay and the scheduler): set it, or name an existingSecret that holds it" .Values.secrets.RELAY_DATABASE_URL }}
{{- end }}
{{- end }}
{{- /* The relay publishes to both queues; each consumer reads its own. */}}
{{- if or .Values.workers.outboxRelay.enabled .Values.workers.notifications.enabled }}
{{- $_ := required "config.sqsNotificationsQueueUrl is required when workers.outboxRelay or workers.notifications is enabled" .Values.config.sqsNotificationsQueueUrl }}
{{- end }}
{{- if or .Values.workers.outboxRelay.enabled .Values.workers.media.enabled }}
{{- $_ := required "config.sqsMediaQueueUrl is required when workers.outboxRelay or workers.media is enabled" .Values.config.sqsMediaQueueUrl }}
{{- end }}
{{- if and .Values.api.gateway.enabled (not .Values.api.gateway.parentRefs) }}
{{- fail "api.gateway.parentRefs is required when api.gateway.enabled: name the Gateway (and listener sectionName) the HTTPRoute attaches to" }}
{{- end }}
{{- end -}}

{{/* The API's fewest replicas: the HPA's minimum, or the fixed count. */}}
{{- define "courtside.apiMinReplicas" -}}
{{- if .Values.api.autoscaling.enabled }}{{ .Values.api.autoscaling.minReplicas | default 1 }}{{ else }}{{ .Values.api.replicaCount }}{{ end -}}
{{- end -}}

{{/* The worst-case PostgreSQL connection count of the release, as a dict of lines
(component: connections) plus "total"; NOTES.txt prints it. Pool sizes come from
values.database; the fixed ones from the code: the outbox relay's pool of 4 plus its LISTEN
connection (workers/outbox_relay.py), the scheduler's one connection (workers/scheduler.py),
the operator's database.operator.maxConnections (OPERATOR_DB_MAX_CONNECTIONS, every replica
counted though only the leader works), and the migrations' one. */}}
{{- define "courtside.connectionBudget" -}}
{{- $db := .Values.database }}
{{- $perApi := add $db.api.poolSize $db.api.maxOverflow $db.api.readPoolSize }}
{{- $apiMax := .Values.api.autoscaling.enabled | ternary .Values.api.autoscaling.maxReplicas .Values.api.replicaCount }}
{{- $perWorker := add $db.workers.poolSize $db.workers.maxOverflow }}
{{- $keda := include "courtside.kedaEnabled" . }}
{{- $lines := list (dict "name" "api" "pods" $apiMax "each" $perApi) }}
{{- range $key := list "notifications" "media" }}
{{- $worker := index $.Values.workers $key }}
{{- if $worker.enabled }}
{{- $pods := eq $keda "true" | ternary (index $.Values.keda $key "maxReplicaCount") $worker.replicaCount }}
{{- $lines = append $lines (dict "name" (printf "worker %s" $key) "pods" $pods "each" $perWorker) }}
{{- end }}
{{- end }}
{{- with .Values.workers.outboxRelay }}{{ if .enabled }}
{{- $lines = append $lines (dict "name" "worker outbox-relay" "pods" .replicaCount "each" 5) }}
{{- end }}{{ end }}
{{- with .Values.workers.scheduler }}{{ if .enabled }}
{{- $lines = append $lines (dict "name" "worker scheduler" "pods" .replicaCount "each" 2) }}
{{- end }}{{ end }}
{{- if .Values.operator.enabled }}
{{- $lines = append $lines (dict "name" "operator" "pods" .Values.operator.replicaCount "each" $db.operator.maxConnections) }}
{{- end }}
{{- if .Values.migrations.enabled }}
{{- $lines = append $lines (dict "name" "migrations" "pods" 1 "each" 1) }}
{{- end }}
{{- $total := 0 }}
{{- range $lines }}{{ $total = add $total (mul .pods .each) }}{{ end }}
{{- toJson (dict "lines" $lines "total" $total) }}
{{- end -}}

{{/* The command of a long-running courtside container: include with (dict "ctx" .
"args" (list "worker" "media")) at the container's indentation. Normally just its args
(the image's entrypoint is `courtside`). With devLoop.enabled (values-dev.yaml, an image
built with the "local" extra, which carries the sources in /opt/courtside/src): the process
runs from a copy of the sources on the writable /tmp, made once per pod (so files skaffold
synced survive a container restart), and watchfiles restarts it on every change. */}}
{{- define "courtside.command" -}}
{{- if .ctx.Values.devLoop.enabled -}}
command:
  - sh
  - -c
  - >-
    [ -d /tmp/src ] || cp -R /opt/courtside/src /tmp/src &&
    export PYTHONPATH=/tmp/src:/tmp/src/operator &&
    exec watchfiles --filter python --target-type command "courtside $*" /tmp/src
  - courtside-dev
args: {{ toJson .args }}
{{- else -}}
args: {{ toJson .args }}
{{- end -}}
{{- end -}}
