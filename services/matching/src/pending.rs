//! Matching proposals received from intake: a worker claims due ones under a lease,
//! asks the registry outside any transaction, then stores the result, its event and the
//! removal from `pending` in one transaction — or, when the registry fails, schedules
//! the next attempt with backoff.

use std::sync::Arc;

use dtks_platform::{events, outbox};
use dtks_proto::events::v1::{self as ev, Envelope};
use futures::StreamExt;
use prost::Message;
use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::Notify;

use crate::matcher::Matcher;
use crate::store;

/// Proposals claimed per round, and how long a claim holds before another replica
/// (or this one, after a crash) may take the proposal again.
const CLAIM: i64 = 16;
const CONCURRENCY: usize = 8;
const LEASE_SECS: i64 = 120;

/// Delay before the next attempt after `failures` failures: 2 s doubling to at most 64 s.
fn backoff_secs(failures: i32) -> i64 {
    1i64 << failures.clamp(1, 6) as u32
}

/// Matches pending proposals until shutdown.
pub async fn run(
    db: DatabaseConnection,
    matcher: Matcher,
    outbox: outbox::OutboxSignal,
    wake: Arc<Notify>,
    shutdown: dtks_platform::shutdown::Shutdown,
) {
    while !shutdown.is_triggered() {
        let claimed = match store::claim(&db, CLAIM, LEASE_SECS).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "cannot claim pending proposals");
                Vec::new()
            }
        };
        let busy = !claimed.is_empty();
        // The claimed proposals are matched side by side: each waits mostly on the
        // registry.
        futures::stream::iter(claimed)
            .for_each_concurrent(CONCURRENCY, |(proposal_id, attempts, envelope)| {
                let (db, matcher, outbox) = (&db, &matcher, &outbox);
                async move {
                    match match_one(db, matcher, &envelope).await {
                        Ok(()) => outbox.wake(),
                        Err(error) => delay(db, proposal_id, attempts + 1, &error).await,
                    }
                }
            })
            .await;
        if !busy {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = shutdown.clone().wait() => {}
            }
        }
    }
}

/// Records a failed attempt and when the next one is due.
async fn delay(
    db: &DatabaseConnection,
    proposal_id: uuid::Uuid,
    failures: i32,
    error: &anyhow::Error,
) {
    let error = format!("{error:#}");
    tracing::warn!(%error, attempts = failures, "matching delayed");
    let after = backoff_secs(failures);
    if let Err(error) = store::delay(db, proposal_id, failures, &error, after).await {
        // The lease runs out and the proposal is claimed again: nothing is lost.
        tracing::warn!(%error, "cannot record a delayed attempt");
    }
}

/// Matches one proposal (its `proposal.submitted` envelope, encoded) and stores the
/// result with its event. A failure of any kind is this proposal's alone.
async fn match_one(
    db: &DatabaseConnection,
    matcher: &Matcher,
    encoded: &[u8],
) -> anyhow::Result<()> {
    let envelope = &Envelope::decode(encoded)?;
    // Matching continues the trace of the proposal's submission, however long it waited.
    let span = tracing::info_span!("match_proposal", trace_id = tracing::field::Empty);
    dtks_platform::telemetry::set_remote_parent(&span, &envelope.traceparent, &envelope.tracestate);
    dtks_platform::telemetry::record_trace_id(&span);
    tracing::Instrument::instrument(match_envelope(db, matcher, envelope), span).await
}

async fn match_envelope(
    db: &DatabaseConnection,
    matcher: &Matcher,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let submitted: ev::ProposalSubmitted = events::payload(envelope)?;
    let household = submitted.household.clone().unwrap_or_default();
    let proposal_id = uuid::Uuid::parse_str(&submitted.proposal_id)?;
    // A CHANGE asks the registry only of the members its household does not hold as
    // they are proposed; the registry is asked outside any transaction.
    let held = if submitted.kind == ev::ProposalKind::Change as i32 {
        crate::store::index::identities(db, &household.household_id).await?
    } else {
        Default::default()
    };
    let assessed = matcher.assess_household(&household, &held).await?;
    let txn = db.begin().await?;
    let persons = crate::settle::settle(
        &txn,
        &matcher.current().0,
        proposal_id,
        &envelope.region_code,
        &household,
        assessed,
        true,
    )
    .await?;
    let outcome = crate::settle::household_outcome(&persons);
    let matched = ev::ProposalMatched {
        proposal_id: submitted.proposal_id.clone(),
        channel: submitted.channel,
        kind: submitted.kind,
        household: Some(household),
        persons,
        outcome: outcome as i32,
        reason: submitted.reason.clone(),
        change_type: submitted.change_type,
        removal_reason: submitted.removal_reason,
    };
    if !store::store_result(&txn, proposal_id, &envelope.region_code, &matched).await? {
        // Withdrawn while it was being matched: the transaction is dropped unpublished.
        tracing::info!("a proposal withdrawn while it was being matched; not matched");
        return Ok(());
    }
    outbox::enqueue(
        &txn,
        &events::envelope(
            events::PROPOSAL_MATCHED,
            "matching",
            &envelope.region_code,
            &matched,
        ),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
