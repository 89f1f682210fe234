#!/usr/bin/env bash
# The Helm chart's checks (part of scripts/test.sh):
#   - helm lint --strict for every values profile;
#   - helm template of every profile (and KEDA / mTLS variants) validated by
#     kubernetes-validate --strict against the Kubernetes version the chart targets;
#   - checkov over every rendered manifest, no failed check left (the skipped ones are
#     listed with their reasons in helm/dtks/checkov-skips.txt or annotated on the object);
#   - the variants render what they promise (KEDA on: a ScaledObject instead of the HPA;
#     mTLS on: the mesh's injection or a STRICT PeerAuthentication), and the values schema
#     refuses a value of the wrong type, naming it.
# The tools are installed by scripts/chart-tools.sh into a cache directory.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBERNETES_VERSION=1.31.0
TOOLS=$(scripts/chart-tools.sh)
PATH="$TOOLS/bin:$PATH"
CHART=helm/dtks
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
fail() { echo "chart-check: $*" >&2; exit 1; }

# profile name, then helm arguments
profiles=(
  "default|"
  "small|-f $CHART/values-small.yaml"
  "national|-f $CHART/values-national.yaml"
  "keda|--set services.matching.keda.enabled=true --set services.verivali.keda.enabled=true"
  "linkerd|--set mtls.enabled=true --set mtls.mesh=linkerd"
  "istio|--set mtls.enabled=true --set mtls.mesh=istio"
  "digests|--set image.digests.intake=sha256:$(printf '0%.0s' {1..64})"
)
for entry in "${profiles[@]}"; do
  name=${entry%%|*}
  args=${entry#*|}
  # shellcheck disable=SC2086
  helm lint --strict --quiet "$CHART" $args >/dev/null || fail "helm lint --strict failed for $name"
  mkdir -p "$OUT/$name"
  # shellcheck disable=SC2086
  helm template dtks "$CHART" --namespace dtks $args > "$OUT/$name/manifests.yaml"
  kubernetes-validate --strict --quiet -k "$KUBERNETES_VERSION" "$OUT/$name/manifests.yaml" \
    || fail "kubernetes-validate --strict failed for $name"
done
echo "chart-check: lint and kubernetes-validate ($KUBERNETES_VERSION) passed for ${#profiles[@]} profiles"

skips=$(grep -v '^#' "$CHART/checkov-skips.txt" | awk 'NF {print $1}' | paste -sd, -)
checkov -d "$OUT" --framework kubernetes --quiet --compact --skip-check "$skips" > "$OUT/checkov.txt" 2>&1 \
  || { cat "$OUT/checkov.txt" >&2; fail "checkov found failed checks"; }
grep -E "Passed checks" "$OUT/checkov.txt" | sed 's/^/chart-check: checkov: /'

count() { grep -c "$1" "$2" || true; }
# KEDA: a ScaledObject for each stage that has it, and no HPA beside it.
grep -A4 "^kind: ScaledObject" "$OUT/keda/manifests.yaml" | grep -q "name: dtks-matching" || fail "KEDA on: no ScaledObject for matching"
[ "$(count '^kind: ScaledObject' "$OUT/keda/manifests.yaml")" -eq 2 ] || fail "KEDA on: expected two ScaledObjects"
[ "$(count '^kind: TriggerAuthentication' "$OUT/keda/manifests.yaml")" -eq 1 ] || fail "KEDA on: expected one TriggerAuthentication"
[ "$(count '^kind: HorizontalPodAutoscaler' "$OUT/keda/manifests.yaml")" -eq 3 ] || fail "KEDA on: the two KEDA stages still have an HPA"
[ "$(count '^kind: ScaledObject' "$OUT/default/manifests.yaml")" -eq 0 ] || fail "KEDA off: a ScaledObject was rendered"
[ "$(count '^kind: HorizontalPodAutoscaler' "$OUT/default/manifests.yaml")" -eq 5 ] || fail "KEDA off: expected an HPA for every stage but determination"
# mTLS: every stage's pods in the mesh.
[ "$(count 'linkerd.io/inject: enabled' "$OUT/linkerd/manifests.yaml")" -eq 6 ] || fail "mTLS (linkerd): not every stage is injected"
[ "$(count '^kind: PeerAuthentication' "$OUT/istio/manifests.yaml")" -eq 1 ] || fail "mTLS (istio): no PeerAuthentication"
[ "$(count 'sidecar.istio.io/inject' "$OUT/istio/manifests.yaml")" -eq 6 ] || fail "mTLS (istio): not every stage is injected"
[ "$(count 'linkerd.io/inject\|PeerAuthentication\|sidecar.istio.io' "$OUT/default/manifests.yaml")" -eq 0 ] || fail "mTLS off: mesh objects rendered"
# Determination: a singleton, the only stage with a token, and its Lease role names only its Lease.
grep -q 'resourceNames: \["dtks-determination"\]' "$OUT/default/manifests.yaml" || fail "determination's Role is not limited to its Lease"
[ "$(count 'automountServiceAccountToken: true' "$OUT/default/manifests.yaml")" -eq 2 ] || fail "only determination's ServiceAccount and pods mount a token"
# Digests: a stage with one is pulled by it.
grep -q 'dtks-intake@sha256:' "$OUT/digests/manifests.yaml" || fail "a digest is not used"
# An identity provider: its issuer reaches every stage, and every stage may reach it.
grep -q 'DTKS_AUTH__OIDC_ISSUER: "https://sso.kemensos.go.id/realms/dtks"' "$OUT/national/manifests.yaml" || fail "the OIDC issuer is not configured"
[ "$(count 'The identity provider, for its published keys' "$OUT/national/manifests.yaml")" = 6 ] || fail "not every stage may reach the identity provider"
[ "$(count 'The identity provider, for its published keys' "$OUT/default/manifests.yaml")" = 0 ] || fail "egress to an identity provider that is not configured"
# TLS: every stage gets its certificate and the CA; the probes use the plain health port.
[ "$(count 'value: /run/secrets/dtks/tls.crt' "$OUT/national/manifests.yaml")" -ge 6 ] || fail "TLS on: not every stage has its certificate"
[ "$(count 'grpc: { port: 50052 }' "$OUT/national/manifests.yaml")" = 18 ] || fail "TLS on: the probes do not use the health port"
grep -q 'DTKS_UPSTREAM__DETERMINATION_URL: "https://' "$OUT/national/manifests.yaml" || fail "TLS on: distribution calls determination in plain text"
[ "$(count 'DTKS_TLS__' "$OUT/default/manifests.yaml")" = 0 ] || fail "TLS off: TLS settings rendered"
# No credential in any manifest: only Secret references.
if grep -qiE 'postgres://|amqp://|redis://' "$OUT"/*/manifests.yaml; then fail "a credential is inline"; fi
# The schema refuses a wrong type, naming the value.
if helm template dtks "$CHART" --set services.intake.replicas=two > "$OUT/refused.txt" 2>&1; then
  fail "the schema accepted replicas=two"
fi
grep -q "/services/intake/replicas" "$OUT/refused.txt" || fail "the schema's refusal does not name the value: $(cat "$OUT/refused.txt")"
echo "chart-check: KEDA on/off, mTLS on/off (linkerd, istio), digests and the schema's refusal behave"
