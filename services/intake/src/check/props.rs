//! Malformed proposals, generated: a valid proposal with one field made wrong in one of
//! the ways that field can be wrong — wrong length, wrong characters, unicode edge cases
//! (bidi controls, zero-width joiners, combining marks, emoji), oversized values,
//! impossible dates, codes out of range, coordinates outside Indonesia, structure
//! missing — is refused as invalid, with the field named, and never panics. (Nothing is
//! stored: `prepare` runs before any write; the e2e test of intake shows the refusal
//! through gRPC leaves no row.)

use chrono::NaiveDate;
use dtks_platform::auth::{Claims, Role};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{Channel, ProposalKind};
use dtks_proto::intake::v1::{Minutes, SubmitProposalRequest};
use proptest::prelude::*;

use super::{Refusal, prepare};

const VILLAGE: &str = "32.04.05.2001";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 23).expect("date")
}

fn officer() -> Claims {
    Claims {
        sub: "op".into(),
        role: Role::VillageOperator,
        region: VILLAGE.into(),
        iss: "dtks-dev".into(),
        aud: "dtks".into(),
        exp: u64::MAX,
        iat: 0,
    }
}

fn person(nik: &str, name: &str, birth: (i32, i32, i32), sex: i32, rel: i32) -> pb::Person {
    pb::Person {
        nik: nik.into(),
        full_name: name.into(),
        birth_place: "Bandung".into(),
        birth_date: Some(pb::Date {
            year: birth.0,
            month: birth.1,
            day: birth.2,
        }),
        sex,
        marital_status: 2,
        relationship: rel,
        education: 2,
        school_status: 3,
        work_status: 2,
        occupation: "buruh tani".into(),
        sector: "pertanian".into(),
        monthly_income: 900_000,
        health: Some(pb::Health {
            disability: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn valid() -> SubmitProposalRequest {
    SubmitProposalRequest {
        idempotency_key: "k-1".into(),
        channel: Channel::Musdes as i32,
        kind: ProposalKind::Add as i32,
        external_reference: "REF-1".into(),
        minutes: Some(Minutes {
            number: "BA/MUSDES/1".into(),
            date: Some(pb::Date {
                year: 2026,
                month: 11,
                day: 16,
            }),
            attendees: 40,
        }),
        household: Some(pb::Household {
            address: Some(pb::Address {
                village_code: VILLAGE.into(),
                rt: "001".into(),
                rw: "002".into(),
                street: "Jl. Melati 3".into(),
                postal_code: "40375".into(),
            }),
            location: Some(pb::GeoPoint {
                latitude: -7.0,
                longitude: 107.6,
            }),
            families: vec![pb::Family {
                kk_number: "3204050505150001".into(),
                members: vec![
                    person("3204051203800001", "Asep Sunandar", (1980, 3, 12), 1, 1),
                    person("3204055708840002", "Siti Aminah", (1984, 8, 17), 2, 2),
                ],
            }],
            dwelling: Some(pb::Dwelling {
                tenure: 1,
                floor_area_m2: 36.0,
                floor: 1,
                wall: 1,
                roof: 2,
                water: 1,
                sanitation: 1,
                electricity: 3,
            }),
            assets: Some(pb::Assets::default()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Text that is wrong for an identifier or a code: wrong length, letters, unicode
/// edge cases, controls, oversized.
fn bad_digits(len: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        // (An empty NIK is allowed: a person without one is linked by name and birth.)
        proptest::string::string_regex(&format!("[0-9]{{1,{}}}", len - 1)).expect("regex"),
        proptest::string::string_regex(&format!("[0-9]{{{},40}}", len + 1)).expect("regex"),
        proptest::string::string_regex(&format!("[0-9]{{{}}}", len - 1))
            .expect("regex")
            .prop_map(|s| format!("{s}x")),
        Just("３２０４０５１２０３８００００１".to_owned()), // full-width digits
        Just("3204051203800001\u{200d}".to_owned()),
        Just("\u{202e}3204051203800001".to_owned()),
        Just("32040512038000०१".to_owned()), // Devanagari digits
        Just(" 3204051203800001 x".to_owned()),
        Just("9".repeat(100_000)),
    ]
}

/// A name that is not one: empty, blank, controls, bidi overrides, oversized.
fn bad_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   ".to_owned()),
        Just("\t\n".to_owned()),
        Just("Asep\u{0000}Sunandar".to_owned()),
        Just("\u{202e}ranadnuS pesA".to_owned()),
        Just("A".repeat(10_000)),
        proptest::string::string_regex("[\\x00-\\x08]{1,5}").expect("regex"),
    ]
}

#[derive(Clone)]
enum Corruption {
    HeadNik(String),
    SpouseNik(String),
    Kk(String),
    Name(String),
    BirthDate(i32, i32, i32),
    Sex(i32),
    Relationship(i32),
    Village(String),
    Location(f64, f64),
    FloorArea(f64),
    Street(String),
    NoMembers,
    DuplicateNik,
    IdempotencyKey(String),
    NoMinutes,
    Income(i64),
}

/// Long values are shown by their length (a failure report stays readable).
impl std::fmt::Debug for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |s: &String| {
            if s.chars().count() > 40 {
                format!("<{} chars>", s.chars().count())
            } else {
                format!("{s:?}")
            }
        };
        match self {
            Corruption::HeadNik(s) => write!(f, "HeadNik({})", short(s)),
            Corruption::SpouseNik(s) => write!(f, "SpouseNik({})", short(s)),
            Corruption::Kk(s) => write!(f, "Kk({})", short(s)),
            Corruption::Name(s) => write!(f, "Name({})", short(s)),
            Corruption::Village(s) => write!(f, "Village({})", short(s)),
            Corruption::Street(s) => write!(f, "Street({})", short(s)),
            Corruption::IdempotencyKey(s) => write!(f, "IdempotencyKey({})", short(s)),
            Corruption::BirthDate(y, m, d) => write!(f, "BirthDate({y}, {m}, {d})"),
            Corruption::Sex(x) => write!(f, "Sex({x})"),
            Corruption::Relationship(x) => write!(f, "Relationship({x})"),
            Corruption::Location(a, b) => write!(f, "Location({a}, {b})"),
            Corruption::FloorArea(a) => write!(f, "FloorArea({a})"),
            Corruption::NoMembers => write!(f, "NoMembers"),
            Corruption::DuplicateNik => write!(f, "DuplicateNik"),
            Corruption::NoMinutes => write!(f, "NoMinutes"),
            Corruption::Income(i) => write!(f, "Income({i})"),
        }
    }
}

impl Corruption {
    /// Applies the corruption; the field the refusal must name (a prefix of it).
    fn apply(&self, req: &mut SubmitProposalRequest) -> &'static str {
        let h = req.household.as_mut().expect("household");
        let members = &mut h.families[0].members;
        match self {
            Corruption::HeadNik(s) => {
                members[0].nik = s.clone();
                "household.families[0].members[0].nik"
            }
            Corruption::SpouseNik(s) => {
                members[1].nik = s.clone();
                "household.families[0].members[1].nik"
            }
            Corruption::Kk(s) => {
                h.families[0].kk_number = s.clone();
                "household.families[0].kk_number"
            }
            Corruption::Name(s) => {
                members[1].full_name = s.clone();
                "household.families[0].members[1].full_name"
            }
            Corruption::BirthDate(y, m, d) => {
                members[1].birth_date = Some(pb::Date {
                    year: *y,
                    month: *m,
                    day: *d,
                });
                "household.families[0].members[1]"
            }
            Corruption::Sex(s) => {
                members[1].sex = *s;
                "household.families[0].members[1]"
            }
            Corruption::Relationship(r) => {
                members[1].relationship = *r;
                "household.families[0].members[1]"
            }
            Corruption::Village(s) => {
                h.address.as_mut().expect("address").village_code = s.clone();
                "household.address.village_code"
            }
            Corruption::Location(lat, lon) => {
                h.location = Some(pb::GeoPoint {
                    latitude: *lat,
                    longitude: *lon,
                });
                "household.location"
            }
            Corruption::FloorArea(a) => {
                h.dwelling.as_mut().expect("dwelling").floor_area_m2 = *a;
                "household.dwelling"
            }
            Corruption::Street(s) => {
                h.address.as_mut().expect("address").street = s.clone();
                "household.address"
            }
            Corruption::NoMembers => {
                members.clear();
                "household.families[0].members"
            }
            Corruption::DuplicateNik => {
                members[1].nik = members[0].nik.clone();
                "household.families[0].members[1]"
            }
            Corruption::IdempotencyKey(s) => {
                req.idempotency_key = s.clone();
                "idempotency_key"
            }
            Corruption::NoMinutes => {
                req.minutes = None;
                "minutes"
            }
            Corruption::Income(i) => {
                members[0].monthly_income = *i;
                "household.families[0].members[0].monthly_income"
            }
        }
    }
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        bad_digits(16).prop_map(Corruption::HeadNik),
        bad_digits(16).prop_map(Corruption::SpouseNik),
        bad_digits(16).prop_map(Corruption::Kk),
        bad_name().prop_map(Corruption::Name),
        prop_oneof![
            (2027i32..3000, 1i32..13, 1i32..29), // born in the future
            (1980i32..2000, 13i32..100, 1i32..29),
            (1980i32..2000, 1i32..13, 32i32..100),
            (1980i32..2000, Just(2), Just(30)),
            (-5000i32..0, 1i32..13, 1i32..29),
        ]
        .prop_map(|(y, m, d)| Corruption::BirthDate(y, m, d)),
        prop_oneof![Just(0), 3i32..1000, i32::MIN..0].prop_map(Corruption::Sex),
        prop_oneof![Just(0), 20i32..10_000, i32::MIN..0].prop_map(Corruption::Relationship),
        prop_oneof![
            bad_digits(13),
            Just("99.99.99.9999".to_owned()),
            Just("32.04.05".to_owned()),
            Just("32.04.05.2001.1".to_owned()),
        ]
        .prop_map(Corruption::Village),
        prop_oneof![
            (-90.0f64..-12.0, 95.0f64..141.0),
            (7.0f64..90.0, 95.0f64..141.0),
            (-11.0f64..6.0, -180.0f64..94.0),
            Just((f64::NAN, 107.6)),
            Just((-7.0, f64::INFINITY)),
        ]
        .prop_map(|(lat, lon)| Corruption::Location(lat, lon)),
        prop_oneof![
            Just(-1.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            -1e9f64..-0.001
        ]
        .prop_map(Corruption::FloorArea),
        prop_oneof![
            Just("x".repeat(100_000)),
            Just("Jl. \u{0007} Melati".to_owned())
        ]
        .prop_map(Corruption::Street),
        Just(Corruption::NoMembers),
        Just(Corruption::DuplicateNik),
        proptest::string::string_regex(".{129,300}")
            .expect("regex")
            .prop_map(Corruption::IdempotencyKey),
        Just(Corruption::NoMinutes),
        (i64::MIN..-1).prop_map(Corruption::Income),
    ]
}

#[test]
fn the_valid_proposal_passes() {
    assert!(prepare(&officer(), valid(), today()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_corruption_is_refused_naming_its_field(c in corruption()) {
        let mut req = valid();
        let field = c.apply(&mut req);
        match prepare(&officer(), req, today()) {
            Err(Refusal::Invalid(v)) => {
                prop_assert!(
                    v.0.iter().any(|f| f.field.starts_with(field)),
                    "{c:?}: expected {field}, got {:?}",
                    v.0.iter().map(|f| (&f.field, &f.description)).collect::<Vec<_>>()
                );
                for f in &v.0 {
                    prop_assert!(!f.description.is_empty());
                    // The refusal never echoes an oversized value back.
                    prop_assert!(f.description.len() < 2_000, "{}", f.description.len());
                }
            }
            Err(Refusal::Denied { field: denied, .. }) => {
                prop_assert!(false, "{c:?}: denied ({denied}) instead of invalid");
            }
            Ok(_) => prop_assert!(false, "{c:?}: accepted"),
        }
    }
}
