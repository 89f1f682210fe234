//! The people of the synthetic population: registry rows, NIK serials, one person made.

use std::io::Write;

use chrono::{Datelike, NaiveDate};
use dtks_domain::Nik;
use dtks_domain::household::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One row of `registry.csv`, the reference civil registry's population.
pub(super) struct RegistryRow {
    pub(super) nik: String,
    pub(super) kk: String,
    pub(super) full_name: String,
    pub(super) birth_place: String,
    pub(super) birth_date: NaiveDate,
    pub(super) sex: i32,
    pub(super) village: String,
    pub(super) death_date: Option<NaiveDate>,
}

impl RegistryRow {
    pub(super) fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            self.nik,
            self.kk,
            self.full_name,
            self.birth_place,
            self.birth_date,
            self.sex,
            self.village,
            self.death_date.map(|d| d.to_string()).unwrap_or_default()
        )
    }
}

/// The last serial used per district and date, as Dukcapil numbers them: a NIK's four
/// serial digits count the people of one district born on one day (women and men apart,
/// as the day of a woman's NIK is shifted by 40); a KK's count the cards issued on one
/// day. Serials from 9000 are left for `unknown_nik`.
#[derive(Default)]
pub(super) struct Serials(std::collections::HashMap<(String, NaiveDate, bool), u16>);

impl Serials {
    pub(super) fn next(&mut self, district: &str, date: NaiveDate, female: bool) -> u16 {
        let serial = self
            .0
            .entry((district.to_owned(), date, female))
            .or_insert(0);
        *serial += 1;
        assert!(
            *serial < 9000,
            "more than 8999 NIKs for one district and day"
        );
        *serial
    }
}

pub(super) fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

pub(super) fn date_between(rng: &mut ChaCha8Rng, from: i32, to: i32) -> NaiveDate {
    let start = NaiveDate::from_ymd_opt(from, 1, 1).expect("date");
    let days = (NaiveDate::from_ymd_opt(to, 12, 31).expect("date") - start).num_days();
    start + chrono::Days::new(rng.random_range(0..days) as u64)
}

pub(super) fn make_person(
    rng: &mut ChaCha8Rng,
    district: &str,
    serials: &mut Serials,
    born: NaiveDate,
    sex: Sex,
    relationship: Relationship,
    full_name: String,
    poor: bool,
) -> Person {
    let serial = serials.next(district, born, sex == Sex::Female);
    let adult = 2026 - born.year() >= 18;
    Person {
        nik: Some(Nik::compose(district, born, sex, serial).expect("valid NIK")),
        full_name,
        birth_place: "Bandung".into(),
        birth_date: born,
        sex,
        marital_status: Some(if adult {
            MaritalStatus::Married
        } else {
            MaritalStatus::Single
        }),
        relationship,
        education: Some(if poor {
            EducationLevel::Primary
        } else {
            EducationLevel::Senior
        }),
        school_status: Some(if adult {
            SchoolStatus::Left
        } else {
            SchoolStatus::Attending
        }),
        work_status: Some(if !adult {
            WorkStatus::NotWorking
        } else if poor {
            WorkStatus::Informal
        } else {
            WorkStatus::Formal
        }),
        occupation: if adult {
            (if poor { "buruh tani" } else { "karyawan" }).into()
        } else {
            String::new()
        },
        sector: if adult {
            (if poor { "pertanian" } else { "jasa" }).into()
        } else {
            String::new()
        },
        monthly_income: if adult {
            if poor {
                rng.random_range(300_000..1_500_000)
            } else {
                rng.random_range(2_500_000..9_000_000)
            }
        } else {
            0
        },
        health: Health {
            disability: Some(Disability::None),
            has_health_insurance: !poor,
            ..Health::default()
        },
        special_groups: vec![],
        skills: vec![],
        deceased: false,
    }
}
