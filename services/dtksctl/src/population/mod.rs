//! Deterministic synthetic population for one or more regencies, on the real region codes.

use std::io::Write;

use chrono::Datelike;
use dtks_domain::household::*;
use dtks_domain::{KkNumber, RegionCode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::names;

mod corrupt;
mod people;

use corrupt::{abbreviate, corrupt};
use people::{RegistryRow, Serials, date_between, make_person};

#[derive(clap::Args)]
pub struct Args {
    /// Regency codes, e.g. 32.04 (Kabupaten Bandung).
    #[arg(long, default_value = "32.04", value_delimiter = ',')]
    regencies: Vec<String>,
    #[arg(long, default_value_t = 500)]
    households: usize,
    /// Further households the civil registry holds that nobody proposes (the rest of
    /// the population): they appear in registry.csv only.
    #[arg(long, default_value_t = 0)]
    unproposed: usize,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Share of proposals with one corrupted person; the kinds are in `CORRUPTIONS` and
    /// every corruption is written to `truth.csv`.
    #[arg(long, default_value_t = 0.1)]
    corruption: f64,
    /// The kinds drawn from (`CORRUPTIONS` by default; `all` adds `FURTHER`).
    #[arg(long, value_delimiter = ',')]
    corruptions: Vec<String>,
    /// Share of corrupted proposals whose person departs twice (a second kind, drawn
    /// the same way): real errors come in combination.
    #[arg(long, default_value_t = 0.0)]
    combined: f64,
    #[arg(long, default_value = "target/dtks-gen")]
    out: std::path::PathBuf,
}

/// The ways a proposal departs from the civil registry, as they happen in the field.
///
/// - `name_typo`: two adjacent letters of the given name swapped by the operator;
/// - `name_variant`: the name in the old spelling (ejaan lama: u → oe, j → dj, y → j);
/// - `missing_nik`: the member is proposed without a NIK;
/// - `unknown_nik`: a well-formed NIK that the registry does not know;
/// - `shifted_birth_date`: the registry holds a corrected birth date that differs from
///   the one on the family card (and encoded in the NIK) by 1 to 400 days;
/// - `deceased`: the registry records the member's death, the proposal still lists them;
/// - `moved`: the registry records the member in another village;
/// - `duplicate`: a member of an earlier household is listed again in this one;
/// - `titled`: the name with a pilgrim's title and perhaps a degree (`H. … , S.Pd.`);
/// - `abbreviated`: Muhammad as Muh., Moch., M. …, Ahmad as Achmad (names without such
///   a part are `titled` instead);
/// - `transposed`: the name's parts in reverse order;
/// - `single_name`: the person known by one name only.
///
/// `missing_nik` and `unknown_nik` give the NIK the registry holds in `truth.csv`.
///
/// Further kinds, drawn only when `--corruptions` names them (`all` for every kind),
/// since some give a proposal that intake refuses as an officer's form would be:
/// - `default_birth_date`: the birth date unknown, written as 1 July, 31 December or
///   1 January of the year;
/// - `dropped_part`: one part of a name of several left out;
/// - `kk_as_nik`: the family card's number written where the NIK goes;
/// - `family_nik`: another member's NIK written for this one (the same NIK twice);
/// - `nik_typo`: one digit of the NIK mistyped (often no longer a NIK at all);
/// - `unregistered`: the person is not in the civil registry at all (a birth or a
///   newcomer never recorded) and is proposed without a NIK: linkage must find no one.
///
/// These three give the NIK the registry holds in `truth.csv` too.
pub const FURTHER: &[&str] = &[
    "default_birth_date",
    "dropped_part",
    "kk_as_nik",
    "family_nik",
    "nik_typo",
    "unregistered",
];

/// The kinds that concern a person's NIK or registration: one of them at a time.
const NIK_KINDS: &[&str] = &[
    "missing_nik",
    "unknown_nik",
    "kk_as_nik",
    "family_nik",
    "nik_typo",
    "unregistered",
    "deceased",
    "duplicate",
];

pub const CORRUPTIONS: &[&str] = &[
    "name_typo",
    "name_variant",
    "titled",
    "abbreviated",
    "transposed",
    "single_name",
    "missing_nik",
    "unknown_nik",
    "shifted_birth_date",
    "deceased",
    "moved",
    "duplicate",
];

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let villages: Vec<String> = dtks_platform::reference::VILLAGES
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .filter(|code| {
            args.regencies
                .iter()
                .any(|r| code.starts_with(&format!("{r}.")))
        })
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        !villages.is_empty(),
        "no villages found for {:?}",
        args.regencies
    );
    let kinds: Vec<&str> = match args.corruptions.as_slice() {
        [] => CORRUPTIONS.to_vec(),
        [all] if all == "all" => CORRUPTIONS.iter().chain(FURTHER).copied().collect(),
        named => {
            let known: Vec<&str> = CORRUPTIONS.iter().chain(FURTHER).copied().collect();
            named
                .iter()
                .map(|k| {
                    known
                        .iter()
                        .find(|n| **n == k.as_str())
                        .copied()
                        .ok_or_else(|| {
                            anyhow::anyhow!("unknown corruption {k}; known: {}", known.join(", "))
                        })
                })
                .collect::<anyhow::Result<_>>()?
        }
    };
    std::fs::create_dir_all(&args.out)?;
    let mut registry =
        std::io::BufWriter::new(std::fs::File::create(args.out.join("registry.csv"))?);
    let mut proposals =
        std::io::BufWriter::new(std::fs::File::create(args.out.join("proposals.jsonl"))?);
    let mut truth = std::io::BufWriter::new(std::fs::File::create(args.out.join("truth.csv"))?);
    writeln!(
        registry,
        "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date"
    )?;
    writeln!(truth, "external_reference,family,member,corruption,detail")?;
    let mut serials = Serials::default();
    let mut previous: Option<(String, Vec<Person>)> = None;
    for i in 0..args.households + args.unproposed {
        let village = villages[rng.random_range(0..villages.len())].clone();
        let district = village[..8].replace('.', "");
        let poor = rng.random_bool(0.5);
        let tradition = names::tradition(&mut rng, &village[..2]);
        let naming = names::Household::new(&mut rng, tradition);
        let head_born = date_between(&mut rng, 1955, 1995);
        let head_name = naming.name(&mut rng, false, false, 0, head_born.year());
        let mut members = vec![make_person(
            &mut rng,
            &district,
            &mut serials,
            head_born,
            Sex::Male,
            Relationship::Head,
            head_name,
            poor,
        )];
        let spouse_born = date_between(&mut rng, head_born.year() + 1, head_born.year() + 6);
        let spouse_name = naming.name(&mut rng, true, true, 0, spouse_born.year());
        members.push(make_person(
            &mut rng,
            &district,
            &mut serials,
            spouse_born,
            Sex::Female,
            Relationship::Spouse,
            spouse_name,
            poor,
        ));
        for order in 1..=rng.random_range(0..if poor { 5 } else { 3 }) {
            let sex = if rng.random_bool(0.5) {
                Sex::Male
            } else {
                Sex::Female
            };
            let born = date_between(
                &mut rng,
                (head_born.year() + 20).min(2024),
                (head_born.year() + 40).min(2025),
            );
            let name = naming.name(&mut rng, sex == Sex::Female, false, order, born.year());
            members.push(make_person(
                &mut rng,
                &district,
                &mut serials,
                born,
                sex,
                Relationship::Child,
                name,
                poor,
            ));
        }
        let issued = date_between(&mut rng, 2010, 2025);
        let kk = KkNumber::compose(&district, issued, serials.next(&district, issued, false))?;
        let reference = format!("GEN-{:07}", i + 1);
        // What the civil registry holds for each member: the truth, before any corruption.
        let mut registry_rows: Vec<RegistryRow> = members
            .iter()
            .map(|p| RegistryRow {
                nik: p
                    .nik
                    .as_ref()
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
                kk: kk.as_str().to_owned(),
                full_name: p.full_name.clone(),
                birth_place: p.birth_place.clone(),
                birth_date: p.birth_date,
                sex: p.sex.code(),
                village: village.clone(),
                death_date: None,
            })
            .collect();
        if i >= args.households {
            for row in &registry_rows {
                row.write(&mut registry)?;
            }
            continue;
        }
        if rng.random_bool(args.corruption) {
            let mut m = rng.random_range(0..members.len());
            let times = if rng.random_bool(args.combined) { 2 } else { 1 };
            let mut done: Vec<&str> = Vec::new();
            for _ in 0..times {
                let mut kind = kinds[rng.random_range(0..kinds.len())];
                let several_parts = members[m].full_name.contains(' ');
                if (kind == "duplicate" && (previous.is_none() || !done.is_empty()))
                    || (kind == "family_nik" && members.len() < 2)
                    || (matches!(kind, "single_name" | "transposed") && !several_parts)
                    || (NIK_KINDS.contains(&kind) && done.iter().any(|d| NIK_KINDS.contains(d)))
                    || done.contains(&kind)
                {
                    kind = "name_typo";
                }
                if kind == "abbreviated" {
                    // The member whose name can be abbreviated, if the household has one.
                    match (0..members.len()).find(|i| {
                        abbreviate(&members[(m + i) % members.len()].full_name, "M.").is_some()
                    }) {
                        Some(i) if done.is_empty() => m = (m + i) % members.len(),
                        Some(0) => {}
                        _ => kind = "titled",
                    }
                }
                if done.contains(&kind) {
                    continue;
                }
                let (member, detail) = corrupt(
                    &mut rng,
                    kind,
                    m,
                    &mut members,
                    &mut registry_rows[m],
                    &district,
                    kk.as_str(),
                    &villages,
                    previous.as_ref(),
                )?;
                done.push(kind);
                writeln!(truth, "{reference},0,{member},{kind},{detail}")?;
            }
        } else {
            // A later household may list one of this clean household's members (not its
            // head) again.
            previous = Some((reference.clone(), members[1..].to_vec()));
        }
        let household = Household {
            household_id: None,
            address: Address {
                village: Some(RegionCode::parse(&village)?),
                rt: format!("{:03}", rng.random_range(1..20)),
                rw: format!("{:03}", rng.random_range(1..10)),
                street: String::new(),
                postal_code: String::new(),
            },
            location: Some(GeoPoint {
                latitude: -7.0 + rng.random_range(-0.2..0.2),
                longitude: 107.6 + rng.random_range(-0.2..0.2),
            }),
            families: vec![Family {
                kk_number: Some(kk),
                members,
            }],
            dwelling: Dwelling {
                tenure: Some(Tenure::Owned),
                floor_area_m2: if poor {
                    rng.random_range(18.0..40.0)
                } else {
                    rng.random_range(45.0..150.0)
                },
                floor: Some(if poor {
                    FloorMaterial::Earth
                } else {
                    FloorMaterial::Tile
                }),
                wall: Some(if poor {
                    WallMaterial::Bamboo
                } else {
                    WallMaterial::BrickPlastered
                }),
                roof: Some(if poor {
                    RoofMaterial::Zinc
                } else {
                    RoofMaterial::Tile
                }),
                water: Some(if poor {
                    WaterSource::Unprotected
                } else {
                    WaterSource::Piped
                }),
                sanitation: Some(if poor {
                    Sanitation::Shared
                } else {
                    Sanitation::Private
                }),
                electricity: Some(if poor {
                    Electricity::Pln450
                } else {
                    Electricity::PlnAbove900
                }),
            },
            assets: Assets {
                motorcycles: if poor { 0 } else { 2 },
                cars: u32::from(!poor && rng.random_bool(0.3)),
                refrigerator: !poor,
                ..Assets::default()
            },
            assistance_history: vec![],
            psks_potential: vec![],
        };
        for row in registry_rows.iter().filter(|r| !r.nik.is_empty()) {
            row.write(&mut registry)?;
        }
        writeln!(
            proposals,
            "{}",
            serde_json::to_string(
                &serde_json::json!({ "external_reference": reference, "household": household })
            )?
        )?;
    }
    registry.flush()?;
    proposals.flush()?;
    truth.flush()?;
    println!(
        "generated {} proposed and {} unproposed households in {} villages of {:?} into {}",
        args.households,
        args.unproposed,
        villages.len(),
        args.regencies,
        args.out.display()
    );
    Ok(())
}

