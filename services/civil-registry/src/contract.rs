//! The request schemas of the DCI registry API (`registry_core_api_v1.0.0`), as data,
//! and one checker for them: every message is held to its operation's schema before
//! anything reads it, so a field the standard types or requires is never taken on
//! trust. A refusal names the first field that departs and how.
//!
//! Only what the standard says is checked here (types, required members, enums,
//! lengths, date-times, URIs, `oneOf`); what this registry supports within it (which
//! identifier types, which predicate attributes) is the search's business.

use serde_json::Value;

/// A JSON schema, reduced to what the DCI request schemas use.
#[derive(Debug)]
pub enum Shape {
    /// Any value.
    Any,
    /// The standard's `AttributeValue`: a string, a number, a boolean or an object.
    Scalar,
    Str(Text),
    /// A whole number.
    Int,
    /// Any number.
    Num,
    Bool,
    /// An object: its members (name, required, shape); other members are allowed.
    Obj(&'static [(&'static str, bool, &'static Shape)]),
    /// An array of this shape.
    Arr(&'static Shape),
    /// Exactly one of these.
    OneOf(&'static [&'static Shape]),
    /// Anything but an array holding something other than text.
    IdOrIds,
}

/// What a string must be.
#[derive(Debug)]
pub struct Text {
    pub max: Option<usize>,
    pub format: Format,
    /// When not empty, the only values allowed.
    pub values: &'static [&'static str],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Format {
    Plain,
    /// RFC 3339 with a time zone.
    DateTime,
    /// An absolute URI (scheme, then `:`).
    Uri,
    /// Three lower-case letters (`LanguageCode`).
    Language,
}

const fn text(max: Option<usize>, format: Format, values: &'static [&'static str]) -> Shape {
    Shape::Str(Text {
        max,
        format,
        values,
    })
}

pub static STR: Shape = text(None, Format::Plain, &[]);
static ID: Shape = text(Some(99), Format::Plain, &[]);
pub static DATE_TIME: Shape = text(None, Format::DateTime, &[]);
pub static URI: Shape = text(None, Format::Uri, &[]);
static LANGUAGE: Shape = text(None, Format::Language, &[]);
pub static OBJECT: Shape = Shape::Obj(&[]);
static QUERY_TYPE: Shape = text(
    None,
    Format::Plain,
    &["idtype-value", "expression", "predicate"],
);

/// `MsgHeader_V1.0.0`, its `action` the one value given.
macro_rules! header {
    ($action:literal) => {
        $crate::contract::Shape::Obj(&[
            ("version", false, &$crate::contract::STR),
            ("message_id", true, &$crate::contract::STR),
            ("message_ts", true, &$crate::contract::DATE_TIME),
            (
                "action",
                true,
                &$crate::contract::Shape::Str($crate::contract::Text {
                    max: None,
                    format: $crate::contract::Format::Plain,
                    values: &[$action],
                }),
            ),
            ("sender_id", true, &$crate::contract::STR),
            ("sender_uri", false, &$crate::contract::URI),
            ("receiver_id", false, &$crate::contract::STR),
            ("total_count", true, &$crate::contract::Shape::Int),
            ("is_msg_encrypted", false, &$crate::contract::Shape::Bool),
            ("meta", false, &$crate::contract::OBJECT),
        ])
    };
}
pub(crate) use header;

/// `AttributeValue`: a string, a number, true or false, or an object (never an array
/// or null).
static ATTRIBUTE_VALUE: Shape = Shape::Scalar;

static PREDICATE: Shape = Shape::Obj(&[
    ("attribute_name", true, &STR),
    (
        "operator",
        true,
        &text(None, Format::Plain, &["gt", "lt", "eq", "ge", "le", "in"]),
    ),
    ("attribute_value", true, &ATTRIBUTE_VALUE),
]);

/// `RegistryQueries`: an expression template, an identifier, or predicates.
static QUERIES: Shape = Shape::OneOf(&[
    &Shape::Obj(&[("type", false, &STR), ("value", false, &OBJECT)]),
    &Shape::Obj(&[("type", false, &STR), ("value", false, &ATTRIBUTE_VALUE)]),
    &Shape::Arr(&Shape::Obj(&[
        ("seq_num", false, &Shape::Num),
        ("expression1", true, &PREDICATE),
        (
            "condition",
            false,
            &text(None, Format::Plain, &["and", "or", "not"]),
        ),
        ("expression2", false, &PREDICATE),
    ])),
]);

static PAGINATION: Shape = Shape::Obj(&[
    ("page_size", true, &Shape::Num),
    ("page_number", false, &Shape::Num),
]);

static SORT: Shape = Shape::Arr(&Shape::Obj(&[
    ("attribute_name", false, &STR),
    (
        "sort_order",
        false,
        &text(None, Format::Plain, &["asc", "desc"]),
    ),
]));

