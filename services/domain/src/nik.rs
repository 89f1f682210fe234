//! NIK (Nomor Induk Kependudukan) and KK (Kartu Keluarga) numbers.
//!
//! A NIK is `PP RR DD ddmmyy ssss`: province, regency, district of registration, birth
//! date with 40 added to the day for women, and a serial that is never `0000`. A KK
//! number has the same region prefix, the card's issue date (no +40) and a serial.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::codes::Sex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NikError {
    #[error("must be exactly 16 digits, got {0} characters")]
    Length(usize),
    #[error("must contain digits only")]
    NotDigits,
    #[error("region prefix {0} is not a valid province/regency/district code")]
    Region(String),
    #[error("date part {0} is not a valid date")]
    Date(String),
    #[error("serial number must not be 0000")]
    Serial,
}

fn digits16(input: &str) -> Result<&[u8], NikError> {
    let bytes = input.as_bytes();
    if bytes.len() != 16 {
        return Err(NikError::Length(input.chars().count()));
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Err(NikError::NotDigits);
    }
    Ok(bytes)
}

fn two(b: &[u8]) -> u32 {
    u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0')
}

fn check_region(b: &[u8]) -> Result<(), NikError> {
    let (p, r, d) = (two(&b[0..2]), two(&b[2..4]), two(&b[4..6]));
    if (11..=99).contains(&p) && r >= 1 && d >= 1 {
        Ok(())
    } else {
        Err(NikError::Region(
            String::from_utf8_lossy(&b[0..6]).into_owned(),
        ))
    }
}

/// Day, month and two-digit year are checked against a leap year so that 29 February
/// is accepted whatever the century turns out to be.
fn check_date(day: u32, month: u32, b: &[u8]) -> Result<(), NikError> {
    if NaiveDate::from_ymd_opt(2000, month, day).is_none() {
        return Err(NikError::Date(
            String::from_utf8_lossy(&b[6..12]).into_owned(),
        ));
    }
    Ok(())
}

/// What a NIK and a KK number share: 16 digits, a valid region prefix, a real date
/// (its day read from the stored two digits by `day`) and a serial other than 0000.
fn check_sixteen(input: &str, day: fn(u32) -> u32) -> Result<(), NikError> {
    let b = digits16(input)?;
    check_region(b)?;
    check_date(day(two(&b[6..8])), two(&b[8..10]), b)?;
    if &b[12..16] == b"0000" {
        return Err(NikError::Serial);
    }
    Ok(())
}

/// The 16 digits of a district, a day, a date's month and two-digit year, and a serial.
fn sixteen(district_prefix: &str, day: u32, date: NaiveDate, serial: u16) -> String {
    format!(
        "{}{day:02}{:02}{:02}{serial:04}",
        district_prefix.replace('.', ""),
        date.month(),
        date.year().rem_euclid(100),
    )
}

/// A structurally valid NIK.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nik(String);

impl Nik {
    pub fn parse(input: &str) -> Result<Self, NikError> {
        // A woman's day of birth is written plus 40.
        check_sixteen(input, |day| if day > 40 { day - 40 } else { day })?;
        Ok(Self(input.to_owned()))
    }

    /// Builds the NIK of a person registered in `district` (a code such as `32.04.01`).
    pub fn compose(
        district_prefix: &str,
        birth_date: NaiveDate,
        sex: Sex,
        serial: u16,
    ) -> Result<Self, NikError> {
        let day = birth_date.day() + if sex == Sex::Female { 40 } else { 0 };
        Self::parse(&sixteen(district_prefix, day, birth_date, serial))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// District of registration as a region code, e.g. `32.04.01`.
    pub fn district_code(&self) -> String {
        let s = &self.0;
        format!("{}.{}.{}", &s[0..2], &s[2..4], &s[4..6])
    }

    pub fn sex(&self) -> Sex {
        if two(&self.0.as_bytes()[6..8]) > 40 {
            Sex::Female
        } else {
            Sex::Male
        }
    }

    /// Day, month and two-digit year of birth as encoded.
    pub fn birth_parts(&self) -> (u32, u32, u32) {
        let b = self.0.as_bytes();
        let raw_day = two(&b[6..8]);
        (
            if raw_day > 40 { raw_day - 40 } else { raw_day },
            two(&b[8..10]),
            two(&b[10..12]),
        )
    }

    /// Whether the encoded birth date agrees with `date` (the century is not encoded).
    pub fn agrees_with_birth_date(&self, date: NaiveDate) -> bool {
        let (d, m, yy) = self.birth_parts();
        d == date.day() && m == date.month() && yy == date.year().rem_euclid(100) as u32
    }

    /// The NIK with all but the region prefix and the last two digits hidden.
    pub fn masked(&self) -> String {
        format!("{}********{}", &self.0[..6], &self.0[14..])
    }
}

/// NIK values are personal data: Debug never prints the number.
impl fmt::Debug for Nik {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nik({})", self.masked())
    }
}

