//! Taking proposals: one submission, or a bulk import streamed row by row and written in
//! batches, every row answered with its proposal or with each offending field.

use dtks_platform::auth::{Claims, Role};
use dtks_proto::intake::v1::*;
use sea_orm::DatabaseConnection;
use tonic::Streaming;

use crate::Intake;
use crate::check;
use crate::error::{Error, Result};
use crate::store;

/// Proposals a bulk import writes per transaction.
const BATCH: usize = 1_000;
/// Batches of one import stream being written at once (each on its own connection).
const WRITES_IN_FLIGHT: usize = 3;

impl Intake {
    /// One proposal, checked and stored (or answered as a replay of the first).
    pub async fn submit_proposal(
        &self,
        who: &Claims,
        request: &SubmitProposalRequest,
    ) -> Result<SubmitProposalResponse> {
        self.rate_limit(who).await?;
        let prepared = check::prepare(who, request.clone(), self.today())?;
        let channel = prepared.channel;
        let stored = store::store(&self.db, vec![prepared])
            .await?
            .pop()
            .ok_or_else(|| {
                dtks_platform::fault::Fault::Other("no answer for the proposal".into())
            })?;
        if !stored.replayed {
            self.outbox.wake();
        }
        tracing::info!(
            proposal_id = %stored.proposal_id,
            channel = channel.as_str_name(),
            replayed = stored.replayed,
            "proposal taken"
        );
        Ok(SubmitProposalResponse {
            proposal_id: stored.proposal_id.to_string(),
            status: stored.status,
            replayed: stored.replayed,
        })
    }

    /// A citizen's self-registrations are rate-limited per account.
    async fn rate_limit(&self, who: &Claims) -> Result<()> {
        if who.role == Role::Public {
            self.limiter
                .check(
                    "self_registration",
                    &who.sub,
                    self.limits.self_registration_per_minute,
                )
                .await?;
        }
        Ok(())
    }

    /// A bulk import: rows are read while earlier batches are checked and written, up to
    /// [`WRITES_IN_FLIGHT`] batches at once, each on its own task and connection.
    pub async fn import_proposals(
        &self,
        who: &Claims,
        mut stream: Streaming<ImportProposalsRequest>,
    ) -> Result<ImportProposalsResponse> {
        if who.role == Role::Public {
            return Err(Error::Refused(tonic::Status::permission_denied(
                "bulk import is for officers; citizens register one household at a time",
            )));
        }
        let limit = self.limits.import_rows_per_stream;
        let mut response = ImportProposalsResponse::default();
        let today = self.today();
        let mut received = 0u64;
        let mut pending: Vec<(u64, SubmitProposalRequest)> = Vec::with_capacity(BATCH);
        let mut working: tokio::task::JoinSet<Result<Vec<RowResult>>> = tokio::task::JoinSet::new();
        loop {
            let item = stream.message().await?;
            let flush = item.is_none() || pending.len() >= BATCH;
            if flush && !pending.is_empty() {
                while working.len() >= WRITES_IN_FLIGHT {
                    if let Some(done) = working.join_next().await {
                        response.rows.extend(done??);
                    }
                }
                let batch = std::mem::take(&mut pending);
                let (db, who) = (self.db.clone(), who.clone());
                working.spawn(async move { check_and_store(&db, &who, batch, today).await });
                self.outbox.wake();
            }
            let Some(item) = item else { break };
            received += 1;
            if received > limit {
                response.rows.push(row_refused(
                    item.row,
                    vec![(
                        "row".into(),
                        format!(
                            "a stream carries at most {limit} rows; send the rest in another import"
                        ),
                    )],
                ));
                continue;
            }
            match row_checked(item) {
                Ok(row) => pending.push(row),
                Err(refused) => response.rows.push(refused),
            }
        }
        while let Some(done) = working.join_next().await {
            response.rows.extend(done??);
        }
        response.rejected = response
            .rows
            .iter()
            .filter(|r| !r.errors.is_empty())
            .count() as u64;
        response.accepted = response.rows.len() as u64 - response.rejected;
        self.outbox.wake();
        response.rows.sort_by_key(|r| r.row);
        tracing::info!(
            accepted = response.accepted,
            rejected = response.rejected,
            "bulk import finished"
        );
        Ok(response)
    }
}

/// An import row checked at the edge like a single submission.
fn row_checked(item: ImportProposalsRequest) -> Result<(u64, SubmitProposalRequest), RowResult> {
    let Some(proposal) = item.proposal else {
        return Err(row_refused(
            item.row,
            vec![("proposal".into(), "is required".into())],
        ));
    };
    let found = dtks_platform::edge::violations("dtks.intake.v1.SubmitProposalRequest", &proposal);
    if found.0.is_empty() {
        return Ok((item.row, proposal));
    }
    Err(row_refused(
        item.row,
        found
            .0
            .into_iter()
            .take(dtks_platform::grpc::MAX_LISTED_VIOLATIONS)
            .map(|v| (v.field, v.description))
            .collect(),
    ))
}

fn row_refused(row: u64, fields: Vec<(String, String)>) -> RowResult {
    RowResult {
        row,
        proposal_id: String::new(),
        errors: fields
            .into_iter()
            .map(|(field, description)| FieldError { field, description })
            .collect(),
        replayed: false,
    }
}

/// Checks one batch of an import and stores what passes; a result for every row.
async fn check_and_store(
    db: &DatabaseConnection,
    who: &Claims,
    batch: Vec<(u64, SubmitProposalRequest)>,
    today: chrono::NaiveDate,
) -> Result<Vec<RowResult>> {
    let mut results = Vec::with_capacity(batch.len());
    let mut rows = Vec::with_capacity(batch.len());
    let mut prepared = Vec::with_capacity(batch.len());
    for (row, proposal) in batch {
        match check::prepare(who, proposal, today) {
            Ok(p) => {
                rows.push(row);
                prepared.push(p);
            }
            Err(refusal) => results.push(row_refused(row, refusal.into_fields())),
        }
    }
    let stored = store::store(db, prepared).await?;
    results.extend(rows.into_iter().zip(stored).map(|(row, stored)| RowResult {
        row,
        proposal_id: stored.proposal_id.to_string(),
        errors: vec![],
        replayed: stored.replayed,
    }));
    Ok(results)
}
