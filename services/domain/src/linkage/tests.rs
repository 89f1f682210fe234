use super::*;
use chrono::NaiveDate;

fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn asep() -> Record {
    Record::new(
        "Asep Hidayat",
        date(1980, 3, 14),
        Some(1),
        Some("32.04.01.2001"),
    )
}

/// One change to Asep's record at a time: (name, birth date, sex, village).
type Change = (
    &'static str,
    Option<NaiveDate>,
    Option<u8>,
    Option<&'static str>,
);

#[test]
fn each_field_reaches_each_level() {
    let base = asep();
    let (n, d, s, v) = (
        "Asep Hidayat",
        date(1980, 3, 14),
        Some(1),
        Some("32.04.01.2001"),
    );
    let cases: &[(Change, Field, u8)] = &[
        (("ASEP  HIDAYAT", d, s, v), Field::Name, 0),
        (("Asep Hidajat", d, s, v), Field::Name, 1),
        (("Hidayat Asep", d, s, v), Field::Name, 2),
        (("Aspe Hidayat", d, s, v), Field::Name, 3),
        (("Asep", d, s, v), Field::Name, 4),
        (("Siti Aminah", d, s, v), Field::Name, 5),
        (("", d, s, v), Field::Name, NULL),
        ((n, date(1980, 3, 15), s, v), Field::BirthDate, 1),
        ((n, date(1980, 4, 14), s, v), Field::BirthDate, 1),
        ((n, date(1908, 3, 14), s, v), Field::BirthDate, 1),
        ((n, date(1979, 12, 1), s, v), Field::BirthDate, 2),
        ((n, date(1975, 7, 1), s, v), Field::BirthDate, 3),
        ((n, None, s, v), Field::BirthDate, NULL),
        ((n, d, Some(2), v), Field::Sex, 1),
        ((n, d, None, v), Field::Sex, NULL),
        ((n, d, s, Some("32.04.01.2002")), Field::Region, 1),
        ((n, d, s, Some("32.04.02.2001")), Field::Region, 2),
        ((n, d, s, Some("32.73.01.1001")), Field::Region, 3),
        ((n, d, s, None), Field::Region, NULL),
    ];
    assert_eq!(compare(&base, &Record::new(n, d, s, v)), [0, 0, 0, 0]);
    for ((name, birth, sex, village), field, level) in cases {
        let got = compare(&base, &Record::new(name, *birth, *sex, *village));
        assert_eq!(
            got[*field as usize], *level,
            "{name} {birth:?} {sex:?} {village:?}"
        );
    }
    // Day and month swapped.
    let a = Record::new(n, date(1980, 3, 5), s, v);
    let b = Record::new(n, date(1980, 5, 3), s, v);
    assert_eq!(compare(&a, &b)[Field::BirthDate as usize], 1);
}

#[test]
fn a_corrupted_record_still_shares_a_block_with_its_original() {
    let base = asep();
    let keys = blocking_keys(&base);
    assert_eq!(keys.len(), 3);
    let one_departure: &[(&str, (i32, u32, u32), &str)] = &[
        ("Aspe Hidayat", (1980, 3, 14), "32.04.01.2001"),
        ("Asep Hidayat", (1981, 3, 14), "32.04.01.2001"),
        // Parts transposed and a corrected birth date: same parts, same village.
        ("Hidayat Asep", (1981, 3, 14), "32.04.01.2001"),
        // Moved to another regency: same parts, same birth date.
        ("Hidayat Asep", (1980, 3, 14), "32.73.01.1001"),
        ("Asep Hidajat", (1980, 3, 14), "32.04.05.2001"),
    ];
    for (name, (y, m, d), village) in one_departure {
        let other = Record::new(name, date(*y, *m, *d), Some(1), Some(village));
        let shared = blocking_keys(&other).iter().any(|k| keys.contains(k));
        assert!(shared, "{other:?} shares no block");
    }
    // Missing fields drop the rules that need them, never panic.
    assert!(blocking_keys(&Record::default()).is_empty());
}

/// A small deterministic generator (no I/O, no dependencies).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const GIVEN: &[&str] = &[
    "Asep", "Budi", "Dedi", "Eko", "Siti", "Dewi", "Rina", "Yusuf", "Joko", "Wati", "Muhammad",
    "Ahmad",
];
const FAMILY: &[&str] = &[
    "Hidayat", "Saputra", "Suryana", "Rohman", "Setiawan", "Permana", "Nugraha", "Lestari",
    "Susilo", "Pratama",
];

