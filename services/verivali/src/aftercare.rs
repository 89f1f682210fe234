//! After acceptance: the households in DTKS stay under verification. Complaints
//! (pengaduan / sanggah) and vital events open re-verification tasks for the region
//! with a deadline, escalated when it passes; each household is due for its update every
//! six months.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dtks_domain::consistency::Flag;
use dtks_platform::auth::Claims;
use dtks_platform::clock::SharedClock;
use dtks_platform::db::stmt;
use dtks_platform::{events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, Envelope, RemovalReason};
use dtks_proto::verivali::v1::*;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult, TransactionTrait,
};
use tonic::Status;

use crate::Verivali;
use crate::error::Result;

use crate::cases::timestamp;

/// Days a region has to re-verify after a complaint (Permensos practice: 14 days).
pub const COMPLAINT_DAYS: i64 = 14;
/// Days a region has to re-verify after a vital event.
pub const LIFE_EVENT_DAYS: i64 = 30;
/// The update cycle of a household in DTKS.
pub const UPDATE_MONTHS: i32 = 6;
/// A household is listed as due this many days before its update falls due.
pub const DUE_NOTICE_DAYS: i64 = 30;
/// How often the escalation sweep runs.
const SWEEP: Duration = Duration::from_secs(2);

/// A keyset page over `(timestamp, uuid)`: the size and where the previous page ended.
pub struct Page {
    pub size: u32,
    pub after: Option<(DateTime<Utc>, uuid::Uuid)>,
}

pub const MAX_PAGE: u32 = 1000;

pub fn page(request: Option<&pb::PageRequest>) -> Result<Page> {
    let request = request.cloned().unwrap_or_default();
    let size = match request.page_size {
        0 => 100,
        n @ 1..=MAX_PAGE => n,
        _ => {
            return Err(grpc::invalid_field(
                "page.page_size",
                format!("must be at most {MAX_PAGE}"),
            )
            .into());
        }
    };
    if request.page_token.is_empty() {
        return Ok(Page { size, after: None });
    }
    let bad = || grpc::invalid_field("page.page_token", "is not a token this service issued");
    let (micros, id) = request
        .page_token
        .strip_prefix("v1.")
        .and_then(|t| t.split_once('.'))
        .ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(Page {
        size,
        after: Some((at, id)),
    })
}

impl Page {
    /// `(after timestamp, after id)` parameters; the start of time when on page one.
    fn bounds(&self) -> (DateTime<Utc>, uuid::Uuid) {
        self.after
            .unwrap_or((DateTime::<Utc>::UNIX_EPOCH, uuid::Uuid::nil()))
    }

    /// One page of `sql`: its parameters are `values`, then this page's bounds and
    /// size + 1 as the last three (`… AND (at, id) > ($n, $n+1) ORDER BY at, id LIMIT
    /// $n+2`). Answers at most `size` rows and the next page's token, read from the
    /// last row's `key` columns (a timestamp and an id).
    pub async fn fetch(
        &self,
        db: &impl ConnectionTrait,
        sql: &str,
        mut values: Vec<sea_orm::Value>,
        key: (&str, &str),
    ) -> Result<(Vec<QueryResult>, String)> {
        let (after_at, after_id) = self.bounds();
        values.extend([
            after_at.into(),
            after_id.into(),
            i64::from(self.size + 1).into(),
        ]);
        let mut rows = db.query_all_raw(stmt(sql, values)).await?;
        let fetched = rows.len();
        rows.truncate(self.size as usize);
        let last = match rows.last() {
            Some(r) => Some((r.try_get("", key.0)?, r.try_get("", key.1)?)),
            None => None,
        };
        Ok((rows, self.next(fetched, last)))
    }

    /// The next page's token when `fetched` (asked for size + 1) had more.
    fn next(&self, fetched: usize, last: Option<(DateTime<Utc>, uuid::Uuid)>) -> String {
        match last {
            Some((at, id)) if fetched > self.size as usize => {
                format!("v1.{}.{id}", at.timestamp_micros())
            }
            _ => String::new(),
        }
    }
}

