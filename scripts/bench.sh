#!/usr/bin/env bash
# Benchmarks on the real stack with release binaries; each prints its figures beside the
# baseline its issue names, measured in the same run, as a ratio.
#
#   scripts/bench.sh intake [HOUSEHOLDS]   bulk import vs raw COPY (default 100000)
#   scripts/bench.sh matching [H] [U]      every person of H proposed households (default
#                                          290000, about 1 M persons) through the service's
#                                          MatchWave against a registry with U more households
#                                          (default 2580000, about 10 M persons in all):
#                                          precision/recall/F1 with the NIK used and withheld,
#                                          Splink on the same rows, outcomes by departure,
#                                          MatchPerson's latency on a sample
#                                          (DTKS_BENCH_SAMPLE, 20000); the wave without
#                                          NIKs over the first DTKS_BENCH_WITHHELD persons
#                                          (default every one)
#   scripts/bench.sh linkage [SCALE]       the linkage engine alone on files vs Splink, exact
#                                          NIK (1.0 = 10 M registry)
#   scripts/bench.sh verivali [CASES]      the workflow by batched commands (default 100000)
#   scripts/bench.sh distribution [H]      a list per shipped programme over a determined month
#                                          of H households (default 10 M), one list streamed
#   scripts/bench.sh determination [M] [R] a full run over R households (default 10 M; 0 skips
#                                          it), the ranking core vs DuckDB ntile (M million scores)
#   scripts/bench.sh pipeline [H] [RATE]   the whole pipeline under sustained load: H households
#                                          (default 20000) offered at RATE/s (default 1000)
#   scripts/bench.sh all                   every one of them at its defaults, then one table of
#                                          them all, written to docs/benchmarks.md
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-intake}
if [ "$bench" = all ]; then
  export DTKS_BENCH_RESULTS=$PWD/target/bench-results.jsonl
  export DTKS_BENCH_LOGS=$PWD/target/bench-logs
  mkdir -p "$DTKS_BENCH_LOGS"
  rm -f "$DTKS_BENCH_RESULTS" "$DTKS_BENCH_LOGS"/*.log
  for stage in intake matching linkage verivali determination distribution pipeline; do
    echo "== $stage" >&2
    # Each benchmark's own figures go to its log too; the build's chatter does not.
    scripts/bench.sh "$stage" | tee "$DTKS_BENCH_LOGS/$stage.log"
  done
  exec cargo bench -p dtks-e2e --bench summary
fi
# The benchmarks drive each stage through a handful of synthetic officers: the guard's
# per-officer call rate (100/s by default) would measure itself, not the stage.
export DTKS_LIMITS__CALLS_PER_SECOND=${DTKS_LIMITS__CALLS_PER_SECOND:-1000000}
export DTKS_LIMITS__CALL_BURST=${DTKS_LIMITS__CALL_BURST:-1000000}
if [ "$bench" = linkage ] || [ "$bench" = determination ]; then
  # Files only: no servers. Splink and DuckDB need python3-venv.
  python3 -c 'import ensurepip' >/dev/null 2>&1 || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  }
  if [ "$bench" = determination ]; then
    export DTKS_BENCH_MILLIONS=${2:-${DTKS_BENCH_MILLIONS:-45}}
    export DTKS_BENCH_REGISTRY=${3:-${DTKS_BENCH_REGISTRY:-10000000}}
    # The full run needs the stack and the service binaries.
    scripts/stack.sh start
    eval "$(scripts/stack.sh env)"
    cargo build --release --bins
    exec cargo bench -p dtks-e2e --bench determination
  fi
  export DTKS_BENCH_SCALE=${2:-${DTKS_BENCH_SCALE:-1.0}}
  cargo build --release -p dtksctl
  exec cargo bench -p dtks-e2e --bench linkage
fi
scripts/stack.sh start
eval "$(scripts/stack.sh env)"
if [ "$bench" = matching ]; then
  python3 -c 'import ensurepip' >/dev/null 2>&1 || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  }
  export DTKS_BENCH_HOUSEHOLDS=${2:-${DTKS_BENCH_HOUSEHOLDS:-290000}}
  export DTKS_BENCH_UNPROPOSED=${3:-${DTKS_BENCH_UNPROPOSED:-2580000}}
  cargo build --release --bins
  exec cargo bench -p dtks-e2e --bench matching
fi
if [ "$bench" = distribution ]; then
  export DTKS_BENCH_HOUSEHOLDS=${2:-${DTKS_BENCH_HOUSEHOLDS:-10000000}}
elif [ "$bench" = pipeline ]; then
  export DTKS_BENCH_HOUSEHOLDS=${2:-${DTKS_BENCH_HOUSEHOLDS:-20000}}
  export DTKS_BENCH_OFFERED=${3:-${DTKS_BENCH_OFFERED:-1000}}
else
  export DTKS_BENCH_HOUSEHOLDS=${2:-${DTKS_BENCH_HOUSEHOLDS:-100000}}
fi
export DTKS_BENCH_CASES=${2:-${DTKS_BENCH_CASES:-100000}}
cargo build --release --bins
cargo bench -p dtks-e2e --bench "$bench"