fn population(rng: &mut Lcg, n: usize) -> Vec<Record> {
    (0..n)
        .map(|_| {
            let name = format!(
                "{} {}",
                GIVEN[rng.below(GIVEN.len())],
                FAMILY[rng.below(FAMILY.len())]
            );
            let d = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap()
                + chrono::Days::new(rng.below(365 * 60) as u64);
            let village = format!("32.04.{:02}.{}", 1 + rng.below(4), 2001 + rng.below(5));
            Record::new(&name, Some(d), Some(1 + rng.below(2) as u8), Some(&village))
        })
        .collect()
}

fn corrupt(rng: &mut Lcg, r: &Record) -> Record {
    let mut c = r.clone();
    match rng.below(5) {
        0 => {
            let mut t = c.name.tokens.clone();
            let chars: Vec<char> = t[0].chars().collect();
            let mut swapped = chars.clone();
            swapped.swap(1, 2);
            t[0] = swapped.into_iter().collect();
            c = Record::new(&t.join(" "), c.birth_date, c.sex, c.village.as_deref());
        }
        1 => {
            c.birth_date = c
                .birth_date
                .map(|d| d + chrono::Days::new(1 + rng.below(300) as u64))
        }
        2 => c.village = Some(Village::new(&format!("32.04.0{}.2009", 1 + rng.below(4)))),
        3 => {
            let t = c.name.tokens.clone();
            c = Record::new(
                &format!("{} {}", t[1], t[0]),
                c.birth_date,
                c.sex,
                c.village.as_deref(),
            );
        }
        _ => c.sex = None,
    }
    c
}

/// Links corrupted copies of 1,000 of 4,000 persons back to them; `labelled` is the
/// share of copies that keep a (right) identifier. Answers the model, precision and
/// recall of the links.
fn link_corrupted_copies(labelled: usize) -> (Model, Patterns, f64, f64) {
    let mut rng = Lcg(2026);
    let registry: Vec<Record> = population(&mut rng, 4000)
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.labelled(Some(&i.to_string())))
        .collect();
    let proposals: Vec<Record> = registry[..1000]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let keeps = rng.below(100) < labelled;
            corrupt(&mut rng, r).labelled(keeps.then(|| i.to_string()).as_deref())
        })
        .collect();
    // The registry streams past the indexed proposals, in two halves as two threads
    // would see it.
    let linker = batch::Linker::new(&proposals);
    let mut candidates = batch::Candidates::default();
    let half = registry.len() / 2 + 1;
    for (h, part_records) in registry.chunks(half).enumerate() {
        let mut part = batch::Candidates::default();
        if h == 0 {
            for (i, r) in part_records.iter().enumerate() {
                linker.probe((h * half + i) as u32, r, &mut part);
            }
        } else {
            // The other thread looks its rows' blocks up many at a time, as a scan of
            // a large file does: the same blocks as one by one.
            let keys: Vec<_> = part_records.iter().map(blocking_keys).collect();
            let mut heads = Vec::new();
            linker.heads_of_many(&keys, &mut heads);
            assert_eq!(heads.len(), keys.len());
            for (i, (r, (k, found))) in part_records.iter().zip(keys.iter().zip(&heads)).enumerate()
            {
                assert_eq!(*found, linker.heads(k));
                linker.probe_heads((h * half + i) as u32, r, k, found, &mut part);
            }
        }
        candidates.merge(part);
    }
    let random = batch::random_patterns(&registry, 50_000, 7, 2);
    let model = candidates.train(&random, 200);
    let linked = batch::decide(proposals.len(), &candidates, &model, Thresholds::default());
    let (mut tp, mut fp) = (0, 0);
    for (p, l) in linked.iter().enumerate() {
        if l.decision == Decision::Link {
            if l.candidate == Some(p as u32) {
                tp += 1
            } else {
                fp += 1
            }
        }
    }
    let precision = tp as f64 / (tp + fp) as f64;
    let recall = tp as f64 / proposals.len() as f64;
    (model, random, precision, recall)
}

/// Links the corrupted copies with `labelled` identifiers kept, and checks what any
/// learned model must do: weights that point the right way, and precision above .98
/// and recall above .95.
fn learned_well(labelled: usize) -> Model {
    let (model, random, precision, recall) = link_corrupted_copies(labelled);
    assert_weights_point_the_right_way(&model, &random);
    assert!(precision > 0.98, "precision {precision}");
    assert!(recall > 0.95, "recall {recall}");
    model
}

