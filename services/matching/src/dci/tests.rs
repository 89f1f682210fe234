use super::*;

/// Answers asked at once, split by round: each round sees only its own queries'
/// finds, renumbered as if only they had been asked, with their totals.
#[test]
fn found_split_by_query_is_what_those_queries_alone_found() {
    let person = |nik: &str| RegistryPerson {
        nik: nik.into(),
        kk_number: String::new(),
        full_name: "Siti Aminah".into(),
        birth_date: "1984-08-17".into(),
        sex: "female".into(),
        village_code: "32.04.05.2001".into(),
        deceased: false,
    };
    let all = Found {
        persons: vec![
            (person("1"), vec![0, 2]),
            (person("2"), vec![1]),
            (person("3"), vec![3, 4]),
        ],
        totals: vec![5, 6, 7, 8, 9],
    };
    let wide = all.only(&[2, 3, 4]);
    assert_eq!(wide.totals, [7, 8, 9]);
    assert_eq!(
        wide.persons
            .iter()
            .map(|(p, by)| (p.nik.as_str(), by.clone()))
            .collect::<Vec<_>>(),
        [("1", vec![0]), ("3", vec![1, 2])]
    );
    let exact = all.only(&[0, 1]);
    assert_eq!(exact.totals, [5, 6]);
    assert_eq!(exact.persons.len(), 2);
    assert!(all.only(&[]).persons.is_empty());
}

#[test]
fn the_breaker_opens_after_repeated_failures_and_half_opens_after_cooling_down() {
    let start = Instant::now();
    let mut b = Breaker::default();
    for _ in 0..Breaker::THRESHOLD - 1 {
        b.record(false, start);
        assert!(b.allows(start), "still closed below the threshold");
    }
    b.record(false, start);
    assert!(!b.allows(start), "open at the threshold");
    assert!(!b.allows(start + Breaker::COOL_DOWN / 2));
    let later = start + Breaker::COOL_DOWN;
    assert!(b.allows(later), "half-open once cooled down");
    // The probe fails: open again at once.
    b.record(false, later);
    assert!(!b.allows(later));
    // A success closes it.
    b.record(true, later + Breaker::COOL_DOWN);
    assert!(b.allows(later + Breaker::COOL_DOWN));
    assert_eq!(b.failures, 0);
}
