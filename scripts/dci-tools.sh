#!/usr/bin/env bash
# Installs what the DCI conformance run needs into a cache directory (nothing
# system-wide) and prints the directory whose bin/ holds it:
#   schemathesis   property-based conformance testing against an OpenAPI document
# Idempotent: a second run finds it in place and does nothing.
set -euo pipefail
CACHE=${DTKS_DCI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dtks/dci-tools}
VERSION=4.32.5
log() { printf '[dci-tools] %s\n' "$*" >&2; }

# shellcheck source=scripts/venv.sh
. "$(dirname "$0")/venv.sh"
tools_venv "$CACHE"
if ! "$CACHE/venv/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  log "installing schemathesis $VERSION (once)"
  "$CACHE/venv/bin/pip" install -q --upgrade pip >/dev/null
  "$CACHE/venv/bin/pip" install -q "schemathesis==$VERSION" >&2
fi
mkdir -p "$CACHE/bin"
ln -sf "$CACHE/venv/bin/schemathesis" "$CACHE/bin/schemathesis"
echo "$CACHE"
