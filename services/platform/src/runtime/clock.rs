//! The time a service acts on. Deadlines, due dates, ages, periods and the times stamped
//! on records and events are read from [`now`] (or from a [`Clock`] handed to the code),
//! never from the system clock directly, so that a test can pause time, move it forward
//! by days, or run the whole stack at a chosen point of the month.
//!
//! The process's clock is the system clock shifted by `DTKS_CLOCK_OFFSET_SECS` seconds
//! (default 0; read once, at first use). Only tests and drills set it: the end-to-end
//! harness puts every process of a run in the middle of the month, so that a run
//! started at a month's last second still sees one month from start to end.
//! Security times — token expiry and issue, DCI message freshness, revocation, rate
//! limits — stay on the system clock whatever the offset.

use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};

/// The variable that shifts a process's clock; see the module's documentation.
pub const OFFSET_VAR: &str = "DTKS_CLOCK_OFFSET_SECS";

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub type SharedClock = Arc<dyn Clock>;

static OFFSET: OnceLock<i64> = OnceLock::new();

/// A century either way: bounds the offset so that adding it cannot overflow.
const MAX_OFFSET_SECS: i64 = 3_155_760_000;

/// The process's offset from the system clock, in seconds.
pub fn offset_secs() -> i64 {
    *OFFSET.get_or_init(|| {
        std::env::var(OFFSET_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map_or(0, |secs| secs.clamp(-MAX_OFFSET_SECS, MAX_OFFSET_SECS))
    })
}

/// Puts this process on `secs` of offset, unless its clock was read already; answers
/// the offset in force. For a test process that starts services inside itself.
pub fn install_offset(secs: i64) -> i64 {
    *OFFSET.get_or_init(|| secs.clamp(-MAX_OFFSET_SECS, MAX_OFFSET_SECS))
}

/// The process's time: the system clock shifted by [`offset_secs`].
pub fn now() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(offset_secs())
}

/// The process's date (UTC).
pub fn today() -> chrono::NaiveDate {
    now().date_naive()
}

/// The process's clock: what every service runs on.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        now()
    }
}

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until moved; for tests.
#[derive(Clone)]
pub struct PausedClock(Arc<Mutex<DateTime<Utc>>>);

impl PausedClock {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Clock for PausedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
