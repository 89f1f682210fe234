//! The linkage model matching uses (*model pemadanan*): `dtksctl model train` learns it
//! from the data it will link — a civil-registry extract and a wave of proposals — and
//! `dtksctl model show` prints any model's weights per field and level.
//!
//! Training is the batch linker's: every proposal person against every registry person
//! who shares a blocking key; u from random pairs of the registry; m from the pairs
//! that share a NIK (the NIK-bearing majority of a wave teaches how the rest are
//! written) when there are enough of them, else by EM over each blocking rule's
//! candidates; the prior by EM over all candidates. Nothing is learned from the
//! generator's own rules: the data decides.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use dtks_domain::linkage::batch::{self, Candidates, Linker};
use dtks_domain::linkage::{FIELDS, LEVELS, Model, NameKey, Record, TokenShares};

/// Name parts rarer than this share of all parts are not listed in the model: each is
/// "rare" (at 10 M persons, fewer than about 250 bearers).
const TOKEN_FLOOR: f64 = 1e-5;

/// The model matching ships (`services/matching/linkage-model.json`).
const SHIPPED: &str = include_str!("../../matching/linkage-model.json");

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Learns a model from a registry extract (`registry.csv`: nik, kk_number,
    /// full_name, birth_place, birth_date, sex, village_code, …) and a wave of proposals
    /// (`proposals.jsonl`, as `dtksctl gen` writes them); prints its weights and writes
    /// it where `DTKS_MATCHING_MODEL` can load it.
    Train {
        #[arg(long)]
        registry: std::path::PathBuf,
        #[arg(long)]
        proposals: std::path::PathBuf,
        #[arg(long, default_value = "linkage-model.json")]
        out: std::path::PathBuf,
    },
    /// Prints the weights of a model file, or of the model matching ships.
    Show { file: Option<std::path::PathBuf> },
}

pub fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Show { file } => {
            let text = match file {
                Some(path) => std::fs::read_to_string(path)?,
                None => SHIPPED.to_owned(),
            };
            let model: Model = serde_json::from_str(&text)?;
            print!("{}", weights(&model, &version(&text)));
            Ok(())
        }
        ModelCommand::Train {
            registry,
            proposals,
            out,
        } => {
            let (model, pairs, labelled) = train(&registry, &proposals)?;
            let text = serde_json::to_string_pretty(&model)?;
            std::fs::write(&out, &text)?;
            println!(
                "learned from {pairs} candidate pairs ({labelled} sharing a NIK); written to {}",
                out.display()
            );
            print!("{}", weights(&model, &version(&text)));
            Ok(())
        }
    }
}

/// A model's version, as matching records it with every result.
pub fn version(text: &str) -> String {
    dtks_domain::linkage::model_version(text)
}

/// The model as a table: per field and level, m, u and the weight (log2 m/u).
pub fn weights(model: &Model, version: &str) -> String {
    let mut out = format!(
        "model {version}: prior {:.4} ({:+.2} bits)\n{:<12} {:<36} {:>10} {:>10} {:>8}\n",
        model.lambda,
        (model.lambda / (1.0 - model.lambda)).log2(),
        "field",
        "level",
        "m",
        "u",
        "weight"
    );
    for f in FIELDS {
        for (level, name) in LEVELS[f as usize].iter().enumerate() {
            out.push_str(&format!(
                "{:<12} {:<36} {:>10.6} {:>10.6} {:>+8.2}\n",
                f.label(),
                name,
                model.m[f as usize][level],
                model.u[f as usize][level],
                model.field_weight(f, level as u8)
            ));
        }
    }
    if let Some(tokens) = &model.tokens {
        out.push_str(&format!(
            "name parts: {} listed (share ≥ {:.0e}); a part agreeing by chance {:.6}; most common, with the bits an agreement carried by each loses:\n",
            tokens.shares.len(),
            tokens.rare,
            tokens.agreement
        ));
        let mut common: Vec<(&String, &f64)> = tokens.shares.iter().collect();
        common.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        for (part, share) in common.into_iter().take(12) {
            out.push_str(&format!(
                "  {part:<16} {share:>9.5} {:>+8.2}\n",
                (tokens.agreement / share).log2().min(0.0)
            ));
        }
    }
    out
}

