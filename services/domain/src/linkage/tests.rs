use super::*;

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
    for other in [
        Record::new(
            "Aspe Hidayat",
            date(1980, 3, 14),
            Some(1),
            Some("32.04.01.2001"),
        ),
        Record::new(
            "Asep Hidayat",
            date(1981, 3, 14),
            Some(1),
            Some("32.04.01.2001"),
        ),
        Record::new(
            "Hidayat Asep",
            date(1981, 3, 14),
            Some(1),
            Some("32.04.01.2002"),
        ),
        Record::new(
            "Asep Hidajat",
            date(1980, 3, 14),
            Some(1),
            Some("32.04.05.2001"),
        ),
    ] {
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
        2 => c.village = Some(format!("32.04.0{}.2009", 1 + rng.below(4))),
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

#[test]
fn em_learns_weights_that_separate_matches_from_non_matches() {
    let mut rng = Lcg(2026);
    let registry = population(&mut rng, 4000);
    // Proposals: corrupted copies of the first 1,000 registry persons.
    let proposals: Vec<Record> = registry[..1000]
        .iter()
        .map(|r| corrupt(&mut rng, r))
        .collect();

    let mut index: HashMap<(u8, u64), Vec<usize>> = HashMap::new();
    for (i, r) in registry.iter().enumerate() {
        for k in blocking_keys(r) {
            index.entry(k).or_default().push(i);
        }
    }
    let mut sessions: Vec<Patterns> = vec![Patterns::new(); RULES.len()];
    let mut pairs: HashMap<(usize, usize), Vector> = HashMap::new();
    for (p, r) in proposals.iter().enumerate() {
        for k in blocking_keys(r) {
            for &c in index.get(&k).map(Vec::as_slice).unwrap_or_default() {
                let v = compare(r, &registry[c]);
                *sessions[k.0 as usize].entry(v).or_default() += 1;
                pairs.insert((p, c), v);
            }
        }
    }
    let mut random = Patterns::new();
    for _ in 0..50_000 {
        let (a, b) = (rng.below(registry.len()), rng.below(registry.len()));
        if a != b {
            *random
                .entry(compare(&registry[a], &registry[b]))
                .or_default() += 1;
        }
    }
    let mut model = Model::from_random_pairs(&random);
    let sessions: Vec<(Patterns, &[Field])> = sessions
        .into_iter()
        .zip(RULES.iter().map(|r| r.1))
        .collect();
    model.train(&sessions, 200);

    // Learned, not hand-set: agreement weighs for, the worst level seen against.
    for f in FIELDS {
        let agree = model.field_weight(f, 0);
        assert!(agree > 1.0, "{f:?} agreement weight {agree}");
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

    // Best candidate per proposal, linked when above the link threshold.
    let thresholds = Thresholds::default();
    let mut best: HashMap<usize, (usize, f64)> = HashMap::new();
    for ((p, c), v) in &pairs {
        let prob = model.probability(v);
        let entry = best.entry(*p).or_insert((*c, prob));
        if prob > entry.1 {
            *entry = (*c, prob);
        }
    }
    let (mut tp, mut fp) = (0, 0);
    for (p, (c, prob)) in &best {
        if thresholds.decide(*prob) == Decision::Link {
            if p == c { tp += 1 } else { fp += 1 }
        }
    }
    let precision = tp as f64 / (tp + fp) as f64;
    let recall = tp as f64 / proposals.len() as f64;
    assert!(precision > 0.98, "precision {precision}");
    assert!(recall > 0.95, "recall {recall}");
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
fn thresholds_split_three_ways() {
    let t = Thresholds {
        link: 0.9,
        review: 0.4,
    };
    assert_eq!(t.decide(0.95), Decision::Link);
    assert_eq!(t.decide(0.5), Decision::Review);
    assert_eq!(t.decide(0.1), Decision::NoLink);
}
