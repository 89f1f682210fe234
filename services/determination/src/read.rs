//! Reading a determined month: its snapshot streamed in rank order, one household's
//! standing with the terms of its score, a household's record as it stood at a time, and
//! the difference between two months. Each read that names members is audited first.

use dtks_platform::auth::Claims;
use dtks_platform::{audit, convert, grpc};
use dtks_proto::determination::v1::*;
use tonic::Status;

use dtks_platform::fault::Fault;

use crate::error::{Error, Result};
use crate::registry::{diff, entries};
use crate::run::Api;
use crate::store;

/// A snapshot's pages as the edge streams them.
pub(crate) type PageStream = tonic::codegen::BoxStream<SnapshotPage>;

/// The largest page a stream sends.
const MAX_BATCH: u32 = 5_000;

/// The two months a comparison names (`from`, `to`).
pub(crate) fn two_months(
    from: Option<&dtks_proto::common::v1::Period>,
    to: Option<&dtks_proto::common::v1::Period>,
) -> Result<((i32, i32), (i32, i32))> {
    let month = |p, field| {
        convert::period_key(p).map_err(|_| grpc::invalid_field(field, "must be a period"))
    };
    Ok((month(from, "from")?, month(to, "to")?))
}

pub(crate) fn household_id(text: &str) -> Result<uuid::Uuid> {
    Ok(uuid::Uuid::parse_str(text)
        .map_err(|_| grpc::invalid_field("household_id", "must be a UUID"))?)
}

impl Api {
    /// A month's snapshot in rank order from `after_rank`, within the caller's region.
    pub async fn stream_snapshot(
        &self,
        who: &Claims,
        req: &StreamSnapshotRequest,
    ) -> Result<PageStream> {
        let period = convert::period_key(req.period.as_ref())?;
        // A national officer may stream any region; others only within their own.
        let region = crate::history::region_asked(who, &req.region_code)?;
        let snapshot_id = self.standing_snapshot_id(period).await?;
        // A stream of the month's households with their members: who took which region
        // of which month (and from which rank) is audited before the first page.
        audit::record(
            &self.db,
            who,
            "determination.StreamSnapshot",
            &[
                format!("{:04}-{:02}", period.0, period.1),
                if region.is_empty() {
                    "national".to_owned()
                } else {
                    region.clone()
                },
                format!("after_rank={}", req.after_rank),
            ],
        )
        .await?;
        let batch = i64::from(req.batch_size.clamp(1, MAX_BATCH));
        let max_decile = match req.max_decile {
            0 => 10,
            d => d.min(10),
        } as i16;
        let db = self.db.clone();
        let pages = futures::stream::unfold(Some(req.after_rank as i64), move |cursor| {
            let (db, region) = (db.clone(), region.clone());
            async move {
                let after = cursor?;
                match store::page(&db, snapshot_id, &region, max_decile, batch, after).await {
                    Err(e) => Some((Err(Status::from(e)), None)),
                    Ok(households) if households.is_empty() => None,
                    Ok(households) => {
                        let last = households.last().map_or(after, |h| h.national_rank as i64);
                        Some((Ok(SnapshotPage { households }), Some(last)))
                    }
                }
            }
        });
        Ok(Box::pin(read_ahead(pages)))
    }

    /// One household's standing in a month (the newest when none is named), with the
    /// terms of its welfare score.
    pub(crate) async fn get_household_standing(
        &self,
        who: &Claims,
        req: &GetHouseholdStandingRequest,
    ) -> Result<HouseholdStanding> {
        let household_id = household_id(&req.household_id)?;
        let period = match req.period {
            Some(p) => convert::period_key(Some(&p))?,
            None => store::latest_period(&self.db)
                .await?
                .ok_or_else(|| Status::not_found("no month has been determined"))?,
        };
        let snap = self
            .snapshot(&self.db, period)
            .await?
            .ok_or(Error::NotDetermined)?;
        let snapshot_id = store::standing_of(&self.db, &snap).await?;
        let ranked = store::ranked(&self.db, snapshot_id, household_id)
            .await?
            .ok_or_else(|| Status::not_found("the household is not in this month's DTKS"))?;
        who.require_region(&ranked.region_code)?;
        let on = chrono::NaiveDate::from_ymd_opt(period.0, period.1 as u32, 1)
            .ok_or_else(|| grpc::invalid_field("period", "not a month"))?;
        // A snapshot row is always read with its record (`store::ranked` decodes it).
        let record = ranked
            .household
            .as_ref()
            .ok_or_else(|| Fault::Other("snapshot row without its household".into()))?;
        let household = convert::household_from_proto(record, on)
            .map_err(|v| Status::internal(format!("snapshot holds an invalid household: {v}")))?;
        let model = &self.model;
        if model.version != snap.model_version {
            return Err(Status::failed_precondition(format!(
                "the month was scored with model {}, which this service no longer holds",
                snap.model_version
            ))
            .into());
        }
        let terms = model
            .explain(&household, on)
            .into_iter()
            .map(|t| ScoreTerm {
                name: t.name.to_owned(),
                value: t.value,
                coefficient: t.coefficient,
                contribution: t.contribution,
            })
            .collect();
        let intercept = model.intercept_for(&household);
        let (previous_period, previous_decile, changes_since) = self
            .since_month_before(household_id, period, snapshot_id)
            .await?;
        let action = "determination.GetHouseholdStanding";
        audit::record(&self.db, who, action, &[household_id]).await?;
        Ok(HouseholdStanding {
            household: Some(ranked),
            model_version: model.version.clone(),
            intercept,
            terms,
            previous_period,
            previous_decile,
            changes_since,
        })
    }

