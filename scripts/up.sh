#!/usr/bin/env bash
# The main job on one machine: start the stack, build, run all services, load a synthetic
# regency, drive a full monthly cycle and print the report. Services stop when it ends
# (set DTKS_KEEP_RUNNING=1 to keep them serving).
set -euo pipefail
cd "$(dirname "$0")/.."
HOUSEHOLDS=${DTKS_HOUSEHOLDS:-300}
REGENCY=${DTKS_REGENCY:-32.04}
PERIOD=${DTKS_PERIOD:-$(date +%Y-%m)}

command -v cargo >/dev/null 2>&1 || { echo "Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
scripts/stack.sh start
# Every run starts from an empty registry (DTKS_RESET=0 keeps what an earlier run left).
[ "${DTKS_RESET:-1}" = 0 ] || scripts/stack.sh reset
eval "$(scripts/stack.sh env)"
export DTKS_AUTH__JWT_SECRET=${DTKS_AUTH__JWT_SECRET:-local-dev-secret-change-me}
export DTKS_DEMO_AUTO_APPROVE=true
export DTKS_UPSTREAM__CIVIL_REGISTRY_URL=http://127.0.0.1:8090
export DTKS_UPSTREAM__DETERMINATION_URL=http://127.0.0.1:50054
export RUST_LOG=${RUST_LOG:-warn}

cargo build --workspace --bins
bin=target/debug
run_dir=target/dtks-run
mkdir -p "$run_dir"

# Signed DCI between matching and the reference civil registry: a key pair each.
read -r dci_seed dci_public < <($bin/dtksctl dci-keygen)
read -r registry_seed registry_public < <($bin/dtksctl dci-keygen)
export DTKS_DCI__SIGNING_KEY=$dci_seed
export DTKS_DCI__REGISTRY_KEYS="dukcapil-reference|k1=$registry_public"
export DTKS_DCI__CALLBACK_ADDR=127.0.0.1:8091
export DTKS_DCI__CALLBACK_URL=http://127.0.0.1:8091
export DTKS_REGISTRY_SIGNING_KEY=$registry_seed
export DTKS_REGISTRY_TRUSTED_KEYS="dtks-matching|k1=$dci_public"
export DTKS_REGISTRY_SENDER_URIS="dtks-matching=http://127.0.0.1:8091"
# The key that seals personal data at rest, kept with the run so that its rows stay
# readable by the next run that keeps them (DTKS_RESET=0).
[ -s "$run_dir/data-keys" ] || $bin/dtksctl data-key --id local > "$run_dir/data-keys"
export DTKS_DATA_KEYS_FILE=${DTKS_DATA_KEYS_FILE:-$PWD/$run_dir/data-keys}

$bin/dtksctl gen --regencies "$REGENCY" --households "$HOUSEHOLDS" --out "$run_dir/population"
$bin/dtks-civil-registry load "$run_dir/population/registry.csv"
services=(intake matching verivali determination distribution reporting)
for s in "${services[@]}"; do $bin/dtks-$s migrate; done

pids=()
cleanup() { [ "${DTKS_KEEP_RUNNING:-0}" = 1 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
DTKS_CIVIL_REGISTRY_ADDR=127.0.0.1:8090 $bin/dtks-civil-registry serve > "$run_dir/civil-registry.log" 2>&1 & pids+=($!)
port=50051
for s in "${services[@]}"; do
  DTKS_GRPC_ADDR=127.0.0.1:$port $bin/dtks-$s > "$run_dir/$s.log" 2>&1 & pids+=($!)
  port=$((port + 1))
done
sleep 2
$bin/dtksctl cycle --proposals "$run_dir/population/proposals.jsonl" --period "$PERIOD"
