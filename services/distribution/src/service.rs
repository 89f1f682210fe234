use crate::{delivery, extract, lists, programmes, requests, rules};
use dtks_platform::app::Context;
use dtks_platform::auth::{BearerToken, Role, claims};
use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations, stmt};
use dtks_platform::{convert, grpc, outbox};
use dtks_proto::determination::v1::StreamSnapshotRequest;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::distribution::v1::distribution_service_server::{
    DistributionService, DistributionServiceServer,
};
use dtks_proto::distribution::v1::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use sha2::{Digest, Sha256};
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
    let channel = Channel::from_shared(url)?.connect_lazy();
    let token = dtks_platform::auth::issue(
        &ctx.config.auth,
        "service:distribution",
        Role::Service,
        "",
        365 * 24 * 3600,
    )?;
    let determination =
        DeterminationServiceClient::with_interceptor(channel, BearerToken::new(&token)?)
            .max_decoding_message_size(grpc::MAX_SEND_BYTES);
    let service = DistributionServiceServer::new(Api {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
        determination,
    })
    .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, None).await
}

struct Api {
    db: DatabaseConnection,
    outbox: outbox::OutboxSignal,
    determination: Determination,
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
        claims(&request)?.require_role(&[Role::EselonI, Role::PusdatinAdmin])?;
        let req = request.into_inner();
        let (year, month) = convert::period_key(req.period.as_ref())?;
        let (programme, rule) = programmes::current(&self.db, &req.programme_code).await?;
        let version = programme.version as i32;
        let on = chrono::NaiveDate::from_ymd_opt(year, month as u32, 1)
            .ok_or_else(|| grpc::invalid_field("period", "not a month"))?;
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
        let mut stream = self
            .determination
            .clone()
            .stream_snapshot(StreamSnapshotRequest {
                period: req.period,
                region_code: String::new(),
                max_decile: 10,
                batch_size: 2000,
                after_rank: 0,
            })
            .await?
            .into_inner();
        let mut entries = Vec::new();
        // Every household of the month, through the programme's rule.
        while let Some(page) = stream.message().await? {
            for h in page.households {
                let household = h.household.as_ref().ok_or_else(|| {
                    Status::internal("the snapshot page carries no household record")
                })?;
                let household = convert::household_from_proto(household, on).map_err(|v| {
                    Status::internal(format!("the snapshot holds an invalid household: {v}"))
                })?;
                let standing = rules::Standing {
                    decile: h.decile,
                    province_decile: h.province_decile,
                    national_rank: h.national_rank,
                    score: h.score,
                };
                let eligible = rule
                    .eligible(&rules::RuleHousehold::new(&household, standing, on))
                    .map_err(|e| {
                        Status::failed_precondition(format!(
                            "programme {}'s rule cannot judge household {}: {e}",
                            programme.code, h.household_id
                        ))
                    })?;
                if eligible {
                    let head = household.head();
                    entries.push(lists::Entry {
                        household_id: h.household_id,
                        region_code: h.region_code,
                        national_rank: h.national_rank as i64,
                        decile: h.decile as i16,
                        head_nik: head.and_then(|p| p.nik.clone()).map(String::from),
                        head_name: head.map(|p| p.full_name.clone()),
                    });
                }
            }
        }
        // Each regency's quota, poorest first.
        let (entries, regions) = lists::fill(entries, &programme.quotas);
        let mut hasher = Sha256::new();
        for e in &entries {
            hasher.update(e.household_id.as_bytes());
            hasher.update(e.national_rank.to_be_bytes());
        }
        let content_hash = hex::encode(hasher.finalize());
        let list_id = uuid::Uuid::now_v7();
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        txn.execute_raw(stmt(
            "INSERT INTO lists (list_id, programme_code, programme_version, year, month, recipients, content_hash, status, regions)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                list_id.into(), req.programme_code.clone().into(), version.into(), year.into(), month.into(),
                (entries.len() as i64).into(), content_hash.into(), (ListStatus::Draft as i16).into(),
                lists::regions_json(&regions).into(),
            ],
        ))
        .await
        .map_err(grpc::internal)?;
        for (offset, chunk) in entries.chunks(5000).enumerate() {
            let positions: Vec<i64> = (0..chunk.len())
                .map(|i| (offset * 5000 + i + 1) as i64)
                .collect();
            let ids: Vec<uuid::Uuid> = chunk
                .iter()
                .map(|e| uuid::Uuid::parse_str(&e.household_id))
                .collect::<Result<_, _>>()
                .map_err(grpc::internal)?;
            let regions: Vec<String> = chunk.iter().map(|e| e.region_code.clone()).collect();
            let ranks: Vec<i64> = chunk.iter().map(|e| e.national_rank).collect();
            let deciles: Vec<i16> = chunk.iter().map(|e| e.decile).collect();
            // Arrays carry no NULLs here: an empty text stands for none.
            let niks: Vec<String> = chunk
                .iter()
                .map(|e| e.head_nik.clone().unwrap_or_default())
                .collect();
            let names: Vec<String> = chunk
                .iter()
                .map(|e| e.head_name.clone().unwrap_or_default())
                .collect();
            txn.execute_raw(stmt(
                "INSERT INTO list_entries (list_id, position, household_id, region_code, national_rank, decile, head_nik, head_name)
                 SELECT $1, p, h, r, n, d, NULLIF(k, ''), NULLIF(m, '')
                 FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::bigint[], $6::int2[], $7::text[], $8::text[]) AS u (p, h, r, n, d, k, m)",
                [list_id.into(), positions.into(), ids.into(), regions.into(), ranks.into(), deciles.into(), niks.into(), names.into()],
            ))
            .await
            .map_err(grpc::internal)?;
        }
        let row = txn
            .query_one_raw(stmt(
                &format!("SELECT {} FROM lists WHERE list_id = $1", lists::COLUMNS),
                [list_id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::internal("list vanished"))?;
        txn.commit().await.map_err(grpc::internal)?;
        Ok(Response::new(lists::from_row(&row)?))
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
        who.require_role(&[Role::PusdatinAdmin])?;
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
        who.require_role(&[Role::EselonI])?;
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
