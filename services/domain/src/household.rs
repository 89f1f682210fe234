//! The household (ruta) → family (KK) → person (ART) model with the attribute groups of
//! the DTKS data components, and the structural rules a household must satisfy.
//!
//! Categorical attributes carry the same numeric codes as the `dtks.common.v1` contract,
//! so the gRPC edge converts them by code without a table per enum.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::nik::{KkNumber, Nik};
use crate::region::RegionCode;
use crate::violation::Violations;

pub use crate::codes::*;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub chronic_illness: bool,
    pub disability: Option<Disability>,
    pub has_health_insurance: bool,
    pub pregnant: bool,
    pub undernourished: bool,
}

/// One household member (ART).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// `None` for a person without a NIK yet (e.g. a newborn).
    pub nik: Option<Nik>,
    pub full_name: String,
    pub birth_place: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub marital_status: Option<MaritalStatus>,
    pub relationship: Relationship,
    pub education: Option<EducationLevel>,
    pub school_status: Option<SchoolStatus>,
    pub work_status: Option<WorkStatus>,
    pub occupation: String,
    pub sector: String,
    /// Monthly income in rupiah.
    pub monthly_income: i64,
    pub health: Health,
    pub special_groups: Vec<SpecialGroup>,
    pub skills: Vec<String>,
    pub deceased: bool,
}

impl Person {
    /// Age in whole years on `on`.
    pub fn age_on(&self, on: NaiveDate) -> i32 {
        let mut age = on.year() - self.birth_date.year();
        if (on.month(), on.day()) < (self.birth_date.month(), self.birth_date.day()) {
            age -= 1;
        }
        age
    }
}

/// A family as on one family card (KK).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    pub kk_number: Option<KkNumber>,
    pub members: Vec<Person>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub village: Option<RegionCode>,
    pub rt: String,
    pub rw: String,
    pub street: String,
    pub postal_code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub latitude: f64,
    pub longitude: f64,
}

impl GeoPoint {
    /// Indonesia's bounding box (Sabang to Merauke, Miangas to Rote), with a margin for
    /// the outer islands.
    pub fn is_in_indonesia(&self) -> bool {
        (-11.5..=6.5).contains(&self.latitude) && (94.5..=141.5).contains(&self.longitude)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dwelling {
    pub tenure: Option<Tenure>,
    pub floor_area_m2: f64,
    pub floor: Option<FloorMaterial>,
    pub wall: Option<WallMaterial>,
    pub roof: Option<RoofMaterial>,
    pub water: Option<WaterSource>,
    pub sanitation: Option<Sanitation>,
    pub electricity: Option<Electricity>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assets {
    pub land_m2: f64,
    pub house_elsewhere: bool,
    pub motorcycles: u32,
    pub cars: u32,
    pub livestock: u32,
    pub refrigerator: bool,
    pub productive_business: bool,
    pub savings: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistanceRecord {
    pub programme_code: String,
    pub year: i32,
    pub month: u32,
    pub amount: i64,
}

/// The contract path of one person, `household.families[f].members[m]`.
#[derive(Clone, Copy)]
struct PersonPath(usize, usize);

impl std::fmt::Display for PersonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "household.families[{}].members[{}]", self.0, self.1)
    }
}

/// A household (ruta): the unit DTKS determines and ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Household {
    pub household_id: Option<String>,
    pub address: Address,
    pub location: Option<GeoPoint>,
    pub families: Vec<Family>,
    pub dwelling: Dwelling,
    pub assets: Assets,
    pub assistance_history: Vec<AssistanceRecord>,
    pub psks_potential: Vec<String>,
}

impl Household {
    pub fn persons(&self) -> impl Iterator<Item = &Person> {
        self.families.iter().flat_map(|f| f.members.iter())
    }

    pub fn size(&self) -> usize {
        self.families.iter().map(|f| f.members.len()).sum()
    }

    pub fn head(&self) -> Option<&Person> {
        self.persons()
            .find(|p| p.relationship == Relationship::Head)
    }

    pub fn village(&self) -> Option<&RegionCode> {
        self.address.village.as_ref()
    }

