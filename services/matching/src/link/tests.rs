use super::*;
use dtks_domain::linkage::TokenShares;
use dtks_proto::events::v1::PersonOutcome;

fn registry(nik: &str, name: &str, born: &str, sex: &str) -> RegistryPerson {
    RegistryPerson {
        nik: nik.into(),
        kk_number: "3204050505150001".into(),
        full_name: name.into(),
        birth_date: born.into(),
        sex: sex.into(),
        village_code: "32.04.05.2001".into(),
        deceased: false,
    }
}

fn proposed(name: &str, (y, m, d): (i32, i32, i32), sex: i32) -> Record {
    person_record(
        &pb::Person {
            full_name: name.into(),
            birth_date: Some(pb::Date {
                year: y,
                month: m,
                day: d,
            }),
            sex,
            ..Default::default()
        },
        "32.04.05.2001",
    )
}

const VILLAGE: &str = "32.04.05.2001";

/// Found by the birth-date search of the district, which found `total`.
fn by_birth(person: &RegistryPerson, total: u64) -> Candidate {
    let search = Query::exact(vec![], &[Field::BirthDate], Scope::District, 0.8);
    let found = vec![search.found(total)];
    Candidate {
        person: person.clone(),
        found,
    }
}

/// Found by the name search of the regency, which found `total`.
fn by_name(person: &RegistryPerson, total: u64) -> Candidate {
    let search = Query::exact(vec![], &[Field::Name], Scope::Regency, 0.3);
    let found = vec![
        Query {
            name_count: true,
            ..search
        }
        .found(total),
    ];
    Candidate {
        person: person.clone(),
        found,
    }
}

/// What `model`, at the default thresholds and without the regency's population,
/// decides of `person` among `found`.
fn decided_by(model: &Model, person: &Record, found: &[Candidate]) -> Linked {
    decide(model, person, VILLAGE, found, Thresholds::default(), None)
}

/// What the shipped model, at the default thresholds, decides of a man `name` born
/// `born` in the village among the candidates `found`.
fn decided(name: &str, born: (i32, i32, i32), found: &[Candidate]) -> Linked {
    let model = load_model().expect("shipped model");
    let person = proposed(name, born, 1);
    decide(&model, &person, VILLAGE, found, Thresholds::default(), None)
}

#[test]
fn a_spelling_variant_links_an_unrelated_candidate_does_not_and_twins_go_to_a_clerk() {
    let asep = registry("3204051203800001", "Asep Sunandar", "1980-03-12", "male");
    let ujang = registry("3204051507650009", "Ujang Suryana", "1965-07-15", "male");

    let linked = decided("Asep Sunandar", (1980, 3, 12), &[by_birth(&asep, 1)]);
    assert!(
        matches!(&linked, Linked::Link { person, .. } if person.nik == asep.nik),
        "{linked:?}"
    );
    // A variant spelling, found by birth date in the district.
    let variant = decided("Asep Sunanda", (1980, 3, 12), &[by_birth(&asep, 1)]);
    assert!(matches!(variant, Linked::Link { .. }), "{variant:?}");

    // Born the same day in the district, but another name altogether.
    assert_eq!(
        decided("Asep Sunandar", (1965, 7, 15), &[by_birth(&ujang, 1)]),
        Linked::None
    );
    assert_eq!(decided("Asep", (1980, 3, 12), &[]), Linked::None);

    // Two registry persons the proposal fits equally well: never linked silently.
    let twin = registry("3204051203800007", "Asep Sunandar", "1980-03-12", "male");
    let ambiguous = decided(
        "Asep Sunandar",
        (1980, 3, 12),
        &[by_birth(&asep, 2), by_birth(&twin, 2)],
    );
    match ambiguous {
        Linked::Review { reason, .. } => assert!(reason.contains("within"), "{reason}"),
        other => panic!("expected a review, got {other:?}"),
    }
}

#[test]
fn namesakes_are_not_linked_on_the_name_alone() {
    // In the same village, born twenty years earlier: never a link.
    let elder = registry("3204051203800001", "Asep Sunandar", "1980-03-12", "male");
    let d = decided("Asep Sunandar", (2001, 9, 30), &[by_name(&elder, 1)]);
    assert!(!matches!(d, Linked::Link { .. }), "{d:?}");
    // In another district of the regency, born months apart: the name search found
    // them; nothing else says it is the person.
    let mut elsewhere = registry("3204291902780001", "Agus Santoso", "1978-02-19", "male");
    elsewhere.village_code = "32.04.29.2008".into();
    let d = decided("Agus Santoso", (1978, 5, 22), &[by_name(&elsewhere, 1)]);
    assert!(!matches!(d, Linked::Link { .. }), "{d:?}");
    // The same person, in the proposal's village, with a corrected birth date: linked.
    let here = registry("3204051902780001", "Agus Santoso", "1978-02-19", "male");
    let d = decided("Agus Santoso", (1978, 5, 22), &[by_name(&here, 1)]);
    assert!(matches!(d, Linked::Link { .. }), "{d:?}");
}

