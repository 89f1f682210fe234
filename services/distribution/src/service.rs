use std::sync::Arc;

use crate::{delivery, entries, extract, lists, month, programmes, requests, rules};
use dtks_platform::app::Context;
use dtks_platform::auth::{BearerToken, claims};
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations, stmt};
use dtks_platform::{convert, events, grpc, outbox};
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::determination::v1::{SnapshotPage, StreamSnapshotRequest};
use dtks_proto::distribution::v1::distribution_service_server::{
    DistributionService, DistributionServiceServer,
};
use dtks_proto::distribution::v1::*;
use dtks_proto::events::v1::{self as ev, Envelope};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn Migration>> {
        sql_migrations(vec![
            SqlMigration {
                name: "m0001_programmes_and_lists",
                sql: r#"
CREATE TABLE programmes (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    max_decile SMALLINT NOT NULL,
    version INT NOT NULL,
    source TEXT NOT NULL
);
-- The walking skeleton's programme: households in deciles 1-4 (the DTKS target group).
-- Full CEL eligibility rules and quotas arrive with the distribution issue.
INSERT INTO programmes (code, name, max_decile, version, source)
VALUES ('DTKS-D1-4', 'All DTKS households in deciles 1-4', 4, 1, 'Permensos 3/2021: DTKS covers deciles 1-4');
CREATE TABLE lists (
    list_id UUID PRIMARY KEY,
    programme_code TEXT NOT NULL REFERENCES programmes (code),
    programme_version INT NOT NULL,
    year INT NOT NULL,
    month INT NOT NULL,
    recipients BIGINT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (programme_code, programme_version, year, month)
);
CREATE TABLE list_entries (
    list_id UUID NOT NULL REFERENCES lists (list_id),
    position BIGINT NOT NULL,
    household_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    national_rank BIGINT NOT NULL,
    decile SMALLINT NOT NULL,
    PRIMARY KEY (list_id, position)
);
"#,
            },
            SqlMigration {
                name: "m0002_data_requests",
                sql: r#"
-- Data requests (permohonan data) and every decision on them.
CREATE TABLE data_requests (
    request_id UUID PRIMARY KEY,
    requester_kind SMALLINT NOT NULL,
    requester TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    purpose TEXT NOT NULL,
    region_code TEXT NOT NULL,
    data_kinds SMALLINT[] NOT NULL,
    use_from TIMESTAMPTZ NOT NULL,
    use_until TIMESTAMPTZ NOT NULL,
    status SMALLINT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    decided_at TIMESTAMPTZ,
    handover_number TEXT,
    handover_date DATE,
    handover_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX data_requests_by_requester ON data_requests (requested_by);
CREATE TABLE data_request_history (
    request_id UUID NOT NULL REFERENCES data_requests (request_id),
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX data_request_history_by_request ON data_request_history (request_id, at);
"#,
            },
            SqlMigration {
                name: "m0003_programme_rules",
                sql: r#"
-- Eligibility as a CEL rule over the household, quotas per regency, and every version.
ALTER TABLE programmes ADD COLUMN rule TEXT, ADD COLUMN quotas JSONB NOT NULL DEFAULT '{}'::jsonb;
UPDATE programmes SET rule = 'household.decile <= ' || max_decile;
ALTER TABLE programmes ALTER COLUMN rule SET NOT NULL;
ALTER TABLE programmes DROP COLUMN max_decile;
CREATE TABLE programme_versions (
    code TEXT NOT NULL REFERENCES programmes (code),
    version INT NOT NULL,
    name TEXT NOT NULL,
    rule TEXT NOT NULL,
    quotas JSONB NOT NULL,
    source TEXT NOT NULL,
    saved_by TEXT NOT NULL,
    saved_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (code, version)
);
INSERT INTO programme_versions (code, version, name, rule, quotas, source, saved_by)
SELECT code, version, name, rule, quotas, source, 'migration' FROM programmes;
"#,
            },
            SqlMigration {
                name: "m0004_list_approval",
                sql: r#"
-- A list is a draft until its Eselon I unit approves it; lists built before were fixed
-- when built.
ALTER TABLE lists ADD COLUMN status SMALLINT NOT NULL DEFAULT 2,
    ADD COLUMN regions JSONB NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN approved_by TEXT, ADD COLUMN approved_at TIMESTAMPTZ,
    ADD COLUMN added BIGINT NOT NULL DEFAULT 0, ADD COLUMN removed BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN previous_list_id UUID;
UPDATE lists SET approved_at = created_at, added = recipients;
ALTER TABLE lists ALTER COLUMN status DROP DEFAULT;
"#,
            },
            SqlMigration {
                name: "m0005_deliveries",
                sql: r#"
-- What a list is delivered with, and the audit of every delivery and batch.
ALTER TABLE list_entries ADD COLUMN head_nik TEXT, ADD COLUMN head_name TEXT;
CREATE TABLE deliveries (
    delivery_id UUID PRIMARY KEY,
    list_id UUID REFERENCES lists (list_id),
    request_id UUID,
    recipient TEXT NOT NULL,
    role TEXT NOT NULL,
    from_cursor TEXT NOT NULL,
    rows BIGINT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
CREATE TABLE delivery_batches (
    delivery_id UUID NOT NULL REFERENCES deliveries (delivery_id),
    from_position BIGINT NOT NULL,
    to_position BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX delivery_batches_by_delivery ON delivery_batches (delivery_id, at);
"#,
            },
            SqlMigration {
                name: "m0006_list_chunks",
                sql: entries::MIGRATION,
            },
            SqlMigration {
                // The filer of a request is issuer, role, region and subject together;
                // requests filed before carry none and are owned by nobody.
                name: "m0007_request_filer",
                sql: "ALTER TABLE data_requests ADD COLUMN filer TEXT NOT NULL DEFAULT ''",
            },
        ])
    }
}

type Determination = DeterminationServiceClient<InterceptedService<Channel, BearerToken>>;

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let url = ctx
        .config
        .upstream
        .determination_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("DTKS_UPSTREAM__DETERMINATION_URL is required"))?;
    programmes::seed(&ctx.db).await?;
    let channel = grpc::endpoint(&url, &ctx.config.tls)?.connect_lazy();
    let token = BearerToken::for_service(&ctx.config.auth, "service:distribution")?;
    let determination = DeterminationServiceClient::with_interceptor(channel, token)
        .max_decoding_message_size(grpc::MAX_SEND_BYTES);
    let months = Arc::<month::Months>::default();
    let consumer = ctx
        .spawn_consumer(
            &[events::DETERMINATION_PUBLISHED],
            Preparer {
                months: months.clone(),
                determination: determination.clone(),
            },
        )
        .await?;
    let service = DistributionServiceServer::new(Api {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
        determination,
        months,
    })
    .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, Some(consumer)).await
}