    /// Structural rules every household proposal must satisfy, each violation with its
    /// field path. Rules chosen (and why):
    /// - exactly one head (KRT): DTKS ranks households by their head's record;
    /// - at least one family with at least one member;
    /// - no person born in the future or more than 120 years ago;
    /// - a child (anak) is at least 12 years younger than the head: younger gaps are
    ///   almost always a swapped relationship or a mistyped year;
    /// - a parent (orang tua/mertua) is at least 12 years older than the head, for the
    ///   same reason;
    /// - a child is also at least 12 years younger than the head's spouse, when the
    ///   household lists one (the other parent);
    /// - a grandchild (cucu) is at least 24 years younger than the head (two generations);
    /// - the NIK's encoded birth date and sex agree with the stated ones (Dukcapil rule);
    /// - no NIK appears twice in the household (integrity criteria 1 and 4);
    /// - a person in a family must not be marked pregnant unless female.
    pub fn structural_violations(&self, today: NaiveDate) -> Violations {
        let mut v = Violations::default();
        if self.families.is_empty() {
            v.push(
                "household.families",
                "a household needs at least one family (KK)",
            );
        }
        let heads = self
            .persons()
            .filter(|p| p.relationship == Relationship::Head)
            .count();
        if heads != 1 && !self.families.is_empty() {
            v.push(
                "household.families",
                format!("a household has exactly one head (KRT); found {heads}"),
            );
        }
        let head_birth = self.head().map(|h| h.birth_date);
        let spouse_birth = self
            .persons()
            .filter(|p| p.relationship == Relationship::Spouse)
            .map(|p| p.birth_date)
            .min();
        let mut seen = std::collections::HashMap::new();
        for (fi, family) in self.families.iter().enumerate() {
            if family.members.is_empty() {
                v.push(
                    format!("household.families[{fi}].members"),
                    "a family needs at least one member",
                );
            }
            for (mi, person) in family.members.iter().enumerate() {
                // Built only for a violation: this runs for every person of a bulk import.
                let path = PersonPath(fi, mi);
                if person.birth_date > today {
                    v.push(format!("{path}.birth_date"), "birth date is in the future");
                } else if person.age_on(today) > 120 {
                    v.push(
                        format!("{path}.birth_date"),
                        "birth date is more than 120 years ago",
                    );
                }
                if let Some(nik) = &person.nik {
                    if !nik.agrees_with_birth_date(person.birth_date) {
                        v.push(
                            format!("{path}.nik"),
                            "the NIK's encoded birth date differs from birth_date",
                        );
                    }
                    if nik.sex() != person.sex {
                        v.push(
                            format!("{path}.nik"),
                            "the NIK's encoded sex (day + 40 for women) differs from sex",
                        );
                    }
                    if let Some(first) = seen.insert(nik, path) {
                        v.push(
                            format!("{path}.nik"),
                            format!("the same NIK is already given for {first}"),
                        );
                    }
                }
                if person.health.pregnant && person.sex != Sex::Female {
                    v.push(
                        format!("{path}.health.pregnant"),
                        "only a woman can be recorded as pregnant",
                    );
                }
                let gap_years =
                    |older: NaiveDate, younger: NaiveDate| (younger - older).num_days() / 365;
                if let (Some(spouse), Relationship::Child) = (spouse_birth, person.relationship)
                    && gap_years(spouse, person.birth_date) < 12
                {
                    v.push(
                        format!("{path}.relationship"),
                        "a child must be at least 12 years younger than the head's spouse",
                    );
                }
                if let Some(head) = head_birth {
                    match person.relationship {
                        Relationship::Child if gap_years(head, person.birth_date) < 12 => v.push(
                            format!("{path}.relationship"),
                            "a child must be at least 12 years younger than the head",
                        ),
                        Relationship::Parent if gap_years(person.birth_date, head) < 12 => v.push(
                            format!("{path}.relationship"),
                            "a parent must be at least 12 years older than the head",
                        ),
                        Relationship::Grandchild if gap_years(head, person.birth_date) < 24 => v
                            .push(
                                format!("{path}.relationship"),
                                "a grandchild must be at least 24 years younger than the head",
                            ),
                        _ => {}
                    }
                }
            }
        }
        if let Some(point) = &self.location
            && !point.is_in_indonesia()
        {
            v.push("household.location", "coordinates fall outside Indonesia");
        }
        v
    }

