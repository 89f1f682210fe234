//! Time in the end-to-end tests: the clock the services of a run act on, the tokens the
//! tests hold, and how long a test waits before it gives up.
//!
//! - **The services' clock.** Every process of a run (and `dtksctl`, and this test
//!   process) runs on the system clock shifted to the middle of the current month (the
//!   15th, 12:00 UTC; see [`anchor`]), through `DTKS_CLOCK_OFFSET_SECS`. A test started
//!   at a month's last second therefore still sees one period from start to end, and
//!   takes its periods and dates from [`now`], [`today`] and [`period`] — never from the
//!   calendar (`scripts/check-clock.sh` refuses a fixed year-month in a test).
//! - **Tokens** live `DTKS_E2E_TOKEN_SECS` (default 4 h): longer than any test, on any
//!   machine. Verification, expiry and revocation stay on the system clock.
//! - **Patience.** `DTKS_E2E_PATIENCE` (a factor, default 1; `.ci/run` sets 2) scales
//!   every wait of the harness and of the long tests, so a slow or shared machine waits
//!   longer rather than failing.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// The instant the services' clock stands at when the system clock says `wall`: the 15th
/// of `wall`'s month at 12:00 UTC, at least 14 days from either end of the month.
pub fn anchor(wall: DateTime<Utc>) -> DateTime<Utc> {
    let date = NaiveDate::from_ymd_opt(wall.year(), wall.month(), 15).unwrap_or(wall.date_naive());
    Utc.from_utc_datetime(&date.and_hms_opt(12, 0, 0).unwrap_or_default())
}

/// This process's offset from the system clock, handed to every process of its runs.
/// Fixed at first use; the platform's clock in this process (an in-process verivali,
/// the events and audit entries it stamps) is put on the same offset.
pub fn offset_secs() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let wall = Utc::now();
        let offset = (anchor(wall) - wall).num_seconds();
        let installed = dtks_platform::clock::install_offset(offset);
        assert_eq!(
            installed, offset,
            "the platform clock of the test process was read before the harness set it"
        );
        offset
    })
}

/// The services' time now.
pub fn now() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(offset_secs())
}

/// The services' date today.
pub fn today() -> NaiveDate {
    now().date_naive()
}

/// The services' current period: the month a run's cases are accepted in.
pub fn period() -> dtks_proto::common::v1::Period {
    let p = dtks_domain::Period::containing(now()).expect("the clock stands in 2000–2100");
    dtks_proto::common::v1::Period {
        year: p.year(),
        month: p.month() as i32,
    }
}

/// The period `months` after the current one (negative: before).
pub fn period_after(months: i32) -> dtks_proto::common::v1::Period {
    let mut p = dtks_domain::Period::containing(now()).expect("the clock stands in 2000–2100");
    for _ in 0..months.unsigned_abs() {
        p = if months > 0 { p.next() } else { p.previous() }.expect("a period in range");
    }
    dtks_proto::common::v1::Period {
        year: p.year(),
        month: p.month() as i32,
    }
}

/// The services' date `days` from today (negative: before), as the APIs carry dates.
pub fn date_from_today(days: i64) -> dtks_proto::common::v1::Date {
    dtks_platform::convert::pb_date(today() + chrono::Duration::days(days))
}

/// The services' instant `secs` from now, as the APIs carry instants.
pub fn timestamp_from_now(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: now().timestamp() + secs,
        nanos: 0,
    }
}

/// How long the tests' tokens live (`DTKS_E2E_TOKEN_SECS`, default 4 h).
pub fn token_secs() -> u64 {
    crate::env_or("DTKS_E2E_TOKEN_SECS", 4 * 3600)
}

/// `secs` scaled by `DTKS_E2E_PATIENCE` (default 1).
pub fn patience(secs: u64) -> Duration {
    let factor: f64 = crate::env_or("DTKS_E2E_PATIENCE", 1.0);
    let factor = if factor.is_finite() && factor >= 1.0 {
        factor
    } else {
        1.0
    };
    Duration::from_secs_f64(secs as f64 * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_opt(hh, mm, ss))
                .expect("instant"),
        )
    }

    /// A run started at any second of a month, a month's last second too, runs in that
    /// month for two weeks before its period could change.
    #[test]
    fn a_run_started_at_a_months_last_second_stays_two_weeks_inside_that_month() {
        for wall in [
            at(2026, 11, 30, 23, 59, 59),
            at(2026, 12, 31, 23, 59, 59),
            at(2027, 1, 1, 0, 0, 0),
            at(2028, 2, 29, 23, 59, 59),
            at(2027, 2, 28, 23, 59, 59),
            at(2026, 12, 15, 12, 0, 0),
        ] {
            let start = anchor(wall);
            let month = dtks_domain::Period::containing(wall).expect("period");
            assert_eq!(
                dtks_domain::Period::containing(start),
                Some(month),
                "{wall}"
            );
            let (first, end) = month.bounds();
            assert!(start - first >= chrono::Duration::days(14), "{wall}");
            assert!(end - start >= chrono::Duration::days(13), "{wall}");
        }
    }
}
