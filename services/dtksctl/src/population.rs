//! Deterministic synthetic population for one or more regencies, on the real region codes.

use std::io::Write;

use chrono::{Datelike, NaiveDate};
use dtks_domain::household::*;
use dtks_domain::{KkNumber, Nik, RegionCode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(clap::Args)]
pub struct Args {
    /// Regency codes, e.g. 32.04 (Kabupaten Bandung).
    #[arg(long, default_value = "32.04", value_delimiter = ',')]
    regencies: Vec<String>,
    #[arg(long, default_value_t = 500)]
    households: usize,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Share of proposals with one corrupted person (typo, missing or unknown NIK, deceased).
    #[arg(long, default_value_t = 0.1)]
    corruption: f64,
    #[arg(long, default_value = "target/dtks-gen")]
    out: std::path::PathBuf,
}

const MALE: &[&str] = &[
    "Asep", "Budi", "Dedi", "Eko", "Agus", "Joko", "Slamet", "Rahmat", "Hendra", "Yusuf", "Ujang",
    "Wahyu", "Bambang", "Dadang", "Iwan", "Muhammad", "Ahmad", "Rizky",
];
const FEMALE: &[&str] = &[
    "Siti", "Nur", "Dewi", "Sri", "Ani", "Euis", "Yati", "Rina", "Wati", "Lilis", "Aisyah",
    "Fitri", "Ratna", "Neneng", "Putri", "Ayu", "Indah", "Tuti",
];
const FAMILY: &[&str] = &[
    "Sunandar",
    "Hidayat",
    "Saputra",
    "Suryana",
    "Rohman",
    "Setiawan",
    "Kurniawan",
    "Permana",
    "Gunawan",
    "Nugraha",
    "Hermawan",
    "Rahayu",
    "Lestari",
    "Wulandari",
    "Aminah",
    "Maryam",
    "Susilo",
    "Pratama",
];

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

fn date_between(rng: &mut ChaCha8Rng, from: i32, to: i32) -> NaiveDate {
    let start = NaiveDate::from_ymd_opt(from, 1, 1).expect("date");
    let days = (NaiveDate::from_ymd_opt(to, 12, 31).expect("date") - start).num_days();
    start + chrono::Days::new(rng.random_range(0..days) as u64)
}

fn make_person(
    rng: &mut ChaCha8Rng,
    district: &str,
    serial: &mut u16,
    born: NaiveDate,
    sex: Sex,
    relationship: Relationship,
    family_name: &str,
    poor: bool,
) -> Person {
    *serial += 1;
    let given = pick(rng, if sex == Sex::Male { MALE } else { FEMALE });
    let adult = 2026 - born.year() >= 18;
    Person {
        nik: Some(Nik::compose(district, born, sex, *serial).expect("valid NIK")),
        full_name: format!("{given} {family_name}"),
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
    writeln!(truth, "external_reference,family,member,corruption")?;
    let mut serials = std::collections::HashMap::<String, u16>::new();
    for i in 0..args.households {
        let village = villages[rng.random_range(0..villages.len())].clone();
        let district = village[..8].replace('.', "");
        let serial = serials.entry(district.clone()).or_insert(0);
        let poor = rng.random_bool(0.5);
        let family_name = pick(&mut rng, FAMILY);
        let head_born = date_between(&mut rng, 1955, 1995);
        let mut members = vec![make_person(
            &mut rng,
            &district,
            serial,
            head_born,
            Sex::Male,
            Relationship::Head,
            family_name,
            poor,
        )];
        let spouse_born = date_between(&mut rng, head_born.year() + 1, head_born.year() + 6);
        members.push(make_person(
            &mut rng,
            &district,
            serial,
            spouse_born,
            Sex::Female,
            Relationship::Spouse,
            family_name,
            poor,
        ));
        for _ in 0..rng.random_range(0..if poor { 5 } else { 3 }) {
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
            members.push(make_person(
                &mut rng,
                &district,
                serial,
                born,
                sex,
                Relationship::Child,
                family_name,
                poor,
            ));
        }
        *serial += 1;
        let kk = KkNumber::compose(&district, date_between(&mut rng, 2010, 2025), *serial)?;
        let reference = format!("GEN-{:07}", i + 1);
        let mut deceased_nik = None;
        let registry_rows: Vec<(String, String)> = members
            .iter()
            .map(|p| {
                let nik = p
                    .nik
                    .as_ref()
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default();
                let line = format!(
                    "{nik},{},{},{},{},{},{village},",
                    kk.as_str(),
                    p.full_name,
                    p.birth_place,
                    p.birth_date,
                    p.sex.code()
                );
                (nik, line)
            })
            .collect();
        if rng.random_bool(args.corruption) {
            let m = rng.random_range(0..members.len());
            let kind =
                ["name_typo", "missing_nik", "unknown_nik", "deceased"][rng.random_range(0..4)];
            match kind {
                "name_typo" => members[m].full_name.push('h'),
                "missing_nik" => members[m].nik = None,
                "unknown_nik" => {
                    let p = &members[m];
                    members[m].nik = Some(Nik::compose(
                        &district,
                        p.birth_date,
                        p.sex,
                        9000 + m as u16,
                    )?);
                }
                _ => deceased_nik = members[m].nik.clone(),
            }
            writeln!(truth, "{reference},0,{m},{kind}")?;
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
        for (nik, line) in &registry_rows {
            // A deceased person: the registry records the death; the proposal still lists them.
            let died = deceased_nik
                .as_ref()
                .is_some_and(|d: &Nik| d.as_str() == nik);
            writeln!(registry, "{line}{}", if died { "2025-06-01" } else { "" })?;
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
        "generated {} households in {} villages of {:?} into {}",
        args.households,
        villages.len(),
        args.regencies,
        args.out.display()
    );
    Ok(())
}
