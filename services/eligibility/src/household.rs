//! A household as a rule reads it: codes as lower-case words, the standing of its
//! determined month beside its dwelling, assets, families and members.

#[cfg(test)]
use chrono::NaiveDate;
#[cfg(test)]
use dtks_domain::household::{Household, Person};
use serde::Serialize;

/// A person as rules read them: codes as lower-case words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulePerson {
    pub age: i64,
    pub sex: String,
    pub relationship: String,
    pub marital_status: String,
    pub education: String,
    pub school_status: String,
    pub work_status: String,
    pub monthly_income: i64,
    pub chronic_illness: bool,
    /// The kind of disability (`severe`, `physical`, …), empty for none.
    pub disability: String,
    pub has_health_insurance: bool,
    pub pregnant: bool,
    pub undernourished: bool,
    pub special_groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFamily {
    pub members: Vec<RulePerson>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleDwelling {
    pub tenure: String,
    pub floor_area_m2: f64,
    pub floor: String,
    pub wall: String,
    pub roof: String,
    pub water: String,
    pub sanitation: String,
    pub electricity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleAssets {
    pub land_m2: f64,
    pub house_elsewhere: bool,
    pub motorcycles: i64,
    pub cars: i64,
    pub livestock: i64,
    pub refrigerator: bool,
    pub productive_business: bool,
    pub savings: i64,
}

/// One household as a rule reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleHousehold {
    pub region_code: String,
    pub province_code: String,
    pub regency_code: String,
    pub decile: i64,
    pub province_decile: i64,
    pub national_rank: i64,
    pub score: f64,
    pub size: i64,
    pub dwelling: RuleDwelling,
    pub assets: RuleAssets,
    pub families: Vec<RuleFamily>,
    pub members: Vec<RulePerson>,
    pub assistance_programmes: Vec<String>,
}

/// A code as a lower-case word (`Some(Earth)` → `earth`, `None` → empty).
pub fn word<T: std::fmt::Debug>(value: Option<T>) -> String {
    value
        .map(|v| {
            let text = format!("{v:?}");
            let mut out = String::with_capacity(text.len() + 4);
            for (i, c) in text.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        })
        .unwrap_or_default()
}

#[cfg(test)]
fn person(p: &Person, on: NaiveDate) -> RulePerson {
    RulePerson {
        age: i64::from(p.age_on(on)),
        sex: word(Some(p.sex)),
        relationship: word(Some(p.relationship)),
        marital_status: word(p.marital_status),
        education: word(p.education),
        school_status: word(p.school_status),
        work_status: word(p.work_status),
        monthly_income: p.monthly_income,
        chronic_illness: p.health.chronic_illness,
        disability: word(
            p.health
                .disability
                .filter(|d| *d != dtks_domain::household::Disability::None),
        ),
        has_health_insurance: p.health.has_health_insurance,
        pregnant: p.health.pregnant,
        undernourished: p.health.undernourished,
        special_groups: p.special_groups.iter().map(|g| word(Some(g))).collect(),
    }
}

/// A household's standing in a determined month.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standing {
    pub decile: u32,
    pub province_decile: u32,
    pub national_rank: u64,
    pub score: f64,
}

impl RuleHousehold {
    /// The household as a rule reads it straight from the domain model (the reference
    /// the month's columns are tested against).
    #[cfg(test)]
    pub fn new(h: &Household, standing: Standing, on: NaiveDate) -> Self {
        let region = h
            .address
            .village
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default();
        let families: Vec<RuleFamily> = h
            .families
            .iter()
            .map(|f| RuleFamily {
                members: f.members.iter().map(|p| person(p, on)).collect(),
            })
            .collect();
        let d = &h.dwelling;
        Self {
            province_code: region.get(..2).unwrap_or_default().to_owned(),
            regency_code: region.get(..5).unwrap_or_default().to_owned(),
            region_code: region,
            decile: i64::from(standing.decile),
            province_decile: i64::from(standing.province_decile),
            national_rank: standing.national_rank as i64,
            score: standing.score,
            size: h.size() as i64,
            dwelling: RuleDwelling {
                tenure: word(d.tenure),
                floor_area_m2: d.floor_area_m2,
                floor: word(d.floor),
                wall: word(d.wall),
                roof: word(d.roof),
                water: word(d.water),
                sanitation: word(d.sanitation),
                electricity: word(d.electricity),
            },
            assets: RuleAssets {
                land_m2: h.assets.land_m2,
                house_elsewhere: h.assets.house_elsewhere,
                motorcycles: i64::from(h.assets.motorcycles),
                cars: i64::from(h.assets.cars),
                livestock: i64::from(h.assets.livestock),
                refrigerator: h.assets.refrigerator,
                productive_business: h.assets.productive_business,
                savings: h.assets.savings,
            },
            members: families.iter().flat_map(|f| f.members.clone()).collect(),
            families,
            assistance_programmes: h
                .assistance_history
                .iter()
                .map(|a| a.programme_code.clone())
                .collect(),
        }
    }

    /// The household every rule is tried on when saved: a couple with a toddler, in
    /// the poorest decile.
    pub fn sample() -> Self {
        let member = |age: i64, sex: &str, relationship: &str| RulePerson {
            age,
            sex: sex.into(),
            relationship: relationship.into(),
            marital_status: if age >= 17 {
                "married".into()
            } else {
                "single".into()
            },
            education: "primary".into(),
            school_status: String::new(),
            work_status: "informal".into(),
            monthly_income: if age >= 17 { 900_000 } else { 0 },
            chronic_illness: false,
            disability: String::new(),
            has_health_insurance: false,
            pregnant: false,
            undernourished: false,
            special_groups: Vec::new(),
        };
        let members = vec![
            member(44, "male", "head"),
            member(40, "female", "spouse"),
            member(3, "female", "child"),
        ];
        Self {
            region_code: "32.04.05.2001".into(),
            province_code: "32".into(),
            regency_code: "32.04".into(),
            decile: 1,
            province_decile: 1,
            national_rank: 1,
            score: 12.0,
            size: members.len() as i64,
            dwelling: RuleDwelling {
                tenure: "owned".into(),
                floor_area_m2: 24.0,
                floor: "earth".into(),
                wall: "bamboo".into(),
                roof: "tile".into(),
                water: "protected_well".into(),
                sanitation: "shared".into(),
                electricity: "pln450".into(),
            },
            assets: RuleAssets {
                land_m2: 0.0,
                house_elsewhere: false,
                motorcycles: 0,
                cars: 0,
                livestock: 0,
                refrigerator: false,
                productive_business: false,
                savings: 0,
            },
            families: vec![RuleFamily {
                members: members.clone(),
            }],
            members,
            assistance_programmes: Vec::new(),
        }
    }
}
