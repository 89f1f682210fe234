//! The corruptions a proposal carries, each applied to one member with its truth.

use chrono::{Datelike, NaiveDate};
use dtks_domain::Nik;
use dtks_domain::household::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::people::{RegistryRow, pick};

/// Applies one corruption to member `m` (or appends a duplicate); returns the member
/// index it concerns and a detail for the ground truth.
#[allow(clippy::too_many_arguments)]
pub(super) fn corrupt(
    rng: &mut ChaCha8Rng,
    kind: &str,
    m: usize,
    members: &mut Vec<Person>,
    registry: &mut RegistryRow,
    district: &str,
    kk: &str,
    villages: &[String],
    previous: Option<&(String, Vec<Person>)>,
) -> anyhow::Result<(usize, String)> {
    let person = &mut members[m];
    Ok(match kind {
        "name_typo" => {
            let mut chars: Vec<char> = person.full_name.chars().collect();
            let given = chars.iter().take_while(|c| !c.is_whitespace()).count();
            // Swap a pair inside the given name, never the first letter, never a double.
            let pairs: Vec<usize> = (1..given.saturating_sub(1))
                .filter(|&at| chars[at] != chars[at + 1])
                .collect();
            if pairs.is_empty() {
                chars.insert(given, 'h');
            } else {
                let at = pairs[rng.random_range(0..pairs.len())];
                chars.swap(at, at + 1);
            }
            person.full_name = chars.into_iter().collect();
            (m, String::new())
        }
        "name_variant" => {
            person.full_name = old_spelling(&person.full_name);
            (m, String::new())
        }
        "titled" => {
            let title = if person.sex == Sex::Female {
                "Hj."
            } else {
                "H."
            };
            let degree = if rng.random_bool(0.5) { ", S.Pd." } else { "" };
            person.full_name = format!("{title} {}{degree}", person.full_name);
            (m, String::new())
        }
        "abbreviated" => {
            let short = pick(rng, &["Muh.", "Moch.", "M.", "Mochammad", "Mohamad"]);
            person.full_name = abbreviate(&person.full_name, short).expect("checked by the caller");
            (m, String::new())
        }
        "transposed" => {
            let mut parts: Vec<&str> = person.full_name.split(' ').collect();
            parts.reverse();
            person.full_name = parts.join(" ");
            (m, String::new())
        }
        "single_name" => {
            person.full_name = person
                .full_name
                .split(' ')
                .find(|p| !matches!(*p, "Muhammad" | "Siti"))
                .unwrap_or("Asep")
                .to_owned();
            (m, String::new())
        }
        "missing_nik" => {
            let held = person.nik.take().map(|n| n.as_str().to_owned());
            (m, held.unwrap_or_default())
        }
        "unknown_nik" => {
            let held = registry.nik.clone();
            // Serials from 9000 are never issued by the generator.
            let serial = 9000 + rng.random_range(0..999);
            person.nik = Some(Nik::compose(
                district,
                person.birth_date,
                person.sex,
                serial,
            )?);
            (m, held)
        }
        "shifted_birth_date" => {
            let days = rng.random_range(1..=400);
            registry.birth_date = if rng.random_bool(0.5) {
                registry.birth_date + chrono::Days::new(days)
            } else {
                registry.birth_date - chrono::Days::new(days)
            };
            (m, registry.birth_date.to_string())
        }
        "deceased" => {
            registry.death_date = NaiveDate::from_ymd_opt(2025, 6, 1);
            (m, String::new())
        }
        "moved" => {
            let to = loop {
                let v = &villages[rng.random_range(0..villages.len())];
                if *v != registry.village || villages.len() == 1 {
                    break v.clone();
                }
            };
            registry.village = to.clone();
            (m, to)
        }
        "duplicate" => {
            let (from, persons) = previous.expect("checked by the caller");
            let mut twin = persons[rng.random_range(0..persons.len())].clone();
            twin.relationship = Relationship::OtherRelative;
            members.push(twin);
            (members.len() - 1, from.clone())
        }
        "default_birth_date" => {
            let year = person.birth_date.year();
            let (month, day) = [(7, 1), (12, 31), (1, 1)][rng.random_range(0..3)];
            let written = NaiveDate::from_ymd_opt(year, month, day).expect("a real date");
            let detail = person.birth_date.to_string();
            person.birth_date = written;
            (m, detail)
        }
        "dropped_part" => {
            let parts: Vec<&str> = person.full_name.split(' ').collect();
            if parts.len() > 1 {
                let drop = rng.random_range(0..parts.len());
                person.full_name = parts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != drop)
                    .map(|(_, p)| *p)
                    .collect::<Vec<_>>()
                    .join(" ");
            } else {
                person.full_name.push('h');
            }
            (m, String::new())
        }
        "kk_as_nik" => {
            person.nik = Nik::parse(kk).ok();
            let detail = if person.nik.is_some() {
                registry.nik.clone()
            } else {
                format!("{};typed={kk}", registry.nik)
            };
            (m, detail)
        }
        "family_nik" => {
            let other = (m + 1) % members.len();
            let taken = members[other].nik.clone();
            members[m].nik = taken;
            (m, registry.nik.clone())
        }
        "nik_typo" => {
            let held = registry.nik.clone();
            let mut digits: Vec<u8> = held.bytes().collect();
            let at = rng.random_range(0..digits.len());
            let was = digits[at];
            digits[at] = b'0' + (was - b'0' + rng.random_range(1..10)) % 10;
            let typed = String::from_utf8(digits).expect("digits");
            // A mistyped NIK is often no NIK at all: it is written as typed.
            person.nik = Nik::parse(&typed).ok();
            (
                m,
                if person.nik.is_some() {
                    held
                } else {
                    format!("{held};typed={typed}")
                },
            )
        }
        "unregistered" => {
            person.nik = None;
            // An empty NIK keeps the row out of registry.csv.
            registry.nik.clear();
            (m, String::new())
        }
        other => anyhow::bail!("unknown corruption {other}"),
    })
}

/// The name with its first Muhammad written `short` (or Ahmad as Achmad); `None` when
/// it has neither.
pub(super) fn abbreviate(name: &str, short: &str) -> Option<String> {
    if name.contains("Muhammad") {
        Some(name.replacen("Muhammad", short, 1))
    } else if name.contains("Mohammad") {
        Some(name.replacen("Mohammad", short, 1))
    } else if name.contains("Ahmad") {
        Some(name.replacen("Ahmad", "Achmad", 1))
    } else {
        None
    }
}

/// The name as the old spelling (ejaan lama) writes it, as older documents still do.
fn old_spelling(name: &str) -> String {
    for (new, old) in [("u", "oe"), ("j", "dj"), ("y", "j"), ("c", "tj")] {
        if name.contains(new) {
            return name.replacen(new, old, 1);
        }
    }
    format!("{name}h")
}
