use super::*;
use crate::household::{RuleHousehold, Standing};
use cel_interpreter::{Context, Program, Value};
use chrono::NaiveDate;
use dtks_domain::household::*;
use proptest::prelude::*;

fn some<T: Clone + std::fmt::Debug + 'static>(
    all: &'static [T],
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(prop::sample::select(all))
}

fn person() -> impl Strategy<Value = Person> {
    (
        (
            0u32..30_000,
            prop::sample::select(Sex::ALL),
            some(MaritalStatus::ALL),
            prop::sample::select(Relationship::ALL),
            some(EducationLevel::ALL),
            some(SchoolStatus::ALL),
            some(WorkStatus::ALL),
        ),
        (
            -1_000i64..5_000_000,
            any::<[bool; 4]>(),
            some(Disability::ALL),
            prop::collection::vec(prop::sample::select(SpecialGroup::ALL), 0..3),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (days, sex, marital, relationship, education, school, work),
                (income, [chronic, insured, pregnant, undernourished], disability, groups, nik),
            )| Person {
                nik: nik.then(|| dtks_domain::nik::Nik::parse("3204011203800001").expect("nik")),
                full_name: "Dewi Lestari".into(),
                birth_place: "Bandung".into(),
                birth_date: NaiveDate::from_ymd_opt(1945, 1, 1).expect("date")
                    + chrono::Days::new(u64::from(days)),
                sex,
                marital_status: marital,
                relationship,
                education,
                school_status: school,
                work_status: work,
                occupation: String::new(),
                sector: String::new(),
                monthly_income: income,
                health: Health {
                    chronic_illness: chronic,
                    disability,
                    has_health_insurance: insured,
                    pregnant,
                    undernourished,
                },
                special_groups: groups,
                skills: vec![],
                deceased: false,
            },
        )
}

fn household() -> impl Strategy<Value = (Household, Standing, String)> {
    (
        prop::collection::vec(prop::collection::vec(person(), 1..4), 1..3),
        (
            some(Tenure::ALL),
            some(FloorMaterial::ALL),
            some(WallMaterial::ALL),
            some(RoofMaterial::ALL),
            some(WaterSource::ALL),
            some(Sanitation::ALL),
            some(Electricity::ALL),
            0.0f64..120.0,
        ),
        (
            0.0f64..2_000.0,
            any::<[bool; 3]>(),
            any::<[u8; 3]>(),
            -10i64..50_000_000,
            prop::collection::vec(prop::sample::select(&["PKH", "BPNT", "KIP"][..]), 0..3),
        ),
        (1u32..=10, 1u32..=10, 1u64..1_000_000, -50.0f64..50.0),
        prop::sample::select(&["32.04.05.2001", "32.73.01.1001", "33.01.02.2003"][..]),
    )
        .prop_map(
            |(
                families,
                (tenure, floor, wall, roof, water, sanitation, electricity, area),
                (land, flags, counts, savings, programmes),
                (decile, province_decile, rank, score),
                village,
            )| {
                let h = Household {
                    household_id: None,
                    address: Address::default(),
                    location: None,
                    families: families
                        .into_iter()
                        .map(|members| Family {
                            kk_number: None,
                            members,
                        })
                        .collect(),
                    dwelling: Dwelling {
                        tenure,
                        floor_area_m2: area,
                        floor,
                        wall,
                        roof,
                        water,
                        sanitation,
                        electricity,
                    },
                    assets: Assets {
                        land_m2: land,
                        house_elsewhere: flags[0],
                        motorcycles: u32::from(counts[0]),
                        cars: u32::from(counts[1]),
                        livestock: u32::from(counts[2]),
                        refrigerator: flags[1],
                        productive_business: flags[2],
                        savings,
                    },
                    assistance_history: programmes
                        .into_iter()
                        .map(|code| AssistanceRecord {
                            programme_code: code.into(),
                            year: 2025,
                            month: 1,
                            amount: 100_000,
                        })
                        .collect(),
                    psks_potential: vec![],
                };
                let standing = Standing {
                    decile,
                    province_decile,
                    national_rank: rank,
                    score,
                };
                (h, standing, village.to_owned())
            },
        )
}

/// A condition on person `p`.
fn person_condition() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(&["<", "<=", ">", ">=", "==", "!="][..]),
            0i32..90
        )
            .prop_map(|(op, n)| format!("p.age {op} {n}")),
        (0i32..90).prop_map(|n| format!("p.age < {n}.5")),
        prop::sample::select(
            &[
                "p.sex == 'female'",
                "p.school_status == 'attending'",
                "p.school_status == ''",
                "p.disability == 'severe'",
                "p.disability != ''",
                "p.pregnant",
                "!p.has_health_insurance",
                "p.chronic_illness || p.undernourished",
                "p.relationship in ['head', 'spouse']",
                "p.education in ['none', 'primary']",
                "p.work_status == 'not_working'",
                "p.marital_status == 'widowed'",
                "'orphan' in p.special_groups",
                "p.special_groups.exists(g, g == 'elderly_alone')",
                "p.special_groups.size() > 0",
                "p.special_groups == ['orphan']",
                "p.sex",
                "p.monthly_income / 0 > 1",
                "p.monthly_income * 1000000000000 > 1",
            ][..]
        )
        .prop_map(String::from),
        (0i64..3_000_000).prop_map(|n| format!("p.monthly_income < {n}")),
    ]
}

