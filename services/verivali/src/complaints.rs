//! Complaints (*pengaduan* / *sanggah*): a citizen or an officer says a household's
//! record is wrong, or that a household is missing; each opens a re-verification task
//! for the region with its deadline. A citizen is answered with a receipt whatever
//! became of the complaint: no existence oracle.

use chrono::{DateTime, Utc};
use dtks_platform::auth::{Claims, Role};
use dtks_platform::db::stmt;
use dtks_platform::grpc;
use dtks_proto::verivali::v1::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tonic::Status;

use crate::aftercare::{COMPLAINT_DAYS, open_task};
use crate::cases::timestamp;
use crate::error::Result;

impl crate::Verivali {
    /// A complaint filed; the event it publishes wakes the relay.
    pub(crate) async fn file_complaint(
        &self,
        who: &Claims,
        req: &FileComplaintRequest,
    ) -> Result<Complaint> {
        let (complaint, _) = file_complaint(&self.db, who, req, self.now()).await?;
        self.outbox.wake();
        Ok(complaint)
    }
}

pub async fn file_complaint(
    db: &DatabaseConnection,
    who: &Claims,
    req: &FileComplaintRequest,
    now: DateTime<Utc>,
) -> Result<(Complaint, bool)> {
    let household_id = uuid::Uuid::parse_str(&req.household_id)
        .map_err(|_| grpc::invalid_field("household_id", "must be a UUID"))?;
    let text = req.text.trim();
    if text.is_empty() || text.chars().count() > 4000 {
        return Err(grpc::invalid_field("text", "must be 1 to 4000 characters").into());
    }
    crate::review::references("evidence_references", &req.evidence_references)?;
    let txn = db.begin().await?;
    let row = txn
        .query_one_raw(stmt(
            "SELECT region_code FROM households WHERE household_id = $1 AND removed_at IS NULL",
            [household_id.into()],
        ))
        .await?;
    let public = who.role == Role::Public;
    let Some(row) = row else {
        if !public {
            return Err(Status::not_found("no household in DTKS with this id").into());
        }
        // A citizen learns nothing of whether the id is in DTKS: the complaint is kept
        // for the officers and answered with the same receipt as any other.
        let complaint_id = uuid::Uuid::now_v7();
        txn.execute_raw(stmt(
            "INSERT INTO unmatched_complaints (complaint_id, household_id, text, evidence, filed_by, filed_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            [
                complaint_id.into(),
                household_id.into(),
                text.to_owned().into(),
                serde_json::json!(req.evidence_references).into(),
                who.sub.clone().into(),
                now.into(),
            ],
        ))
        .await?;
        txn.commit().await?;
        return Ok((
            receipt(complaint_id, household_id, text, &req.evidence_references),
            false,
        ));
    };
    let region: String = row.try_get("", "region_code")?;
    // The public complains about any household; officers within their region.
    if who.role != Role::Public {
        who.require_region(&region)?;
    }
    let (task_id, opened, deadline) = open_task(
        &txn,
        household_id,
        &region,
        ReverificationKind::Complaint,
        "complaint",
        now,
        COMPLAINT_DAYS,
    )
    .await?;
    let complaint_id = uuid::Uuid::now_v7();
    let role = who.role.as_str().to_owned();
    txn.execute_raw(stmt(
        "INSERT INTO complaints (complaint_id, household_id, region_code, text, evidence, filed_by, filed_by_role, filed_at, task_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            complaint_id.into(),
            household_id.into(),
            region.into(),
            text.to_owned().into(),
            serde_json::json!(req.evidence_references).into(),
            who.sub.clone().into(),
            role.clone().into(),
            now.into(),
            task_id.into(),
        ],
    ))
    .await?;
    if opened {
        txn.execute_raw(stmt(
            "UPDATE reverifications SET complaint_id = $2 WHERE task_id = $1",
            [task_id.into(), complaint_id.into()],
        ))
        .await?;
    }
    let action = "verivali.FileComplaint";
    dtks_platform::audit::record(&txn, who, action, &[household_id, complaint_id]).await?;
    txn.commit().await?;
    // The task and its deadline are the officers' business: a citizen gets the receipt.
    if public {
        return Ok((
            receipt(complaint_id, household_id, text, &req.evidence_references),
            opened,
        ));
    }
    Ok((
        Complaint {
            complaint_id: complaint_id.to_string(),
            household_id: household_id.to_string(),
            text: text.to_owned(),
            evidence_references: req.evidence_references.clone(),
            deadline: Some(timestamp(deadline)),
            escalated: deadline < now,
            task_id: task_id.to_string(),
            filed_by_role: role,
        },
        opened,
    ))
}

/// What a citizen's complaint is answered with, whatever became of it: its number and
/// what was said, nothing of any task.
fn receipt(
    complaint_id: uuid::Uuid,
    household_id: uuid::Uuid,
    text: &str,
    evidence_references: &[String],
) -> Complaint {
    Complaint {
        complaint_id: complaint_id.to_string(),
        household_id: household_id.to_string(),
        text: text.to_owned(),
        evidence_references: evidence_references.to_vec(),
        filed_by_role: Role::Public.as_str().to_owned(),
        ..Default::default()
    }
}