struct Api {
    db: DatabaseConnection,
    outbox: outbox::OutboxSignal,
    determination: Determination,
    months: Arc<month::Months>,
}

/// The eligible households of `m` by `rule` (judged on two threads), each regency's
/// quota filled poorest first.
fn judge(
    rule: &rules::Rule,
    m: &month::Month,
    quotas: &std::collections::HashMap<String, u64>,
) -> Result<(Vec<u32>, Vec<RegionSelection>), (usize, String)> {
    let n = m.households();
    let half = n / 2;
    let (first, second) = std::thread::scope(|s| {
        let second = s.spawn(|| rule.judge(m, half..n));
        (rule.judge(m, 0..half), second.join())
    });
    let mut eligible = first?;
    eligible.extend(second.map_err(|_| (half, "judging the month failed".to_owned()))??);
    Ok(lists::fill(
        &eligible,
        |i| m.regency(i as usize) as usize,
        &m.regencies,
        quotas,
    ))
}

/// Reads a determined month from the determination service's snapshot stream into the
/// columns lists are built from; pages are turned into columns on a blocking thread
/// while the next ones arrive.
async fn load_month(
    determination: Determination,
    year: i32,
    month: u32,
) -> Result<month::Month, Status> {
    let started = std::time::Instant::now();
    let period = dtks_proto::common::v1::Period {
        year,
        month: month as i32,
    };
    let mut stream = determination
        .clone()
        .stream_snapshot(StreamSnapshotRequest {
            period: Some(period),
            region_code: String::new(),
            max_decile: 10,
            batch_size: 5000,
            after_rank: 0,
        })
        .await?
        .into_inner();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SnapshotPage>(8);
    let builder = tokio::task::spawn_blocking(move || -> Result<month::Month, Status> {
        let mut m = month::Month::new(year, month)
            .ok_or_else(|| grpc::invalid_field("period", "not a month"))?;
        while let Some(page) = rx.blocking_recv() {
            for h in page.households {
                let id = uuid::Uuid::parse_str(&h.household_id).map_err(|_| {
                    Status::internal("the snapshot holds a household without a valid id")
                })?;
                let record = h.household.as_ref().ok_or_else(|| {
                    Status::internal("the snapshot page carries no household record")
                })?;
                let household = convert::household_from_proto(record, m.on).map_err(|v| {
                    Status::internal(format!("the snapshot holds an invalid household {id}: {v}"))
                })?;
                let standing = rules::Standing {
                    decile: h.decile,
                    province_decile: h.province_decile,
                    national_rank: h.national_rank,
                    score: h.score,
                };
                m.push(id, &h.region_code, standing, &household)
                    .map_err(Status::internal)?;
            }
        }
        Ok(m)
    });
    while let Some(page) = stream.message().await? {
        if tx.send(page).await.is_err() {
            break; // the builder stopped; its error is answered below
        }
    }
    drop(tx);
    let mut m = builder.await.map_err(grpc::internal)??;
    m.load_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        year,
        month,
        households = m.households(),
        persons = m.ages.len(),
        megabytes = m.bytes() >> 20,
        seconds = started.elapsed().as_secs_f64(),
        "determined month loaded for lists"
    );
    Ok(m)
}