/// Term frequency: agreeing on a name one in two hundred of the regency bears says
/// less than the model's average name agreement, and agreeing on a name only the
/// candidate bears says more.
#[test]
fn a_common_name_agreeing_says_less_than_a_rare_one() {
    let model = load_model().expect("shipped model");
    let siti = registry("3204055708840002", "Siti Aminah", "1984-08-17", "female");
    let v = compare(
        &proposed("Siti Aminah", (1984, 8, 17), 2),
        &registry_record(&siti),
    );
    let how = by_birth(&siti, 3).found[0];
    let common = odds(&model, VILLAGE, &v, &how, Some(2_000.0 / 400_000.0), None);
    let average = odds(&model, VILLAGE, &v, &how, None, None);
    let rare = odds(&model, VILLAGE, &v, &how, Some(1.0 / 400_000.0), None);
    assert!(
        common < average - 1.0 && average < rare - 1.0,
        "{common} {average} {rare}"
    );
    // Name parts: "Siti" written alone agrees with "Siti Aminah" by one part; where
    // the registry's parts say SITI is one in twenty, that agreement loses bits,
    // and a rare part's gains them.
    let mut with_parts = model.clone();
    with_parts.tokens = Some(TokenShares {
        shares: [("SITI".to_owned(), 0.05)].into(),
        agreement: 0.002,
        rare: 1e-5,
        ..TokenShares::default()
    });
    let alone = proposed("Siti", (1984, 8, 17), 2);
    let partial = compare(&alone, &registry_record(&siti));
    assert!(partial[Field::Name as usize] > 0, "{partial:?}");
    let bits = with_parts
        .tokens
        .as_ref()
        .and_then(|t| t.part_frequency_bits(&alone.name, &registry_record(&siti).name));
    assert!(bits.is_some_and(|b| b < -4.0), "{bits:?}");
    let aminah = proposed("Aminah", (1984, 8, 17), 2);
    let rare_bits = with_parts
        .tokens
        .as_ref()
        .and_then(|t| t.part_frequency_bits(&aminah.name, &registry_record(&siti).name));
    assert!(rare_bits.is_some_and(|b| b > 7.0), "{rare_bits:?}");
    // Found by the birth-date search, "Aminah" alone is far surer than "Siti" alone;
    // found by a search on the part itself, whose total already counted how rare it
    // is, the rarity is not counted again.
    let bits_of = |name: &str, how: Retrieval| {
        let written = proposed(name, (1984, 8, 17), 2);
        let v = compare(&written, &registry_record(&siti));
        let bits = with_parts
            .tokens
            .as_ref()
            .and_then(|t| t.part_frequency_bits(&written.name, &registry_record(&siti).name));
        odds(&with_parts, VILLAGE, &v, &how, None, bits)
    };
    let birth = by_birth(&siti, 3).found[0];
    assert!(bits_of("Aminah", birth) > bits_of("Siti", birth) + 10.0);
    let part_search = Query {
        by_part: true,
        ..Query::exact(vec![], &[], Scope::Regency, 0.6)
    };
    let unaware = Query {
        by_part: false,
        ..part_search.clone()
    };
    let (counted, again) = (
        bits_of("Aminah", part_search.found(3)),
        bits_of("Aminah", unaware.found(3)),
    );
    assert!(counted < again - 7.0, "{counted} {again}");
    let found_by_birth = by_birth(&siti, 3);
    let probability = |model: &Model| match decide(
        model,
        &alone,
        VILLAGE,
        std::slice::from_ref(&found_by_birth),
        Thresholds::default(),
        None,
    ) {
        Linked::Link { probability, .. } | Linked::Review { probability, .. } => probability,
        Linked::None => 0.0,
    };
    assert!(
        probability(&with_parts) < probability(&model),
        "{} {}",
        probability(&with_parts),
        probability(&model)
    );
    // Through decide: found by the regency's name search too, which counted how
    // many bear the name.
    let mut found = by_birth(&siti, 3);
    found.found.extend(by_name(&siti, 2_000).found);
    let person = proposed("Siti Aminah", (1984, 8, 17), 2);
    let t = Thresholds::default();
    let probability =
        |population| match decide(&model, &person, VILLAGE, &[found.clone()], t, population) {
            Linked::Link { probability, .. } | Linked::Review { probability, .. } => probability,
            Linked::None => 0.0,
        };
    assert!(probability(Some(400_000)) < probability(None));
}