/// The region a listing covers: the request's, or the caller's own scope.
pub fn listing_region<'a>(who: &'a Claims, requested: &'a str) -> Result<&'a str> {
    let region = if requested.is_empty() {
        who.region.as_str()
    } else {
        requested
    };
    who.require_region(region)?;
    Ok(region)
}

fn task(r: &QueryResult) -> Result<Reverification, DbErr> {
    let ts = |c: &str| -> Result<Option<prost_types::Timestamp>, DbErr> {
        Ok(r.try_get::<Option<DateTime<Utc>>>("", c)?.map(timestamp))
    };
    Ok(Reverification {
        task_id: r.try_get::<uuid::Uuid>("", "task_id")?.to_string(),
        household_id: r.try_get::<uuid::Uuid>("", "household_id")?.to_string(),
        region_code: r.try_get("", "region_code")?,
        kind: i32::from(r.try_get::<i16>("", "kind")?),
        reason: r.try_get("", "reason")?,
        opened_at: ts("opened_at")?,
        deadline: ts("deadline")?,
        escalated_at: ts("escalated_at")?,
        completed_at: ts("completed_at")?,
        outcome: i32::from(r.try_get::<i16>("", "outcome")?),
        note: r.try_get("", "note")?,
        complaint_id: r
            .try_get::<Option<uuid::Uuid>>("", "complaint_id")?
            .map(|u| u.to_string())
            .unwrap_or_default(),
    })
}

const TASK: &str = "task_id, household_id, region_code, kind, reason, opened_at, deadline, escalated_at, completed_at, outcome, note, complaint_id";

