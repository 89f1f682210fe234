//! Proxy means test (PMT): a household's welfare score, the predicted log of monthly
//! per-capita consumption, from attributes an enumerator can observe. Lower is poorer.
//!
//! The model is linear and versioned; [`Model::explain`] lists every term so that the
//! score of any household can be read back term by term, and the terms sum to the score.

use serde::{Deserialize, Serialize};

use crate::household::{
    Electricity, FloorMaterial, Household, RoofMaterial, Sanitation, WallMaterial, WaterSource,
};

/// One term of a score: feature value × coefficient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub name: &'static str,
    pub value: f64,
    pub coefficient: f64,
    pub contribution: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub version: String,
    pub intercept: f64,
    pub coefficients: Coefficients,
    /// A province's own intercept and coefficients (by province code, `32`), where the
    /// ministry estimated them; every other province takes the national ones above.
    #[serde(default)]
    pub provinces: std::collections::BTreeMap<String, Params>,
}

/// One province's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub intercept: f64,
    pub coefficients: Coefficients,
}

/// Coefficients of the default model. Signs follow the PMT literature for Indonesia
/// (larger households and earth floors predict lower per-capita consumption; assets,
/// piped water, private sanitation and larger electricity connections predict higher);
/// magnitudes are illustrative until the ministry loads its own estimated model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coefficients {
    pub log_household_size: f64,
    pub dependency_ratio: f64,
    pub head_years_of_schooling: f64,
    pub floor_area_per_capita: f64,
    pub earth_floor: f64,
    pub bamboo_or_wood_wall: f64,
    pub thatch_roof: f64,
    pub piped_or_bottled_water: f64,
    pub private_sanitation: f64,
    pub electricity_above_450va: f64,
    pub motorcycles: f64,
    pub car: f64,
    pub refrigerator: f64,
    pub formal_work_share: f64,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            version: "pmt-default-2026.1".to_owned(),
            intercept: 13.2,
            provinces: Default::default(),
            coefficients: Coefficients {
                log_household_size: -0.38,
                dependency_ratio: -0.22,
                head_years_of_schooling: 0.035,
                floor_area_per_capita: 0.006,
                earth_floor: -0.16,
                bamboo_or_wood_wall: -0.09,
                thatch_roof: -0.08,
                piped_or_bottled_water: 0.11,
                private_sanitation: 0.09,
                electricity_above_450va: 0.14,
                motorcycles: 0.08,
                car: 0.35,
                refrigerator: 0.12,
                formal_work_share: 0.18,
            },
        }
    }
}

fn years_of_schooling(level: Option<crate::household::EducationLevel>) -> f64 {
    use crate::household::EducationLevel::*;
    match level {
        Some(None) | Option::None => 0.0,
        Some(Primary) => 6.0,
        Some(Junior) => 9.0,
        Some(Senior) => 12.0,
        Some(Tertiary) => 15.0,
    }
}

impl Model {
    /// Reads a model file (JSON: `version`, `intercept`, `coefficients`, optional
    /// `provinces`), refusing one that could not score every household.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let model: Model = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if model.version.trim().is_empty() {
            return Err("version is empty".into());
        }
        let finite = |p: &str, intercept: f64, c: &Coefficients| -> Result<(), String> {
            let values = serde_json::to_value(c).map_err(|e| e.to_string())?;
            let all = values
                .as_object()
                .map(|o| o.values().all(|v| v.as_f64().is_some_and(f64::is_finite)))
                .unwrap_or(false);
            if all && intercept.is_finite() {
                Ok(())
            } else {
                Err(format!(
                    "{p}: every coefficient and the intercept must be a finite number"
                ))
            }
        };
        finite("national", model.intercept, &model.coefficients)?;
        for (code, p) in &model.provinces {
            if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("provinces.{code}: not a province code such as 32"));
            }
            finite(&format!("provinces.{code}"), p.intercept, &p.coefficients)?;
        }
        Ok(model)
    }

    /// The intercept and coefficients for the household's province.
    fn params(&self, h: &Household) -> (f64, &Coefficients) {
        let province = h
            .address
            .village
            .as_ref()
            .map(|v| v.to_string())
            .and_then(|v| v.get(..2).map(str::to_owned));
        match province.and_then(|p| self.provinces.get(&p)) {
            Some(p) => (p.intercept, &p.coefficients),
            None => (self.intercept, &self.coefficients),
        }
    }

    /// The intercept the household's score starts from (its province's, or national).
    pub fn intercept_for(&self, h: &Household) -> f64 {
        self.params(h).0
    }

    /// Every term of the household's score, in a fixed order.
    pub fn explain(&self, h: &Household, on: chrono::NaiveDate) -> Vec<Term> {
        let c = self.params(h).1;
        let size = h.size().max(1) as f64;
        let dependants = h
            .persons()
            .filter(|p| !(15..65).contains(&p.age_on(on)))
            .count() as f64;
        let formal = h
            .persons()
            .filter(|p| p.work_status == Some(crate::household::WorkStatus::Formal))
            .count() as f64;
        let d = &h.dwelling;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let features: [(&'static str, f64, f64); 14] = [
            ("log_household_size", size.ln(), c.log_household_size),
            ("dependency_ratio", dependants / size, c.dependency_ratio),
            (
                "head_years_of_schooling",
                years_of_schooling(h.head().and_then(|p| p.education)),
                c.head_years_of_schooling,
            ),
            (
                "floor_area_per_capita",
                d.floor_area_m2 / size,
                c.floor_area_per_capita,
            ),
            (
                "earth_floor",
                flag(d.floor == Some(FloorMaterial::Earth)),
                c.earth_floor,
            ),
            (
                "bamboo_or_wood_wall",
                flag(matches!(
                    d.wall,
                    Some(WallMaterial::Bamboo | WallMaterial::Wood)
                )),
                c.bamboo_or_wood_wall,
            ),
            (
                "thatch_roof",
                flag(d.roof == Some(RoofMaterial::Thatch)),
                c.thatch_roof,
            ),
            (
                "piped_or_bottled_water",
                flag(matches!(
                    d.water,
                    Some(WaterSource::Piped | WaterSource::Bottled)
                )),
                c.piped_or_bottled_water,
            ),
            (
                "private_sanitation",
                flag(d.sanitation == Some(Sanitation::Private)),
                c.private_sanitation,
            ),
            (
                "electricity_above_450va",
                flag(matches!(
                    d.electricity,
                    Some(Electricity::Pln900 | Electricity::PlnAbove900)
                )),
                c.electricity_above_450va,
            ),
            (
                "motorcycles",
                f64::from(h.assets.motorcycles.min(3)),
                c.motorcycles,
            ),
            ("car", flag(h.assets.cars > 0), c.car),
            ("refrigerator", flag(h.assets.refrigerator), c.refrigerator),
            ("formal_work_share", formal / size, c.formal_work_share),
        ];
        features
            .into_iter()
            .map(|(name, value, coefficient)| Term {
                name,
                value,
                coefficient,
                contribution: value * coefficient,
            })
            .collect()
    }

    pub fn score(&self, h: &Household, on: chrono::NaiveDate) -> f64 {
        self.intercept_for(h)
            + self
                .explain(h, on)
                .iter()
                .map(|t| t.contribution)
                .sum::<f64>()
    }
}