/// A person registered in another regency is found only by the national search on the
/// full name and the birth date. With the registry's name frequencies, a rare name
/// found so is the person; a common one may be a namesake born the same day, and a
/// clerk decides.
#[test]
fn found_elsewhere_by_name_and_birth_date_links_as_the_name_is_rare() {
    let mut model = load_model().expect("shipped model");
    let moved = RegistryPerson {
        village_code: "33.74.01.1001".into(),
        ..registry("3374011203800001", "Sutrisno Widodo", "1980-03-12", "male")
    };
    let national = Query::exact(
        vec![],
        &[Field::Name, Field::BirthDate],
        Scope::Nation,
        0.02,
    );
    let found = [Candidate {
        person: moved.clone(),
        found: vec![national.found(1)],
    }];
    let decide_with = |model: &Model, shares: &[(&str, f64)]| {
        let mut tokens = TokenShares {
            shares: shares.iter().map(|(t, s)| ((*t).to_owned(), *s)).collect(),
            agreement: 0.002,
            rare: 1e-6,
            ..TokenShares::default()
        };
        tokens = tokens.of_registry(10_000_000, 27_000);
        tokens.parts_per_name = 2.0;
        let mut model = model.clone();
        model.tokens = Some(tokens);
        let person = proposed("Sutrisno Widodo", (1980, 3, 12), 1);
        decided_by(&model, &person, &found)
    };
    // Both parts one in a hundred thousand: 0.0015 namesakes born that day.
    let rare = decide_with(&model, &[("SUTRISNO", 1e-5), ("WIDODO", 1e-5)]);
    assert!(
        matches!(&rare, Linked::Link { person, .. } if person.nik == moved.nik),
        "{rare:?}"
    );
    // Both parts one in twenty: over nine namesakes born that day.
    let common = decide_with(&model, &[("SUTRISNO", 0.05), ("WIDODO", 0.05)]);
    assert!(
        matches!(common, Linked::Review { .. } | Linked::None),
        "{common:?}"
    );
    // Without the registry's frequencies, the search's own rate applies.
    model.tokens = None;
    let person = proposed("Sutrisno Widodo", (1980, 3, 12), 1);
    let fixed = decided_by(&model, &person, &found);
    assert_ne!(format!("{fixed:?}"), format!("{rare:?}"));
}

#[test]
fn candidate_queries_follow_the_blocking_keys() {
    let p = pb::Person {
        full_name: "Siti Aminah".into(),
        birth_date: Some(pb::Date {
            year: 1984,
            month: 8,
            day: 17,
        }),
        ..Default::default()
    };
    let q = candidate_queries(&p, "32.04.05.2001");
    // Birth date in the district, name in the regency, name and birth date, name
    // within three years, and each outer part within three years.
    assert_eq!(q.len(), 6);
    assert_eq!(q[4].predicates[0]["attribute_value"], "Siti");
    assert_eq!(q[5].predicates[0]["attribute_value"], "Aminah");
    assert_eq!(q[3].predicates[2]["attribute_value"], "1983-01-01");
    assert_eq!(q[0].predicates[1]["attribute_value"], "32.04.05");
    assert_eq!(q[1].predicates[1]["attribute_value"], "32.04");
    assert_eq!(
        (q[0].scope, q[1].scope, q[2].scope),
        (Scope::District, Scope::Regency, Scope::Nation)
    );
    let nameless = pb::Person::default();
    assert!(candidate_queries(&nameless, "32.04.05.2001").is_empty());
}

/// A NIK carries its holder's birth date and sex. A mistyped serial lands on someone of
/// the district born the same day: that holder agrees on date and sex because the NIK
/// says so, and only the name tells them apart.
#[test]
fn a_nik_that_carries_the_birth_written_is_judged_by_the_name() {
    let model = load_model().expect("shipped model");
    // Dewi Lestari holds 3204055203800002: born 12 March 1980 (the day plus 40: a
    // woman). Sri Wahyuni, born the same day in the district, holds …0001 and wrote …0002.
    let dewi = registry("3204055203800002", "Dewi Lestari", "1980-03-12", "female");
    let written = |name: &str, born: (i32, i32, i32)| pb::Person {
        nik: dewi.nik.clone(),
        full_name: name.into(),
        birth_date: Some(pb::Date {
            year: born.0,
            month: born.1,
            day: born.2,
        }),
        sex: 2,
        ..Default::default()
    };
    let sri = written("Sri Wahyuni", (1980, 3, 12));
    assert!(nik_carries_birth(&sri));
    let (outcome, _) = crate::matcher::exact(&model, &sri, VILLAGE, Some(&dewi));
    assert_eq!(outcome, PersonOutcome::NikOfAnotherPerson);
    // Among candidates, the holder met by that NIK is not linked on date and sex.
    let found = candidates(
        &[],
        Default::default(),
        Some((&dewi, Retrieval::holder_of(&sri))),
    );
    let person = person_record(&sri, VILLAGE);
    let decided = decided_by(&model, &person, &found);
    assert!(!matches!(decided, Linked::Link { .. }), "{decided:?}");
    // The holder herself, titled, and with a part dropped, is still the holder.
    for name in ["Dewi Lestari", "Hj. Dewi Lestari", "Dewi"] {
        let (outcome, _) =
            crate::matcher::exact(&model, &written(name, (1980, 3, 12)), VILLAGE, Some(&dewi));
        assert_ne!(outcome, PersonOutcome::NikOfAnotherPerson, "{name}");
    }
    // A birth date written otherwise than the NIK's is evidence again.
    let shifted = written("Dewi Lestari", (1980, 9, 12));
    assert!(!nik_carries_birth(&shifted));
    let (outcome, _) = crate::matcher::exact(&model, &shifted, VILLAGE, Some(&dewi));
    assert_eq!(outcome, PersonOutcome::MatchedWithCorrections);
}