    /// A household's record as it stood at `as_of` (now when not given).
    pub(crate) async fn get_registry_household(
        &self,
        who: &Claims,
        req: &GetRegistryHouseholdRequest,
    ) -> Result<RegistryHousehold> {
        let household_id = household_id(&req.household_id)?;
        let as_of = match req.as_of {
            Some(t) => chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| grpc::invalid_field("as_of", "is not a valid time"))?,
            None => dtks_platform::clock::now(),
        };
        let version = store::version_at(&self.db, household_id, as_of)
            .await?
            .ok_or_else(|| Status::not_found("the household was not in DTKS at that time"))?;
        who.require_region(&version.region_code)?;
        let Some(household) = version.household else {
            return Err(Status::not_found(format!(
                "the household was removed from DTKS at {}: {}",
                version.valid_from,
                version.removal_reason.unwrap_or_default()
            ))
            .into());
        };
        let action = "determination.GetRegistryHousehold";
        audit::record(&self.db, who, action, &[household_id]).await?;
        Ok(RegistryHousehold {
            household_id: household_id.to_string(),
            region_code: version.region_code,
            // Versions below zero were recovered from snapshots older than the
            // registry's history; they have no number of their own.
            version: version.version.max(0) as u64,
            valid_from: Some(std::time::SystemTime::from(version.valid_from).into()),
            household: Some(household),
        })
    }

    /// A month is determined once it has begun (finding 13: 2099-12 was determined).
    pub(crate) async fn determine(
        &self,
        _who: &Claims,
        req: &DetermineRequest,
    ) -> Result<Snapshot> {
        let period = convert::begun_period_key(req.period.as_ref(), dtks_platform::clock::now())?;
        self.determine_period(period).await
    }

    /// A determined month's snapshot: its counts, deciles and signature.
    pub(crate) async fn get_snapshot(
        &self,
        _who: &Claims,
        req: &GetSnapshotRequest,
    ) -> Result<Snapshot> {
        let period = convert::period_key(req.period.as_ref())?;
        self.snapshot(&self.db, period)
            .await?
            .ok_or(Error::NotDetermined)
    }

    /// What changed between two determined months.
    pub(crate) async fn diff_snapshots(
        &self,
        _who: &Claims,
        req: &DiffSnapshotsRequest,
    ) -> Result<SnapshotDiff> {
        let (from, to) = two_months(req.from.as_ref(), req.to.as_ref())?;
        self.difference(from, to).await
    }

    async fn difference(&self, from: (i32, i32), to: (i32, i32)) -> Result<SnapshotDiff> {
        let before = self.standing_snapshot_id(from).await?;
        let after = self.standing_snapshot_id(to).await?;
        if before == after {
            return Ok(SnapshotDiff::default());
        }
        let mut conn = self.db.get_postgres_connection_pool().acquire().await?;
        let old = entries(&mut conn, before).await?;
        let new = entries(&mut conn, after).await?;
        diff(&mut conn, &old, &new).await
    }
}

/// Reads `pages` ahead while the previous ones are on their way (two at most); a client
/// that goes away drops the receiver and the reader stops.
pub(crate) fn read_ahead<T: Send + 'static>(
    pages: impl futures::Stream<Item = T> + Send + 'static,
) -> tokio_stream::wrappers::ReceiverStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = futures::StreamExt::next(&mut pages).await {
            if tx.send(page).await.is_err() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
