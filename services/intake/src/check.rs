//! The checks at intake, before anything is written: who may send what through which
//! channel, the household parsed into the domain (structure, NIK/KK, relationships,
//! coordinates), required attributes, the village and the officer's scope. The result
//! is a [`Prepared`] proposal ready to store, or a [`Refusal`] naming every field.

use chrono::NaiveDate;
use dtks_domain::Violations;
use dtks_platform::auth::{Claims, Role};
use dtks_platform::{convert, events};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, ChangeType, Channel, Envelope, ProposalKind};
use dtks_proto::intake::v1::SubmitProposalRequest;
use prost::Message;
use tonic::Status;

/// Why a proposal is not taken.
#[derive(Debug)]
pub enum Refusal {
    /// Bad input: INVALID_ARGUMENT with every offending field.
    Invalid(Violations),
    /// The caller may not do this (role, channel or region scope): PERMISSION_DENIED.
    Denied { field: String, description: String },
}

impl Refusal {
    fn invalid(field: &str, description: impl Into<String>) -> Self {
        let mut v = Violations::default();
        v.push(field, description);
        Self::Invalid(v)
    }

    pub fn into_status(self) -> Status {
        match self {
            Self::Invalid(v) => dtks_platform::grpc::invalid_argument(&v),
            Self::Denied { field, description } => {
                Status::permission_denied(format!("{field}: {description}"))
            }
        }
    }

    /// The refusal as (field, description) pairs, for a bulk import's row result.
    pub fn into_fields(self) -> Vec<(String, String)> {
        match self {
            Self::Invalid(v) => v.0.into_iter().map(|f| (f.field, f.description)).collect(),
            Self::Denied { field, description } => vec![(field, description)],
        }
    }
}

/// One proposed person as the `proposal_persons` table holds it.
pub struct PersonRow {
    pub family_no: i16,
    pub member_no: i16,
    pub nik: String,
    pub kk_number: String,
    pub full_name: String,
    pub birth_date: NaiveDate,
    pub sex: i16,
    pub relationship: i16,
}

/// A proposal that passed every check, with its event, ready to store.
pub struct Prepared {
    pub proposal_id: uuid::Uuid,
    pub idempotency_key: String,
    pub channel: Channel,
    pub kind: ProposalKind,
    pub change_type: ChangeType,
    pub external_reference: String,
    pub region_code: String,
    pub submitted_by: String,
    /// The submitting officer's role (for the audit log).
    pub submitted_role: &'static str,
    pub reason: String,
    pub minutes: Option<(String, NaiveDate, i32)>,
    pub target_household_id: String,
    /// The canonical household, encoded.
    pub household: Vec<u8>,
    pub persons: Vec<PersonRow>,
    pub envelope: Envelope,
}

/// The roles that may submit through each channel.
pub fn channel_roles(channel: Channel) -> &'static [Role] {
    match channel {
        // Musdes/muskel results are entered by the village operator; the regency's
        // officers may enter them for villages without one.
        Channel::Musdes => &[Role::VillageOperator, Role::RegencyOfficer],
        Channel::Ministry => &[Role::MinistryAssessor, Role::PusdatinAdmin],
        Channel::SelfRegistration => &[Role::Public],
        // DTKS's own proposals of what Dukcapil recorded (intake's consumer, never the
        // API: no submitting role holds the service role).
        Channel::CivilRegistry => &[Role::Service],
        Channel::Unspecified => &[],
    }
}

pub const MAX_KEY: usize = 128;
pub const MAX_REASON: usize = 1_000;

/// Longest free text accepted in one field (names, places, occupations); a street
/// address may be longer.
pub const MAX_TEXT: usize = 200;
pub const MAX_STREET: usize = 500;

/// Why `text` may not be stored as a name or an address: control characters (a NUL
/// cannot even be stored) and bidirectional overrides, which make a name read
/// differently from what it holds.
fn text_fault(text: &str, max: usize) -> Option<String> {
    if text.chars().count() > max {
        return Some(format!("must be at most {max} characters"));
    }
    if text.chars().any(char::is_control) {
        return Some("must not hold control characters".into());
    }
    if text
        .chars()
        .any(|c| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        return Some("must not hold bidirectional override characters".into());
    }
    None
}

