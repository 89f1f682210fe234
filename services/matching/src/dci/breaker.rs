//! The civil registry's circuit breaker.

use std::time::{Duration, Instant};

/// Consecutive failures and, when open, until when requests fail fast.
#[derive(Debug, Default)]
pub struct Breaker {
    pub(super) failures: u32,
    pub(super) open_until: Option<Instant>,
}

impl Breaker {
    pub const THRESHOLD: u32 = 5;
    pub const COOL_DOWN: Duration = Duration::from_secs(5);

    /// Whether a request may go out now (closed, or open and cooled down: half-open).
    pub(super) fn allows(&self, now: Instant) -> bool {
        self.open_until.is_none_or(|until| now >= until)
    }

    pub(super) fn record(&mut self, ok: bool, now: Instant) {
        if ok {
            self.failures = 0;
            self.open_until = None;
        } else {
            self.failures += 1;
            if self.failures >= Self::THRESHOLD {
                self.open_until = Some(now + Self::COOL_DOWN);
            }
        }
    }
}
