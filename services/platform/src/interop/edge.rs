//! The edge (*gerbang*): every request message of every RPC is checked against the
//! contract before the access guard hands it to a handler, so that no handler sees a
//! value it did not expect and a field added to a `.proto` later cannot skip the check.
//!
//! The rules come from the message descriptors (`dtks_proto::FILE_DESCRIPTOR_SET`), by
//! kind of field, with a short table of bounds for the fields that carry money, areas and
//! counts:
//!
//! - text: at most [`MAX_TEXT_BYTES`] (identifiers, codes and names [`MAX_SHORT_BYTES`],
//!   a programme rule [`MAX_RULE_BYTES`]); no NUL or other control characters (tab and
//!   line breaks aside); no bidirectional overrides; not made only of invisible
//!   characters; region codes parse, at the level their name says;
//! - numbers: finite; not negative (latitude and longitude within their ranges); at most
//!   [`MAX_AMOUNT`], or the field's own bound;
//! - enums: a value the contract names;
//! - repeated fields: at most [`MAX_REPEATED`] entries;
//! - `google.protobuf.Timestamp`: nanos 0–999,999,999, years 1–9999; a `Period` (unless
//!   unset) 2000-01 to 2100-12; a `Date` (unless unset) a real day from 1850 to 2100.
//!
//! Each refusal is INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the fields, at
//! most [`crate::grpc::MAX_LISTED_VIOLATIONS`] of them, the rest counted. Client streams
//! (bulk imports) are checked row by row by their handler with [`check`].

use std::collections::HashMap;
use std::sync::LazyLock;

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};

use dtks_domain::Violations;

/// Free text (notes, reasons, complaints): 4 KiB.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Identifiers, codes, references and names.
pub const MAX_SHORT_BYTES: usize = 256;
/// A programme's eligibility rule (its own bounds are checked when it compiles).
pub const MAX_RULE_BYTES: usize = 16 * 1024;
/// Entries of one repeated field.
pub const MAX_REPEATED: usize = 1000;
/// The largest amount, count or size any field may carry unless it has its own bound.
pub const MAX_AMOUNT: f64 = 1e15;

/// Fields with a bound of their own: money in rupiah, areas in m², counts.
const BOUNDS: &[(&str, f64)] = &[
    ("monthly_income", 1e11),
    ("savings", 1e14),
    ("amount", 1e13),
    ("land_m2", 1e9),
    ("floor_area_m2", 1e6),
    ("cars", 1e4),
    ("motorcycles", 1e4),
    ("livestock", 1e6),
    ("attendees", 1e5),
];

struct Method {
    input: MessageDescriptor,
    client_streaming: bool,
}

pub(crate) static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(dtks_proto::FILE_DESCRIPTOR_SET).ok());

static METHODS: LazyLock<HashMap<String, Method>> = LazyLock::new(|| {
    let mut methods = HashMap::new();
    if let Some(pool) = POOL.as_ref() {
        for service in pool.services() {
            for method in service.methods() {
                methods.insert(
                    format!("/{}/{}", service.full_name(), method.name()),
                    Method {
                        input: method.input(),
                        client_streaming: method.is_client_streaming(),
                    },
                );
            }
        }
    }
    methods
});

/// The request type of `path` (`/dtks.intake.v1.IntakeService/SubmitProposal`) when the
/// request is one message (unary and server-streaming RPCs).
pub fn single_request(path: &str) -> Option<&'static MessageDescriptor> {
    METHODS
        .get(path)
        .filter(|m| !m.client_streaming)
        .map(|m| &m.input)
}

/// Checks one encoded request message of type `input`.
pub fn check_encoded(input: &MessageDescriptor, bytes: &[u8]) -> Result<(), tonic::Status> {
    let message = DynamicMessage::decode(input.clone(), bytes).map_err(|e| {
        tonic::Status::invalid_argument(format!("the request is not a {}: {e}", input.name()))
    })?;
    let mut violations = Violations::default();
    walk(&message, "", &mut violations);
    if violations.0.is_empty() {
        Ok(())
    } else {
        Err(crate::grpc::invalid_argument(&violations))
    }
}

/// Checks a decoded message of the contract's type `full_name` (a row of a client
/// stream: `dtks.intake.v1.SubmitProposalRequest`) by the same rules.
pub fn check(full_name: &str, message: &impl prost::Message) -> Result<(), tonic::Status> {
    let violations = violations(full_name, message);
    if violations.0.is_empty() {
        Ok(())
    } else {
        Err(crate::grpc::invalid_argument(&violations))
    }
}

