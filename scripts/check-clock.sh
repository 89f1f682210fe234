#!/usr/bin/env bash
# Refuses test sources that name a fixed year, year-month or date where the services take
# theirs from the clock: periods, request dates and instants in tests come from
# tests/src/time.rs (dtks_e2e::time), which reads the clock the services of a run use.
# A fixed year-month once turned the whole suite red when the calendar moved on.
#
# Facts about people (birth dates in registry CSVs and households) are not periods and
# are not matched: the patterns look for a period or date the tests build, not a string
# in a CSV row.
set -euo pipefail
cd "$(dirname "$0")/.."

patterns=(
  'Period[[:space:]]*\{[[:space:]]*year:[[:space:]]*[0-9]'   # pb::Period { year: 2026, ... }
  '^[[:space:]]*year:[[:space:]]*20[0-9][0-9][[:space:]]*,'   # year: 2026, on its own line
  '"20[0-9][0-9]-[0-9][0-9]("|-[0-9][0-9]")'                 # "2026-11", "2026-11-01"
  'from_ymd_opt\(20[0-9][0-9]'                                # NaiveDate::from_ymd_opt(2026, ...)
  "[0-9]+, 20[0-9][0-9], (1[0-2]|[1-9]), "                    # SQL values ..., 2026, 11, ...
  'Utc::now\(\)'                                              # the wall clock, not the services'
  'Timestamp::from\((std::time::)?SystemTime::now'            # an API instant from the wall clock
)
found=0
for p in "${patterns[@]}"; do
  # tests/src/time.rs is where the tests' time comes from; its own unit tests name
  # boundary instants on purpose.
  if hits=$(grep -rnE --include='*.rs' "$p" tests/e2e tests/src | grep -v '^tests/src/time.rs:'); then
    echo "$hits"
    found=1
  fi
done
if (( found )); then
  echo "check-clock: a test names a fixed period or date, or reads the wall clock;" >&2
  echo "check-clock: take it from dtks_e2e::time (period(), today(), now(), date_from_today())." >&2
  exit 1
fi
echo "check-clock: no fixed periods or dates in tests/"
