use super::*;
use crate::predicate::*;
use crate::records::*;

#[test]
fn predicates_parse_into_conditions_or_are_refused_with_the_attribute_named() {
    let ok = Predicate::parse(&json!({
        "query": [
            {"expression1": {"attribute_name": "birth_date", "operator": "eq", "attribute_value": "1980-03-12"}},
            {"expression1": {"attribute_name": "district_code", "operator": "eq", "attribute_value": "32.04.05"},
             "condition": "or",
             "expression2": {"attribute_name": "name", "operator": "eq", "attribute_value": " asep  sunandar"}},
            {"expression1": {"attribute_name": "sex", "operator": "eq", "attribute_value": "male"},
             "condition": "not",
             "expression2": {"attribute_name": "kk_number", "operator": "eq", "attribute_value": "3204"}},
        ],
        "pagination": {"page_size": 20, "page_number": 2},
    }))
    .expect("parses");
    assert_eq!(ok.conditions.len(), 3);
    assert_eq!((ok.page_size, ok.page_number), (20, 2));
    assert!(ok.conditions[1].starts_with("(left(village_code, 8)"));
    assert!(ok.conditions[1].contains(" OR "), "{:?}", ok.conditions);
    assert!(
        ok.conditions[2].contains(" AND NOT "),
        "{:?}",
        ok.conditions
    );

    for (query, why) in [
        (json!([]), "non-empty"),
        (
            json!([{"expression1": {"attribute_name": "income", "operator": "eq", "attribute_value": "1"}}]),
            "income",
        ),
        (
            json!([{"expression1": {"attribute_name": "birth_date", "operator": "eq", "attribute_value": "12/03/1980"}}]),
            "YYYY-MM-DD",
        ),
        (
            json!([{"expression1": {"attribute_name": "regency_code", "operator": "eq", "attribute_value": "32.04.05"}}]),
            "not a code of that level",
        ),
        (
            json!([{"expression1": {"attribute_name": "sex", "operator": "eq", "attribute_value": "male"}, "condition": "or"}]),
            "needs expression2",
        ),
        (
            json!([{"attribute_name": "sex", "operator": "eq", "attribute_value": "male"}]),
            "needs expression1",
        ),
    ] {
        let error = Predicate::parse(&json!({ "query": query })).expect_err("refused");
        assert!(error.contains(why), "{error} should say {why}");
    }
    let error = Predicate::parse(&json!({
        "query": [{"expression1": {"attribute_name": "sex", "operator": "eq", "attribute_value": "female"}}],
        "pagination": {"page_size": 1000},
    }))
    .expect_err("page too large");
    assert!(error.contains("at most 100"), "{error}");
}

/// A name part sought in one regency over whole birth years also carries the keys
/// its index answers; the same search over part of a year, or joined by `or`, not.
#[test]
fn a_name_part_in_a_regency_over_whole_years_is_keyed_for_its_index() {
    let term = |name: &str, operator: &str, value: &str| json!({"attribute_name": name, "operator": operator, "attribute_value": value});
    let search = |joined: &str, to: &str| {
        Predicate::parse(&json!({"query": [
            {"expression1": term("name_part", "eq", "Siti"), "condition": joined,
             "expression2": term("regency_code", "eq", "32.04")},
            {"expression1": term("birth_date", "ge", "1983-01-01"), "condition": "and",
             "expression2": term("birth_date", "le", to)},
        ]}))
        .expect("parses")
    };
    let keyed = search("and", "1985-12-31");
    assert_eq!(keyed.conditions.len(), 2);
    assert!(
        keyed
            .narrow
            .as_ref()
            .is_some_and(|n| n.starts_with("person_part_keys("))
    );
    assert_eq!(
        keyed.params.last(),
        Some(&Param::Texts(vec![
            "SITI|32.04|1983".into(),
            "SITI|32.04|1984".into(),
            "SITI|32.04|1985".into()
        ]))
    );
    assert!(search("and", "1985-06-30").narrow.is_none());
    assert!(search("or", "1985-12-31").narrow.is_none());
    // Many searches of this shape read their values from rows, the last as keys,
    // which narrow the rows before the other conditions are held against them.
    let rows = keyed.matching(|sql| keyed.from_rows(sql));
    assert!(
        rows.starts_with("(SELECT nik FROM (SELECT * FROM persons WHERE person_part_keys(full_name, village_code, birth_date) && (q.params->>4)::text[] OFFSET 0) persons WHERE "),
        "{rows}"
    );
    assert!(!rows.contains('$'), "{rows}");
}

/// Finding 3: page number 2^63 overflowed the offset and panicked the handler; 10^17
/// answered 500. Every page number parses to a refusal or to an offset in range.
#[test]
fn page_numbers_past_the_population_are_refused_without_overflow() {
    let query = |page_number: Value, page_size: Value| {
        Predicate::parse(&json!({
            "query": [{"expression1": {"attribute_name": "birth_date", "operator": "eq", "attribute_value": "1980-03-12"}}],
            "pagination": {"page_number": page_number, "page_size": page_size},
        }))
    };
    for n in [
        json!(1u64 << 63),
        json!(u64::MAX),
        json!(100_000_000_000_000_000u64),
        json!(1_000_000_000),
    ] {
        let e = query(n.clone(), json!(100)).expect_err("too far");
        assert!(e.contains("page_number"), "{n}: {e}");
    }
    let last = query(json!(MAX_OFFSET / 100 + 1), json!(100)).expect("the last page in range");
    assert_eq!(last.page_number, MAX_OFFSET / 100 + 1);
    for n in [json!(0), json!(-1), json!(1.5), json!("2")] {
        assert!(query(n.clone(), json!(10)).is_err(), "{n}");
    }
}