/// What [`check`] finds in `message`, field by field (for a row's own refusal).
pub fn violations(full_name: &str, message: &impl prost::Message) -> Violations {
    let mut out = Violations::default();
    let decoded = POOL
        .as_ref()
        .and_then(|p| p.get_message_by_name(full_name))
        .and_then(|d| DynamicMessage::decode(d, message.encode_to_vec().as_slice()).ok());
    match decoded {
        Some(message) => walk(&message, "", &mut out),
        None => out.push("", format!("not a {full_name}")),
    }
    out
}

fn path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn walk(message: &DynamicMessage, prefix: &str, out: &mut Violations) {
    let descriptor = message.descriptor();
    match descriptor.full_name() {
        "google.protobuf.Timestamp" => return timestamp(message, prefix, out),
        "dtks.common.v1.Period" => return period(message, prefix, out),
        "dtks.common.v1.Date" => return date(message, prefix, out),
        _ => {}
    }
    for (field, value) in message.fields() {
        let at = path(prefix, field.name());
        match value {
            Value::List(items) => {
                if items.len() > MAX_REPEATED {
                    out.push(
                        &at,
                        format!("at most {MAX_REPEATED} entries; {} were sent", items.len()),
                    );
                    continue;
                }
                for (i, item) in items.iter().enumerate() {
                    one(&field, item, &format!("{at}[{i}]"), out);
                }
            }
            Value::Map(entries) => {
                if entries.len() > MAX_REPEATED {
                    out.push(&at, format!("at most {MAX_REPEATED} entries"));
                }
            }
            value => one(&field, value, &at, out),
        }
    }
}

fn one(field: &FieldDescriptor, value: &Value, at: &str, out: &mut Violations) {
    let name = field.name();
    match value {
        Value::String(s) => text(name, s, at, out),
        Value::Bytes(b) if b.len() > MAX_TEXT_BYTES => {
            out.push(at, format!("at most {MAX_TEXT_BYTES} bytes"));
        }
        Value::EnumNumber(n) => {
            if let Kind::Enum(e) = field.kind()
                && e.get_value(*n).is_none()
            {
                out.push(at, format!("{n} is not a value of {}", e.name()));
            }
        }
        Value::I32(n) => number(name, f64::from(*n), at, out),
        Value::I64(n) => number(name, *n as f64, at, out),
        Value::U32(n) => number(name, f64::from(*n), at, out),
        Value::U64(n) => number(name, *n as f64, at, out),
        Value::F32(n) => number(name, f64::from(*n), at, out),
        Value::F64(n) => number(name, *n, at, out),
        Value::Message(m) => walk(m, at, out),
        _ => {}
    }
}

fn number(name: &str, n: f64, at: &str, out: &mut Violations) {
    if !n.is_finite() {
        return out.push(at, "must be a finite number");
    }
    let (low, high) = match name {
        "latitude" => (-90.0, 90.0),
        "longitude" => (-180.0, 180.0),
        _ => (
            0.0,
            BOUNDS
                .iter()
                .find(|(f, _)| *f == name)
                .map_or(MAX_AMOUNT, |(_, b)| *b),
        ),
    };
    if n < low || n > high {
        out.push(at, format!("must be from {low} to {high}"));
    }
}

/// Identifiers, codes, references and names: short.
fn is_short(name: &str) -> bool {
    name.ends_with("_id")
        || name.ends_with("_code")
        || name.ends_with("_name")
        || name.ends_with("_number")
        || name.ends_with("_nik")
        || name.ends_with("_hash")
        || name.ends_with("_role")
        || name.ends_with("_key")
        || name.ends_with("_by")
        || name.ends_with("_token")
        || matches!(
            name,
            "code"
                | "name"
                | "nik"
                | "kk_number"
                | "number"
                | "role"
                | "kind"
                | "subject"
                | "cursor"
                | "rt"
                | "rw"
                | "postal_code"
                | "birth_place"
                | "external_reference"
                | "requester"
                | "occupation"
                | "sector"
                | "street"
                | "qa_team"
                | "state"
                | "outcome"
                | "source"
                | "field"
                | "seed"
                | "skills"
                | "psks_potential"
                | "evidence_references"
                | "photo_references"
                | "corrected_fields"
                | "case_ids"
                | "recipient"
                | "phase"
                | "service"
        )
}