/// Assigns deciles (1 = poorest) to scores already sorted ascending: the household at
/// 0-based rank `r` of `n` is in decile `floor(10 r / n) + 1`, exactly as `ntile(10)` does
/// for n divisible by ten, and with the larger groups first otherwise.
pub fn decile_of_rank(rank: usize, n: usize) -> u32 {
    if n == 0 {
        return 0;
    }
    // ntile semantics: the first (n % 10) groups hold one extra member.
    let base = n / 10;
    let extra = n % 10;
    let big = (base + 1) * extra;
    let group = if rank < big {
        rank / (base + 1)
    } else {
        extra + (rank - big) / base.max(1)
    };
    (group as u32 + 1).min(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::household::fixtures::household;
    use proptest::prelude::*;

    #[test]
    fn terms_sum_to_the_score() {
        let model = Model::default();
        let on = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let h = household();
        let sum: f64 = model.intercept
            + model
                .explain(&h, on)
                .iter()
                .map(|t| t.contribution)
                .sum::<f64>();
        assert!((sum - model.score(&h, on)).abs() < 1e-12);
        let mut richer = h.clone();
        richer.assets.cars = 1;
        assert!(model.score(&richer, on) > model.score(&h, on));
    }

    proptest! {
        #[test]
        fn deciles_match_ntile(n in 1usize..500) {
            let mut counts = [0usize; 10];
            let mut last = 1;
            for r in 0..n {
                let d = decile_of_rank(r, n);
                prop_assert!(d >= last && d <= 10);
                last = d;
                counts[(d - 1) as usize] += 1;
            }
            // ntile(10): group sizes differ by at most one, larger groups first.
            let filled: Vec<usize> = counts.iter().copied().filter(|c| *c > 0).collect();
            prop_assert!(filled.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
            prop_assert_eq!(filled.len(), n.min(10));
        }
    }

    #[test]
    fn a_province_with_its_own_parameters_scores_by_them_alone() {
        let h = crate::household::fixtures::household();
        let on = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
        let national = Model::default();
        let mut own = Model::default();
        let mut west_java = Params {
            intercept: 13.0,
            coefficients: national.coefficients.clone(),
        };
        west_java.coefficients.log_household_size = -0.5;
        own.provinces.insert("32".into(), west_java);
        // The fixture lives in 32 (Jawa Barat): its score follows the province's terms.
        assert!(own.score(&h, on) != national.score(&h, on));
        let terms = own.explain(&h, on);
        let total = own.intercept_for(&h) + terms.iter().map(|t| t.contribution).sum::<f64>();
        assert!((total - own.score(&h, on)).abs() < 1e-12);
        assert_eq!(own.intercept_for(&h), 13.0);
        // A household of another province keeps the national parameters.
        let mut elsewhere = h.clone();
        elsewhere.address.village =
            Some(crate::region::RegionCode::parse("33.01.01.2001").expect("code"));
        assert_eq!(own.score(&elsewhere, on), national.score(&elsewhere, on));
    }

    #[test]
    fn model_files_round_trip_and_bad_ones_are_refused() {
        let text = serde_json::to_string(&Model::default()).expect("json");
        assert_eq!(Model::from_json(&text), Ok(Model::default()));
        let mut bad: serde_json::Value = serde_json::from_str(&text).expect("json");
        bad["provinces"] = serde_json::json!({ "3": { "intercept": 1.0, "coefficients": bad["coefficients"].clone() } });
        assert!(
            Model::from_json(&bad.to_string())
                .expect_err("bad code")
                .contains("provinces.3")
        );
        bad["provinces"] = serde_json::json!({});
        bad["version"] = serde_json::json!(" ");
        assert!(Model::from_json(&bad.to_string()).is_err());
    }
}
