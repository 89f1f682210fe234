#!/usr/bin/env bash
# Benchmarks on the real stack with release binaries; each prints its figures beside the
# baseline its issue names, measured in the same run, as a ratio.
#
#   scripts/bench.sh intake [HOUSEHOLDS]   bulk import vs raw COPY (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-intake}
scripts/stack.sh start
eval "$(scripts/stack.sh env)"
export DTKS_BENCH_HOUSEHOLDS=${2:-${DTKS_BENCH_HOUSEHOLDS:-100000}}
cargo build --release --bins
cargo bench -p dtks-e2e --bench "$bench"
