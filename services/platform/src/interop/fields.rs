//! A record field by field, from the contract's descriptors: what a household's history
//! (*riwayat perubahan*) shows changed between two of its versions.
//!
//! Every field of the message is named by its path, defaults included, so that a value
//! set to zero shows as a change. Families are named by their KK number and members by
//! their NIK (by their place when they have none), so that a member leaving does not
//! renumber the others: `families[3204050505150001].members[3204051203850001].full_name`.
//! Enums read as their names, dates as `YYYY-MM-DD`, a list of plain values as one
//! comma-separated value.

use std::collections::BTreeMap;

use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value};

/// One field whose value differs: `before` is empty when it is new, `after` when gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub field: String,
    pub before: String,
    pub after: String,
}

/// The fields of `after` that differ from `before`, in path order; `full_name` names
/// both messages' type (e.g. `dtks.common.v1.Household`).
pub fn changes(
    full_name: &str,
    before: &impl prost::Message,
    after: &impl prost::Message,
) -> Vec<Changed> {
    let (old, new) = (flatten(full_name, before), flatten(full_name, after));
    let mut out = Vec::new();
    for (field, value) in &new {
        match old.get(field) {
            Some(was) if was == value => {}
            was => out.push(Changed {
                field: field.clone(),
                before: was.cloned().unwrap_or_default(),
                after: value.clone(),
            }),
        }
    }
    for (field, was) in old {
        if !new.contains_key(&field) {
            out.push(Changed {
                field,
                before: was,
                after: String::new(),
            });
        }
    }
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

/// Every field of `message` by path.
pub fn flatten(full_name: &str, message: &impl prost::Message) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let descriptor = crate::edge::POOL
        .as_ref()
        .and_then(|pool| pool.get_message_by_name(full_name));
    if let Some(descriptor) = descriptor
        && let Ok(dynamic) = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
    {
        walk(&dynamic, "", &mut out);
    }
    out
}

fn walk(message: &DynamicMessage, prefix: &str, out: &mut BTreeMap<String, String>) {
    if let Some(text) = calendar(message) {
        out.insert(prefix.to_owned(), text);
        return;
    }
    for field in message.descriptor().fields() {
        let at = if prefix.is_empty() {
            field.name().to_owned()
        } else {
            format!("{prefix}.{}", field.name())
        };
        let value = message.get_field(&field);
        match value.as_ref() {
            Value::List(items) if matches!(field.kind(), Kind::Message(_)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(m) = item {
                        walk(m, &format!("{at}[{}]", key(m, i)), out);
                    }
                }
            }
            Value::List(items) => {
                let values: Vec<String> = items.iter().map(|v| plain(&field.kind(), v)).collect();
                out.insert(at, values.join(", "));
            }
            Value::Message(m) => walk(m, &at, out),
            v => {
                out.insert(at, plain(&field.kind(), v));
            }
        }
    }
}

/// How an entry of a repeated message is named: a family by its KK number, a person
/// by NIK, anything else (or one without) by its place, `#1` first.
fn key(message: &DynamicMessage, i: usize) -> String {
    ["kk_number", "nik"]
        .iter()
        .find_map(|name| match message.get_field_by_name(name).as_deref() {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| format!("#{}", i + 1))
}

/// A date or a period, as people write them.
fn calendar(message: &DynamicMessage) -> Option<String> {
    let int = |name: &str| match message.get_field_by_name(name).as_deref() {
        Some(Value::I32(n)) => *n,
        _ => 0,
    };
    match message.descriptor().full_name() {
        "dtks.common.v1.Date" => Some(format!(
            "{:04}-{:02}-{:02}",
            int("year"),
            int("month"),
            int("day")
        )),
        "dtks.common.v1.Period" => Some(format!("{:04}-{:02}", int("year"), int("month"))),
        _ => None,
    }
}

fn plain(kind: &Kind, value: &Value) -> String {
    match (kind, value) {
        (Kind::Enum(e), Value::EnumNumber(n)) => e
            .get_value(*n)
            .map_or_else(|| n.to_string(), |v| v.name().to_owned()),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Bool(b)) => b.to_string(),
        (_, Value::I32(n)) => n.to_string(),
        (_, Value::I64(n)) => n.to_string(),
        (_, Value::U32(n)) => n.to_string(),
        (_, Value::U64(n)) => n.to_string(),
        (_, Value::F32(n)) => n.to_string(),
        (_, Value::F64(n)) => n.to_string(),
        (_, Value::Bytes(b)) => format!("{} bytes", b.len()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtks_proto::common::v1 as pb;

    const HOUSEHOLD: &str = "dtks.common.v1.Household";

    fn person(nik: &str, name: &str) -> pb::Person {
        pb::Person {
            nik: nik.into(),
            full_name: name.into(),
            birth_date: Some(pb::Date {
                year: 1985,
                month: 3,
                day: 12,
            }),
            work_status: pb::WorkStatus::Informal as i32,
            ..Default::default()
        }
    }

    fn household(members: Vec<pb::Person>) -> pb::Household {
        pb::Household {
            families: vec![pb::Family {
                kk_number: "3204050505150001".into(),
                members,
            }],
            assets: Some(pb::Assets {
                motorcycles: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_same_record_has_no_changes() {
        let h = household(vec![person("3204051203850001", "Asep")]);
        assert!(changes(HOUSEHOLD, &h, &h).is_empty());
    }

    #[test]
    fn members_are_named_by_nik_and_values_read_as_people_write_them() {
        let before = household(vec![
            person("3204051203850001", "Asep"),
            person("3204054607880002", "Siti"),
        ]);
        let mut after = household(vec![person("3204054607880002", "Siti")]);
        after.families[0].members[0].work_status = pb::WorkStatus::Formal as i32;
        after.families[0].members[0].birth_date = Some(pb::Date {
            year: 1988,
            month: 7,
            day: 6,
        });
        after.assets.as_mut().unwrap().motorcycles = 0;
        after.families[0].members.push(person("", "Bayi"));
        let found = changes(HOUSEHOLD, &before, &after);
        let of = |field: &str| found.iter().find(|c| c.field == field).cloned();
        let siti = "families[3204050505150001].members[3204054607880002]";
        assert_eq!(
            of(&format!("{siti}.work_status")).map(|c| (c.before, c.after)),
            Some(("WORK_STATUS_INFORMAL".into(), "WORK_STATUS_FORMAL".into()))
        );
        assert_eq!(
            of(&format!("{siti}.birth_date")).map(|c| (c.before, c.after)),
            Some(("1985-03-12".into(), "1988-07-06".into()))
        );
        // Set to zero is a change, not a field gone.
        assert_eq!(
            of("assets.motorcycles").map(|c| (c.before, c.after)),
            Some(("1".into(), "0".into()))
        );
        // Asep left: his fields are gone; the newborn without a NIK is named by place.
        let asep = of("families[3204050505150001].members[3204051203850001].full_name").unwrap();
        assert_eq!((asep.before.as_str(), asep.after.as_str()), ("Asep", ""));
        let baby = of("families[3204050505150001].members[#2].full_name").unwrap();
        assert_eq!((baby.before.as_str(), baby.after.as_str()), ("", "Bayi"));
        // Siti's name did not change, whatever her place.
        assert!(of(&format!("{siti}.full_name")).is_none());
    }
}
