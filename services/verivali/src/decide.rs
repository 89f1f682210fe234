//! The deciding steps on cases: batch steps that only move cases (the Bupati's sign-off,
//! the province's forwarding), the ministry's assessment against the five integrity
//! criteria (one case with an optional override, or a batch), and the return to the
//! region. All or nothing: every named case is locked and checked first.

use chrono::{DateTime, Utc};
use dtks_platform::auth::Claims;
use dtks_platform::grpc;
use dtks_proto::verivali::v1::*;
use sea_orm::{DatabaseTransaction, TransactionTrait};
use tonic::Status;

use crate::Verivali;
use crate::cases::{self, Actor, CaseRow, Move};
use crate::error::Result;
use crate::review::{case_id, text};
use crate::workflow::{self, Step};

impl Verivali {
    /// A batch step on every named case, all or nothing.
    async fn batch(
        &self,
        who: &Claims,
        step: Step,
        req: &BatchRequest,
    ) -> Result<(DatabaseTransaction, Actor, Vec<Move>)> {
        let actor = Actor::officer(who);
        actor.may(step)?;
        let ids = cases::parse_ids(req.case_ids.iter().map(String::as_str), "case_ids")?;
        let note = req.note.trim();
        if note.chars().count() > 4000 {
            return Err(grpc::invalid_field("note", "must be at most 4000 characters").into());
        }
        let txn = self.db.begin().await?;
        let steps: Vec<(uuid::Uuid, Step)> = ids.iter().map(|id| (*id, step)).collect();
        let locked = cases::lock_for(&txn, &actor, &steps).await?;
        let moves = locked
            .into_iter()
            .map(|(case, _, to)| Move {
                case,
                to,
                note: note.to_owned(),
            })
            .collect();
        Ok((txn, actor, moves))
    }

    /// A batch step that only moves the cases (sign-off, forwarding).
    /// The Bupati's (or Walikota's) sign-off of a batch of cases.
    pub async fn sign_off(&self, who: &Claims, req: &BatchRequest) -> Result<BatchResult> {
        self.plain_batch(who, Step::SignOff, req).await
    }

    /// The province's forwarding of a batch of cases to the ministry.
    pub async fn forward_to_ministry(
        &self,
        who: &Claims,
        req: &BatchRequest,
    ) -> Result<BatchResult> {
        self.plain_batch(who, Step::Forward, req).await
    }

    async fn plain_batch(
        &self,
        who: &Claims,
        step: Step,
        req: &BatchRequest,
    ) -> Result<BatchResult> {
        let (txn, actor, moves) = self.batch(who, step, req).await?;
        cases::record(&txn, &actor, &moves, self.now()).await?;
        self.commit(txn).await?;
        Ok(BatchResult {
            applied: moves.len() as u32,
            ..Default::default()
        })
    }

    pub(crate) async fn commit(&self, txn: DatabaseTransaction) -> Result<()> {
        txn.commit().await?;
        self.outbox.wake();
        Ok(())
    }

    /// The ministry's verdicts: stores each assessment, accepts or returns each case.
    async fn conclude(
        &self,
        txn: &DatabaseTransaction,
        actor: &Actor,
        verdicts: Vec<(CaseRow, crate::assessment::Assessment)>,
        now: DateTime<Utc>,
    ) -> Result<(u32, u32)> {
        let ids: Vec<uuid::Uuid> = verdicts.iter().map(|(c, _)| c.case_id).collect();
        let contents = cases::content(txn, &ids).await?;
        let stored: Vec<(uuid::Uuid, &crate::assessment::Assessment)> =
            verdicts.iter().map(|(c, a)| (c.case_id, a)).collect();
        cases::store_assessments(txn, &stored).await?;
        let mut moves = Vec::with_capacity(verdicts.len());
        for (case, a) in &verdicts {
            let step = if a.accepted {
                Step::Accept
            } else {
                Step::Return
            };
            let to = workflow::check(step, actor.role, case.state)
                .map_err(|r| Status::failed_precondition(r.describe(step, actor.role)))?;
            moves.push(Move {
                case: case.clone(),
                to,
                note: a.note(),
            });
        }
        cases::record(txn, actor, &moves, now).await?;
        let accepted: Vec<(&CaseRow, &crate::Content)> = verdicts
            .iter()
            .filter(|(_, a)| a.accepted)
            .map(|(c, _)| (c, &contents[&c.case_id]))
            .collect();
        let returned: Vec<(&CaseRow, Vec<String>)> = verdicts
            .iter()
            .filter(|(_, a)| !a.accepted)
            .map(|(c, a)| {
                let mut reasons = a.reasons();
                if !a.override_reason.is_empty() {
                    reasons.insert(0, format!("assessor: {}", a.override_reason));
                }
                (c, reasons)
            })
            .collect();
        cases::accept(txn, &actor.id, &accepted, now).await?;
        cases::publish_returned(txn, &returned, false).await?;
        Ok((accepted.len() as u32, returned.len() as u32))
    }