/// Checks every free-text field of the household.
fn free_text(h: &dtks_proto::common::v1::Household, v: &mut Violations) {
    if let Some(a) = &h.address {
        for (field, value, max) in [
            ("street", &a.street, MAX_STREET),
            ("rt", &a.rt, MAX_TEXT),
            ("rw", &a.rw, MAX_TEXT),
            ("postal_code", &a.postal_code, MAX_TEXT),
        ] {
            if let Some(why) = text_fault(value, max) {
                v.push(format!("household.address.{field}"), why);
            }
        }
    }
    for (fi, family) in h.families.iter().enumerate() {
        for (mi, p) in family.members.iter().enumerate() {
            let path = format!("household.families[{fi}].members[{mi}]");
            for (field, value) in [
                ("full_name", &p.full_name),
                ("birth_place", &p.birth_place),
                ("occupation", &p.occupation),
                ("sector", &p.sector),
            ] {
                if let Some(why) = text_fault(value, MAX_TEXT) {
                    v.push(format!("{path}.{field}"), why);
                }
            }
            for (si, skill) in p.skills.iter().enumerate() {
                if let Some(why) = text_fault(skill, MAX_TEXT) {
                    v.push(format!("{path}.skills[{si}]"), why);
                }
            }
        }
    }
}

/// Runs every intake check on `req` sent by `who`.
pub fn prepare(
    who: &Claims,
    req: SubmitProposalRequest,
    today: NaiveDate,
) -> Result<Prepared, Refusal> {
    let channel = Channel::try_from(req.channel).unwrap_or(Channel::Unspecified);
    if channel == Channel::Unspecified {
        return Err(Refusal::invalid(
            "channel",
            "must be MUSDES, MINISTRY or SELF_REGISTRATION",
        ));
    }
    if !channel_roles(channel).contains(&who.role) {
        return Err(Refusal::Denied {
            field: "channel".into(),
            description: format!(
                "role {:?} may not submit through {}",
                who.role,
                channel.as_str_name()
            ),
        });
    }
    let kind = ProposalKind::try_from(req.kind).unwrap_or(ProposalKind::Unspecified);
    let mut v = Violations::default();
    if kind == ProposalKind::Unspecified {
        v.push("kind", "must be ADD, CHANGE or REMOVE");
    }
    if channel == Channel::SelfRegistration && kind != ProposalKind::Add {
        v.push(
            "kind",
            "self-registration proposes a new household (ADD); changes go through the village",
        );
    }
    for (field, value, max) in [
        ("idempotency_key", &req.idempotency_key, MAX_KEY),
        ("external_reference", &req.external_reference, MAX_KEY),
        ("reason", &req.reason, MAX_REASON),
    ] {
        if value.chars().count() > max {
            v.push(field, format!("must be at most {max} characters"));
        }
    }
    let change_type = ChangeType::try_from(req.change_type).unwrap_or(ChangeType::Unspecified);
    if kind == ProposalKind::Change && change_type == ChangeType::Unspecified {
        v.push(
            "change_type",
            "a CHANGE names what changes: NEW_MEMBER, DEATH, MOVED or CORRECTION",
        );
    }
    if matches!(kind, ProposalKind::Change | ProposalKind::Remove) && req.reason.trim().is_empty() {
        v.push("reason", "a CHANGE or REMOVE proposal states its reason");
    }
    let removal_reason =
        ev::RemovalReason::try_from(req.removal_reason).unwrap_or(ev::RemovalReason::Unspecified);
    match (kind, removal_reason) {
        (ProposalKind::Remove, ev::RemovalReason::Unspecified) => v.push(
            "removal_reason",
            "a REMOVE names why the household leaves: NOT_ELIGIBLE, MOVED_AWAY, DUPLICATE, ALL_DECEASED or NOT_FOUND",
        ),
        (ProposalKind::Remove, _) | (_, ev::RemovalReason::Unspecified) => {}
        _ => v.push("removal_reason", "only a REMOVE names a removal reason"),
    }
    let minutes = if channel == Channel::Musdes {
        minutes(req.minutes.as_ref(), today, &mut v)
    } else {
        None
    };
    let Some(pb_household) = req.household.as_ref() else {
        v.push("household", "is required");
        return Err(Refusal::Invalid(v));
    };
    free_text(pb_household, &mut v);
    let target = pb_household.household_id.trim().to_owned();
    match kind {
        ProposalKind::Add if !target.is_empty() => v.push(
            "household.household_id",
            "must be empty for ADD: DTKS assigns it when the household is accepted",
        ),
        ProposalKind::Change | ProposalKind::Remove if uuid::Uuid::parse_str(&target).is_err() => v
            .push(
                "household.household_id",
                "a CHANGE or REMOVE names the DTKS household (a UUID)",
            ),
        _ => {}
    }

    // REMOVE needs only the address (for the region and its scope); ADD and CHANGE carry
    // the household's whole new state, which must be sound and complete.
    let (canonical, region_code, persons) = if kind == ProposalKind::Remove {
        let village = pb_household
            .address
            .as_ref()
            .map(|a| a.village_code.clone())
            .unwrap_or_default();
        match dtks_domain::RegionCode::parse(&village) {
            Ok(code) if code.level() == dtks_domain::RegionLevel::Village => {}
            Ok(_) => v.push(
                "household.address.village_code",
                "must be a village (desa/kelurahan) code such as 32.04.01.2001",
            ),
            Err(e) => v.push("household.address.village_code", e.to_string()),
        }
        let canonical = pb::Household {
            household_id: target.clone(),
            address: Some(pb::Address {
                village_code: village.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        (Some(canonical), village, Vec::new())
    } else {
        match convert::household_from_proto(pb_household, today) {
            Ok(household) => {
                v.0.extend(household.missing_attributes().0);
                if kind == ProposalKind::Change
                    && change_type == ChangeType::Death
                    && !household.persons().any(|p| p.deceased)
                {
                    v.push(
                        "household.families",
                        "a DEATH change marks the member who died (deceased = true)",
                    );
                }
                let region = household
                    .village()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let persons = person_rows(&household);
                (
                    Some(convert::household_to_proto(&household)),
                    region,
                    persons,
                )
            }
            Err(violations) => {
                v.0.extend(violations.0);
                (None, String::new(), Vec::new())
            }
        }
    };
    if !region_code.is_empty()
        && !v
            .0
            .iter()
            .any(|f| f.field == "household.address.village_code")
        && !dtks_platform::reference::village_codes().contains(region_code.as_str())
    {
        v.push(
            "household.address.village_code",
            format!("{region_code} is not a Kemendagri village code"),
        );
    }
    if !v.is_empty() {
        return Err(Refusal::Invalid(v));
    }
    let canonical = canonical.expect("parsed when there are no violations");
    // A citizen registers their own household wherever they live; officers only within
    // their region.
    if who.role != Role::Public && !who.covers(&region_code) {
        return Err(Refusal::Denied {
            field: "household.address.village_code".into(),
            description: format!(
                "{region_code} is outside the caller's region scope {}",
                if who.region.is_empty() {
                    "(national)"
                } else {
                    &who.region
                }
            ),
        });
    }

    let proposal_id = uuid::Uuid::now_v7();
    let payload = ev::ProposalSubmitted {
        proposal_id: proposal_id.to_string(),
        channel: channel as i32,
        kind: kind as i32,
        household: Some(canonical),
        submitted_by: who.sub.clone(),
        change_type: change_type as i32,
        reason: req.reason.trim().to_owned(),
        external_reference: req.external_reference.clone(),
        removal_reason: removal_reason as i32,
    };
    let envelope = events::envelope(events::PROPOSAL_SUBMITTED, "intake", &region_code, &payload);
    Ok(Prepared {
        proposal_id,
        idempotency_key: req.idempotency_key,
        channel,
        kind,
        change_type,
        external_reference: req.external_reference,
        region_code,
        submitted_by: who.sub.clone(),
        submitted_role: who.role.as_str(),
        reason: payload.reason.clone(),
        minutes,
        target_household_id: target,
        household: payload
            .household
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default(),
        persons,
        envelope,
    })
}

/// The musdes/muskel minutes (berita acara): number, a date neither in the future nor
/// more than a year old, and the attendance.
fn minutes(
    m: Option<&dtks_proto::intake::v1::Minutes>,
    today: NaiveDate,
    v: &mut Violations,
) -> Option<(String, NaiveDate, i32)> {
    let Some(m) = m else {
        v.push(
            "minutes",
            "a MUSDES proposal carries the minutes (berita acara) of the deliberation",
        );
        return None;
    };
    let number = m.number.trim();
    if number.is_empty() {
        v.push("minutes.number", "is required");
    } else if number.chars().count() > 64 {
        v.push("minutes.number", "must be at most 64 characters");
    }
    let date = m.date.as_ref().and_then(|d| {
        NaiveDate::from_ymd_opt(
            d.year,
            u32::try_from(d.month).ok()?,
            u32::try_from(d.day).ok()?,
        )
    });
    match date {
        None => v.push("minutes.date", "is required and must be a calendar date"),
        Some(d) => {
            if let Some(problem) = dtks_domain::minutes::date_problem(d, today) {
                v.push("minutes.date", problem);
            }
        }
    }
    if m.attendees == 0 {
        v.push("minutes.attendees", "a deliberation has attendees");
    }
    Some((number.to_owned(), date?, i32::try_from(m.attendees).ok()?))
}

fn person_rows(household: &dtks_domain::Household) -> Vec<PersonRow> {
    let mut rows = Vec::new();
    for (fi, family) in household.families.iter().enumerate() {
        for (mi, p) in family.members.iter().enumerate() {
            rows.push(PersonRow {
                family_no: fi as i16,
                member_no: mi as i16,
                nik: p
                    .nik
                    .as_ref()
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
                kk_number: family
                    .kk_number
                    .as_ref()
                    .map(|k| k.as_str().to_owned())
                    .unwrap_or_default(),
                full_name: p.full_name.clone(),
                birth_date: p.birth_date,
                sex: p.sex.code() as i16,
                relationship: p.relationship.code() as i16,
            });
        }
    }
    rows
}

#[cfg(test)]
mod props;
