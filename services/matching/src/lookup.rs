//! Looking persons up without changing DTKS: one person (`MatchPerson`) or a chunk of a
//! wave (`MatchWave`). Each is identified in the civil registry, checked against the
//! persons DTKS holds, and the lookup audited (who, for which villages; never a NIK).

use dtks_platform::auth::Claims;
use dtks_platform::grpc;
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use dtks_proto::matching::v1::{MatchPersonRequest, MatchPersonResponse, MatchWaveResponse};
use sea_orm::{DatabaseConnection, TransactionTrait};
use tonic::Status;

use crate::error::Result;
use crate::matcher::{self, Matcher};

/// A match request checked at the edge of MatchPerson and of each person of a wave:
/// the person and their village, or the field refused and why.
pub fn admit(who: &Claims, request: MatchPersonRequest) -> Result<(pb::Person, String), Status> {
    let MatchPersonRequest {
        person,
        village_code,
    } = request;
    // A NIK that is not a NIK is not refused: the person is matched on the other
    // fields, and the registry's NIK comes back as a correction.
    let person = person.ok_or_else(|| grpc::invalid_field("person", "is required"))?;
    if !dtks_platform::reference::village_codes().contains(village_code.as_str()) {
        return Err(grpc::invalid_field(
            "village_code",
            "is not a village code of the reference data",
        ));
    }
    who.require_region(&village_code)?;
    Ok((person, village_code))
}

/// The answer for an assessed person once DTKS has been checked.
pub fn response_of(assessed: &matcher::Assessed, m: ev::PersonMatch) -> MatchPersonResponse {
    let reason = assessed
        .review
        .as_ref()
        .map(|(_, reason)| reason.clone())
        .unwrap_or_default();
    let nik_holder = assessed.holder.as_ref().map(|h| pb::Person {
        nik: h.nik.clone(),
        full_name: h.full_name.clone(),
        birth_date: crate::link::date_of(&h.birth_date),
        sex: crate::link::sex_code(&h.sex).map_or(0, i32::from),
        ..Default::default()
    });
    MatchPersonResponse {
        outcome: m.outcome,
        corrections: m.corrections,
        score: m.link_probability,
        duplicate_household_id: m.duplicate_household_id,
        duplicate_proposal_id: m.duplicate_proposal_id,
        duplicate_kk_number: m.duplicate_kk_number,
        reason,
        nik_holder,
        model_version: m.model_version,
    }
}

impl crate::Api {
    /// MatchPerson: one person of a proposal matched against the civil registry and DTKS.
    pub(crate) async fn match_person(
        &self,
        who: &Claims,
        req: &MatchPersonRequest,
    ) -> Result<MatchPersonResponse> {
        let (one, village_code) = admit(who, req.clone())?;
        person(&self.db, &self.matcher, who, one, village_code).await
    }
}

/// One person, all of their registry searches asked at once.
pub async fn person(
    db: &DatabaseConnection,
    matcher: &Matcher,
    who: &Claims,
    person: pb::Person,
    village_code: String,
) -> Result<MatchPersonResponse> {
    let assessed = matcher
        .assess(
            &[(&person, village_code.as_str())],
            matcher::Schedule::AtOnce,
        )
        .await?
        .pop()
        .unwrap_or_default();
    // The duplicate check looks at DTKS without changing it: the transaction is rolled
    // back.
    let household = pb::Household {
        address: Some(pb::Address {
            village_code: village_code.clone(),
            ..Default::default()
        }),
        families: vec![pb::Family {
            members: vec![person],
            ..Default::default()
        }],
        ..Default::default()
    };
    let txn = db.begin().await?;
    let settled = crate::settle::settle(
        &txn,
        &matcher.current().0,
        uuid::Uuid::nil(),
        &village_code,
        &household,
        vec![assessed.clone()],
        false,
    )
    .await?;
    txn.rollback().await?;
    let m = settled.into_iter().next().unwrap_or_default();
    dtks_platform::audit::record(
        db,
        who,
        "matching.MatchPerson",
        std::slice::from_ref(&village_code),
    )
    .await?;
    Ok(response_of(&assessed, m))
}

/// A chunk of a wave, `(reference, person, village)` each, assessed together; the
/// lookup is audited before any result leaves.
pub async fn chunk(
    db: DatabaseConnection,
    matcher: Matcher,
    who: Claims,
    chunk: Vec<(String, pb::Person, String)>,
) -> Result<Vec<MatchWaveResponse>> {
    let subjects: Vec<(&pb::Person, &str)> =
        chunk.iter().map(|(_, p, v)| (p, v.as_str())).collect();
    let assessed = matcher.assess_many(&subjects).await?;
    let mut villages: Vec<String> = chunk.iter().map(|(_, _, v)| v.clone()).collect();
    villages.sort();
    villages.dedup();
    dtks_platform::audit::record(&db, &who, "matching.MatchWave", &villages).await?;
    Ok(chunk
        .into_iter()
        .zip(assessed)
        .map(|((reference, _, _), a)| {
            let m = ev::PersonMatch {
                outcome: a.outcome as i32,
                corrections: a.corrections.clone(),
                link_probability: a.probability,
                model_version: a.model_version.clone(),
                ..Default::default()
            };
            MatchWaveResponse {
                reference,
                result: Some(response_of(&a, m)),
                refused: vec![],
            }
        })
        .collect())
}