/// The determined month `(year, month)`, loaded once and shared.
async fn prepared(
    months: &month::Months,
    determination: &Determination,
    year: i32,
    month: u32,
) -> Result<Arc<month::Month>, Status> {
    let cell = months.cell(year, month).await;
    cell.get_or_try_init(|| async {
        load_month(determination.clone(), year, month)
            .await
            .map(Arc::new)
    })
    .await
    .cloned()
}

impl Api {
    async fn month(&self, year: i32, month: u32) -> Result<Arc<month::Month>, Status> {
        prepared(&self.months, &self.determination, year, month).await
    }
}

/// Loads a month as soon as it is published, so that its first list does not wait.
struct Preparer {
    months: Arc<month::Months>,
    determination: Determination,
}

impl EventHandler for Preparer {
    async fn handle(
        &self,
        _txn: &sea_orm::DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        if envelope.r#type != events::DETERMINATION_PUBLISHED {
            return Ok(());
        }
        let published: ev::DeterminationPublished = events::payload(envelope)?;
        let Some(period) = published.period else {
            return Ok(());
        };
        let (months, determination) = (self.months.clone(), self.determination.clone());
        // Loading takes a while at national scale; the event is acknowledged at once (the
        // load stays in the event's trace).
        let span = tracing::info_span!("prepare_month", year = period.year, month = period.month);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                if let Err(status) =
                    prepared(&months, &determination, period.year, period.month as u32).await
                {
                    tracing::warn!(year = period.year, month = period.month, code = ?status.code(),
                    message = status.message(), "loading a published month failed; its first list loads it");
                }
            },
            span,
        ));
        Ok(())
    }
}

impl Api {
    async fn decide(
        &self,
        request: Request<DecideDataRequestRequest>,
        decision: requests::Decision,
    ) -> Result<Response<DataRequest>, Status> {
        let who = claims(&request)?.clone();
        let req = request.get_ref();
        Ok(Response::new(
            requests::decide(&self.db, &who, &req.request_id, decision, &req.reason).await?,
        ))
    }
}

type BatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RecipientBatch, Status>> + Send>>;