/// A regency of `households` proposed and `unproposed` more, written to `dir`, for the
/// tests of other modules.
#[cfg(test)]
pub fn run_for_test(
    dir: &std::path::Path,
    households: usize,
    unproposed: usize,
) -> anyhow::Result<()> {
    run(Args {
        regencies: vec!["32.04".into()],
        households,
        unproposed,
        seed: 9,
        corruption: 0.3,
        corruptions: vec![],
        combined: 0.0,
        out: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use std::collections::HashMap;

    fn generate(dir: &str, seed: u64) -> std::path::PathBuf {
        generate_with(dir, seed, vec!["32.04".into()], vec![], 0.0)
    }

    fn generate_with(
        dir: &str,
        seed: u64,
        regencies: Vec<String>,
        corruptions: Vec<String>,
        combined: f64,
    ) -> std::path::PathBuf {
        let out = std::env::temp_dir().join(format!("dtks-gen-{}-{dir}", std::process::id()));
        run(Args {
            regencies,
            households: 600,
            unproposed: 50,
            seed,
            corruption: 0.6,
            corruptions,
            combined,
            out: out.clone(),
        })
        .expect("generate");
        out
    }

    #[test]
    fn further_corruptions_come_alone_or_in_pairs_and_each_is_observable() {
        let out = generate_with(
            "further",
            5,
            vec!["12.71".into(), "51.71".into(), "32.04".into()],
            vec!["all".into()],
            0.4,
        );
        let proposals = proposals(&out);
        let registry = registry(&out);
        let mut seen = HashMap::<String, usize>::new();
        let mut per_person = HashMap::<(String, String), usize>::new();
        let mut truth = csv::Reader::from_path(out.join("truth.csv")).unwrap();
        for rec in truth.records() {
            let rec = rec.unwrap();
            let (reference, member, kind, detail) = (&rec[0], &rec[2], &rec[3], &rec[4]);
            *seen.entry(kind.to_owned()).or_default() += 1;
            *per_person
                .entry((reference.to_owned(), member.to_owned()))
                .or_default() += 1;
            let p = &proposals[reference];
            let person = &p.members[member.parse::<usize>().unwrap()];
            let nik = person.nik.as_ref().map(|n| n.as_str().to_owned());
            let true_nik = detail.split(';').next().unwrap_or_default();
            match kind {
                "default_birth_date" => {
                    let d = person.birth_date;
                    assert!(
                        matches!((d.month(), d.day()), (7, 1) | (12, 31) | (1, 1)),
                        "{reference}: {d}"
                    );
                    assert_eq!(d.year().to_string(), detail[..4], "{reference}");
                }
                "kk_as_nik" => {
                    let kk = p.household.families[0].kk_number.as_ref().unwrap().as_str();
                    assert!(
                        nik.as_deref() == Some(kk) || detail.ends_with(kk),
                        "{reference}"
                    );
                    assert!(registry.contains_key(true_nik), "{reference}: {detail}");
                }
                "family_nik" => {
                    assert!(registry.contains_key(true_nik), "{reference}: {detail}");
                    assert_ne!(nik.as_deref(), Some(true_nik), "{reference}");
                    let shared = p.members.iter().filter(|o| o.nik == person.nik).count();
                    assert!(shared >= 2, "{reference}: the NIK is another member's too");
                }
                "unregistered" => {
                    assert!(nik.is_none(), "{reference}");
                    let name = &person.full_name;
                    let born = person.birth_date.to_string();
                    assert!(
                        !registry.values().any(|r| &r[0] == name && r[1] == born),
                        "{reference}: {name} is in the registry"
                    );
                }
                "nik_typo" => {
                    assert!(registry.contains_key(true_nik), "{reference}: {detail}");
                    assert_ne!(nik.as_deref(), Some(true_nik), "{reference}");
                    if nik.is_none() {
                        assert!(detail.contains(";typed="), "{reference}: {detail}");
                    }
                }
                _ => {}
            }
        }
        for kind in FURTHER {
            assert!(
                seen.get(*kind).copied().unwrap_or(0) >= 5,
                "{kind}: {seen:?}"
            );
        }
        assert!(
            per_person.values().any(|n| *n == 2),
            "some persons depart twice"
        );
        // Names follow the provinces' traditions: Batak margas in Medan, I/Ni in Bali.
        let names: Vec<(String, String)> = proposals
            .values()
            .flat_map(|p| {
                p.members
                    .iter()
                    .map(|m| (p.village.clone(), m.full_name.clone()))
            })
            .collect();
        assert!(names.iter().any(|(v, n)| v.starts_with("51.") && (n.starts_with("I ") || n.starts_with("Ni "))));
        assert!(names.iter().any(|(v, n)| {
            v.starts_with("12.")
                && [
                    "Siregar",
                    "Nasution",
                    "Simanjuntak",
                    "Sitompul",
                    "Harahap",
                    "Lubis",
                ]
                .iter()
                .any(|m| n.contains(m))
        }));
        let distinct: std::collections::HashSet<&String> = names.iter().map(|(_, n)| n).collect();
        assert!(
            distinct.len() * 2 > names.len(),
            "{} names, {} distinct",
            names.len(),
            distinct.len()
        );
        std::fs::remove_dir_all(out).unwrap();
    }

    struct Proposal {
        village: String,
        members: Vec<Person>,
        household: Household,
    }

    fn proposals(out: &std::path::Path) -> HashMap<String, Proposal> {
        std::fs::read_to_string(out.join("proposals.jsonl"))
            .unwrap()
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let h: Household = serde_json::from_value(v["household"].clone()).unwrap();
                let proposal = Proposal {
                    village: h.address.village.as_ref().unwrap().to_string(),
                    members: h.families[0].members.clone(),
                    household: h,
                };
                (
                    v["external_reference"].as_str().unwrap().to_owned(),
                    proposal,
                )
            })
            .collect()
    }

    /// registry.csv by NIK: (full_name, birth_date, village, death_date).
    fn registry(out: &std::path::Path) -> HashMap<String, [String; 4]> {
        let mut r = csv::Reader::from_path(out.join("registry.csv")).unwrap();
        r.records()
            .map(|rec| {
                let rec = rec.unwrap();
                let f = |i: usize| rec[i].to_owned();
                (f(0), [f(2), f(4), f(6), f(7)])
            })
            .collect()
    }

    #[test]
    fn same_seed_same_files_and_every_corruption_is_observable() {
        let a = generate("a", 11);
        let b = generate("b", 11);
        for file in ["registry.csv", "proposals.jsonl", "truth.csv"] {
            assert_eq!(
                std::fs::read(a.join(file)).unwrap(),
                std::fs::read(b.join(file)).unwrap(),
                "{file} differs between two runs with one seed"
            );
        }
        let proposals = proposals(&a);
        let registry = registry(&a);
        let today = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        for (reference, p) in &proposals {
            let v = p.household.structural_violations(today);
            assert!(
                v.is_empty(),
                "{reference} would be refused by intake: {v:?}"
            );
        }
        let mut seen = HashMap::<String, usize>::new();
        let mut truth = csv::Reader::from_path(a.join("truth.csv")).unwrap();
        for rec in truth.records() {
            let rec = rec.unwrap();
            let (reference, member, kind, detail) = (&rec[0], &rec[2], &rec[3], &rec[4]);
            *seen.entry(kind.to_owned()).or_default() += 1;
            let p = &proposals[reference];
            let person = &p.members[member.parse::<usize>().unwrap()];
            let nik = person.nik.as_ref().map(|n| n.as_str().to_owned());
            let held = nik.as_ref().and_then(|n| registry.get(n));
            match kind {
                "name_typo" | "name_variant" => {
                    let held = held.expect("registered");
                    assert_ne!(held[0], person.full_name, "{reference} {kind}");
                }
                "titled" | "abbreviated" | "transposed" | "single_name" => {
                    let held = &registry[&nik.clone().expect("keeps its NIK")];
                    assert_ne!(held[0], person.full_name, "{reference} {kind}");
                    let key = |n: &str| {
                        dtks_domain::linkage::NameKey::new(n)
                            .phonetic_sorted()
                            .to_owned()
                    };
                    let parts = |n: &str| {
                        let mut p: Vec<String> = n
                            .split(' ')
                            .map(|w| w.trim_matches(['.', ',']).to_uppercase())
                            .collect();
                        p.sort();
                        p
                    };
                    match kind {
                        "transposed" => assert_eq!(parts(&held[0]), parts(&person.full_name)),
                        "single_name" => {
                            assert!(!person.full_name.contains(' '));
                            assert!(held[0].contains(&person.full_name), "{reference}");
                        }
                        _ => {
                            assert_eq!(key(&held[0]), key(&person.full_name), "{reference} {kind}")
                        }
                    }
                }
                "missing_nik" => {
                    assert!(nik.is_none(), "{reference}");
                    assert!(registry.contains_key(detail), "{reference}: {detail}");
                }
                "unknown_nik" => {
                    assert!(nik.is_some() && held.is_none(), "{reference}");
                    assert!(registry.contains_key(detail), "{reference}: {detail}");
                }
                "shifted_birth_date" => {
                    let held = held.expect("registered");
                    assert_eq!(held[1], detail);
                    assert_ne!(held[1], person.birth_date.to_string());
                }
                "deceased" => assert!(!held.expect("registered")[3].is_empty()),
                "moved" => {
                    let held = held.expect("registered");
                    assert_eq!(held[2], detail);
                    assert_ne!(held[2], p.village);
                }
                "duplicate" => {
                    let other = &proposals[detail];
                    assert!(
                        other.members.iter().any(|o| o.nik == person.nik),
                        "{reference} does not share a member with {detail}"
                    );
                    assert!(held.is_some(), "the registry holds the person once");
                }
                other => panic!("unexpected corruption {other}"),
            }
        }
        let proposed: usize = proposals.values().map(|p| p.members.len()).sum();
        assert!(
            registry.len() > proposed,
            "unproposed households are in the registry"
        );
        // Only names with a Muhammad or an Ahmad can be abbreviated: a fifth of the
        // households of West Java name their members the Arabic way.
        for kind in CORRUPTIONS {
            let least = if *kind == "abbreviated" { 5 } else { 10 };
            assert!(
                seen.get(*kind).copied().unwrap_or(0) >= least,
                "{kind}: {seen:?}"
            );
        }
        for dir in [a, b] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
