//! The minutes (*berita acara*) of a village deliberation (musdes/muskel): the one rule for
//! their date, wherever minutes are taken — a proposal at intake, the village review of
//! cases at verivali.

use chrono::NaiveDate;

/// The oldest minutes taken: a deliberation more than a year ago is held again.
pub const MAX_AGE_DAYS: i64 = 366;

/// What is wrong with minutes dated `date`, on `today`: in the future, or more than a
/// year old.
pub fn date_problem(date: NaiveDate, today: NaiveDate) -> Option<&'static str> {
    if date > today {
        Some("is in the future")
    } else if (today - date).num_days() > MAX_AGE_DAYS {
        Some("is more than a year old: hold a new deliberation")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("date")
    }

    /// Finding 9: village review minutes dated 1990-01-01 were taken.
    #[test]
    fn minutes_from_the_future_or_over_a_year_ago_are_refused() {
        let today = d(2028, 2, 29);
        assert_eq!(date_problem(today, today), None);
        assert_eq!(date_problem(d(2027, 2, 28), today), None);
        assert!(date_problem(d(2028, 3, 1), today).is_some_and(|p| p.contains("future")));
        assert!(date_problem(d(1990, 1, 1), today).is_some_and(|p| p.contains("year old")));
        assert!(date_problem(d(2027, 2, 27), today).is_some_and(|p| p.contains("year old")));
    }
}
