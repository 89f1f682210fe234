//! Consistency checks and anomaly flags for the verifying officer: attributes that
//! contradict each other (income against assets and dwelling, household size against
//! the dwelling, impossible ages and relationships) and values far out of the regency's
//! distribution. A flag never refuses a household; it carries its reason to the officer
//! who visits. Reasons name members by position, never by name or NIK.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::household::{
    Electricity, FloorMaterial, Household, MaritalStatus, Relationship, RoofMaterial, WallMaterial,
    WorkStatus,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub code: String,
    pub reason: String,
}

fn flag(code: &str, reason: String) -> Flag {
    Flag {
        code: code.to_owned(),
        reason,
    }
}

/// Total reported monthly income of the household, in rupiah (saturating: the members'
/// incomes are what a caller typed, and their sum must not overflow).
pub fn monthly_income(h: &Household) -> i64 {
    h.persons()
        .map(|p| p.monthly_income.max(0))
        .fold(0i64, i64::saturating_add)
}

/// Reported monthly income per member, in rupiah.
pub fn income_per_capita(h: &Household) -> f64 {
    monthly_income(h) as f64 / h.size().max(1) as f64
}

/// Floor area per member, m².
pub fn floor_area_per_capita(h: &Household) -> f64 {
    h.dwelling.floor_area_m2 / h.size().max(1) as f64
}

/// Below this total monthly income a car, large savings or a well-built large house
/// contradict the report.
const LOW_INCOME: i64 = 1_000_000;
const LOW_INCOME_PER_CAPITA: f64 = 300_000.0;

fn income_against_assets(h: &Household, out: &mut Vec<Flag>) {
    let income = monthly_income(h);
    let a = &h.assets;
    if a.cars > 0 && income < LOW_INCOME {
        out.push(flag(
            "INCOME_VS_ASSETS",
            format!(
                "reports Rp {income} a month in all but owns {} car(s)",
                a.cars
            ),
        ));
    }
    if a.savings > 10_000_000 && a.savings > income.max(1).saturating_mul(24) {
        out.push(flag(
            "INCOME_VS_ASSETS",
            format!(
                "savings of Rp {} exceed two years of the reported income (Rp {income} a month)",
                a.savings
            ),
        ));
    }
    if a.land_m2 >= 5_000.0 && income < LOW_INCOME {
        out.push(flag(
            "INCOME_VS_ASSETS",
            format!(
                "owns {:.0} m² of land but reports Rp {income} a month in all",
                a.land_m2
            ),
        ));
    }
    let d = &h.dwelling;
    let well_built = d.floor == Some(FloorMaterial::Tile)
        && d.wall == Some(WallMaterial::BrickPlastered)
        && matches!(d.roof, Some(RoofMaterial::Tile | RoofMaterial::Concrete))
        && d.electricity == Some(Electricity::PlnAbove900);
    if well_built && d.floor_area_m2 >= 120.0 && income_per_capita(h) < LOW_INCOME_PER_CAPITA {
        out.push(flag(
            "INCOME_VS_DWELLING",
            format!(
                "a {:.0} m² tiled, plastered house on more than 900 VA with Rp {:.0} a month per member",
                d.floor_area_m2,
                income_per_capita(h)
            ),
        ));
    }
}

fn size_against_dwelling(h: &Household, out: &mut Vec<Flag>) {
    let size = h.size();
    let area = h.dwelling.floor_area_m2;
    if area > 0.0 && area / (size.max(1) as f64) < 2.0 {
        out.push(flag(
            "CROWDING",
            format!("{size} members in {area:.0} m² (under 2 m² each)"),
        ));
    }
    if area > 0.0 && size == 1 && area > 300.0 {
        out.push(flag("CROWDING", format!("one member in {area:.0} m²")));
    }
}

