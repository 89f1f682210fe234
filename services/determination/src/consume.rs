//! The events determination consumes: accepted and removed households kept in the
//! master registry, each change a new version.

use dtks_platform::bus::{EventHandler, Handled, HandlerError};
use dtks_platform::db::stmt;
use dtks_platform::{convert, events};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, Envelope};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use sha2::{Digest, Sha256};

/// Takes accepted households into the master registry.
pub(crate) struct Accepted;

impl EventHandler for Accepted {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Handled {
        let at = envelope
            .occurred_at
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or_else(dtks_platform::clock::now);
        if envelope.r#type == events::HOUSEHOLD_REMOVED {
            let removed: ev::HouseholdRemoved = events::payload(envelope)?;
            let id = uuid::Uuid::parse_str(&removed.household_id)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let proposal = optional_uuid(&removed.proposal_id)?;
            let kind = proposal.map(|_| ev::ProposalKind::Remove as i16);
            txn.execute_raw(stmt(
                "WITH r AS (
                     UPDATE registry_households SET removed_at = $3, removal_reason = $2, change_seq = nextval('registry_change_seq')
                     WHERE household_id = $1 AND removed_at IS NULL
                     RETURNING household_id, change_seq, region_code)
                 INSERT INTO registry_versions (household_id, version, region_code, valid_from, household, removal_reason,
                                                kind, reason, proposal_id, case_id, decided_by, removal_code)
                 SELECT household_id, change_seq, region_code, $3, NULL, $2, $4, $2, $5, $6, $7, $8 FROM r",
                [
                    id.into(),
                    removed.reason.into(),
                    at.into(),
                    kind.into(),
                    proposal.into(),
                    optional_uuid(&removed.case_id)?.into(),
                    removed.decided_by.into(),
                    (removed.removal_reason as i16).into(),
                ],
            ))
            .await?;
            return Ok(());
        }
        let accepted: ev::HouseholdAccepted = events::payload(envelope)?;
        let id = uuid::Uuid::parse_str(&accepted.household_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let household = accepted.household.unwrap_or_default();
        let persons: usize = household.families.iter().map(|f| f.members.len()).sum();
        let inputs = model_inputs(&household, at.date_naive())
            .map_err(|e| HandlerError::Permanent(format!("household {id}: {e}")))?;
        let bytes = household.encode_to_vec();
        let digest = Sha256::digest(&bytes).to_vec();
        txn.execute_raw(stmt(
            "WITH h AS (
                 INSERT INTO registry_households (household_id, region_code, persons, change_seq, verified_at, digest, inputs)
                 VALUES ($1, $2, $4, nextval('registry_change_seq'), $5, $6, $7)
                 ON CONFLICT (household_id) DO UPDATE SET region_code = EXCLUDED.region_code, persons = EXCLUDED.persons,
                     change_seq = EXCLUDED.change_seq, verified_at = EXCLUDED.verified_at, digest = EXCLUDED.digest,
                     inputs = EXCLUDED.inputs, removed_at = NULL, removal_reason = NULL
                 RETURNING household_id, change_seq, region_code)
             INSERT INTO registry_versions (household_id, version, region_code, valid_from, household, digest,
                                            kind, change_type, reason, proposal_id, case_id, decided_by)
             SELECT household_id, change_seq, region_code, $5, $3, $6, $8, $9, $10, $11, $12, $13 FROM h",
            [
                id.into(),
                envelope.region_code.clone().into(),
                bytes.into(),
                (persons as i32).into(),
                at.into(),
                digest.into(),
                inputs.into(),
                // Why the version exists.
                (accepted.kind as i16).into(),
                (accepted.change_type as i16).into(),
                accepted.reason.into(),
                optional_uuid(&accepted.proposal_id)?.into(),
                optional_uuid(&accepted.case_id)?.into(),
                accepted.decided_by.into(),
            ],
        ))
        .await?;
        Ok(())
    }
}

/// A UUID an event may leave empty.
fn optional_uuid(text: &str) -> Result<Option<uuid::Uuid>, HandlerError> {
    (!text.is_empty())
        .then(|| uuid::Uuid::parse_str(text).map_err(|e| HandlerError::Permanent(e.to_string())))
        .transpose()
}

/// The welfare model's stored inputs of a registry household.
pub fn model_inputs(household: &pb::Household, on: chrono::NaiveDate) -> Result<Vec<u8>, String> {
    let household = convert::household_from_proto(household, on)
        .map_err(|v| format!("the registry's record is not a valid household: {v}"))?;
    Ok(dtks_domain::pmt::Inputs::of(&household).encode())
}

/// Computes the model's inputs of every current household that has none (rows older
/// than them) or has them in an older format, a few thousand at a time.
pub(crate) async fn backfill_inputs(db: &DatabaseConnection) -> anyhow::Result<u64> {
    let today = dtks_platform::clock::today();
    let mut done = 0u64;
    loop {
        let rows = db
            .query_all_raw(stmt(
                "SELECT h.household_id, v.household FROM registry_households h
                 JOIN registry_versions v ON v.household_id = h.household_id AND v.version = h.change_seq
                 WHERE h.removed_at IS NULL AND (h.inputs IS NULL OR (length(h.inputs) > 0 AND get_byte(h.inputs, 0) <> $1))
                 LIMIT 5000",
                [i32::from(dtks_domain::pmt::Inputs::FORMAT).into()],
            ))
            .await?;
        if rows.is_empty() {
            return Ok(done);
        }
        let (mut ids, mut inputs) = (Vec::new(), Vec::new());
        for r in &rows {
            let id: uuid::Uuid = r.try_get("", "household_id")?;
            let bytes: Option<Vec<u8>> = r.try_get("", "household")?;
            let household = pb::Household::decode(bytes.unwrap_or_default().as_slice())?;
            // A record that cannot be scored keeps empty inputs: determinations refuse
            // to run until it is corrected, as they did before inputs were stored.
            inputs.push(model_inputs(&household, today).unwrap_or_else(|e| {
                tracing::error!(household_id = %id, error = %e, "registry household cannot be scored");
                Vec::new()
            }));
            ids.push(id);
        }
        done += ids.len() as u64;
        db.execute_raw(stmt(
            "UPDATE registry_households h SET inputs = u.inputs
             FROM unnest($1::uuid[], $2::bytea[]) AS u (household_id, inputs) WHERE h.household_id = u.household_id",
            [ids.into(), inputs.into()],
        ))
        .await?;
    }
}