/// Opens a task for the household, or joins the open one of the same kind (its
/// deadline stands, the reason grows). Answers the task's id and whether it is new.
pub(crate) async fn open_task(
    txn: &DatabaseTransaction,
    household_id: uuid::Uuid,
    region: &str,
    kind: ReverificationKind,
    reason: &str,
    now: DateTime<Utc>,
    days: i64,
) -> Result<(uuid::Uuid, bool, DateTime<Utc>), DbErr> {
    let row = txn
        .query_one_raw(stmt(
            "INSERT INTO reverifications (task_id, household_id, region_code, kind, reason, opened_at, deadline)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (household_id, kind) WHERE completed_at IS NULL
             DO UPDATE SET reason = reverifications.reason || '; ' || EXCLUDED.reason
             RETURNING task_id, deadline, (xmax = 0) AS inserted",
            [
                uuid::Uuid::now_v7().into(),
                household_id.into(),
                region.to_owned().into(),
                (kind as i16).into(),
                reason.to_owned().into(),
                now.into(),
                (now + chrono::Duration::days(days)).into(),
            ],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row from the task insert".into()))?;
    let task_id: uuid::Uuid = row.try_get("", "task_id")?;
    let deadline: DateTime<Utc> = row.try_get("", "deadline")?;
    let inserted: bool = row.try_get("", "inserted")?;
    if inserted {
        outbox::enqueue(
            txn,
            &task_event(
                events::REVERIFICATION_OPENED,
                task_id,
                household_id,
                region,
                kind,
                deadline,
            ),
        )
        .await?;
    }
    Ok((task_id, inserted, deadline))
}

fn kind_word(kind: ReverificationKind) -> &'static str {
    match kind {
        ReverificationKind::Complaint => "complaint",
        ReverificationKind::LifeEvent => "life_event",
        ReverificationKind::Unspecified => "",
    }
}

fn task_event(
    event: &str,
    task_id: uuid::Uuid,
    household_id: uuid::Uuid,
    region: &str,
    kind: ReverificationKind,
    deadline: DateTime<Utc>,
) -> Envelope {
    events::envelope(
        event,
        "verivali",
        region,
        &ev::ReverificationChanged {
            task_id: task_id.to_string(),
            household_id: household_id.to_string(),
            kind: kind_word(kind).to_owned(),
            deadline: Some(timestamp(deadline)),
        },
    )
}

/// A flag a case being verified carries when Dukcapil records a vital event.
fn life_event_flag(life: &ev::PersonLifeEvent) -> Flag {
    let date = life
        .date
        .as_ref()
        .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        .unwrap_or_default();
    Flag {
        code: "LIFE_EVENT".to_owned(),
        reason: format!("Dukcapil recorded a {} of a member on {date}", life.kind),
    }
}

/// A vital event: a task for the household in DTKS it changes (joined to the open one);
/// a flag on a case still being verified.
pub async fn life_event(
    txn: &DatabaseTransaction,
    life: &ev::PersonLifeEvent,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let flag = life_event_flag(life);
    if let Ok(proposal_id) = uuid::Uuid::parse_str(&life.proposal_id) {
        txn.execute_raw(stmt(
            "UPDATE cases SET flags = flags || $2::jsonb WHERE proposal_id = $1 AND state NOT IN (6, 8)",
            [proposal_id.into(), serde_json::json!([flag]).into()],
        ))
        .await?;
    }
    // Every vital event of a member (death, birth, marriage, divorce, moving) changes
    // the household DTKS holds: the region re-verifies it.
    let Ok(household_id) = uuid::Uuid::parse_str(&life.household_id) else {
        return Ok(());
    };
    if let Some(region) = crate::life::registered_in(txn, household_id).await? {
        open_task(
            txn,
            household_id,
            &region,
            ReverificationKind::LifeEvent,
            &flag.reason,
            now,
            LIFE_EVENT_DAYS,
        )
        .await?;
    }
    Ok(())
}

impl Verivali {
    pub(crate) async fn list_reverifications(
        &self,
        who: &Claims,
        req: &ListReverificationsRequest,
    ) -> Result<ListReverificationsResponse> {
        let (db, now) = (&self.db, self.now());
        let region = listing_region(who, &req.region_code)?;
        let page = page(req.page.as_ref())?;
        // Overdue counts as escalated at once, before the sweep has stamped it.
        let sql = format!(
            "SELECT {TASK} FROM reverifications
             WHERE ($1 = '' OR region_code = $1 OR region_code LIKE $1 || '.%')
               AND (NOT $2 OR completed_at IS NULL)
               AND (NOT $3 OR (completed_at IS NULL AND deadline < $4))
               AND (opened_at, task_id) > ($5, $6)
             ORDER BY opened_at, task_id LIMIT $7"
        );
        let values = vec![
            region.to_owned().into(),
            req.open_only.into(),
            req.escalated_only.into(),
            now.into(),
        ];
        let (rows, next_page_token) = page
            .fetch(db, &sql, values, ("opened_at", "task_id"))
            .await?;
        let mut tasks = Vec::new();
        for r in &rows {
            let mut t = task(r)?;
            if t.escalated_at.is_none()
                && t.completed_at.is_none()
                && t.deadline
                    .as_ref()
                    .is_some_and(|d| d.seconds < now.timestamp())
            {
                t.escalated_at = t.deadline;
            }
            tasks.push(t);
        }
        Ok(ListReverificationsResponse {
            page: Some(pb::PageResponse { next_page_token }),
            tasks,
        })
    }
}

impl Verivali {
    /// A re-verification task completed; the event it publishes wakes the relay.
    pub(crate) async fn complete_reverification(
        &self,
        who: &Claims,
        req: &CompleteReverificationRequest,
    ) -> Result<Reverification> {
        let task = complete_task(&self.db, who, req, self.now()).await?;
        self.outbox.wake();
        Ok(task)
    }
}

pub async fn complete_task(
    db: &DatabaseConnection,
    who: &Claims,
    req: &CompleteReverificationRequest,
    now: DateTime<Utc>,
) -> Result<Reverification> {
    let task_id = uuid::Uuid::parse_str(&req.task_id)
        .map_err(|_| grpc::invalid_field("task_id", "must be a UUID"))?;
    let outcome = ReverificationOutcome::try_from(req.outcome).unwrap_or_default();
    let code = RemovalReason::try_from(req.removal_reason).unwrap_or_default();
    let note = req.note.trim();
    if note.chars().count() > 4000 {
        return Err(grpc::invalid_field("note", "must be at most 4000 characters").into());
    }
    let change_proposal = match outcome {
        ReverificationOutcome::Unspecified => {
            return Err(grpc::invalid_field(
                "outcome",
                "must be CONFIRMED, CHANGE_PROPOSED or REMOVED",
            )
            .into());
        }
        ReverificationOutcome::ChangeProposed => {
            Some(uuid::Uuid::parse_str(&req.proposal_id).map_err(|_| {
                grpc::invalid_field("proposal_id", "must be the UUID of the change proposal")
            })?)
        }
        ReverificationOutcome::Removed if note.is_empty() => {
            return Err(grpc::invalid_field("note", "a removal needs its reason").into());
        }
        ReverificationOutcome::Removed if code == RemovalReason::Unspecified => {
            return Err(grpc::invalid_field(
                "removal_reason",
                "a removal names its reason: NOT_ELIGIBLE, MOVED_AWAY, DUPLICATE, ALL_DECEASED or NOT_FOUND",
            )
            .into());
        }
        _ => None,
    };
    let txn = db.begin().await?;
    let row = txn
        .query_one_raw(stmt(
            &format!("SELECT {TASK} FROM reverifications WHERE task_id = $1 FOR UPDATE"),
            [task_id.into()],
        ))
        .await?
        .ok_or_else(|| Status::not_found("no re-verification task with this id"))?;
    let current = task(&row)?;
    who.require_region(&current.region_code)?;
    if current.completed_at.is_some() {
        return Err(grpc::failed_preconditions(&[(
            "TASK_STATE".into(),
            format!("task {task_id}"),
            format!(
                "already completed as {}",
                ReverificationOutcome::try_from(current.outcome)
                    .unwrap_or_default()
                    .as_str_name()
            ),
        )])
        .into());
    }
    let household_id = uuid::Uuid::parse_str(&current.household_id)?;
    let row = txn
        .query_one_raw(stmt(
            &format!(
                "UPDATE reverifications SET completed_at = $2, outcome = $3, note = $4, completed_by = $5, change_proposal_id = $6
                 WHERE task_id = $1 RETURNING {TASK}"
            ),
            [
                task_id.into(),
                now.into(),
                (outcome as i16).into(),
                note.to_owned().into(),
                who.sub.clone().into(),
                change_proposal.into(),
            ],
        ))
        .await?
        .ok_or_else(|| Status::internal("task vanished"))?;
    if outcome == ReverificationOutcome::Removed {
        let why = crate::life::Removal {
            reason: note,
            code,
            by: &who.sub,
        };
        crate::life::remove(&txn, household_id, None, &why, now).await?;
    } else {
        // A visit renews the household's six-monthly cycle.
        txn.execute_raw(stmt(
            "UPDATE households SET last_verified_at = $2 WHERE household_id = $1",
            [household_id.into(), now.into()],
        ))
        .await?;
    }
    outbox::enqueue(
        &txn,
        &events::envelope(
            events::REVERIFICATION_COMPLETED,
            "verivali",
            &current.region_code,
            &ev::ReverificationCompleted {
                task_id: task_id.to_string(),
                household_id: household_id.to_string(),
                kind: kind_word(ReverificationKind::try_from(current.kind).unwrap_or_default())
                    .to_owned(),
                outcome: outcome
                    .as_str_name()
                    .trim_start_matches("REVERIFICATION_OUTCOME_")
                    .to_owned(),
                completed_at: Some(timestamp(now)),
            },
        ),
    )
    .await?;
    dtks_platform::audit::record(
        &txn,
        who,
        "verivali.CompleteReverification",
        &[task_id.to_string(), current.household_id.clone()],
    )
    .await?;
    txn.commit().await?;
    Ok(task(&row)?)
}

/// Stamps open tasks whose deadline passed and announces each once, until shutdown.
pub async fn escalate_overdue(
    db: DatabaseConnection,
    signal: outbox::OutboxSignal,
    clock: SharedClock,
    shutdown: dtks_platform::shutdown::Shutdown,
) {
    while !shutdown.is_triggered() {
        match escalate(&db, clock.now()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(tasks = n, "re-verification tasks escalated");
                signal.wake();
            }
            Err(error) => tracing::warn!(%error, "escalation sweep failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP) => {}
            _ = shutdown.clone().wait() => {}
        }
    }
}

async fn escalate(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<usize, DbErr> {
    let txn = db.begin().await?;
    let rows = txn
        .query_all_raw(stmt(
            "UPDATE reverifications SET escalated_at = $1
             WHERE task_id IN (SELECT task_id FROM reverifications
                               WHERE completed_at IS NULL AND escalated_at IS NULL AND deadline < $1
                               ORDER BY deadline LIMIT 1000 FOR UPDATE SKIP LOCKED)
             RETURNING task_id, household_id, region_code, kind, deadline",
            [now.into()],
        ))
        .await?;
    let mut envelopes = Vec::with_capacity(rows.len());
    for r in &rows {
        envelopes.push(task_event(
            events::REVERIFICATION_ESCALATED,
            r.try_get("", "task_id")?,
            r.try_get("", "household_id")?,
            &r.try_get::<String>("", "region_code")?,
            ReverificationKind::try_from(i32::from(r.try_get::<i16>("", "kind")?))
                .unwrap_or_default(),
            r.try_get("", "deadline")?,
        ));
    }
    outbox::enqueue_many(&txn, &envelopes).await?;
    txn.commit().await?;
    Ok(rows.len())
}

impl Verivali {
    /// Households of a region due for their six-monthly update within
    /// [`DUE_NOTICE_DAYS`], or already overdue; the longest unverified first.
    pub(crate) async fn list_due(
        &self,
        who: &Claims,
        req: &ListDueRequest,
    ) -> Result<ListDueResponse> {
        let (db, now) = (&self.db, self.now());
        let region = listing_region(who, &req.region_code)?;
        let page = page(req.page.as_ref())?;
        let horizon = if req.overdue_only {
            now
        } else {
            now + chrono::Duration::days(DUE_NOTICE_DAYS)
        };
        let sql = format!(
            "SELECT household_id, region_code, last_verified_at,
                    last_verified_at + interval '{UPDATE_MONTHS} months' AS due_at
             FROM households
             WHERE removed_at IS NULL
               AND ($1 = '' OR region_code = $1 OR region_code LIKE $1 || '.%')
               AND last_verified_at + interval '{UPDATE_MONTHS} months' <= $2
               AND (last_verified_at, household_id) > ($3, $4)
             ORDER BY last_verified_at, household_id LIMIT $5"
        );
        let values = vec![region.to_owned().into(), horizon.into()];
        let (rows, next_page_token) = page
            .fetch(db, &sql, values, ("last_verified_at", "household_id"))
            .await?;
        let mut households = Vec::new();
        for r in &rows {
            let at: DateTime<Utc> = r.try_get("", "last_verified_at")?;
            let due: DateTime<Utc> = r.try_get("", "due_at")?;
            let id: uuid::Uuid = r.try_get("", "household_id")?;
            households.push(DueHousehold {
                household_id: id.to_string(),
                region_code: r.try_get("", "region_code")?,
                last_verified_at: Some(timestamp(at)),
                due_at: Some(timestamp(due)),
                overdue: due < now,
            });
        }
        Ok(ListDueResponse {
            households,
            page: Some(pb::PageResponse { next_page_token }),
        })
    }
}