fn ages_and_relationships(h: &Household, today: NaiveDate, out: &mut Vec<Flag>) {
    let head_age = h.head().map(|p| p.age_on(today));
    for (fi, family) in h.families.iter().enumerate() {
        for (mi, p) in family.members.iter().enumerate() {
            let who = format!("family {} member {}", fi + 1, mi + 1);
            let age = p.age_on(today);
            if age > 110 {
                out.push(flag(
                    "IMPOSSIBLE_AGE",
                    format!("{who} would be {age} years old"),
                ));
            }
            if age < 10 && p.monthly_income > 0 {
                out.push(flag(
                    "IMPOSSIBLE_AGE",
                    format!("{who} is {age} and reports an income"),
                ));
            }
            if age < 10 && p.work_status == Some(WorkStatus::Formal) {
                out.push(flag(
                    "IMPOSSIBLE_AGE",
                    format!("{who} is {age} and in formal work"),
                ));
            }
            if age < 16
                && matches!(
                    p.marital_status,
                    Some(MaritalStatus::Married | MaritalStatus::Divorced | MaritalStatus::Widowed)
                )
            {
                out.push(flag(
                    "IMPOSSIBLE_RELATIONSHIP",
                    format!("{who} is {age} and has been married"),
                ));
            }
            match p.relationship {
                Relationship::Head if age < 15 => out.push(flag(
                    "IMPOSSIBLE_RELATIONSHIP",
                    format!("{who} heads the household at {age}"),
                )),
                Relationship::Parent => {
                    if let Some(head) = head_age
                        && age < head + 12
                    {
                        out.push(flag(
                            "IMPOSSIBLE_RELATIONSHIP",
                            format!(
                                "{who} is a parent of the head but only {age} (the head is {head})"
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}

/// The flags of one household on `today`, without the regency comparison.
pub fn check(h: &Household, today: NaiveDate) -> Vec<Flag> {
    let mut out = Vec::new();
    income_against_assets(h, &mut out);
    size_against_dwelling(h, &mut out);
    ages_and_relationships(h, today, &mut out);
    out
}

/// A household measure.
pub type Measure = fn(&Household) -> f64;

/// The household measures compared with the regency's distribution.
pub const METRICS: &[(&str, Measure)] = &[
    ("income_per_capita", income_per_capita),
    ("floor_area_per_capita", floor_area_per_capita),
];

/// A running distribution (count, sum, sum of squares) of one measure in one regency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Distribution {
    pub n: i64,
    pub sum: f64,
    pub sum_sq: f64,
}

/// Fewer households than this and the regency has no distribution to compare with.
pub const MIN_REGENCY_SAMPLE: i64 = 30;
/// How many standard deviations from the regency mean count as an outlier.
pub const OUTLIER_Z: f64 = 3.5;

impl Distribution {
    pub fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }

    pub fn sd(&self) -> f64 {
        let n = self.n.max(1) as f64;
        (self.sum_sq / n - self.mean().powi(2)).max(0.0).sqrt()
    }

    /// The outlier flag for `value` of `metric`, when the regency has enough households.
    pub fn outlier(&self, metric: &str, value: f64) -> Option<Flag> {
        if self.n < MIN_REGENCY_SAMPLE || self.sd() == 0.0 {
            return None;
        }
        let z = (value - self.mean()) / self.sd();
        (z.abs() > OUTLIER_Z).then(|| {
            flag(
                "REGENCY_OUTLIER",
                format!(
                    "{metric} {value:.0} is {z:+.1} standard deviations from the regency's mean {:.0} (n = {})",
                    self.mean(),
                    self.n
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::household::fixtures::household;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).expect("date")
    }

    fn codes(h: &Household) -> Vec<String> {
        check(h, today()).into_iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_plain_household_raises_no_flag() {
        assert_eq!(codes(&household()), Vec::<String>::new());
    }

    #[test]
    fn a_car_on_a_small_income_is_flagged() {
        let mut h = household();
        for p in h.families.iter_mut().flat_map(|f| f.members.iter_mut()) {
            p.monthly_income = 100_000;
        }
        h.assets.cars = 1;
        let flags = check(&h, today());
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(flags[0].code, "INCOME_VS_ASSETS");
        assert!(flags[0].reason.contains("1 car(s)"), "{}", flags[0].reason);
    }

    #[test]
    fn crowding_and_impossible_ages_are_flagged() {
        let mut h = household();
        h.dwelling.floor_area_m2 = 3.0;
        h.families[0].members[0].birth_date = NaiveDate::from_ymd_opt(1900, 1, 1).expect("date");
        let got = codes(&h);
        assert!(got.contains(&"CROWDING".to_owned()), "{got:?}");
        assert!(got.contains(&"IMPOSSIBLE_AGE".to_owned()), "{got:?}");
    }

    #[test]
    fn outliers_need_a_sample_and_a_distance() {
        let mut d = Distribution::default();
        for v in 0..40 {
            let v = 500_000.0 + f64::from(v % 5) * 10_000.0;
            d.n += 1;
            d.sum += v;
            d.sum_sq += v * v;
        }
        assert!(d.outlier("income_per_capita", 520_000.0).is_none());
        let f = d
            .outlier("income_per_capita", 5_000_000.0)
            .expect("outlier");
        assert_eq!(f.code, "REGENCY_OUTLIER");
        let small = Distribution { n: 5, ..d };
        assert!(small.outlier("income_per_capita", 5_000_000.0).is_none());
    }
}
