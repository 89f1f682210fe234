//! The gRPC edge of determination.

use crate::registry::{diff, entries};
use crate::run::Api;
use crate::store::standing_of;
use dtks_platform::auth::claims;
use dtks_platform::db::stmt;
use dtks_platform::{convert, grpc};
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::determination_service_server::DeterminationService;
use dtks_proto::determination::v1::*;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::{Request, Response, Status};

pub(crate) type PageStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotPage, Status>> + Send>>;

#[tonic::async_trait]
impl DeterminationService for Api {
    #[tracing::instrument(skip_all)]
    async fn determine(
        &self,
        request: Request<DetermineRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        // Finding 13: 2099-12 was determined. A month is determined once it has begun.
        let period = convert::begun_period_key(
            request.get_ref().period.as_ref(),
            dtks_platform::clock::now(),
        )?;
        Ok(Response::new(self.determine(period).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        claims(&request)?;
        let period = convert::period_key(request.get_ref().period.as_ref())?;
        Ok(Response::new(
            self.snapshot(&self.db, period)
                .await?
                .ok_or_else(|| Status::not_found("period not determined"))?,
        ))
    }

    type StreamSnapshotStream = PageStream;

    #[tracing::instrument(skip_all)]
    async fn stream_snapshot(
        &self,
        request: Request<StreamSnapshotRequest>,
    ) -> Result<Response<PageStream>, Status> {
        let who = claims(&request)?.clone();
        let req = request.into_inner();
        let period = convert::period_key(req.period.as_ref())?;
        let region = if req.region_code.is_empty() {
            who.region.clone()
        } else {
            req.region_code.clone()
        };
        who.require_region(if region.is_empty() { "" } else { &region })
            .or_else(|e| {
                if who.region.is_empty() {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        let snapshot_id = self.standing_snapshot_id(period).await?;
        // A stream of the month's households with their members: who took which region
        // of which month (and from which rank) is audited before the first page.
        dtks_platform::audit::record(
            &self.db,
            &who,
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
        .await
        .map_err(grpc::internal)?;
        let batch = i64::from(req.batch_size.clamp(1, 5000));
        let max_decile = if req.max_decile == 0 {
            10
        } else {
            req.max_decile.min(10)
        } as i16;
        let db = self.db.clone();
        let stream = read_ahead(pages(
            db,
            snapshot_id,
            region,
            max_decile,
            batch,
            req.after_rank as i64,
        ));
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_household_standing(
        &self,
        request: Request<GetHouseholdStandingRequest>,
    ) -> Result<Response<HouseholdStanding>, Status> {
        let who = claims(&request)?.clone();
        let req = request.into_inner();
        let household_id = uuid::Uuid::parse_str(&req.household_id)
            .map_err(|_| grpc::invalid_field("household_id", "must be a UUID"))?;
        let period = match req.period {
            Some(p) => convert::period_key(Some(&p))?,
            None => {
                let latest = self
                    .db
                    .query_one_raw(stmt(
                        "SELECT year, month FROM snapshots ORDER BY year DESC, month DESC LIMIT 1",
                        [],
                    ))
                    .await
                    .map_err(grpc::internal)?
                    .ok_or_else(|| Status::not_found("no month has been determined"))?;
                (
                    latest.try_get("", "year").map_err(grpc::internal)?,
                    latest.try_get("", "month").map_err(grpc::internal)?,
                )
            }
        };
        let snap = self
            .snapshot(&self.db, period)
            .await?
            .ok_or_else(|| Status::not_found("period not determined"))?;
        let snapshot_id = standing_of(&self.db, &snap).await?;
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT r.national_rank, r.region_code, r.score, r.decile, r.province_decile, v.household
                 FROM snapshot_rows r JOIN registry_versions v ON v.household_id = r.household_id AND v.version = r.version
                 WHERE r.snapshot_id = $1 AND r.household_id = $2",
                [snapshot_id.into(), household_id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("the household is not in this month's DTKS"))?;
        let region: String = row.try_get("", "region_code").map_err(grpc::internal)?;
        who.require_region(&region)?;
        let bytes: Vec<u8> = row.try_get("", "household").map_err(grpc::internal)?;
        let pb_household = pb::Household::decode(bytes.as_slice()).map_err(grpc::internal)?;
        let on = chrono::NaiveDate::from_ymd_opt(period.0, period.1 as u32, 1)
            .ok_or_else(|| grpc::invalid_field("period", "not a month"))?;
        let household = convert::household_from_proto(&pb_household, on)
            .map_err(|v| Status::internal(format!("snapshot holds an invalid household: {v}")))?;
        let model = &self.model;
        if model.version != snap.model_version {
            return Err(Status::failed_precondition(format!(
                "the month was scored with model {}, which this service no longer holds",
                snap.model_version
            )));
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
        dtks_platform::audit::record(
            &self.db,
            &who,
            "determination.GetHouseholdStanding",
            &[household_id.to_string()],
        )
        .await
        .map_err(grpc::internal)?;
        Ok(Response::new(HouseholdStanding {
            household: Some(RankedHousehold {
                household_id: household_id.to_string(),
                region_code: region,
                score: row.try_get("", "score").map_err(grpc::internal)?,
                national_rank: row
                    .try_get::<i64>("", "national_rank")
                    .map_err(grpc::internal)? as u64,
                decile: u32::try_from(row.try_get::<i16>("", "decile").map_err(grpc::internal)?)
                    .unwrap_or_default(),
                province_decile: row
                    .try_get::<Option<i16>>("", "province_decile")
                    .map_err(grpc::internal)?
                    .and_then(|d| u32::try_from(d).ok())
                    .unwrap_or_default(),
                household: Some(pb_household),
            }),
            model_version: model.version.clone(),
            intercept: model.intercept_for(&household),
            terms,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_registry_household(
        &self,
        request: Request<GetRegistryHouseholdRequest>,
    ) -> Result<Response<RegistryHousehold>, Status> {
        let who = claims(&request)?.clone();
        let req = request.into_inner();
        let household_id = uuid::Uuid::parse_str(&req.household_id)
            .map_err(|_| grpc::invalid_field("household_id", "must be a UUID"))?;
        let as_of = match req.as_of {
            Some(t) => chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| grpc::invalid_field("as_of", "is not a valid time"))?,
            None => dtks_platform::clock::now(),
        };
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT version, region_code, valid_from, household, removal_reason FROM registry_versions
                 WHERE household_id = $1 AND valid_from <= $2 ORDER BY valid_from DESC, version DESC LIMIT 1",
                [household_id.into(), as_of.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("the household was not in DTKS at that time"))?;
        let region: String = row.try_get("", "region_code").map_err(grpc::internal)?;
        who.require_region(&region)?;
        let valid_from: chrono::DateTime<chrono::Utc> =
            row.try_get("", "valid_from").map_err(grpc::internal)?;
        let Some(bytes) = row
            .try_get::<Option<Vec<u8>>>("", "household")
            .map_err(grpc::internal)?
        else {
            let reason: Option<String> =
                row.try_get("", "removal_reason").map_err(grpc::internal)?;
            return Err(Status::not_found(format!(
                "the household was removed from DTKS at {valid_from}: {}",
                reason.unwrap_or_default()
            )));
        };
        dtks_platform::audit::record(
            &self.db,
            &who,
            "determination.GetRegistryHousehold",
            &[household_id.to_string()],
        )
        .await
        .map_err(grpc::internal)?;
        Ok(Response::new(RegistryHousehold {
            household_id: household_id.to_string(),
            region_code: region,
            // Versions below zero were recovered from snapshots older than the
            // registry's history; they have no number of their own.
            version: row
                .try_get::<i64>("", "version")
                .map_err(grpc::internal)?
                .max(0) as u64,
            valid_from: Some(prost_types::Timestamp {
                seconds: valid_from.timestamp(),
                nanos: valid_from.timestamp_subsec_nanos() as i32,
            }),
            household: Some(pb::Household::decode(bytes.as_slice()).map_err(grpc::internal)?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn diff_snapshots(
        &self,
        request: Request<DiffSnapshotsRequest>,
    ) -> Result<Response<SnapshotDiff>, Status> {
        claims(&request)?;
        let req = request.get_ref();
        let from = convert::period_key(req.from.as_ref())
            .map_err(|_| grpc::invalid_field("from", "must be a period"))?;
        let to = convert::period_key(req.to.as_ref())
            .map_err(|_| grpc::invalid_field("to", "must be a period"))?;
        let before = self.standing_snapshot_id(from).await?;
        let after = self.standing_snapshot_id(to).await?;
        if before == after {
            return Ok(Response::new(SnapshotDiff::default()));
        }
        let mut conn = self
            .db
            .get_postgres_connection_pool()
            .acquire()
            .await
            .map_err(grpc::internal)?;
        let old = entries(&mut conn, before).await?;
        let new = entries(&mut conn, after).await?;
        Ok(Response::new(diff(&mut conn, &old, &new).await?))
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

/// Pages of a snapshot in rank order, read one batch at a time.
pub(crate) fn pages(
    db: DatabaseConnection,
    snapshot_id: uuid::Uuid,
    region: String,
    max_decile: i16,
    batch: i64,
    after_rank: i64,
) -> impl futures::Stream<Item = Result<SnapshotPage, Status>> + Send {
    futures::stream::unfold(Some(after_rank), move |cursor| {
        let (db, region) = (db.clone(), region.clone());
        async move {
            let after = cursor?;
            let rows = db
                .query_all_raw(stmt(
                    // The page is cut from the snapshot first (an index range on the
                    // rank) and only its rows are joined with their records: joining
                    // first would join every row after the cursor for each page.
                    "SELECT r.national_rank, r.household_id, r.region_code, r.score, r.decile, r.province_decile, v.household
                     FROM (SELECT national_rank, household_id, version, region_code, score, decile, province_decile
                           FROM snapshot_rows
                           WHERE snapshot_id = $1 AND national_rank > $2 AND decile <= $3
                             AND (region_code = $4 OR region_code LIKE $4 || '.%' OR $4 = '')
                           ORDER BY national_rank LIMIT $5) r
                     JOIN registry_versions v ON v.household_id = r.household_id AND v.version = r.version
                     ORDER BY r.national_rank",
                    [snapshot_id.into(), after.into(), max_decile.into(), region.into(), batch.into()],
                ))
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => return Some((Err(grpc::internal(e)), None)),
            };
            if rows.is_empty() {
                return None;
            }
            let mut last = after;
            let mut page = SnapshotPage::default();
            for r in rows {
                last = r.try_get::<i64>("", "national_rank").unwrap_or(last);
                let bytes: Vec<u8> = r.try_get("", "household").unwrap_or_default();
                page.households.push(RankedHousehold {
                    household_id: r
                        .try_get::<uuid::Uuid>("", "household_id")
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                    region_code: r.try_get("", "region_code").unwrap_or_default(),
                    score: r.try_get("", "score").unwrap_or_default(),
                    national_rank: last as u64,
                    decile: r.try_get::<i16>("", "decile").unwrap_or_default() as u32,
                    province_decile: r
                        .try_get::<Option<i16>>("", "province_decile")
                        .ok()
                        .flatten()
                        .unwrap_or_default() as u32,
                    household: pb::Household::decode(bytes.as_slice()).ok(),
                });
            }
            Some((Ok(page), Some(last)))
        }
    })
}
