//! The domain's public functions on the values an outside caller could send: every
//! integer at its extremes, floats NaN and infinite, dates at the ends of the calendar,
//! households of many members. Nothing may panic (an overflow in `monthly_income` once
//! stopped verivali's consumer for the whole country); scores stay numbers.

use chrono::NaiveDate;
use proptest::prelude::*;

use crate::household::fixtures;
use crate::{Household, consistency, integrity, pmt};

fn extreme_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MAX),
        Just(i64::MIN),
        Just(i64::MAX / 2 + 1),
        Just(0),
        Just(-1),
        any::<i64>(),
    ]
}

fn extreme_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        any::<f64>(),
    ]
}

fn extreme_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(u32::MAX), Just(0), any::<u32>()]
}

fn extreme_date() -> impl Strategy<Value = NaiveDate> {
    prop_oneof![
        Just(NaiveDate::MIN),
        Just(NaiveDate::MAX),
        (1i32..=9999, 1u32..=12, 1u32..=28)
            .prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()),
    ]
}

prop_compose! {
    fn extreme_household()(
        incomes in proptest::collection::vec(extreme_i64(), 1..40),
        births in proptest::collection::vec(extreme_date(), 1..40),
        savings in extreme_i64(),
        land in extreme_f64(),
        area in extreme_f64(),
        cars in extreme_u32(),
        motorcycles in extreme_u32(),
        livestock in extreme_u32(),
        amount in extreme_i64(),
        year in any::<i32>(),
        month in extreme_u32(),
        latitude in extreme_f64(),
    ) -> Household {
        let mut h = fixtures::household();
        let template = h.families[0].members[0].clone();
        h.families[0].members = incomes
            .iter()
            .zip(births.iter().cycle())
            .map(|(income, born)| {
                let mut p = template.clone();
                p.monthly_income = *income;
                p.birth_date = *born;
                p
            })
            .collect();
        h.assets.savings = savings;
        h.assets.land_m2 = land;
        h.assets.cars = cars;
        h.assets.motorcycles = motorcycles;
        h.assets.livestock = livestock;
        h.dwelling.floor_area_m2 = area;
        if let Some(l) = h.location.as_mut() {
            l.latitude = latitude;
        }
        h.assistance_history = vec![crate::household::AssistanceRecord {
            programme_code: "PKH".into(),
            year,
            month,
            amount,
        }];
        h
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_public_function_panics_on_extreme_values(h in extreme_household(), today in extreme_date()) {
        let income = consistency::monthly_income(&h);
        prop_assert!(income >= 0);
        let _ = consistency::income_per_capita(&h);
        let _ = consistency::floor_area_per_capita(&h);
        let _ = consistency::check(&h, today);
        let outcomes = integrity::Outcomes::new();
        let _ = integrity::assess(&h, &outcomes);
        let _ = h.structural_violations(today);
        let _ = h.missing_attributes();
        let model = pmt::Model::default();
        let _ = model.score(&h, today);
        let _ = model.explain(&h, today);
        let inputs = pmt::Inputs::of(&h);
        let _ = pmt::Inputs::decode(&inputs.encode());
        let _ = model.score_inputs(&inputs, today);
    }

    #[test]
    fn incomes_sum_without_overflow(incomes in proptest::collection::vec(extreme_i64(), 1..64)) {
        let mut h = fixtures::household();
        let template = h.families[0].members[0].clone();
        h.families[0].members = incomes.iter().map(|i| { let mut p = template.clone(); p.monthly_income = *i; p }).collect();
        let expected = incomes.iter().map(|i| i128::from((*i).max(0))).sum::<i128>().min(i128::from(i64::MAX));
        prop_assert_eq!(i128::from(consistency::monthly_income(&h)), expected);
    }

    #[test]
    fn deciles_stay_in_one_to_ten(n in prop_oneof![Just(usize::MAX), Just(1usize), 0usize..100_000], r in any::<usize>()) {
        let rank = if n == 0 { 0 } else { r % n };
        let d = pmt::decile_of_rank(rank, n);
        prop_assert!(d <= 10);
        prop_assert!(n == 0 || d >= 1);
    }
}

/// Finding 1, as it was sent: one member reporting `i64::MAX` a month.
#[test]
fn a_member_reporting_the_largest_income_is_flagged_not_a_panic() {
    let mut h = fixtures::household();
    for p in h.families[0].members.iter_mut() {
        p.monthly_income = i64::MAX;
    }
    assert_eq!(consistency::monthly_income(&h), i64::MAX);
    h.assets.savings = i64::MAX;
    let today = NaiveDate::from_ymd_opt(2027, 1, 1).expect("date");
    let _ = consistency::check(&h, today);
}