#[tonic::async_trait]
impl DistributionService for Api {
    #[tracing::instrument(skip_all)]
    async fn build_list(
        &self,
        request: Request<BuildListRequest>,
    ) -> Result<Response<BeneficiaryList>, Status> {
        let req = request.into_inner();
        let (year, month) =
            convert::begun_period_key(req.period.as_ref(), dtks_platform::clock::now())?;
        let (programme, rule) = programmes::current(&self.db, &req.programme_code).await?;
        let version = programme.version as i32;
        if let Some(existing) = self
            .db
            .query_one_raw(stmt(
                &format!("SELECT {} FROM lists WHERE programme_code = $1 AND programme_version = $2 AND year = $3 AND month = $4", lists::COLUMNS),
                [req.programme_code.clone().into(), version.into(), year.into(), month.into()],
            ))
            .await
            .map_err(grpc::internal)?
        {
            return Ok(Response::new(lists::from_row(&existing)?)); // fixed lists are never rebuilt
        }
        let m = self.month(year, month as u32).await?;
        let started = std::time::Instant::now();
        let quotas = programme.quotas.clone();
        let compiled = rule.is_compiled();
        let (selected, regions) = {
            let shared = m.clone();
            tokio::task::spawn_blocking(move || judge(&rule, &shared, &quotas))
                .await
                .map_err(grpc::internal)?
                .map_err(|(i, e)| {
                    Status::failed_precondition(format!(
                        "programme {}'s rule cannot judge household {}: {e}",
                        programme.code, m.ids[i]
                    ))
                })?
        };
        let judged = started.elapsed().as_secs_f64();
        let content_hash = lists::content_hash(&m, &selected);
        let list_id = lists::store(
            &self.db,
            lists::Draft {
                programme_code: &req.programme_code,
                programme_version: version,
                year,
                month,
                regions: &regions,
                content_hash,
            },
            &m,
            &selected,
        )
        .await?;
        tracing::info!(
            programme = %req.programme_code,
            year = m.year,
            month = m.month,
            compiled,
            households = m.households(),
            recipients = selected.len(),
            judged_seconds = judged,
            seconds = started.elapsed().as_secs_f64(),
            "beneficiary list built"
        );
        let row = self
            .db
            .query_one_raw(stmt(
                &format!("SELECT {} FROM lists WHERE list_id = $1", lists::COLUMNS),
                [list_id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::internal("list vanished"))?;
        Ok(Response::new(lists::from_row(&row)?))
    }

    #[tracing::instrument(skip_all)]
    async fn prepare_month(
        &self,
        request: Request<PrepareMonthRequest>,
    ) -> Result<Response<PreparedMonth>, Status> {
        let req = request.into_inner();
        let (year, month) = convert::period_key(req.period.as_ref())?;
        let m = self.month(year, month as u32).await?;
        Ok(Response::new(PreparedMonth {
            period: req.period,
            households: m.households() as u64,
            persons: m.ages.len() as u64,
            load_seconds: m.load_seconds,
            megabytes: (m.bytes() >> 20) as u64,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_list(
        &self,
        request: Request<GetListRequest>,
    ) -> Result<Response<BeneficiaryList>, Status> {
        claims(&request)?;
        let id = uuid::Uuid::parse_str(&request.get_ref().list_id)
            .map_err(|_| grpc::invalid_field("list_id", "must be a UUID"))?;
        let row = self
            .db
            .query_one_raw(stmt(
                &format!("SELECT {} FROM lists WHERE list_id = $1", lists::COLUMNS),
                [id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("no such list"))?;
        Ok(Response::new(lists::from_row(&row)?))
    }

    #[tracing::instrument(skip_all)]
    async fn create_data_request(
        &self,
        request: Request<CreateDataRequestRequest>,
    ) -> Result<Response<DataRequest>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            requests::create(&self.db, &who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn approve_data_request(
        &self,
        request: Request<DecideDataRequestRequest>,
    ) -> Result<Response<DataRequest>, Status> {
        self.decide(request, requests::Decision::Approve).await
    }

    #[tracing::instrument(skip_all)]
    async fn reject_data_request(
        &self,
        request: Request<DecideDataRequestRequest>,
    ) -> Result<Response<DataRequest>, Status> {
        self.decide(request, requests::Decision::Reject).await
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_data_request(
        &self,
        request: Request<DecideDataRequestRequest>,
    ) -> Result<Response<DataRequest>, Status> {
        self.decide(request, requests::Decision::Revoke).await
    }

    #[tracing::instrument(skip_all)]
    async fn record_handover(
        &self,
        request: Request<RecordHandoverRequest>,
    ) -> Result<Response<DataRequest>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            requests::handover(&self.db, &who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_data_request(
        &self,
        request: Request<GetDataRequestRequest>,
    ) -> Result<Response<DataRequest>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            requests::get(&self.db, &who, &request.get_ref().request_id).await?,
        ))
    }

    async fn save_programme(
        &self,
        request: Request<Programme>,
    ) -> Result<Response<Programme>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            programmes::save(&self.db, &who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_programmes(
        &self,
        request: Request<ListProgrammesRequest>,
    ) -> Result<Response<ListProgrammesResponse>, Status> {
        claims(&request)?;
        Ok(Response::new(ListProgrammesResponse {
            programmes: programmes::list(&self.db).await?,
        }))
    }

    #[tracing::instrument(skip_all)]
    #[tracing::instrument(skip_all)]
    async fn approve_list(
        &self,
        request: Request<ApproveListRequest>,
    ) -> Result<Response<BeneficiaryList>, Status> {
        // The programme's Eselon I unit fixes its beneficiaries (KPM).
        let who = claims(&request)?.clone();
        Ok(Response::new(
            lists::approve(&self.db, &self.outbox, &who, &request.get_ref().list_id).await?,
        ))
    }
    type StreamListStream = BatchStream;
    #[tracing::instrument(skip_all)]
    async fn stream_list(
        &self,
        request: Request<StreamListRequest>,
    ) -> Result<Response<BatchStream>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            delivery::stream_list(&self.db, &self.outbox, &who, request.get_ref()).await?,
        ))
    }
    type StreamExtractStream = BatchStream;
    #[tracing::instrument(skip_all)]
    async fn stream_extract(
        &self,
        request: Request<StreamExtractRequest>,
    ) -> Result<Response<BatchStream>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            extract::stream_extract(
                &self.db,
                &self.outbox,
                &self.determination,
                &who,
                request.get_ref(),
            )
            .await?,
        ))
    }
}
