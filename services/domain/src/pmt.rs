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

    /// The intercept and coefficients for a province (its own, or the national ones).
    fn params(&self, province: Option<&str>) -> (f64, &Coefficients) {
        match province.and_then(|p| self.provinces.get(p)) {
            Some(p) => (p.intercept, &p.coefficients),
            None => (self.intercept, &self.coefficients),
        }
    }

    /// The intercept the household's score starts from (its province's, or national).
    pub fn intercept_for(&self, h: &Household) -> f64 {
        self.params(Inputs::of(h).province()).0
    }

    /// Every term of the household's score, in a fixed order.
    pub fn explain(&self, h: &Household, on: chrono::NaiveDate) -> Vec<Term> {
        self.explain_inputs(&Inputs::of(h), on)
    }

    /// Every term of a score from the household's [`Inputs`], in a fixed order.
    pub fn explain_inputs(&self, inputs: &Inputs, on: chrono::NaiveDate) -> Vec<Term> {
        let c = self.params(inputs.province()).1;
        let size = inputs.birth_dates.len().max(1) as f64;
        let dependants = inputs
            .birth_dates
            .iter()
            .filter(|b| !(15..65).contains(&age_on(**b, on)))
            .count() as f64;
        let flag = |f: u16| if inputs.flags & f != 0 { 1.0 } else { 0.0 };
        let features: [(&'static str, f64, f64); 14] = [
            ("log_household_size", size.ln(), c.log_household_size),
            ("dependency_ratio", dependants / size, c.dependency_ratio),
            (
                "head_years_of_schooling",
                f64::from(inputs.head_years_of_schooling),
                c.head_years_of_schooling,
            ),
            (
                "floor_area_per_capita",
                inputs.floor_area_m2 / size,
                c.floor_area_per_capita,
            ),
            ("earth_floor", flag(Inputs::EARTH_FLOOR), c.earth_floor),
            (
                "bamboo_or_wood_wall",
                flag(Inputs::BAMBOO_OR_WOOD_WALL),
                c.bamboo_or_wood_wall,
            ),
            ("thatch_roof", flag(Inputs::THATCH_ROOF), c.thatch_roof),
            (
                "piped_or_bottled_water",
                flag(Inputs::PIPED_OR_BOTTLED_WATER),
                c.piped_or_bottled_water,
            ),
            (
                "private_sanitation",
                flag(Inputs::PRIVATE_SANITATION),
                c.private_sanitation,
            ),
            (
                "electricity_above_450va",
                flag(Inputs::ELECTRICITY_ABOVE_450VA),
                c.electricity_above_450va,
            ),
            (
                "motorcycles",
                f64::from(inputs.motorcycles.min(3)),
                c.motorcycles,
            ),
            ("car", flag(Inputs::CAR), c.car),
            ("refrigerator", flag(Inputs::REFRIGERATOR), c.refrigerator),
            (
                "formal_work_share",
                f64::from(inputs.formal_workers) / size,
                c.formal_work_share,
            ),
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
        self.score_inputs(&Inputs::of(h), on)
    }

    /// The score from the household's [`Inputs`]: the intercept plus every term of
    /// [`Model::explain_inputs`], summed in the same order.
    pub fn score_inputs(&self, inputs: &Inputs, on: chrono::NaiveDate) -> f64 {
        self.params(inputs.province()).0
            + self
                .explain_inputs(inputs, on)
                .iter()
                .map(|t| t.contribution)
                .sum::<f64>()
    }
}

/// A birth date packed as `year << 9 | month << 5 | day`, so that ages need no calendar.
fn pack_date(d: chrono::NaiveDate) -> u32 {
    use chrono::Datelike;
    (d.year().clamp(0, 1 << 22) as u32) << 9 | d.month() << 5 | d.day()
}

/// Completed years on `on` of someone born on the packed date `born`.
fn age_on(born: u32, on: chrono::NaiveDate) -> i32 {
    use chrono::Datelike;
    let (year, month, day) = ((born >> 9) as i32, (born >> 5) & 15, born & 31);
    let mut age = on.year() - year;
    if (on.month(), on.day()) < (month, day) {
        age -= 1;
    }
    age
}

/// What the model reads of a household, and nothing else: kept beside each household of
/// the master registry when it arrives, so that a monthly determination scores millions
/// of households without decoding their full records. Ages are not stored but computed
/// from the birth dates on the determination date.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// Province code (`32`), as two ASCII digits; zeros when the household has none.
    pub province: [u8; 2],
    /// Every member's birth date, packed (see `pack_date`).
    pub birth_dates: Vec<u32>,
    pub head_years_of_schooling: u8,
    pub formal_workers: u16,
    pub floor_area_m2: f64,
    pub motorcycles: u8,
    /// The dwelling's and assets' yes/no features (the `Inputs::*` bits).
    pub flags: u16,
}

