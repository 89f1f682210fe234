use super::*;

#[test]
fn rules_over_members_dwelling_and_standing_run() {
    let h = RuleHousehold::sample();
    for (rule, expected) in [
        ("household.decile <= 4", true),
        ("household.members.exists(p, p.age < 6)", true),
        ("household.members.exists(p, p.age >= 60)", false),
        ("household.dwelling.floor == 'earth'", true),
        (
            "household.families.all(f, f.members.size() > 0) && household.size >= 1",
            true,
        ),
        ("household.assets.cars > 0", false),
    ] {
        let compiled = Rule::compile(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(compiled.eligible(&h), Ok(expected), "{rule}");
    }
}

#[test]
fn bad_rules_are_refused_with_the_place_of_the_error() {
    let e = Rule::compile("household.decile <= ").expect_err("syntax");
    assert_eq!(e.line, 1, "{e}");
    let e = Rule::compile("household.decile <= 4 &&\n  household.dwelling.flor == 'earth'")
        .expect_err("unknown field");
    assert_eq!((e.line, e.column), (2, 3), "{e}");
    assert!(e.message.contains("household.dwelling.flor"), "{e}");
    assert!(e.message.contains("floor"), "{e}");
    let e = Rule::compile("household.members.exists(p, p.agee > 60)").expect_err("member");
    assert!(e.message.contains("p.agee"), "{e}");
    assert_eq!((e.line, e.column), (1, 29), "{e}");
    let e = Rule::compile("income < 100").expect_err("unknown name");
    assert!(e.message.contains("`income`"), "{e}");
    let e = Rule::compile("household.size + 1").expect_err("not a yes or no");
    assert!(e.message.contains("true or false"), "{e}");
    assert!(Rule::compile("   ").is_err());
    // Text the parser panics on (found by the cel_rule fuzz target) is a refusal.
    for text in [",", ")", "(", "household.", "[,]"] {
        assert!(Rule::compile(text).is_err(), "{text}");
    }
}

/// Finding 2: 500 nested parentheses overflowed the parser's stack and aborted the
/// service. Nesting and length are bounded before parsing; what is within the bounds
/// compiles, on the checker's own thread.
#[test]
fn rules_nested_or_long_beyond_the_bounds_are_refused_before_parsing() {
    let nested = |n: usize| format!("{}household.decile <= 4{}", "(".repeat(n), ")".repeat(n));
    assert!(Rule::compile(&nested(MAX_DEPTH - 4)).is_ok());
    for source in [
        nested(500),
        nested(2_000),
        format!("{}true", "!".repeat(500)),
        format!("{}1 > 0", "-".repeat(5_000)),
        format!("{}true{}", "[".repeat(300), "]".repeat(300)),
        format!("{}true", "(".repeat(10_000)),
    ] {
        let e = Rule::compile(&source).expect_err("too deep");
        assert!(
            e.message.contains("nests deeper") || e.message.contains("bytes"),
            "{e}"
        );
    }
    // Brackets inside strings do not count.
    assert!(
        Rule::compile(&format!(
            "household.dwelling.floor != '{}'",
            "(".repeat(200)
        ))
        .is_ok()
    );
    let long = format!(
        "household.decile <= 4{}",
        " && household.size > 0".repeat(400)
    );
    let e = Rule::compile(&long).expect_err("too long");
    assert!(e.message.contains("bytes"), "{e}");
    // A long chain within the byte bound still may not nest the tree too deep.
    let chain = format!(
        "household.decile <= 4{}",
        " || household.size > 0".repeat(200)
    );
    if let Err(e) = Rule::compile(&chain) {
        assert!(e.message.contains("nests deeper"), "{e}");
    }
}
