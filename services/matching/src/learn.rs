//! What matching learns of the civil registry from the records it meets (*belajar dari
//! data*): how common each name part is, how many parts a name has and over how many
//! birth dates persons were born. The holders its NIK lookups return are a fair sample
//! of the persons proposed. A model that does not carry the registry's name frequencies
//! (the one shipped has none) takes them from here once enough persons were met, so
//! the term-frequency adjustments of [`crate::link`] hold in a deployment that never
//! ran `dtksctl model train`. A model file that carries them is used as it is.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use dtks_domain::linkage::{Model, NameKey, TokenShares};

use crate::dci::RegistryPerson;

/// Persons met before what was learned is used: fewer say little of a people's names.
pub const ENOUGH: u64 = 10_000;
/// Name parts rarer than this share are "rare", as `dtksctl model train` lists them.
const TOKEN_FLOOR: f64 = 1e-5;
/// Persons remembered (by a hash of their NIK, so that one met twice counts once);
/// beyond them, the sample is large enough and learning stops.
const MOST: usize = 2_000_000;

#[derive(Default)]
struct Sample {
    seen: HashSet<u64>,
    /// How often each name part was met.
    parts: HashMap<String, u64>,
    birth_days: HashSet<String>,
    /// Persons met when the last rebuild was claimed.
    built_at: u64,
}

/// The sample and the model learned from it.
#[derive(Default)]
pub struct Learning {
    sample: Mutex<Sample>,
    learned: RwLock<Option<(Arc<Model>, String)>>,
}

impl Learning {
    /// Meets registry persons; answers whether the model is due to be rebuilt (enough
    /// persons were met, and half as many again since the last rebuild), and then
    /// claims the rebuild, so that callers meeting persons at once rebuild it once.
    pub fn meet<'a>(&self, persons: impl IntoIterator<Item = &'a RegistryPerson>) -> bool {
        let mut sample = self.sample.lock().expect("learning");
        for p in persons {
            if sample.seen.len() >= MOST {
                break;
            }
            let mut h = DefaultHasher::new();
            p.nik.hash(&mut h);
            if !sample.seen.insert(h.finish()) {
                continue;
            }
            for part in NameKey::new(&p.full_name).tokens {
                *sample.parts.entry(part).or_default() += 1;
            }
            if !p.birth_date.is_empty() && !sample.birth_days.contains(&p.birth_date) {
                sample.birth_days.insert(p.birth_date.clone());
            }
        }
        let met = sample.seen.len() as u64;
        let due = met >= ENOUGH && (sample.built_at == 0 || met * 2 >= sample.built_at * 3);
        if due {
            sample.built_at = met;
        }
        due
    }

    /// Rebuilds the model from `base` (its m, u and prior) and what was met, the
    /// registry holding `persons`; its version names the base and the sample.
    pub fn rebuild(&self, base: &Model, base_version: &str, persons: u64) {
        let (tokens, met) = {
            let sample = self.sample.lock().expect("learning");
            let met = sample.seen.len() as u64;
            let counts = sample.parts.iter().map(|(part, n)| (part.as_str(), *n));
            let tokens = TokenShares::from_counts(counts, met, TOKEN_FLOOR)
                .of_registry(persons, sample.birth_days.len() as u64);
            (tokens, met)
        };
        let model = Model {
            tokens: Some(tokens),
            ..base.clone()
        };
        let version = format!("{base_version}+parts-of-{met}");
        *self.learned.write().expect("learning") = Some((Arc::new(model), version));
    }

    /// The model learned so far, with its version, if any.
    pub fn model(&self) -> Option<(Arc<Model>, String)> {
        self.learned.read().expect("learning").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(i: u64, name: &str) -> RegistryPerson {
        RegistryPerson {
            nik: format!("32040512038{i:05}"),
            kk_number: String::new(),
            full_name: name.into(),
            birth_date: format!("19{:02}-0{}-1{}", 50 + i % 40, 1 + i % 9, i % 10),
            sex: "male".into(),
            village_code: "32.04.05.2001".into(),
            deceased: false,
        }
    }

    #[test]
    fn enough_persons_met_once_each_teach_the_name_parts() {
        let learning = Learning::default();
        let names = [
            "Asep Sunandar",
            "Siti Aminah",
            "Asep Hidayat",
            "Dadang Suryana",
        ];
        let first: Vec<RegistryPerson> = (0..ENOUGH - 1)
            .map(|i| person(i, names[(i % 4) as usize]))
            .collect();
        assert!(!learning.meet(&first), "not yet enough");
        // Met again: counted once.
        assert!(!learning.meet(&first));
        assert!(learning.meet(&[person(ENOUGH, "Taufik Hidayat")]));
        let base = Model::from_random_pairs(&Default::default());
        learning.rebuild(&base, "base", 10_000_000);
        let (model, version) = learning.model().expect("learned");
        assert_eq!(version, format!("base+parts-of-{ENOUGH}"));
        let tokens = model.tokens.as_ref().expect("tokens");
        // ASEP is in half of the names, one part in four; TAUFIK once in 20,000 parts.
        assert!(
            (tokens.share("ASEP") - 0.25).abs() < 0.001,
            "{}",
            tokens.share("ASEP")
        );
        assert!(tokens.share("TAUFIK") < 1e-4);
        assert_eq!(tokens.persons, 10_000_000);
        assert!(tokens.birth_days > 100 && (tokens.parts_per_name - 2.0).abs() < 1e-9);
        assert_eq!(model.m, base.m, "m and u stay the base model's");
        // Not rebuilt again until half as many again were met.
        assert!(!learning.meet(&[person(ENOUGH + 1, "Imas")]));
    }
}
