#!/usr/bin/env bash
# Fuzzes the parsers that take outside bytes: NIK/KK numbers, the DCI JSON envelope and
# its signatures, the CSV/XLSX import reader and programme rules in CEL
# (fuzz/fuzz_targets/). Each target runs
# for SECONDS (default 600), one after another, growing fuzz/corpus/<target> (kept in the
# repository, minimised after each run); a crash stops the script and leaves its input
# in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]
#
# Needs a nightly toolchain (libFuzzer's sanitizer coverage); installs cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-all}
seconds=${2:-600}
rustup toolchain list | grep -q '^nightly' || {
  echo "fuzz: a nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 1
}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets=(nik dci_json import_sheet cel_rule)
[ "$target" = all ] || targets=("$target")
cd fuzz
cargo +nightly fuzz build -O
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  start=$(date +%s)
  echo "fuzz: $t for ${seconds} s"
  # The fuzzer's own exit status decides (a crash exits non-zero); grep only filters.
  set +e
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 |
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY)'
  status=${PIPESTATUS[0]}
  set -e
  [ "$status" -eq 0 ] || { echo "fuzz: $t failed (exit $status); see fuzz/artifacts/$t" >&2; exit "$status"; }
  cargo +nightly fuzz cmin -O "$t" "corpus/$t" >/dev/null 2>&1
  echo "fuzz: $t ran $(( $(date +%s) - start )) s without a crash; corpus $(ls "corpus/$t" | wc -l) inputs"
done
