{{/* Common labels of every object of the release. */}}
{{- define "dtks.labels" -}}
app.kubernetes.io/name: dtks
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The labels that select one stage's pods: (dict "root" $ "name" $name). */}}
{{- define "dtks.selector" -}}
app.kubernetes.io/name: dtks
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* An object's name for a stage. */}}
{{- define "dtks.fullname" -}}
{{ printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The image of a stage, by digest when the release pipeline gave one. */}}
{{- define "dtks.image" -}}
{{- $image := .root.Values.image -}}
{{- $tag := default .root.Chart.AppVersion $image.tag -}}
{{- $digest := index (default dict $image.digests) .name -}}
{{- if $digest -}}
{{ printf "%s/dtks-%s@%s" $image.registry .name $digest }}
{{- else -}}
{{ printf "%s/dtks-%s:%s" $image.registry .name $tag }}
{{- end -}}
{{- end -}}

{{/* Pod-level security: a non-root user, the runtime's default seccomp profile. */}}
{{- define "dtks.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security: no privilege, nothing written outside /tmp. */}}
{{- define "dtks.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Credentials are files (the existing Secrets projected into /run/secrets/dtks), named
     to the service by `DTKS_…_FILE`; they never sit in the environment. */}}
{{- define "dtks.env" -}}
- name: DTKS_DATABASE__URL_FILE
  value: /run/secrets/dtks/database
- name: DTKS_BUS__URL_FILE
  value: /run/secrets/dtks/rabbitmq
- name: DTKS_REDIS__URL_FILE
  value: /run/secrets/dtks/redis
- name: DTKS_AUTH__JWT_SECRET_FILE
  value: /run/secrets/dtks/jwt
- name: DTKS_DATA_KEYS_FILE
  value: /run/secrets/dtks/data-keys
{{- if .root.Values.tls.enabled }}
- name: DTKS_TLS__CERT_FILE
  value: /run/secrets/dtks/tls.crt
- name: DTKS_TLS__KEY_FILE
  value: /run/secrets/dtks/tls.key
- name: DTKS_TLS__CA_FILE
  value: /run/secrets/dtks/ca.crt
- name: DTKS_TLS__HEALTH_ADDR
  value: "0.0.0.0:50052"
{{- if .root.Values.tls.mutual }}
- name: DTKS_TLS__CLIENT_CA_FILE
  value: /run/secrets/dtks/ca.crt
{{- end }}
{{- end }}
{{- if and (eq .name "matching") .root.Values.existingSecrets.dciSigningKey.name }}
- name: DTKS_DCI__SIGNING_KEY_FILE
  value: /run/secrets/dtks/dci-signing-key
{{- end }}
{{- if .root.Values.existingSecrets.auditKey.name }}
- name: DTKS_AUDIT_KEY_FILE
  value: /run/secrets/dtks/audit-key
{{- end }}
{{- end -}}

{{/* The volume of a pod's credentials: (dict "root" $ "name" $name). */}}
{{- define "dtks.secretsVolume" -}}
{{- $s := .root.Values.existingSecrets -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      - secret: { name: {{ $s.database.name }}, items: [{ key: {{ $s.database.key }}, path: database }] }
      - secret: { name: {{ $s.rabbitmq.name }}, items: [{ key: {{ $s.rabbitmq.key }}, path: rabbitmq }] }
      - secret: { name: {{ $s.redis.name }}, items: [{ key: {{ $s.redis.key }}, path: redis }] }
      - secret: { name: {{ $s.jwt.name }}, items: [{ key: {{ $s.jwt.key }}, path: jwt }] }
      - secret: { name: {{ $s.dataKeys.name }}, items: [{ key: {{ $s.dataKeys.key }}, path: data-keys }] }
      {{- if .root.Values.tls.enabled }}
      - secret:
          name: {{ .root.Values.tls.secretName }}
          items:
            - { key: tls.crt, path: tls.crt }
            - { key: tls.key, path: tls.key }
            - { key: ca.crt, path: ca.crt }
      {{- end }}
      {{- if and (eq .name "matching") $s.dciSigningKey.name }}
      - secret: { name: {{ $s.dciSigningKey.name }}, items: [{ key: {{ $s.dciSigningKey.key }}, path: dci-signing-key }] }
      {{- end }}
      {{- if $s.auditKey.name }}
      - secret: { name: {{ $s.auditKey.name }}, items: [{ key: {{ $s.auditKey.key }}, path: audit-key }] }
      {{- end }}
{{- end -}}

{{/* Pod annotations: the config's checksum (a changed ConfigMap rolls the pods) and
     the mesh's injection when mTLS is on. */}}
{{- define "dtks.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
{{- if and .root.Values.mtls.enabled (eq .root.Values.mtls.mesh "linkerd") }}
linkerd.io/inject: enabled
config.linkerd.io/default-inbound-policy: all-authenticated
{{- end }}
{{- end -}}

{{/* One stage's `migrate` run, for the migrations Job. */}}
{{- define "dtks.migrateContainer" -}}
image: {{ include "dtks.image" . }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
args: ["migrate"]
env:
  - name: DTKS_BUS__NAMESPACE
    value: {{ .root.Values.config.busNamespace | quote }}
  {{- include "dtks.env" . | nindent 2 }}
resources:
  {{- toYaml .root.Values.migrations.resources | nindent 2 }}
securityContext:
  {{- include "dtks.securityContext" .root | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: secrets
    mountPath: /run/secrets/dtks
    readOnly: true
{{- end -}}

{{/* The port of the kubelet's gRPC probes: the plain-text health port when the
     endpoint speaks TLS (the probes do not). */}}
{{- define "dtks.probePort" -}}
{{- if .Values.tls.enabled }}50052{{ else }}50051{{ end -}}
{{- end -}}