/// Characters that reorder text as displayed (names that read other than they are).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}' | '\u{034F}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
        )
        || is_bidi_control(c)
}

fn text(name: &str, s: &str, at: &str, out: &mut Violations) {
    let max = if name == "rule" {
        MAX_RULE_BYTES
    } else if is_short(name) {
        MAX_SHORT_BYTES
    } else {
        MAX_TEXT_BYTES
    };
    if s.len() > max {
        return out.push(at, format!("at most {max} bytes; {} were sent", s.len()));
    }
    if s.contains('\0') {
        return out.push(at, "must not contain a NUL character");
    }
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return out.push(at, "must not contain control characters");
    }
    if s.chars().any(is_bidi_control) {
        return out.push(at, "must not contain bidirectional override characters");
    }
    if !s.is_empty() && s.chars().all(is_invisible) && !s.chars().all(char::is_whitespace) {
        return out.push(at, "must contain a visible character");
    }
    if !s.is_empty()
        && (name.ends_with("region_code")
            || name == "village_code"
            || name.ends_with("regency_code"))
    {
        match dtks_domain::RegionCode::parse(s) {
            Err(e) => out.push(at, e.to_string()),
            Ok(code) => {
                let wanted = match name {
                    "village_code" => Some(dtks_domain::RegionLevel::Village),
                    n if n.ends_with("regency_code") => Some(dtks_domain::RegionLevel::Regency),
                    _ => None,
                };
                if let Some(level) = wanted
                    && code.level() != level
                {
                    out.push(at, format!("must be a {level:?} code"));
                }
            }
        }
    }
}

fn int(message: &DynamicMessage, name: &str) -> i64 {
    match message.get_field_by_name(name).as_deref() {
        Some(Value::I32(n)) => i64::from(*n),
        Some(Value::I64(n)) => *n,
        Some(Value::U32(n)) => i64::from(*n),
        _ => 0,
    }
}

fn timestamp(message: &DynamicMessage, at: &str, out: &mut Violations) {
    let (seconds, nanos) = (int(message, "seconds"), int(message, "nanos"));
    // 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, as google.protobuf.Timestamp says.
    if !(-62_135_596_800..=253_402_300_799).contains(&seconds) {
        out.push(path(at, "seconds"), "must lie between the years 1 and 9999");
    }
    if !(0..=999_999_999).contains(&nanos) {
        out.push(path(at, "nanos"), "must be from 0 to 999,999,999");
    }
}

fn period(message: &DynamicMessage, at: &str, out: &mut Violations) {
    let (year, month) = (int(message, "year"), int(message, "month"));
    if (year, month) == (0, 0) {
        return;
    }
    let valid = i32::try_from(year)
        .ok()
        .zip(u32::try_from(month).ok())
        .and_then(|(y, m)| dtks_domain::Period::new(y, m));
    if valid.is_none() {
        out.push(at, "must be a month from 2000-01 to 2100-12");
    }
}