/// Why stored inputs could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored PMT inputs: {0}")]
pub struct InputsError(&'static str);

impl Inputs {
    /// The encoding's format; stored inputs of another format are computed again.
    pub const FORMAT: u8 = 1;
    pub const EARTH_FLOOR: u16 = 1;
    pub const BAMBOO_OR_WOOD_WALL: u16 = 1 << 1;
    pub const THATCH_ROOF: u16 = 1 << 2;
    pub const PIPED_OR_BOTTLED_WATER: u16 = 1 << 3;
    pub const PRIVATE_SANITATION: u16 = 1 << 4;
    pub const ELECTRICITY_ABOVE_450VA: u16 = 1 << 5;
    pub const CAR: u16 = 1 << 6;
    pub const REFRIGERATOR: u16 = 1 << 7;
    const HEADER: usize = 1 + 2 + 1 + 2 + 8 + 1 + 2 + 2;

    pub fn of(h: &Household) -> Self {
        let province = h
            .address
            .village
            .as_ref()
            .map(|v| v.to_string())
            .and_then(|v| v.as_bytes().get(..2).map(|p| [p[0], p[1]]))
            .unwrap_or([0, 0]);
        let d = &h.dwelling;
        let flags = [
            (d.floor == Some(FloorMaterial::Earth), Self::EARTH_FLOOR),
            (
                matches!(d.wall, Some(WallMaterial::Bamboo | WallMaterial::Wood)),
                Self::BAMBOO_OR_WOOD_WALL,
            ),
            (d.roof == Some(RoofMaterial::Thatch), Self::THATCH_ROOF),
            (
                matches!(d.water, Some(WaterSource::Piped | WaterSource::Bottled)),
                Self::PIPED_OR_BOTTLED_WATER,
            ),
            (
                d.sanitation == Some(Sanitation::Private),
                Self::PRIVATE_SANITATION,
            ),
            (
                matches!(
                    d.electricity,
                    Some(Electricity::Pln900 | Electricity::PlnAbove900)
                ),
                Self::ELECTRICITY_ABOVE_450VA,
            ),
            (h.assets.cars > 0, Self::CAR),
            (h.assets.refrigerator, Self::REFRIGERATOR),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit);
        Self {
            province,
            birth_dates: h.persons().map(|p| pack_date(p.birth_date)).collect(),
            head_years_of_schooling: years_of_schooling(h.head().and_then(|p| p.education)) as u8,
            formal_workers: h
                .persons()
                .filter(|p| p.work_status == Some(crate::household::WorkStatus::Formal))
                .count()
                .min(usize::from(u16::MAX)) as u16,
            floor_area_m2: d.floor_area_m2,
            motorcycles: h.assets.motorcycles.min(255) as u8,
            flags,
        }
    }

    /// The province code, when the household has one.
    pub fn province(&self) -> Option<&str> {
        std::str::from_utf8(&self.province)
            .ok()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
    }

    /// The stored form: the format byte, the fixed fields, then the birth dates.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER + 4 * self.birth_dates.len());
        out.push(Self::FORMAT);
        out.extend_from_slice(&self.province);
        out.push(self.head_years_of_schooling);
        out.extend_from_slice(&self.formal_workers.to_le_bytes());
        out.extend_from_slice(&self.floor_area_m2.to_le_bytes());
        out.push(self.motorcycles);
        out.extend_from_slice(&self.flags.to_le_bytes());
        let members = u16::try_from(self.birth_dates.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&members.to_le_bytes());
        for b in self.birth_dates.iter().take(usize::from(members)) {
            out.extend_from_slice(&b.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, InputsError> {
        if bytes.len() < Self::HEADER {
            return Err(InputsError("too short"));
        }
        if bytes[0] != Self::FORMAT {
            return Err(InputsError("another format"));
        }
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let members = usize::from(u16_at(Self::HEADER - 2));
        let dates = &bytes[Self::HEADER..];
        if dates.len() != 4 * members {
            return Err(InputsError("member count and birth dates disagree"));
        }
        let mut floor = [0u8; 8];
        floor.copy_from_slice(&bytes[6..14]);
        Ok(Self {
            province: [bytes[1], bytes[2]],
            head_years_of_schooling: bytes[3],
            formal_workers: u16_at(4),
            floor_area_m2: f64::from_le_bytes(floor),
            motorcycles: bytes[14],
            flags: u16_at(15),
            birth_dates: dates
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
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
    use chrono::Datelike;
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

    #[test]
    fn stored_inputs_score_exactly_as_the_household_does() {
        let model = Model::default();
        let on = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
        let mut h = household();
        h.assets.motorcycles = 7;
        h.assets.refrigerator = true;
        let inputs = Inputs::of(&h);
        let stored = Inputs::decode(&inputs.encode()).expect("decodes");
        assert_eq!(stored, inputs);
        assert_eq!(stored.province(), Some("32"));
        assert_eq!(model.score_inputs(&stored, on), model.score(&h, on));
        assert_eq!(model.explain_inputs(&stored, on), model.explain(&h, on));
        // A birthday on the determination date counts: the age changes that day.
        let head = h.head().expect("head").birth_date;
        let next = head.with_year(head.year() + 15).expect("date");
        assert_eq!(age_on(pack_date(head), next), 15);
        assert_eq!(age_on(pack_date(head), next.pred_opt().expect("date")), 14);
        // Damaged or foreign bytes are refused, not misread.
        let bytes = inputs.encode();
        assert!(Inputs::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut other = bytes.clone();
        other[0] = Inputs::FORMAT + 1;
        assert!(Inputs::decode(&other).is_err());
        assert!(Inputs::decode(&[]).is_err());
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
