//! Names as Indonesians carry them, for the synthetic population: each household
//! follows one naming tradition, drawn by its province, and each pool is drawn from by
//! frequency (Zipf over the pool's order, commonest first), so a "Siti" or an "Asep" is
//! common and a rare name rare — as linkage meets them.
//!
//! The traditions and what a household shares:
//! - **Sundanese** and **Javanese**: no family name; a person has one, two or three
//!   given names of their own (Javanese often one: *Sutrisno*).
//! - **Batak**: given name and *marga*; the children take their father's, the wife keeps
//!   her own.
//! - **Minang**: one or two given names, no family name.
//! - **Manado** (Minahasa): given name and *fam*, the father's for wife and children.
//! - **Balinese**: `I` (men) or `Ni` (women), the birth-order name (Wayan/Putu/Gede,
//!   Made/Kadek/Nengah, Nyoman/Komang, Ketut), then a given name.
//! - **Arabic-derived**: Muhammad/Ahmad/Abdul …, Siti/Nur …, with a second name.
//! - **Chinese-Indonesian**: an Indonesian given name and an Indonesianised family name
//!   (Santoso, Wijaya, Halim …) the children share.
//!
//! Nothing here knows how matching reduces names: the pools are as people write them.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tradition {
    Sundanese,
    Javanese,
    Batak,
    Minang,
    Manado,
    Balinese,
    Arabic,
    Chinese,
}

const BALI_ORDER: [&[&str]; 4] = [
    &["Wayan", "Putu", "Gede"],
    &["Made", "Kadek", "Nengah"],
    &["Nyoman", "Komang"],
    &["Ketut"],
];

/// The pools of `names.txt`, by name.
fn pool(name: &str) -> &'static [&'static str] {
    static POOLS: std::sync::OnceLock<std::collections::HashMap<&'static str, Vec<&'static str>>> =
        std::sync::OnceLock::new();
    POOLS
        .get_or_init(|| {
            include_str!("names.txt")
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| l.split_once(':'))
                .map(|(name, names)| (name.trim(), names.split_whitespace().collect()))
                .collect()
        })
        .get(name)
        .map_or(&[], Vec::as_slice)
}

/// An index into a pool of `len`, by Zipf's law (weight 1/rank): the first names of a
/// pool are the common ones.
fn zipf(rng: &mut ChaCha8Rng, len: usize) -> usize {
    let total: f64 = (1..=len).map(|r| 1.0 / r as f64).sum();
    let mut x = rng.random_range(0.0..total);
    for rank in 1..=len {
        x -= 1.0 / rank as f64;
        if x <= 0.0 {
            return rank - 1;
        }
    }
    len - 1
}

fn draw<'a>(rng: &mut ChaCha8Rng, pool: &[&'a str]) -> &'a str {
    pool[zipf(rng, pool.len())]
}

/// Shares of the traditions (per thousand) in a province, by its two-digit code.
fn mix(province: &str) -> &'static [(Tradition, u32)] {
    use Tradition::*;
    match province {
        "11" => &[(Arabic, 700), (Minang, 100), (Javanese, 100), (Batak, 100)],
        "12" => &[(Batak, 550), (Arabic, 200), (Javanese, 150), (Chinese, 100)],
        "13" => &[(Minang, 800), (Arabic, 150), (Batak, 50)],
        "31" => &[
            (Javanese, 250),
            (Sundanese, 200),
            (Arabic, 200),
            (Chinese, 150),
            (Batak, 100),
            (Manado, 50),
            (Minang, 50),
        ],
        "32" | "36" => &[(Sundanese, 650), (Arabic, 200), (Javanese, 150)],
        "33" | "34" | "35" => &[(Javanese, 750), (Arabic, 200), (Chinese, 50)],
        "51" => &[(Balinese, 850), (Javanese, 100), (Arabic, 50)],
        "71" => &[(Manado, 700), (Arabic, 150), (Javanese, 150)],
        _ => &[
            (Javanese, 300),
            (Arabic, 300),
            (Sundanese, 100),
            (Batak, 100),
            (Minang, 100),
            (Manado, 50),
            (Chinese, 50),
        ],
    }
}

/// The tradition a household of `province` names its members by.
pub fn tradition(rng: &mut ChaCha8Rng, province: &str) -> Tradition {
    let shares = mix(province);
    let total: u32 = shares.iter().map(|(_, s)| s).sum();
    let mut x = rng.random_range(0..total);
    for (t, share) in shares {
        if x < *share {
            return *t;
        }
        x -= share;
    }
    shares[0].0
}

/// What a household's names share: the family name its children take, if its
/// tradition has one.
#[derive(Debug, Clone)]
pub struct Household {
    pub tradition: Tradition,
    family: Option<&'static str>,
}

impl Household {
    pub fn new(rng: &mut ChaCha8Rng, tradition: Tradition) -> Self {
        let family = match tradition {
            Tradition::Batak => Some(draw(rng, pool("batak_marga"))),
            Tradition::Manado => Some(draw(rng, pool("manado_fam"))),
            Tradition::Chinese => Some(draw(rng, pool("chinese_family"))),
            _ => None,
        };
        Self { tradition, family }
    }