checked_text!(Nik, NikError);

/// A structurally valid family-card (KK) number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KkNumber(String);

impl KkNumber {
    pub fn parse(input: &str) -> Result<Self, NikError> {
        check_sixteen(input, |day| day)?;
        Ok(Self(input.to_owned()))
    }

    pub fn compose(
        district_prefix: &str,
        issued: NaiveDate,
        serial: u16,
    ) -> Result<Self, NikError> {
        Self::parse(&sixteen(district_prefix, issued.day(), issued, serial))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KkNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KkNumber({}********{})", &self.0[..6], &self.0[14..])
    }
}

checked_text!(KkNumber, NikError);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn woman_born_on_the_fifth() {
        let nik = Nik::parse("3204014505850001").unwrap();
        assert_eq!(nik.sex(), Sex::Female);
        assert_eq!(nik.birth_parts(), (5, 5, 85));
        assert_eq!(nik.district_code(), "32.04.01");
        assert!(nik.agrees_with_birth_date(NaiveDate::from_ymd_opt(1985, 5, 5).unwrap()));
        assert!(!nik.agrees_with_birth_date(NaiveDate::from_ymd_opt(1985, 5, 6).unwrap()));
        assert_eq!(nik.masked(), "320401********01");
        assert!(!format!("{nik:?}").contains("4505850"));
    }

    #[test]
    fn refusals_name_the_problem() {
        assert_eq!(Nik::parse("123"), Err(NikError::Length(3)));
        assert_eq!(Nik::parse("32040145058500a1"), Err(NikError::NotDigits));
        assert!(matches!(
            Nik::parse("0004014505850001"),
            Err(NikError::Region(_))
        ));
        assert!(matches!(
            Nik::parse("3204013213850001"),
            Err(NikError::Date(_))
        ));
        assert!(matches!(
            Nik::parse("3204017205850001"),
            Err(NikError::Date(_))
        ));
        assert_eq!(Nik::parse("3204014505850000"), Err(NikError::Serial));
        assert!(
            KkNumber::parse("3204014505850001").is_err(),
            "KK dates carry no +40"
        );
        assert!(KkNumber::parse("3204010505200001").is_ok());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = Nik::parse(&s);
            let _ = KkNumber::parse(&s);
        }

        #[test]
        fn any_sixteen_digits_never_panic(s in "[0-9]{16}") {
            let _ = Nik::parse(&s);
        }

        #[test]
        fn compose_then_parse_round_trips(
            days in 0i64..36_500, female: bool, serial in 1u16..9999, p in 11u32..95, r in 1u32..80, d in 1u32..60,
        ) {
            let date = NaiveDate::from_ymd_opt(1925, 1, 1).unwrap() + chrono::Days::new(days as u64);
            let sex = if female { Sex::Female } else { Sex::Male };
            let prefix = format!("{p:02}{r:02}{d:02}");
            let nik = Nik::compose(&prefix, date, sex, serial).unwrap();
            prop_assert_eq!(nik.sex(), sex);
            prop_assert!(nik.agrees_with_birth_date(date));
            prop_assert_eq!(nik.district_code(), format!("{p:02}.{r:02}.{d:02}"));
            prop_assert_eq!(Nik::parse(nik.as_str()).unwrap(), nik);
        }
    }
}