fn date(message: &DynamicMessage, at: &str, out: &mut Violations) {
    let (year, month, day) = (
        int(message, "year"),
        int(message, "month"),
        int(message, "day"),
    );
    if (year, month, day) == (0, 0, 0) {
        return;
    }
    let valid = i32::try_from(year)
        .ok()
        .filter(|y| (1850..=2100).contains(y))
        .zip(u32::try_from(month).ok())
        .zip(u32::try_from(day).ok())
        .and_then(|((y, m), d)| chrono::NaiveDate::from_ymd_opt(y, m, d));
    if valid.is_none() {
        out.push(at, "must be a real date from 1850 to 2100");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtks_proto::common::v1 as pb;
    use tonic_types::StatusExt;

    fn fields(status: &tonic::Status) -> Vec<String> {
        status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    const HOUSEHOLD: &str = "dtks.common.v1.Household";

    fn household() -> pb::Household {
        pb::Household {
            address: Some(pb::Address {
                village_code: "32.04.05.2001".into(),
                ..Default::default()
            }),
            families: vec![pb::Family {
                members: vec![pb::Person {
                    full_name: "Asep Sunandar".into(),
                    monthly_income: 900_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_rpc_has_its_request_type() {
        assert!(METHODS.len() >= 61, "{}", METHODS.len());
        assert!(single_request("/dtks.intake.v1.IntakeService/SubmitProposal").is_some());
        assert!(single_request("/dtks.intake.v1.IntakeService/ImportProposals").is_none());
    }

    #[test]
    fn a_sound_household_passes() {
        check(HOUSEHOLD, &household()).expect("sound");
    }

    /// Findings 10, 11 and 14 of the probe, each refused naming its field.
    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let cases: Vec<(Box<dyn Fn(&mut pb::Household)>, &str)> = vec![
            (
                Box::new(|h| h.families[0].members[0].monthly_income = i64::MAX),
                "families[0].members[0].monthly_income",
            ),
            (
                Box::new(|h| h.families[0].members[0].monthly_income = -1),
                "families[0].members[0].monthly_income",
            ),
            (
                Box::new(|h| h.families[0].members[0].full_name = "Asep\0".into()),
                "families[0].members[0].full_name",
            ),
            (
                Box::new(|h| h.families[0].members[0].full_name = "\u{200B}\u{200B}".into()),
                "families[0].members[0].full_name",
            ),
            (
                Box::new(|h| h.families[0].members[0].full_name = "Asep\u{202E}".into()),
                "families[0].members[0].full_name",
            ),
            (
                Box::new(|h| h.families[0].members[0].full_name = "x".repeat(100_000)),
                "families[0].members[0].full_name",
            ),
            (
                Box::new(|h| h.families[0].members[0].full_name = "a\u{7}b".into()),
                "families[0].members[0].full_name",
            ),
            (
                Box::new(|h| h.families[0].members[0].sex = 999),
                "families[0].members[0].sex",
            ),
            (
                Box::new(|h| h.address.as_mut().unwrap().village_code = "zz".into()),
                "address.village_code",
            ),
            (
                Box::new(|h| h.address.as_mut().unwrap().village_code = "32.04".into()),
                "address.village_code",
            ),
            (
                Box::new(|h| h.families[0].members[0].skills = vec!["x".into(); 20_000]),
                "families[0].members[0].skills",
            ),
            (
                Box::new(|h| h.assets.get_or_insert_default().land_m2 = f64::NAN),
                "assets.land_m2",
            ),
            (
                Box::new(|h| h.assets.get_or_insert_default().land_m2 = f64::INFINITY),
                "assets.land_m2",
            ),
            (
                Box::new(|h| h.assets.get_or_insert_default().savings = -5),
                "assets.savings",
            ),
            (
                Box::new(|h| {
                    h.location = Some(pb::GeoPoint {
                        latitude: 91.0,
                        longitude: 107.0,
                    })
                }),
                "location.latitude",
            ),
            (
                Box::new(|h| {
                    h.assistance_history = vec![pb::AssistanceRecord {
                        programme_code: "PKH".into(),
                        period: Some(pb::Period {
                            year: 2026,
                            month: 13,
                        }),
                        amount: 1,
                    }]
                }),
                "assistance_history[0].period",
            ),
            (
                Box::new(|h| {
                    h.assistance_history = vec![pb::AssistanceRecord {
                        programme_code: "PKH".into(),
                        period: None,
                        amount: -750_000,
                    }]
                }),
                "assistance_history[0].amount",
            ),
            (
                Box::new(|h| {
                    h.families[0].members[0].birth_date = Some(pb::Date {
                        year: 2026,
                        month: 2,
                        day: 30,
                    })
                }),
                "families[0].members[0].birth_date",
            ),
        ];
        for (spoil, field) in cases {
            let mut h = household();
            spoil(&mut h);
            let refused = check(HOUSEHOLD, &h).expect_err(field);
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
            assert_eq!(fields(&refused), [field], "{refused:?}");
        }
    }

    /// Finding 12: a refusal of hundreds of violations stays small enough for any client.
    #[test]
    fn a_refusal_of_many_violations_stays_small() {
        let mut h = household();
        let member = h.families[0].members[0].clone();
        h.families[0].members = (0..900)
            .map(|_| pb::Person {
                full_name: "\0".repeat(200),
                occupation: "\0".repeat(200),
                ..member.clone()
            })
            .collect();
        let refused = check(HOUSEHOLD, &h).expect_err("refused");
        assert_eq!(fields(&refused).len(), crate::grpc::MAX_LISTED_VIOLATIONS);
        assert!(
            refused.message().contains("1799 more"),
            "{}",
            refused.message()
        );
        let trailer = refused.details().len() + refused.message().len();
        assert!(trailer < 4 * 1024, "{trailer} bytes");
    }
}