/// Learned, not hand-set: agreement weighs for, the worst level seen against.
fn assert_weights_point_the_right_way(model: &Model, random: &Patterns) {
    for f in FIELDS {
        let agree = model.field_weight(f, 0);
        // Sex agreeing can weigh at most log2(1 / 0.5) = 1.
        assert!(agree > 0.9, "{f:?} agreement weight {agree}");
        let worst_seen = (0..LEVELS[f as usize].len() as u8)
            .filter(|l| random.keys().any(|v| v[f as usize] == *l))
            .max()
            .expect("some level seen");
        let against = model.field_weight(f, worst_seen);
        assert!(
            against < 0.0,
            "{f:?} weight of level {worst_seen}: {against}"
        );
    }
}

#[test]
fn weights_learned_from_labelled_matches_link_the_unlabelled() {
    let model = learned_well(70);
    // An explanation names every field.
    let text = model.explain(&[3, 0, NULL, 1]);
    for needle in [
        "name: close spelling",
        "birth date: exact",
        "sex missing",
        "region: same district",
    ] {
        assert!(text.contains(needle), "{text}");
    }
}

#[test]
fn em_learns_weights_without_any_label() {
    learned_well(0);
}

#[test]
fn thresholds_split_three_ways() {
    let t = Thresholds {
        link: 0.9,
        review: 0.4,
    };
    assert_eq!(t.decide(0.95), Decision::Link);
    assert_eq!(t.decide(0.5), Decision::Review);
    assert_eq!(t.decide(0.1), Decision::NoLink);
}

#[test]
fn blocking_key_hashes_tell_parts_rules_and_bytes_apart() {
    let h = |seed, parts: &[&[u8]]| super::blocking::key_hash(seed, parts);
    assert_eq!(h(1, &[b"32.04.05", b"1"]), h(1, &[b"32.04.05", b"1"]));
    assert_ne!(h(1, &[b"ab", b"c"]), h(1, &[b"a", b"bc"]));
    assert_ne!(h(1, &[b"abcdefgh", b""]), h(1, &[b"abcdefgh"]));
    assert_ne!(h(0, &[b"19800312"]), h(1, &[b"19800312"]));
    assert_ne!(h(2, &[b"19800312"]), h(2, &[b"19800313"]));
    // Every input bit moves the high bits the index takes its slot from.
    let base = h(0, &[b"32.04.05.2001"]);
    for bit in 0..8 {
        let mut v = *b"32.04.05.2001";
        v[12] ^= 1 << bit;
        assert_ne!(h(0, &[&v]) >> 48, base >> 48);
    }
}

#[test]
fn a_common_name_part_agreeing_loses_bits_and_a_rare_one_loses_none() {
    use super::TokenShares;
    use super::names::NameKey;
    let mut names: Vec<NameKey> = Vec::new();
    for i in 0..200 {
        let (a, b) = (
            (b'a' + (i / 26) as u8) as char,
            (b'a' + (i % 26) as u8) as char,
        );
        names.push(NameKey::new(&format!("Siti Rahma{a}{b}")));
    }
    names.push(NameKey::new("Siti Wulandari"));
    let tokens = TokenShares::learn(&names, 0.003);
    // "SITI" is half of all parts; each other part one in 402, under the floor.
    assert!((tokens.share("SITI") - 201.0 / 402.0).abs() < 1e-9);
    assert_eq!(tokens.shares.len(), 1);
    assert_eq!(tokens.share("WULANDARI"), 0.003);
    let siti = tokens
        .part_frequency_bits(
            &NameKey::new("Siti Aminah"),
            &NameKey::new("Siti Wulandari"),
        )
        .expect("they share SITI");
    assert!(siti < -0.9, "{siti}");
    let rare = tokens
        .part_frequency_bits(&NameKey::new("Siti Wulandari"), &NameKey::new("Wulandari"))
        .expect("they share WULANDARI");
    // Σ share² is about 0.251; WULANDARI's share is the floor, 0.003: +6.4 bits.
    assert!((rare - (0.2512 / 0.003f64).log2()).abs() < 0.01, "{rare}");
    assert_eq!(
        tokens.part_frequency_bits(&NameKey::new("Asep"), &NameKey::new("Budi")),
        None
    );
}