    /// The attributes a household must carry to be determined and ranked (integrity
    /// criterion 5, complete attributes): the village, the dwelling's tenure, materials,
    /// water, sanitation, electricity and floor area, and for every person the marital
    /// status, education, work status and disability. Field paths as in the contract.
    pub fn missing_attributes(&self) -> Violations {
        const WHY: &str = "is required (integrity criterion 5: complete attributes)";
        let mut v = Violations::default();
        if self.address.village.is_none() {
            v.push("household.address.village_code", WHY);
        }
        let d = &self.dwelling;
        for (field, missing) in [
            ("tenure", d.tenure.is_none()),
            ("floor", d.floor.is_none()),
            ("wall", d.wall.is_none()),
            ("roof", d.roof.is_none()),
            ("water", d.water.is_none()),
            ("sanitation", d.sanitation.is_none()),
            ("electricity", d.electricity.is_none()),
            ("floor_area_m2", d.floor_area_m2 <= 0.0),
        ] {
            if missing {
                v.push(format!("household.dwelling.{field}"), WHY);
            }
        }
        for (fi, family) in self.families.iter().enumerate() {
            for (mi, p) in family.members.iter().enumerate() {
                for (field, missing) in [
                    ("marital_status", p.marital_status.is_none()),
                    ("education", p.education.is_none()),
                    ("work_status", p.work_status.is_none()),
                    ("health.disability", p.health.disability.is_none()),
                ] {
                    if missing {
                        v.push(
                            format!("household.families[{fi}].members[{mi}].{field}"),
                            WHY,
                        );
                    }
                }
            }
        }
        v
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn person(
        nik: &str,
        name: &str,
        born: (i32, u32, u32),
        sex: Sex,
        rel: Relationship,
    ) -> Person {
        Person {
            nik: Some(Nik::parse(nik).unwrap()),
            full_name: name.into(),
            birth_place: "Bandung".into(),
            birth_date: NaiveDate::from_ymd_opt(born.0, born.1, born.2).unwrap(),
            sex,
            marital_status: Some(MaritalStatus::Married),
            relationship: rel,
            education: Some(EducationLevel::Primary),
            school_status: Some(SchoolStatus::Left),
            work_status: Some(WorkStatus::Informal),
            occupation: "buruh tani".into(),
            sector: "pertanian".into(),
            monthly_income: 900_000,
            health: Health {
                disability: Some(Disability::None),
                ..Health::default()
            },
            special_groups: vec![],
            skills: vec![],
            deceased: false,
        }
    }

    pub fn household() -> Household {
        Household {
            household_id: None,
            address: Address {
                village: Some(RegionCode::parse("32.04.01.2001").unwrap()),
                rt: "001".into(),
                rw: "002".into(),
                street: "Jl. Melati 3".into(),
                postal_code: "40375".into(),
            },
            location: Some(GeoPoint {
                latitude: -7.0,
                longitude: 107.6,
            }),
            families: vec![Family {
                kk_number: Some(KkNumber::parse("3204010505150001").unwrap()),
                members: vec![
                    person(
                        "3204011203800001",
                        "Asep Sunandar",
                        (1980, 3, 12),
                        Sex::Male,
                        Relationship::Head,
                    ),
                    person(
                        "3204015708840002",
                        "Siti Aminah",
                        (1984, 8, 17),
                        Sex::Female,
                        Relationship::Spouse,
                    ),
                    person(
                        "3204010102100003",
                        "Dede Kurnia",
                        (2010, 2, 1),
                        Sex::Male,
                        Relationship::Child,
                    ),
                ],
            }],
            dwelling: Dwelling {
                tenure: Some(Tenure::Owned),
                floor_area_m2: 36.0,
                floor: Some(FloorMaterial::Cement),
                wall: Some(WallMaterial::BrickUnplastered),
                roof: Some(RoofMaterial::Zinc),
                water: Some(WaterSource::ProtectedWell),
                sanitation: Some(Sanitation::Shared),
                electricity: Some(Electricity::Pln450),
            },
            assets: Assets {
                motorcycles: 1,
                ..Assets::default()
            },
            assistance_history: vec![],
            psks_potential: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
    }

    #[test]
    fn a_sound_household_has_no_violations() {
        assert!(household().structural_violations(today()).is_empty());
    }

    #[test]
    fn two_heads_are_refused() {
        let mut h = household();
        h.families[0].members[1].relationship = Relationship::Head;
        let v = household_violations(&h);
        assert!(
            v.iter()
                .any(|f| f.field == "household.families" && f.description.contains("found 2"))
        );
    }

    #[test]
    fn nik_birth_date_and_sex_must_agree() {
        let mut h = household();
        h.families[0].members[0].birth_date = NaiveDate::from_ymd_opt(1980, 3, 13).unwrap();
        h.families[0].members[1].sex = Sex::Male;
        let v = household_violations(&h);
        assert!(
            v.iter()
                .any(|f| f.field == "household.families[0].members[0].nik"
                    && f.description.contains("birth date"))
        );
        assert!(
            v.iter()
                .any(|f| f.field == "household.families[0].members[1].nik"
                    && f.description.contains("sex"))
        );
    }

    /// The violations of the household whose child is born on 1 February `year` (its
    /// NIK saying the same).
    fn with_child_born(year: i32) -> Vec<crate::FieldViolation> {
        let mut h = household();
        let child = &mut h.families[0].members[2];
        child.birth_date = NaiveDate::from_ymd_opt(year, 2, 1).unwrap();
        let nik = format!("3204010102{:02}0003", year % 100);
        child.nik = Some(Nik::parse(&nik).unwrap());
        household_violations(&h)
    }

    #[test]
    fn a_child_older_than_plausible_is_refused() {
        let v = with_child_born(1975);
        assert!(
            v.iter()
                .any(|f| f.field == "household.families[0].members[2].relationship")
        );
    }

    #[test]
    fn a_child_must_be_plausibly_younger_than_the_spouse_too() {
        // Head born 1980 (15 years older: fine); spouse born 1984 (11 years: refused).
        let v = with_child_born(1995);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].field, "household.families[0].members[2].relationship");
        assert!(v[0].description.contains("spouse"));
    }