fn date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Learns a model; answers it, the candidate pairs and how many share a NIK.
fn train(
    registry: &std::path::Path,
    proposals: &std::path::Path,
) -> anyhow::Result<(Model, usize, u64)> {
    let mut names: HashMap<String, Arc<NameKey>> = HashMap::new();
    let mut name = |text: &str| {
        names
            .entry(text.to_owned())
            .or_insert_with(|| Arc::new(NameKey::new(text)))
            .clone()
    };
    let mut left = Vec::new();
    for line in std::fs::read_to_string(proposals)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let village = v["household"]["address"]["village"]
            .as_str()
            .unwrap_or_default();
        for family in v["household"]["families"].as_array().into_iter().flatten() {
            for p in family["members"].as_array().into_iter().flatten() {
                let sex = match p["sex"].as_str() {
                    Some("Female") => Some(2),
                    Some("Male") => Some(1),
                    _ => None,
                };
                left.push(
                    Record::with_name(
                        name(p["full_name"].as_str().unwrap_or_default()),
                        p["birth_date"].as_str().and_then(date),
                        sex,
                        Some(village),
                    )
                    .labelled(p["nik"].as_str()),
                );
            }
        }
    }
    anyhow::ensure!(
        !left.is_empty(),
        "no proposal persons in {}",
        proposals.display()
    );
    let linker = Linker::new(&left);
    let mut candidates = Candidates::default();
    let mut sample = Vec::new();
    // Every spelling the registry holds, once per person who writes it.
    let mut registry_names: Vec<Arc<NameKey>> = Vec::new();
    let mut birth_days = std::collections::HashSet::new();
    let mut rows = csv::Reader::from_path(registry)?;
    for (i, row) in rows.records().enumerate() {
        let row = row?;
        birth_days.insert(row[4].to_owned());
        let key = name(&row[2]);
        registry_names.push(key.clone());
        let record = Record::with_name(key, date(&row[4]), row[5].parse().ok(), Some(&row[6]))
            .labelled(Some(&row[0]));
        linker.probe(i as u32, &record, &mut candidates);
        // One registry person in 50 for the random pairs u is learned from.
        if i % 50 == 0 {
            sample.push(record);
        }
    }
    let random = batch::random_patterns(&sample, 1_000_000, 2026, 2);
    let mut model = candidates.train(&random, 100);
    model.tokens = Some(
        TokenShares::learn(registry_names.iter().map(|n| n.as_ref()), TOKEN_FLOOR)
            .of_registry(registry_names.len() as u64, birth_days.len() as u64),
    );
    Ok((model, candidates.pairs.len(), candidates.labelled.total()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_learned_from_generated_data_weighs_agreement_up_and_prints_every_level() {
        let dir = std::env::temp_dir().join(format!("dtks-model-{}", std::process::id()));
        crate::population::run_for_test(&dir, 300, 3_000).expect("generated");
        let (model, pairs, labelled) =
            train(&dir.join("registry.csv"), &dir.join("proposals.jsonl")).expect("trained");
        assert!(
            pairs > 0 && labelled >= batch::MIN_LABELLED,
            "{pairs} pairs, {labelled}"
        );
        // The best level of every field is evidence for a match; a different name or
        // birth date strongly against. (One regency's data never shows two regencies:
        // the region's worst level is no evidence either way.)
        for f in FIELDS {
            assert!(model.field_weight(f, 0) > 0.0, "{}", f.label());
        }
        use dtks_domain::linkage::Field;
        assert!(model.field_weight(Field::Name, 5) < -5.0);
        assert!(model.field_weight(Field::BirthDate, 3) < -5.0);
        let text = serde_json::to_string_pretty(&model).expect("json");
        let table = weights(&model, &version(&text));
        assert_eq!(
            table
                .lines()
                .take_while(|l| !l.starts_with("name parts"))
                .count(),
            2 + LEVELS.iter().map(|l| l.len()).sum::<usize>()
        );
        // The registry's name parts by frequency: the commonest is commoner than an
        // average agreement, so an agreement carried by it loses bits.
        let tokens = model.tokens.as_ref().expect("name parts learned");
        assert!(tokens.agreement > 0.0 && tokens.agreement < 1.0);
        let (common, share) = tokens
            .shares
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("a listed part");
        assert!(*share > tokens.agreement, "{common} {share}");
        assert!(table.contains(&format!("  {common}")), "{table}");
        assert!(table.contains("same spelling variant"));
        assert_eq!(version(&text).len(), 16);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_shipped_model_shows() {
        let model: Model = serde_json::from_str(SHIPPED).expect("shipped model");
        assert!(weights(&model, &version(SHIPPED)).contains("birth date"));
    }
}