/// A condition on the household.
fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(
                &[
                    "household.decile",
                    "household.province_decile",
                    "household.size",
                    "household.national_rank",
                    "household.assets.motorcycles",
                    "household.assets.savings",
                    "size(household.members)",
                    "household.families.size()",
                    "household.assistance_programmes.size()",
                    "household.score",
                    "household.dwelling.floor_area_m2",
                    "household.assets.land_m2",
                    "double(household.size)",
                    "int(household.score)",
                    "-household.decile",
                    "household.decile + household.size",
                    "household.decile - 3",
                    "household.decile % 3",
                    "household.score / 2.0",
                ][..]
            ),
            prop::sample::select(&["<", "<=", ">", ">=", "==", "!="][..]),
            prop_oneof![
                (0i64..20).prop_map(|n| n.to_string()),
                (0i64..200).prop_map(|n| format!("{n}.5")),
            ],
        )
            .prop_map(|(term, op, literal)| format!("{term} {op} {literal}")),
        (
            prop::sample::select(
                &[
                    "household.dwelling.floor",
                    "household.dwelling.wall",
                    "household.dwelling.roof",
                    "household.dwelling.tenure",
                    "household.dwelling.electricity",
                    "household.regency_code",
                ][..]
            ),
            prop::sample::select(
                &[
                    "'earth'", "'bamboo'", "'thatch'", "'owned'", "'pln450'", "''", "'32.04'"
                ][..]
            ),
        )
            .prop_map(|(term, word)| format!("{term} == {word}")),
        person_condition().prop_map(|c| format!("household.members.exists(p, {c})")),
        person_condition().prop_map(|c| format!("household.members.all(p, {c})")),
        person_condition().prop_map(|c| format!("household.members.exists_one(p, {c})")),
        person_condition().prop_map(|c| format!("household.members.filter(p, {c}).size() >= 2")),
        person_condition()
            .prop_map(|c| format!("household.families.exists(f, f.members.exists(p, {c}))")),
        prop::sample::select(
            &[
                "household.assets.house_elsewhere",
                "household.assets.refrigerator",
                "household.region_code.startsWith('32.0')",
                "household.region_code.contains('73')",
                "household.regency_code in ['32.04', '33.01']",
                "'PKH' in household.assistance_programmes",
                "household.assistance_programmes.contains('KIP')",
                "household.members.map(p, p.age).exists(a, a >= 60)",
                "household.families.all(f, size(f.members) >= 2)",
                "household.dwelling.floor_area_m2 < 8.0 * double(household.size)",
                "household.members[0].age > 20",
                "household.members",
                "household.size",
                "household.dwelling",
                "household.dwelling == household.dwelling",
                "household.decile / 0 == 1",
                "null == null",
                "household.dwelling.floor + 'x' == 'earthx'",
            ][..]
        )
        .prop_map(String::from),
    ]
}

fn rule() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
            inner.clone().prop_map(|a| format!("!({a})")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c)| format!("({a} ? {b} : {c})")),
        ]
    })
}

fn month(households: &[(Household, Standing, String)]) -> Month {
    let mut m = Month::new(2026, 11).expect("month");
    for (k, (h, standing, village)) in households.iter().enumerate() {
        m.push(uuid::Uuid::from_u128(k as u128 + 1), village, *standing, h)
            .expect("push");
    }
    m
}

fn interpret(program: &Program, h: &RuleHousehold) -> Option<Value> {
    let mut context = Context::default();
    context.add_variable_from_value("household", cel_interpreter::to_value(h).ok()?);
    program.execute(&context).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Where the compiled rule answers, the interpreter answers the same; and the
    /// month's columns give back exactly the household the interpreter would read.
    #[test]
    fn compiled_rules_answer_as_the_interpreter(
        source in rule(),
        households in prop::collection::vec(household(), 1..6),
    ) {
        let parsed = cel_parser::Parser::default().parse(&source).expect("parses");
        let program = Program::compile(&source).expect("compiles");
        let compiled = Compiled::new(&parsed);
        let m = month(&households);
        let on = m.on;
        for (i, (h, standing, village)) in households.iter().enumerate() {
            let mut expected = RuleHousehold::new(h, *standing, on);
            expected.region_code = village.clone();
            expected.province_code = village[..2].to_owned();
            expected.regency_code = village[..5].to_owned();
            let columns = m.rule_household(i);
            prop_assert_eq!(&columns, &expected);
            if let Some(answer) = compiled.as_ref().and_then(|c| c.eligible(&m, i).ok()) {
                prop_assert_eq!(interpret(&program, &columns), Some(Value::Bool(answer)), "{}", source);
            }
        }
    }
}

#[test]
fn the_shipped_rules_are_compiled_and_decide_every_household() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let households: Vec<_> = (0..500)
        .map(|_| household().new_tree(&mut runner).expect("tree").current())
        .collect();
    let m = month(&households);
    for p in crate::shipped().expect("shipped") {
        let parsed = cel_parser::Parser::default()
            .parse(&p.rule)
            .expect("parses");
        let compiled = Compiled::new(&parsed).unwrap_or_else(|| panic!("{} is compiled", p.code));
        let program = Program::compile(&p.rule).expect("compiles");
        let mut yes = 0;
        for i in 0..m.households() {
            let answer = compiled
                .eligible(&m, i)
                .unwrap_or_else(|_| panic!("{} decides household {i}", p.code));
            assert_eq!(
                interpret(&program, &m.rule_household(i)),
                Some(Value::Bool(answer)),
                "{} on household {i}",
                p.code
            );
            yes += usize::from(answer);
        }
        assert!(
            yes > 0 && yes < m.households(),
            "{}: {yes} eligible",
            p.code
        );
    }
}