/// `SearchRequest`.
pub static SEARCH: Shape = Shape::Obj(&[
    ("transaction_id", true, &ID),
    (
        "search_request",
        true,
        &Shape::Arr(&Shape::Obj(&[
            ("reference_id", true, &STR),
            ("timestamp", true, &DATE_TIME),
            (
                "search_criteria",
                true,
                &Shape::Obj(&[
                    ("version", false, &STR),
                    ("reg_type", false, &STR),
                    ("reg_event_type", false, &STR),
                    ("query_type", true, &QUERY_TYPE),
                    ("query", true, &QUERIES),
                    ("sort", false, &SORT),
                    ("pagination", false, &PAGINATION),
                    ("consent", false, &OBJECT),
                    ("authorize", false, &OBJECT),
                ]),
            ),
            ("locale", false, &LANGUAGE),
        ])),
    ),
]);

/// `SubscribeRequest`.
pub static SUBSCRIBE: Shape = Shape::Obj(&[
    ("transaction_id", true, &ID),
    (
        "subscribe_request",
        true,
        &Shape::Arr(&Shape::Obj(&[
            ("reference_id", true, &STR),
            ("timestamp", true, &DATE_TIME),
            (
                "subscribe_criteria",
                true,
                &Shape::Obj(&[
                    ("version", false, &STR),
                    ("reg_type", false, &STR),
                    ("reg_event_type", true, &STR),
                    (
                        "frequency",
                        false,
                        &Shape::Obj(&[
                            ("start_time", true, &DATE_TIME),
                            ("end_time", true, &DATE_TIME),
                            ("frequency", true, &STR),
                        ]),
                    ),
                    ("filter_type", false, &QUERY_TYPE),
                    ("filter", true, &QUERIES),
                    ("notify_record_type", true, &STR),
                    ("authorize", false, &OBJECT),
                ]),
            ),
            ("locale", false, &LANGUAGE),
        ])),
    ),
]);

/// `UnSubscribeRequest`. The standard requires `timestamp` and `sunscription_codes`
/// (sic) while it describes `timesstamp` and `subscription_codes`; the required names
/// are required, the described ones are typed, and the codes are read from either.
pub static UNSUBSCRIBE: Shape = Shape::Obj(&[
    ("transaction_id", true, &ID),
    ("timesstamp", false, &DATE_TIME),
    ("timestamp", true, &Shape::Any),
    ("subscription_codes", false, &Shape::Arr(&ID)),
    ("sunscription_codes", true, &Shape::Any),
]);

/// `TxnStatusRequest`.
pub static TXN_STATUS: Shape = Shape::Obj(&[
    ("transaction_id", true, &ID),
    (
        "txnstatus_request",
        true,
        &Shape::Obj(&[
            ("reference_id", true, &STR),
            (
                "txn_type",
                true,
                &text(None, Format::Plain, &["search", "subscribe", "unsubscribe"]),
            ),
            (
                "attribute_type",
                true,
                &text(
                    None,
                    Format::Plain,
                    &[
                        "transaction_id",
                        "reference_id_list",
                        "correlation_id",
                        "subscription_code_list",
                    ],
                ),
            ),
            ("attribute_value", true, &STATUS_VALUE),
            ("locale", false, &LANGUAGE),
        ]),
    ),
]);

/// A status request's `attribute_value`: an id, or a list of ids (the standard's
/// `oneOf` of two identical string schemas and two lists, taken as `anyOf`; its
/// untyped subscription-code list admits any other value too).
static STATUS_VALUE: Shape = Shape::IdOrIds;

/// The first departure of `value` from `shape`, as `path: why`.
pub fn check(value: &Value, shape: &Shape) -> Result<(), String> {
    let mut path = String::new();
    walk(value, shape, &mut path)
}

fn at(path: &str) -> &str {
    if path.is_empty() { "the body" } else { path }
}

