{{/*
Names, labels and the checks every render runs. Templates name things only through these
helpers, so a Service, its pods and its ServiceMonitor can never disagree.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "mailferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, or `<release>-<chart>` (just the release
when it already contains the chart name). 63 characters is the DNS label limit; leave room for
the role suffixes (`-coordinator` is 12).
*/}}
{{- define "mailferry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "mailferry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mailferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailferry
{{- end }}

{{/* Labels that select this release's pods (both roles). */}}
{{- define "mailferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels selecting one role's pods; call with (dict "root" $ "role" "worker"). */}}
{{- define "mailferry.roleSelectorLabels" -}}
{{ include "mailferry.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "mailferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mailferry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference of both roles. */}}
{{- define "mailferry.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The Secret holding the fleet key, API tokens and the two URLs, whoever made it. */}}
{{- define "mailferry.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "mailferry.fullname" . }}
{{- end }}
{{- end }}

{{/* Where the Secret's files are mounted in every container. */}}
{{- define "mailferry.secretDir" -}}
/etc/mailferry/secrets
{{- end }}

{{/*
The worker's grace period: worker.terminationGracePeriodSeconds, or drainTimeout + 30. It must
exceed the drain time, or the kubelet kills a worker whose batches are still finishing.
*/}}
{{- define "mailferry.workerGracePeriod" -}}
{{- $drain := int .Values.worker.drainTimeout }}
{{- $grace := .Values.worker.terminationGracePeriodSeconds }}
{{- if or (kindIs "invalid" $grace) (eq (toString $grace) "") }}
{{- $grace = add $drain 30 }}
{{- end }}
{{- if le (int $grace) $drain }}
{{- fail (printf "worker.terminationGracePeriodSeconds (%d) must be greater than worker.drainTimeout (%d): the kubelet kills a worker at the end of its grace period, in the middle of its drain. Leave it empty for drainTimeout + 30." (int $grace) $drain) }}
{{- end }}
{{- int $grace }}
{{- end }}

{{/*
The checks that fail a render with a message saying what to set. Secrets given inline are
checked the way the binary reads them, so a typo fails `helm install`, not a pod at start.
*/}}
{{- define "mailferry.validate" -}}
{{- $s := .Values.secrets }}
{{- $inline := list $s.fleetKey $s.apiTokens $s.amqpUrl $s.redisUrl | compact }}
{{- if $s.existingSecret }}
{{- if $inline }}
{{- fail "secrets: set either secrets.existingSecret or the inline secrets.fleetKey, apiTokens, amqpUrl and redisUrl, not both" }}
{{- end }}
{{- $found := lookup "v1" "Secret" .Release.Namespace $s.existingSecret }}
{{- if $found }}
{{- range $k := list $s.keys.fleetKey $s.keys.apiTokens $s.keys.amqpUrl $s.keys.redisUrl }}
{{- if not (hasKey ($found.data | default dict) $k) }}
{{- fail (printf "secrets.existingSecret %q has no key %q; it needs %s, %s, %s and %s (see secrets.keys)" $s.existingSecret $k $s.keys.fleetKey $s.keys.apiTokens $s.keys.amqpUrl $s.keys.redisUrl) }}
{{- end }}
{{- end }}
{{- end }}
{{- else }}
{{- $hint := "or name a Secret made elsewhere in secrets.existingSecret" }}
{{- $key := required (printf "secrets.fleetKey is required: the fleet key file from `mailferry keygen` (one KEY_ID BASE64 line), %s" $hint) $s.fleetKey }}
{{- $tokens := required (printf "secrets.apiTokens is required: the API tokens file, one token per line, %s" $hint) $s.apiTokens }}
{{- $amqp := required (printf "secrets.amqpUrl is required: the RabbitMQ URL, e.g. amqp://user:password@rabbitmq:5672/%%2f, %s" $hint) $s.amqpUrl }}
{{- $redis := required (printf "secrets.redisUrl is required: the Redis URL, e.g. redis://:password@redis:6379/0, %s" $hint) $s.redisUrl }}
{{- $ids := list }}
{{- range $i, $line := splitList "\n" $key }}
{{- $l := trim $line }}
{{- if and $l (not (hasPrefix "#" $l)) }}
{{- if not (regexMatch "^[A-Za-z0-9_-]{1,32}[ \t]+[A-Za-z0-9+/]{43}=$" $l) }}
{{- fail (printf "secrets.fleetKey, line %d: not a `KEY_ID BASE64` line of a 32-byte key; make one with `mailferry keygen`" (add1 $i)) }}
{{- end }}
{{- $id := regexFind "^[A-Za-z0-9_-]+" $l }}
{{- if has $id $ids }}
{{- fail (printf "secrets.fleetKey, line %d: key id %s is used twice; each key needs its own id" (add1 $i) $id) }}
{{- end }}
{{- $ids = append $ids $id }}
{{- end }}
{{- end }}
{{- if not $ids }}
{{- fail "secrets.fleetKey holds no key line; make one with `mailferry keygen`" }}
{{- end }}
{{- $tokenCount := 0 }}
{{- range $i, $line := splitList "\n" $tokens }}
{{- $t := trim $line }}
{{- if and $t (not (hasPrefix "#" $t)) }}
{{- if lt (len $t) 16 }}
{{- fail (printf "secrets.apiTokens, line %d: a token must be at least 16 characters" (add1 $i)) }}
{{- end }}
{{- $tokenCount = add1 $tokenCount }}
{{- end }}
{{- end }}
{{- if eq $tokenCount 0 }}
{{- fail "secrets.apiTokens holds no token; one token per line" }}
{{- end }}
{{- if not (or (hasPrefix "amqp://" $amqp) (hasPrefix "amqps://" $amqp)) }}
{{- fail "secrets.amqpUrl must start with amqp:// or amqps://" }}
{{- end }}
{{- if not (or (hasPrefix "redis://" $redis) (hasPrefix "rediss://" $redis)) }}
{{- fail "secrets.redisUrl must start with redis:// or rediss://" }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[A-Za-z0-9_-]{1,64}$" (toString .Values.fleet.namespace)) }}
{{- fail (printf "fleet.namespace %q must be 1 to 64 of A-Z a-z 0-9 - _" (toString .Values.fleet.namespace)) }}
{{- end }}
{{- if not (has .Values.fleet.logFormat (list "json" "text")) }}
{{- fail (printf "fleet.logFormat %q must be json or text" (toString .Values.fleet.logFormat)) }}
{{- end }}
{{- $c := int .Values.worker.concurrency }}
{{- if or (lt $c 1) (gt $c 256) }}
{{- fail (printf "worker.concurrency %d must be between 1 and 256" $c) }}
{{- end }}
{{- if not (regexMatch "^[0-9]+[kKmMgG]?$" (toString .Values.worker.memoryBudget)) }}
{{- fail (printf "worker.memoryBudget %q must be a size such as 64M or 1G" (toString .Values.worker.memoryBudget)) }}
{{- end }}
{{- if lt (int .Values.worker.leaseTtl) 3 }}
{{- fail "worker.leaseTtl must be at least 3 seconds" }}
{{- end }}
{{- if and .Values.coordinator.tls.enabled (not .Values.coordinator.tls.secretName) }}
{{- fail "coordinator.tls.secretName is required when coordinator.tls.enabled: a Secret with the PEM certificate chain and key" }}
{{- end }}
{{- if and .Values.worker.autoscaling.enabled (not .Values.worker.keda.enabled) }}
{{- if not (dig "requests" "cpu" "" (.Values.worker.resources | default dict)) }}
{{- fail "worker.resources.requests.cpu is required with worker.autoscaling.enabled: the HPA's CPU target is a share of it" }}
{{- end }}
{{- if gt (int .Values.worker.autoscaling.minReplicas) (int .Values.worker.autoscaling.maxReplicas) }}
{{- fail "worker.autoscaling.minReplicas must not exceed maxReplicas" }}
{{- end }}
{{- end }}
{{- if .Values.worker.keda.enabled }}
{{- if gt (int .Values.worker.keda.minReplicaCount) (int .Values.worker.keda.maxReplicaCount) }}
{{- fail "worker.keda.minReplicaCount must not exceed maxReplicaCount" }}
{{- end }}
{{- if lt (int .Values.worker.keda.queueLength) 1 }}
{{- fail "worker.keda.queueLength must be at least 1" }}
{{- end }}
{{- end }}
{{- $_ := include "mailferry.workerGracePeriod" . }}
{{- range $role := list "coordinator" "worker" }}
{{- include "mailferry.validateExtraVolumes" (dict "root" $ "role" $role) }}
{{- end }}
{{- end }}

{{/*
A role's extraVolumes and extraVolumeMounts: names the chart does not use itself, each once,
and every mount naming a volume the pod has. Kubernetes would refuse the Deployment at apply
time; failing the render names the value to fix. Call with (dict "root" $ "role" "worker").
*/}}
{{- define "mailferry.validateExtraVolumes" -}}
{{- $v := index .root.Values .role }}
{{- $reserved := list "secrets" "tmp" "tls" }}
{{- $names := list }}
{{- range $i, $vol := $v.extraVolumes | default list }}
{{- $n := required (printf "%s.extraVolumes[%d] needs a name" $.role $i) $vol.name }}
{{- if has $n $reserved }}
{{- fail (printf "%s.extraVolumes[%d]: the name %q is the chart's own (%s); choose another" $.role $i $n (join ", " $reserved)) }}
{{- end }}
{{- if has $n $names }}
{{- fail (printf "%s.extraVolumes[%d]: the name %q is used twice" $.role $i $n) }}
{{- end }}
{{- $names = append $names $n }}
{{- end }}
{{- range $i, $m := $v.extraVolumeMounts | default list }}
{{- if not (has $m.name $names) }}
{{- fail (printf "%s.extraVolumeMounts[%d] mounts volume %q, which is not in %s.extraVolumes" $.role $i (toString $m.name) $.role) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Where one role's pods may run, beyond affinity: priority class, node selector, tolerations and
topology spread. A spread constraint without a labelSelector gets the role's selector labels, so
it spreads this release's pods of this role only. Call with (dict "root" $ "role" "worker").
*/}}
{{- define "mailferry.scheduling" -}}
{{- $v := index .root.Values .role }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range . }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "mailferry.roleSelectorLabels" $ | fromYaml)) }}
{{- end }}
  - {{ toYaml $c | indent 4 | trim }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The volumes both roles have: the Secret's files a role reads, under fixed names, and /tmp.
Call with (dict "root" $ "files" (list "fleetKey" "apiTokens")); the URLs are never files.
*/}}
{{- define "mailferry.volumes" -}}
{{- $paths := dict "fleetKey" "fleet.key" "apiTokens" "api-tokens" }}
- name: secrets
  secret:
    secretName: {{ include "mailferry.secretName" .root }}
    # Read by the pod's group (fsGroup) only.
    defaultMode: 0440
    items:
      {{- range .files }}
      - key: {{ index $.root.Values.secrets.keys . }}
        path: {{ index $paths . }}
      {{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- end }}

{{/* Environment of both roles: the two URLs from the Secret, the key file, the admin port. */}}
{{- define "mailferry.commonEnv" -}}
- name: MAILFERRY_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "mailferry.secretName" . }}
      key: {{ .Values.secrets.keys.amqpUrl }}
- name: MAILFERRY_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "mailferry.secretName" . }}
      key: {{ .Values.secrets.keys.redisUrl }}
- name: MAILFERRY_SECRET_KEY_FILE
  value: {{ include "mailferry.secretDir" . }}/fleet.key
- name: MAILFERRY_ADMIN_LISTEN
  value: "0.0.0.0:9090"
{{- end }}

{{/* Liveness and readiness probes on the admin port. */}}
{{- define "mailferry.probes" -}}
livenessProbe:
  httpGet:
    path: /live
    port: admin
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /ready
    port: admin
  {{- toYaml .Values.probes.readiness | nindent 2 }}
{{- end }}
