//! The monthly period (*periode*) that determination, QA sampling, lists and reports are
//! cut by: a calendar month, in UTC like every time the services store.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// A calendar month. Built only through [`Period::new`] and the constructors below, so a
/// value always names a real month of the years the registry works in (2000–2100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: i32,
    month: u32,
}

/// The years a period may name: the registry's working range, as the APIs accept it.
pub const YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

impl Period {
    /// The month `month` (1–12) of `year`, when the year is in [`YEARS`].
    pub fn new(year: i32, month: u32) -> Option<Self> {
        (YEARS.contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// The period a date falls in.
    pub fn of(date: NaiveDate) -> Option<Self> {
        Self::new(date.year(), date.month())
    }

    /// The period an instant falls in (UTC).
    pub fn containing(at: DateTime<Utc>) -> Option<Self> {
        Self::of(at.date_naive())
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// The month after this one; `None` past the last year.
    pub fn next(self) -> Option<Self> {
        if self.month == 12 {
            Self::new(self.year.checked_add(1)?, 1)
        } else {
            Self::new(self.year, self.month + 1)
        }
    }

    /// The month before this one; `None` before the first year.
    pub fn previous(self) -> Option<Self> {
        if self.month == 1 {
            Self::new(self.year.checked_sub(1)?, 12)
        } else {
            Self::new(self.year, self.month - 1)
        }
    }

    /// The first day of the month.
    pub fn first_day(self) -> NaiveDate {
        // Always a real date: the month is 1–12 and the year in range.
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The last day of the month (28, 29, 30 or 31).
    pub fn last_day(self) -> NaiveDate {
        match self.next() {
            Some(next) => next.first_day().pred_opt().unwrap_or(NaiveDate::MIN),
            None => NaiveDate::from_ymd_opt(self.year, 12, 31).unwrap_or(NaiveDate::MIN),
        }
    }

    /// The instants of the month: from its first midnight (inclusive) to the next
    /// month's (exclusive), in UTC.
    pub fn bounds(self) -> (DateTime<Utc>, DateTime<Utc>) {
        let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
        let start = midnight(self.first_day());
        let end = midnight(self.last_day()) + chrono::Duration::days(1);
        (start, end)
    }

    /// Whether `at` falls inside the month.
    pub fn contains(self, at: DateTime<Utc>) -> bool {
        let (start, end) = self.bounds();
        start <= at && at < end
    }
}

impl fmt::Display for Period {
    /// `YYYY-MM`, as officers write a period.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Period {
    type Err = String;

    /// `YYYY-MM`, with the month in 1–12 and the year in [`YEARS`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = || {
            format!(
                "periode {s:?} harus berbentuk YYYY-MM (period must be YYYY-MM, 2000-01 to 2100-12)"
            )
        };
        let (year, month) = s.split_once('-').ok_or_else(refuse)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(refuse());
        }
        let year = year.parse().map_err(|_| refuse())?;
        let month = month.parse().map_err(|_| refuse())?;
        Self::new(year, month).ok_or_else(refuse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn at(y: i32, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(&date(y, m, d).and_hms_opt(hh, mm, ss).expect("time"))
    }

    #[test]
    fn the_last_second_of_a_year_and_the_first_of_the_next_are_two_periods() {
        let december = Period::containing(at(2030, 12, 31, 23, 59, 59)).expect("period");
        let january = Period::containing(at(2031, 1, 1, 0, 0, 0)).expect("period");
        assert_eq!(december.to_string(), "2030-12");
        assert_eq!(january.to_string(), "2031-01");
        assert_eq!(december.next(), Some(january));
        assert_eq!(january.previous(), Some(december));
        assert!(december.contains(at(2030, 12, 31, 23, 59, 59)));
        assert!(!december.contains(at(2031, 1, 1, 0, 0, 0)));
        assert_eq!(december.last_day(), date(2030, 12, 31));
        assert_eq!(december.bounds().1, january.bounds().0);
    }

    #[test]
    fn february_ends_on_the_28th_or_in_a_leap_year_the_29th() {
        let plain = Period::new(2027, 2).expect("period");
        let leap = Period::new(2028, 2).expect("period");
        let century = Period::new(2100, 2).expect("period");
        let quad_century = Period::new(2000, 2).expect("period");
        assert_eq!(plain.last_day(), date(2027, 2, 28));
        assert_eq!(leap.last_day(), date(2028, 2, 29));
        assert_eq!(century.last_day(), date(2100, 2, 28));
        assert_eq!(quad_century.last_day(), date(2000, 2, 29));
        assert!(leap.contains(at(2028, 2, 29, 23, 59, 59)));
        assert_eq!(
            Period::containing(at(2028, 2, 29, 23, 59, 59)).and_then(Period::next),
            Period::containing(at(2028, 3, 1, 0, 0, 0))
        );
        assert_eq!(
            Period::of(date(2027, 3, 1)).and_then(Period::previous),
            Some(plain)
        );
    }

    #[test]
    fn every_month_of_a_decade_is_followed_by_the_next_and_tiles_time() {
        let mut p = Period::new(2024, 1).expect("period");
        for _ in 0..120 {
            let next = p.next().expect("next");
            assert_eq!(p.bounds().1, next.bounds().0, "{p} then {next}");
            assert_eq!(next.previous(), Some(p));
            assert_eq!(Period::of(p.last_day()), Some(p));
            assert_eq!(
                Period::of(p.last_day().succ_opt().expect("day")),
                Some(next)
            );
            p = next;
        }
    }

    #[test]
    fn months_and_years_outside_the_range_are_not_periods() {
        assert_eq!(Period::new(2026, 0), None);
        assert_eq!(Period::new(2026, 13), None);
        assert_eq!(Period::new(1999, 12), None);
        assert_eq!(Period::new(2101, 1), None);
        assert_eq!(Period::new(2100, 12).and_then(Period::next), None);
        assert_eq!(Period::new(2000, 1).and_then(Period::previous), None);
        assert_eq!(
            Period::new(2100, 12).map(Period::last_day),
            Some(date(2100, 12, 31))
        );
    }

    #[test]
    fn a_period_is_read_as_officers_write_it() {
        assert_eq!(
            "2027-02".parse::<Period>(),
            Ok(Period::new(2027, 2).expect("p"))
        );
        assert_eq!(
            "2100-12".parse::<Period>().map(|p| p.to_string()),
            Ok("2100-12".into())
        );
        for bad in [
            "2027-13",
            "2027-00",
            "1999-12",
            "2101-01",
            "2027-2",
            "27-02",
            "2027",
            "",
            "2027-02-01",
            "abcd-ef",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
    }
}