fn walk(value: &Value, shape: &Shape, path: &mut String) -> Result<(), String> {
    let wrong = |what: &str, path: &str| Err(format!("{}: must be {what}", at(path)));
    match shape {
        Shape::Any => Ok(()),
        // The standard's `oneOf` of string, integer, number, boolean and object, taken as
        // it is meant: a whole number is a value although it is both integer and number.
        Shape::Scalar => match value {
            Value::Array(_) | Value::Null => {
                wrong("a string, a number, true, false or an object", path)
            }
            _ => Ok(()),
        },
        Shape::Int => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
            Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => Ok(()),
            _ => wrong("a whole number", path),
        },
        Shape::Num => match value {
            Value::Number(_) => Ok(()),
            _ => wrong("a number", path),
        },
        Shape::Bool => match value {
            Value::Bool(_) => Ok(()),
            _ => wrong("true or false", path),
        },
        Shape::Str(t) => {
            let Value::String(s) = value else {
                return wrong("a string", path);
            };
            if t.max.is_some_and(|max| s.chars().count() > max) {
                return wrong(&format!("at most {} characters", t.max.unwrap_or(0)), path);
            }
            if !t.values.is_empty() && !t.values.contains(&s.as_str()) {
                return wrong(&format!("one of {}", t.values.join(", ")), path);
            }
            match t.format {
                Format::Plain => Ok(()),
                Format::DateTime if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Ok(()),
                Format::DateTime => wrong("an ISO 8601 date-time with a time zone", path),
                Format::Uri if is_uri(s) => Ok(()),
                Format::Uri => wrong("an absolute URI", path),
                Format::Language if s.len() == 3 && s.bytes().all(|b| b.is_ascii_lowercase()) => {
                    Ok(())
                }
                Format::Language => wrong("a three-letter language code", path),
            }
        }
        Shape::Arr(item) => {
            let Value::Array(items) = value else {
                return wrong("an array", path);
            };
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(v, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Shape::Obj(members) => {
            let Value::Object(map) = value else {
                return wrong("an object", path);
            };
            for (name, required, shape) in *members {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(name);
                match map.get(*name) {
                    Some(v) => walk(v, shape, path)?,
                    None if *required => return Err(format!("{path}: is required")),
                    None => {}
                }
                path.truncate(len);
            }
            Ok(())
        }
        Shape::IdOrIds => match value {
            Value::Array(items) if !items.iter().all(Value::is_string) => {
                wrong("an id or a list of ids", path)
            }
            _ => Ok(()),
        },
        Shape::OneOf(shapes) => {
            let fits = shapes
                .iter()
                .filter(|s| walk(value, s, &mut path.clone()).is_ok())
                .count();
            match fits {
                1 => Ok(()),
                0 => wrong("an identifier, an expression or a list of predicates", path),
                _ => wrong("exactly one form of query", path),
            }
        }
    }
}

/// `scheme:rest`, the scheme a letter then letters, digits, `+`, `-` or `.` (RFC 3986).
fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static SEARCH_HEADER: Shape = header!("search");

    fn header_value() -> Value {
        json!({
            "message_id": "m1", "message_ts": "2026-01-02T03:04:05Z", "action": "search",
            "sender_id": "dtks-matching", "total_count": 1,
        })
    }

    #[test]
    fn a_header_departing_from_the_standard_is_refused_naming_the_field() {
        assert_eq!(check(&header_value(), &SEARCH_HEADER), Ok(()));
        for (field, value, why) in [
            (
                "message_ts",
                json!("yesterday"),
                "message_ts: must be an ISO 8601",
            ),
            (
                "total_count",
                json!("1"),
                "total_count: must be a whole number",
            ),
            (
                "action",
                json!("subscribe"),
                "action: must be one of search",
            ),
            (
                "sender_uri",
                json!("not a uri"),
                "sender_uri: must be an absolute URI",
            ),
            (
                "is_msg_encrypted",
                json!("no"),
                "is_msg_encrypted: must be true or false",
            ),
            ("meta", json!([]), "meta: must be an object"),
        ] {
            let mut h = header_value();
            h[field] = value;
            let e = check(&h, &SEARCH_HEADER).expect_err(field);
            assert!(e.starts_with(why), "{e}");
        }
        let mut h = header_value();
        h.as_object_mut().map(|m| m.remove("sender_id"));
        assert_eq!(
            check(&h, &SEARCH_HEADER),
            Err("sender_id: is required".into())
        );
    }

    #[test]
    fn a_search_is_held_to_its_schema_down_to_the_predicates() {
        let search = |query: Value| {
            json!({
                "transaction_id": "t1",
                "search_request": [{
                    "reference_id": "1", "timestamp": "2026-01-02T03:04:05+07:00",
                    "search_criteria": { "query_type": "predicate", "query": query },
                }],
            })
        };
        let predicate =
            json!({"attribute_name": "sex", "operator": "eq", "attribute_value": "male"});
        assert_eq!(
            check(&search(json!([{"expression1": predicate}])), &SEARCH),
            Ok(())
        );
        assert_eq!(
            check(&search(json!({"type": "NIK", "value": "3204"})), &SEARCH),
            Ok(())
        );
        // A bare predicate is not an item of the standard's predicate list.
        assert!(check(&search(json!([predicate])), &SEARCH).is_err());
        let e = check(
            &search(json!([{"expression1": {"attribute_name": "sex", "operator": "like", "attribute_value": "m"}}])),
            &SEARCH,
        )
        .expect_err("unknown operator");
        assert!(e.contains("search_request[0].search_criteria.query"), "{e}");
        let mut long = search(json!({"type": "NIK", "value": "1"}));
        long["transaction_id"] = json!("x".repeat(100));
        assert_eq!(
            check(&long, &SEARCH),
            Err("transaction_id: must be at most 99 characters".into())
        );
    }
}