    /// A name for a member: `female`, the `spouse` of the head (who may keep her own
    /// family name), or the child born `order`-th (0 for the head and spouse, whose
    /// birth order is drawn).
    pub fn name(&self, rng: &mut ChaCha8Rng, female: bool, spouse: bool, order: usize) -> String {
        use Tradition::*;
        let given = |rng: &mut ChaCha8Rng, male: &[&'static str], fem: &[&'static str]| {
            draw(rng, if female { fem } else { male })
        };
        match self.tradition {
            Sundanese | Javanese => {
                let (male, fem, second) = if self.tradition == Sundanese {
                    (
                        pool("sundanese_male"),
                        pool("sundanese_female"),
                        pool("sundanese_second"),
                    )
                } else {
                    (
                        pool("javanese_male"),
                        pool("javanese_female"),
                        pool("javanese_second"),
                    )
                };
                let single = if self.tradition == Javanese {
                    0.4
                } else {
                    0.15
                };
                let first = given(rng, male, fem);
                if rng.random_bool(single) {
                    return first.to_owned();
                }
                let mut name = format!("{first} {}", draw(rng, second));
                if rng.random_bool(0.15) {
                    name = format!("{first} {} {}", given(rng, male, fem), draw(rng, second));
                }
                name
            }
            Batak => {
                // A wife keeps her own marga (written boru: br.), the children their father's.
                let marga = if spouse {
                    draw(rng, pool("batak_marga"))
                } else {
                    self.family.unwrap_or("Siregar")
                };
                let first = given(rng, pool("batak_male"), pool("batak_female"));
                if female && rng.random_bool(0.3) {
                    format!("{first} br. {marga}")
                } else {
                    format!("{first} {marga}")
                }
            }
            Minang => {
                let first = given(rng, pool("minang_male"), pool("minang_female"));
                if rng.random_bool(0.55) {
                    first.to_owned()
                } else {
                    format!(
                        "{first} {}",
                        given(rng, pool("minang_male"), pool("minang_female"))
                    )
                }
            }
            Manado | Chinese => {
                let (male, fem) = if self.tradition == Manado {
                    (pool("manado_male"), pool("manado_female"))
                } else {
                    (pool("chinese_male"), pool("chinese_female"))
                };
                let family = self.family.unwrap_or("Wenas");
                format!("{} {family}", given(rng, male, fem))
            }
            Balinese => {
                let order = if order == 0 {
                    rng.random_range(0..4)
                } else {
                    (order - 1) % 4
                };
                let title = if female { "Ni" } else { "I" };
                let place = BALI_ORDER[order][rng.random_range(0..BALI_ORDER[order].len())];
                format!(
                    "{title} {place} {}",
                    given(rng, pool("bali_male"), pool("bali_female"))
                )
            }
            Arabic => {
                if female {
                    format!(
                        "{} {}",
                        draw(rng, pool("arabic_female_first")),
                        draw(rng, pool("arabic_female_second"))
                    )
                } else {
                    let first = draw(rng, pool("arabic_male_first"));
                    let second = draw(rng, pool("arabic_male_second"));
                    if first == "Abdul" || rng.random_bool(0.3) {
                        format!("{first} {second} {}", draw(rng, pool("arabic_male_second")))
                    } else {
                        format!("{first} {second}")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashMap;

    #[test]
    fn common_names_are_common_rare_ones_rare_and_traditions_follow_the_province() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for _ in 0..20_000 {
            *counts.entry(zipf(&mut rng, 40)).or_default() += 1;
        }
        assert!(counts[&0] > 5 * counts[&39], "{counts:?}");
        assert_eq!(counts.len(), 40, "every name is drawn sometime");

        let share = |province: &str, wanted: Tradition| {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            (0..2_000)
                .filter(|_| tradition(&mut rng, province) == wanted)
                .count()
        };
        assert!(share("51", Tradition::Balinese) > 1_500);
        assert!(share("12", Tradition::Batak) > 900);
        assert!(share("32", Tradition::Batak) == 0);

        // A Batak household: the children carry the father's marga; a Balinese child its
        // birth order; names are drawn from wide pools.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let batak = Household::new(&mut rng, Tradition::Batak);
        let father = batak.name(&mut rng, false, false, 0);
        let child = batak.name(&mut rng, true, false, 1);
        let marga = father.rsplit(' ').next().unwrap_or_default();
        assert!(child.ends_with(marga), "{father} / {child}");
        let bali = Household::new(&mut rng, Tradition::Balinese);
        let second_born = bali.name(&mut rng, false, false, 2);
        assert!(
            ["I Made ", "I Kadek ", "I Nengah "]
                .iter()
                .any(|p| second_born.starts_with(p)),
            "{second_born}"
        );
        let mut distinct = std::collections::HashSet::new();
        for t in [
            Tradition::Sundanese,
            Tradition::Javanese,
            Tradition::Arabic,
            Tradition::Minang,
        ] {
            let h = Household::new(&mut rng, t);
            for i in 0..500 {
                distinct.insert(h.name(&mut rng, i % 2 == 0, false, 0));
            }
        }
        assert!(distinct.len() > 1_000, "{} distinct names", distinct.len());
    }
}
