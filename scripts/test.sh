#!/usr/bin/env bash
# Runs every test: the Helm chart's checks (scripts/chart-check.sh), unit and property
# tests of each crate, and the end-to-end tests in tests/ against the real PostgreSQL,
# RabbitMQ and Redis that scripts/stack.sh starts.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/chart-check.sh
# No test names a fixed period or date: the suite must pass in any month.
scripts/check-clock.sh

scripts/stack.sh start
scripts/stack.sh sweep
eval "$(scripts/stack.sh env)"

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
# The end-to-end tests start the service binaries, so build them first.
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