    pub(crate) async fn assess(&self, who: &Claims, req: &AssessRequest) -> Result<Case> {
        let actor = Actor::officer(who);
        actor.may(Step::Accept)?;
        let id = case_id(&req.case_id)?;
        let over = Override::try_from(req.r#override)
            .map_err(|_| grpc::invalid_field("override", "is not an override"))?;
        let reason = text("override_reason", &req.override_reason, 4000)?;
        if over != Override::Unspecified && reason.is_empty() {
            return Err(grpc::invalid_field(
                "override_reason",
                "an override needs a written reason",
            )
            .into());
        }
        let now = self.now();
        let txn = self.db.begin().await?;
        let (case, _, _) = cases::lock_one(&txn, &actor, id, Step::Accept).await?;
        let content = cases::content(&txn, &[id]).await?;
        let mut a = crate::assessment::assess(&content[&id], now.date_naive());
        a.assessed_by = actor.id.clone();
        match over {
            Override::Accept => {
                a.accepted = true;
                a.override_reason = reason;
            }
            Override::Return => {
                a.accepted = false;
                a.override_reason = reason;
            }
            Override::Unspecified => {}
        }
        self.conclude(&txn, &actor, vec![(case, a)], now).await?;
        let out = self.load(&txn, who, id).await?;
        self.commit(txn).await?;
        Ok(out)
    }

    pub(crate) async fn assess_batch(
        &self,
        who: &Claims,
        req: &BatchRequest,
    ) -> Result<BatchResult> {
        let (txn, actor, moves) = self.batch(who, Step::Accept, req).await?;
        let now = self.now();
        let ids: Vec<uuid::Uuid> = moves.iter().map(|m| m.case.case_id).collect();
        let contents = cases::content(&txn, &ids).await?;
        let verdicts = moves
            .into_iter()
            .map(|m| {
                let mut a = crate::assessment::assess(&contents[&m.case.case_id], now.date_naive());
                a.assessed_by = actor.id.clone();
                (m.case, a)
            })
            .collect::<Vec<_>>();
        let n = verdicts.len() as u32;
        let (accepted, returned) = self.conclude(&txn, &actor, verdicts, now).await?;
        self.commit(txn).await?;
        Ok(BatchResult {
            applied: n,
            accepted,
            returned,
            rejected: 0,
        })
    }

    pub async fn return_to_region(&self, who: &Claims, req: &BatchRequest) -> Result<BatchResult> {
        if req.note.trim().is_empty() {
            return Err(
                grpc::invalid_field("note", "the region needs the reason for the return").into(),
            );
        }
        let (txn, actor, moves) = self.batch(who, Step::Return, req).await?;
        cases::record(&txn, &actor, &moves, self.now()).await?;
        let returned: Vec<(&CaseRow, Vec<String>)> = moves
            .iter()
            .map(|m| (&m.case, vec![m.note.clone()]))
            .collect();
        cases::publish_returned(&txn, &returned, false).await?;
        self.commit(txn).await?;
        Ok(BatchResult {
            applied: moves.len() as u32,
            returned: moves.len() as u32,
            ..Default::default()
        })
    }
}
