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
{{- $host := printf "%s-redis-master" .Release.Name -}}
{{- if .Values.redis.sentinel.enabled -}}{{- $host = printf "%s-redis" .Release.Name -}}{{- end -}}
{{- if .Values.redis.auth.enabled -}}
{{- printf "redis://:$(REDIS_PASSWORD)@%s:6379" $host -}}
{{- else -}}
{{- printf "redis://%s:6379" $host -}}
{{- end -}}
{{- else -}}
{{- $url := required "externalRedis.url is required when redis.enabled is false" .Values.externalRedis.url -}}
{{- if and .Values.externalRedis.passwordSecret.name (regexMatch "^redis://[^:@/]+@" $url) -}}
{{- $url | replace "@" ":$(REDIS_PASSWORD)@" -}}
{{- else if .Values.externalRedis.passwordSecret.name -}}
{{- $url | replace "redis://" "redis://:$(REDIS_PASSWORD)@" -}}
{{- else -}}
{{- $url -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Sentinel addresses ("" without Sentinel): the Bitnami chart's sentinels, or externalRedis.sentinel.addrs. */}}
{{- define "natter.redisSentinel" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.sentinel.enabled -}}{{- printf "%s-redis:26379" .Release.Name -}}{{- end -}}
{{- else -}}
{{- .Values.externalRedis.sentinel.addrs -}}
{{- end -}}
{{- end -}}

{{- define "natter.redisMaster" -}}
{{- if .Values.redis.enabled -}}
{{- .Values.redis.sentinel.masterSet -}}
{{- else -}}
{{- required "externalRedis.sentinel.master is required with externalRedis.sentinel.addrs" .Values.externalRedis.sentinel.master -}}
{{- end -}}
{{- end -}}

{{/* NATS credential files mounted from natsAuth.secret: flag env name -> key. */}}
{{- define "natter.natsFiles" -}}
{{- $a := .Values.natsAuth -}}
{{- $m := dict -}}
{{- if $a.secret -}}
{{- if and $a.credsKey $a.nkeySeedKey -}}{{- fail "natsAuth: give credsKey or nkeySeedKey, not both" -}}{{- end -}}
{{- if ne (empty $a.tlsCertKey) (empty $a.tlsKeyKey) -}}{{- fail "natsAuth: tlsCertKey and tlsKeyKey go together" -}}{{- end -}}
{{- with $a.credsKey -}}{{- $_ := set $m "NATTER_NATS_CREDS" . -}}{{- end -}}
{{- with $a.nkeySeedKey -}}{{- $_ := set $m "NATTER_NATS_NKEY_SEED" . -}}{{- end -}}
{{- with $a.tlsCaKey -}}{{- $_ := set $m "NATTER_NATS_TLS_CA" . -}}{{- end -}}
{{- with $a.tlsCertKey -}}{{- $_ := set $m "NATTER_NATS_TLS_CERT" . -}}{{- end -}}
{{- with $a.tlsKeyKey -}}{{- $_ := set $m "NATTER_NATS_TLS_KEY" . -}}{{- end -}}
{{- end -}}
{{- toJson $m -}}
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