    #[test]
    fn a_grandchild_is_two_generations_younger() {
        let mut h = household();
        let grandchild = &mut h.families[0].members[2];
        grandchild.relationship = Relationship::Grandchild;
        grandchild.birth_date = NaiveDate::from_ymd_opt(2000, 2, 1).unwrap();
        grandchild.nik = Some(Nik::parse("3204010102000003").unwrap());
        let v = household_violations(&h);
        assert!(
            v.iter().any(|f| f.description.contains("grandchild")),
            "{v:?}"
        );
        h.families[0].members[2].birth_date = NaiveDate::from_ymd_opt(2010, 2, 1).unwrap();
        h.families[0].members[2].nik = Some(Nik::parse("3204010102100003").unwrap());
        assert!(household_violations(&h).is_empty());
    }

    #[test]
    fn missing_attributes_are_named_by_path() {
        let mut h = household();
        assert!(h.missing_attributes().is_empty());
        h.dwelling.water = None;
        h.dwelling.floor_area_m2 = 0.0;
        h.families[0].members[1].education = None;
        let fields: Vec<String> = h
            .missing_attributes()
            .0
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(
            fields,
            [
                "household.dwelling.water",
                "household.dwelling.floor_area_m2",
                "household.families[0].members[1].education"
            ]
        );
    }

    #[test]
    fn coordinates_outside_indonesia_are_refused() {
        let mut h = household();
        h.location = Some(GeoPoint {
            latitude: 51.5,
            longitude: -0.1,
        });
        assert!(
            household_violations(&h)
                .iter()
                .any(|f| f.field == "household.location")
        );
    }

    #[test]
    fn codes_round_trip_and_zero_is_unspecified() {
        for s in Electricity::ALL {
            assert_eq!(Electricity::from_code(s.code()).unwrap(), Some(*s));
        }
        assert_eq!(Sex::from_code(0).unwrap(), None);
        assert!(Sex::from_code(9).is_err());
    }

    fn household_violations(h: &Household) -> Vec<crate::FieldViolation> {
        h.structural_violations(today()).0
    }
}
