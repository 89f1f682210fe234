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

/// How much flatter than Zipf's law a pool's head is (Zipf–Mandelbrot's offset): a
/// pool holds a few dozen of the thousands of names a people uses, so its commonest
/// name must not take a fifth of every draw.
const FLATTEN: f64 = 3.0;

/// An index into a pool of `len`, by the Zipf–Mandelbrot law (weight 1/(rank + 3)):
/// the first names of a pool are the common ones.
fn zipf(rng: &mut ChaCha8Rng, len: usize) -> usize {
    let total: f64 = (1..=len).map(|r| 1.0 / (r as f64 + FLATTEN)).sum();
    let mut x = rng.random_range(0.0..total);
    for rank in 1..=len {
        x -= 1.0 / (rank as f64 + FLATTEN);
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
    /// birth order is drawn), born in `year`: people born from the 1990s on carry the
    /// longer names of their generation more often than their parents' kind.
    pub fn name(
        &self,
        rng: &mut ChaCha8Rng,
        female: bool,
        spouse: bool,
        order: usize,
        year: i32,
    ) -> String {
        use Tradition::*;
        let modern = match year {
            ..1990 => 0.0,
            1990..2005 => 0.45,
            _ => 0.75,
        };
        let given = |rng: &mut ChaCha8Rng, male: &[&'static str], fem: &[&'static str]| {
            draw(rng, if female { fem } else { male })
        };
        match self.tradition {
            Sundanese | Javanese | Minang | Arabic if rng.random_bool(modern) => {
                self.modern(rng, female)
            }
            Sundanese | Javanese => {
                let first = if self.tradition == Sundanese {
                    sundanese_given(rng, female)
                } else {
                    javanese_given(rng, female)
                };
                let single = if self.tradition == Javanese {
                    0.4
                } else {
                    0.15
                };
                if rng.random_bool(single) {
                    return first;
                }
                let second = |rng: &mut ChaCha8Rng| {
                    if self.tradition == Sundanese && rng.random_bool(0.35) {
                        format!(
                            "{}{}",
                            draw(rng, pool("sundanese_head")),
                            draw(rng, pool("sundanese_end"))
                        )
                    } else if self.tradition == Sundanese {
                        draw(rng, pool("sundanese_second")).to_owned()
                    } else {
                        draw(rng, pool("javanese_second")).to_owned()
                    }
                };
                let mut name = format!("{first} {}", second(rng));
                if rng.random_bool(0.15) {
                    let middle = if self.tradition == Sundanese {
                        sundanese_given(rng, female)
                    } else {
                        javanese_given(rng, female)
                    };
                    name = format!("{first} {middle} {}", second(rng));
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
                let first = if rng.random_bool(modern) {
                    given(rng, pool("modern_male"), pool("modern_female"))
                } else {
                    given(rng, pool("batak_male"), pool("batak_female"))
                };
                if female && rng.random_bool(0.3) {
                    format!("{first} br. {marga}")
                } else {
                    format!("{first} {marga}")
                }
            }
            Minang => {
                let first = formed(rng, female, "minang");
                if rng.random_bool(0.55) {
                    first
                } else {
                    format!("{first} {}", formed(rng, female, "minang"))
                }
            }
            Manado | Chinese => {
                let (male, fem) = if self.tradition == Manado {
                    (pool("manado_male"), pool("manado_female"))
                } else {
                    (pool("chinese_male"), pool("chinese_female"))
                };
                let family = self.family.unwrap_or("Wenas");
                if self.tradition == Chinese && year < 1975 && rng.random_bool(0.3) {
                    // The older generation's Chinese name: family first, two syllables.
                    let syllable = pool("chinese_syllable");
                    return format!("{family} {} {}", draw(rng, syllable), draw(rng, syllable));
                }
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
                format!("{title} {place} {}", formed(rng, female, "bali"))
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

    /// A name of the generation born from the 1990s on: one to three parts, in a
    /// Muslim household often after a Muhammad, a Siti or a Nur.
    fn modern(&self, rng: &mut ChaCha8Rng, female: bool) -> String {
        let (first, second) = if female {
            (pool("modern_female"), pool("modern_female_second"))
        } else {
            (pool("modern_male"), pool("modern_male_second"))
        };
        let mut parts = Vec::with_capacity(3);
        if self.tradition == Tradition::Arabic && rng.random_bool(0.4) {
            parts.push(if female {
                draw(rng, &["Siti", "Nur", "Nurul"])
            } else {
                draw(rng, &["Muhammad", "Ahmad", "Moh."])
            });
        }
        parts.push(draw(rng, first));
        if parts.len() == 1 || rng.random_bool(0.6) {
            if rng.random_bool(0.8) {
                parts.push(draw(rng, second));
            } else {
                parts.push(draw(rng, first));
            }
        }
        if parts.len() == 2 && rng.random_bool(0.25) {
            parts.push(draw(rng, second));
        }
        parts.dedup();
        parts.join(" ")
    }
}

/// A Javanese given name: from the pool, or formed as Javanese names are, from a head
/// and an ending (Su-yanto, Ngat-inem).
fn javanese_given(rng: &mut ChaCha8Rng, female: bool) -> String {
    if rng.random_bool(0.4) {
        let end = if female {
            "javanese_female_end"
        } else {
            "javanese_male_end"
        };
        format!(
            "{}{}",
            draw(rng, pool("javanese_head")),
            draw(rng, pool(end))
        )
    } else if female {
        draw(rng, pool("javanese_female")).to_owned()
    } else {
        draw(rng, pool("javanese_male")).to_owned()
    }
}

/// A Minang or Balinese given name: from the tradition's pool, or formed from a head
/// and an ending as its names are (Af-rizal, Yus-nimar; Su-dana, Ar-iani).
fn formed(rng: &mut ChaCha8Rng, female: bool, tradition: &str) -> String {
    let sex = if female { "female" } else { "male" };
    if rng.random_bool(0.4) {
        let head = if tradition == "minang" {
            pool(if female {
                "minang_female_head"
            } else {
                "minang_male_head"
            })
        } else {
            pool("bali_head")
        };
        format!(
            "{}{}",
            draw(rng, head),
            draw(rng, pool(&format!("{tradition}_{sex}_end")))
        )
    } else {
        draw(rng, pool(&format!("{tradition}_{sex}"))).to_owned()
    }
}

/// A Sundanese given name: from the pool, or one syllable doubled (Da-dang, Ti-tin).
fn sundanese_given(rng: &mut ChaCha8Rng, female: bool) -> String {
    if rng.random_bool(0.25) {
        let onset = draw(rng, pool("sundanese_onset"));
        let vowel = draw(rng, pool("sundanese_vowel"));
        let coda = draw(rng, pool("sundanese_coda"));
        format!("{onset}{vowel}{}{vowel}{coda}", onset.to_lowercase())
    } else if female {
        draw(rng, pool("sundanese_female")).to_owned()
    } else {
        draw(rng, pool("sundanese_male")).to_owned()
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
        let father = batak.name(&mut rng, false, false, 0, 1970);
        let child = batak.name(&mut rng, true, false, 1, 2000);
        let marga = father.rsplit(' ').next().unwrap_or_default();
        assert!(child.ends_with(marga), "{father} / {child}");
        let bali = Household::new(&mut rng, Tradition::Balinese);
        let second_born = bali.name(&mut rng, false, false, 2, 1998);
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
                distinct.insert(h.name(&mut rng, i % 2 == 0, false, 0, 1960 + i % 60));
            }
        }
        assert!(distinct.len() > 1_000, "{} distinct names", distinct.len());
    }

    #[test]
    fn names_spread_as_a_people_s_do() {
        // Six provinces, every generation: the commonest full name is a fraction of a
        // percent, and most names are borne by one person of 60,000.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut counts: HashMap<String, usize> = HashMap::new();
        let n = 60_000;
        for i in 0..n {
            let province = ["32", "33", "12", "13", "51", "71"][i % 6];
            let t = tradition(&mut rng, province);
            let h = Household::new(&mut rng, t);
            let year = 1950 + (i % 75) as i32;
            *counts
                .entry(h.name(&mut rng, i % 2 == 0, false, 0, year))
                .or_default() += 1;
        }
        let commonest = counts.values().max().copied().unwrap_or_default();
        let alone = counts.values().filter(|&&c| c == 1).count();
        assert!(
            commonest * 200 < n,
            "commonest name borne by {commonest} of {n}"
        );
        assert!(
            alone * 10 > n * 3,
            "{alone} names borne by one person of {n}"
        );
        // Formed names and the younger generation's names are there.
        assert!(
            counts
                .keys()
                .any(|k| k.starts_with("Ni ") && k.ends_with("asih"))
        );
        assert!(counts.keys().any(|k| k.contains("Pratama")));
    }
}
