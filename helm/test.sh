#!/usr/bin/env bash
# Tests the Helm chart without helm: renders helm/natter with Go's text/template + sprig
# (helm/test/render, the library helm uses), with the default values and with non-default
# values files, lints values and rendered YAML with yamllint, and validates every rendered
# object against the Kubernetes schemas (npm kubernetes-models, helm/test/validate.mjs) plus
# the chart's own invariants (selectors, probes, drain budget, security context). Also
# checks that broken values are refused. Exits non-zero on any failure.
#
#   helm/test.sh
set -euo pipefail
cd "$(dirname "$0")"
HELM=$PWD
OUT=$HELM/test/out
T0=$(date +%s)
stamp() { echo "== $(date +%H:%M:%S) (+$(( $(date +%s) - T0 ))s) $*"; }
die() { echo "helm/test.sh: FAIL: $*" >&2; echo "helm/test.sh: 0 passed, 1 failed"; exit 1; }

# ---------------------------------------------------------------- tools -------------
PKGS=(golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev
      golang-gopkg-yaml.v3-dev yamllint)
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  stamp "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -d "$HELM/test/node_modules/kubernetes-models" ]; then
  stamp "npm install (helm/test: kubernetes-models, yaml)"
  (cd "$HELM/test" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

# Debian's Go packages live in /usr/share/gocode: GOPATH mode, no module downloads.
rm -rf "$OUT"; mkdir -p "$OUT"
stamp "building the renderer"
(cd "$HELM/test/render" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= \
  GOCACHE="$OUT/gocache" go build -o "$OUT/render" .) || die "renderer does not build"

# ---------------------------------------------------------------- render ------------
passed=0
render() { # name [values files...]
  local name=$1; shift
  local args=()
  for f in "$@"; do args+=(-f "$HELM/test/$f"); done
  "$OUT/render" -chart "$HELM/natter" -name natter -namespace chat "${args[@]}" \
    -o "$OUT/$name.yaml" -notes "$OUT/$name.NOTES.txt" 2>"$OUT/$name.log" ||
    { cat "$OUT/$name.log" >&2; die "rendering $name failed"; }
  echo "   $name: $(grep -c '^kind:' "$OUT/$name.yaml") objects ($(grep '^kind:' "$OUT/$name.yaml" | awk '{print $2}' | sort | tr '\n' ' '))"
}
stamp "rendering with default and non-default values"
render default
render external values-external.yaml
render ingress values-ingress.yaml
render production values-production.yaml
render sentinel values-sentinel.yaml
passed=$((passed + 1))

stamp "yamllint (values, Chart.yaml, rendered manifests)"
yamllint -s -c "$HELM/test/yamllint.yaml" "$HELM/natter/Chart.yaml" "$HELM/natter/values.yaml" \
  "$HELM"/test/values-*.yaml "$OUT"/*.yaml || die "yamllint"
passed=$((passed + 1))

stamp "schema validation (kubernetes-models) and chart invariants"
node "$HELM/test/validate.mjs" "$OUT/default.yaml" "$OUT/external.yaml" "$OUT/ingress.yaml" \
  "$OUT/production.yaml" "$OUT/sentinel.yaml" ||
  die "validation"
passed=$((passed + 1))

# ---------------------------------------------------------------- refusals ----------
# What must not render or validate: the checks have teeth.
stamp "broken values are refused"
# refused NAME "WHAT" "MESSAGE": values on stdin must not render, and say MESSAGE.
refused() {
  cat >"$OUT/$1.values.yaml"
  if "$OUT/render" -chart "$HELM/natter" -f "$OUT/$1.values.yaml" -o /dev/null 2>"$OUT/$1.log"; then
    die "$2 rendered"
  fi
  grep -q "$3" "$OUT/$1.log" || die "no clear message for $2: $(cat "$OUT/$1.log")"
}
refused bad-nats "NATS disabled without externalNats.urls" "externalNats.urls is required" <<'V'
nats:
  enabled: false
V
refused bad-natsauth "natsAuth with both a creds file and an NKey seed" \
  "credsKey or nkeySeedKey, not both" <<'V'
natsAuth:
  secret: s
  credsKey: a.creds
  nkeySeedKey: user.nk
V
refused bad-sentinel "Sentinel addresses without a master name" \
  "externalRedis.sentinel.master is required" <<'V'
redis:
  enabled: false
externalRedis:
  url: redis://r/0
  sentinel:
    addrs: "s1:26379"
V
grep -q 'NATTER_HISTORY_STREAMS: "3"' "$OUT/production.yaml" ||
  die "natter.historyStreams 3 did not reach NATTER_HISTORY_STREAMS"
cat >"$OUT/bad-streams.values.yaml" <<'V'
natter:
  historyStreams: 17
V
"$OUT/render" -chart "$HELM/natter" -f "$OUT/bad-streams.values.yaml" -o "$OUT/bad-streams.rendered" 2>/dev/null
if node "$HELM/test/validate.mjs" "$OUT/bad-streams.rendered" >"$OUT/bad-streams.log" 2>&1; then
  die "natter.historyStreams 17 passed validation"
fi
grep -q "NATTER_HISTORY_STREAMS must be 1..16" "$OUT/bad-streams.log" || die "bad-streams refused for the wrong reason: $(cat "$OUT/bad-streams.log")"
cat >"$OUT/bad-grace.values.yaml" <<'V'
terminationGracePeriodSeconds: 5
V
"$OUT/render" -chart "$HELM/natter" -f "$OUT/bad-grace.values.yaml" -o "$OUT/bad-grace.rendered" 2>/dev/null
if node "$HELM/test/validate.mjs" "$OUT/bad-grace.rendered" >"$OUT/bad-grace.log" 2>&1; then
  die "a termination budget shorter than the drain passed validation"
fi
grep -q "terminationGracePeriodSeconds 5" "$OUT/bad-grace.log" || die "bad-grace refused for the wrong reason: $(cat "$OUT/bad-grace.log")"
cat >"$OUT/bad-secret.values.yaml" <<'V'
auth:
  jwtSecret: too-short-for-hs256
V
if "$OUT/render" -chart "$HELM/natter" -f "$OUT/bad-secret.values.yaml" -o /dev/null 2>"$OUT/bad-secret.log"; then
  die "an HS256 jwtSecret of 19 bytes rendered"
fi
grep -q "auth.jwtSecret is 19 bytes; HS256 needs at least 32" "$OUT/bad-secret.log" || die "no clear message for a short jwtSecret: $(cat "$OUT/bad-secret.log")"
passed=$((passed + 1))

echo "rendered manifests in $OUT; $(( $(date +%s) - T0 ))s"
echo "helm/test.sh: $passed passed, 0 failed"
