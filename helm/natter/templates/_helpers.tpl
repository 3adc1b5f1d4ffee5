{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "natter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: <release>-natter unless the release name has it. */}}
{{- define "natter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "natter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "natter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "natter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "natter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "natter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "natter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "natter.secretName" -}}
{{- default (include "natter.fullname" .) .Values.auth.existingSecret -}}
{{- end -}}

{{/* Whether tokens are checked with a public key (RS256, ES256...) rather than a shared secret. */}}
{{- define "natter.publicKeyAuth" -}}
{{- if or .Values.auth.jwtPublicKey (and .Values.auth.existingSecret (not (hasPrefix "HS" .Values.auth.jwtAlg))) -}}true{{- end -}}
{{- end -}}

{{/* NATS URLs: the nats dependency's Service, or externalNats.urls (required). */}}
{{- define "natter.natsUrls" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s-nats:4222" .Release.Name -}}
{{- else -}}
{{- required "externalNats.urls is required when nats.enabled is false" .Values.externalNats.urls -}}
{{- end -}}
{{- end -}}

{{/* Redis URL; $(REDIS_PASSWORD) is expanded by Kubernetes from the env var before it. */}}
{{- define "natter.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.auth.enabled -}}
{{- printf "redis://:$(REDIS_PASSWORD)@%s-redis-master:6379" .Release.Name -}}
{{- else -}}
{{- printf "redis://%s-redis-master:6379" .Release.Name -}}
{{- end -}}
{{- else -}}
{{- $url := required "externalRedis.url is required when redis.enabled is false" .Values.externalRedis.url -}}
{{- if .Values.externalRedis.passwordSecret.name -}}
{{- $url | replace "redis://" "redis://:$(REDIS_PASSWORD)@" -}}
{{- else -}}
{{- $url -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* preStop + drain grace + rejoin window + margin, unless given. */}}
{{- define "natter.terminationGrace" -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add (ceil .Values.preStopSleep) (ceil .Values.natter.drainGrace) (ceil .Values.natter.nodeTtl) 10 -}}
{{- end -}}
{{- end -}}

{{- define "natter.onoff" -}}
{{- if . }}on{{ else }}off{{ end -}}
{{- end -}}
