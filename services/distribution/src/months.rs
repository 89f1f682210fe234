//! Determined months as lists read them, loaded once from the determination service's
//! snapshot stream — when the month is published (`determination.published`), when an
//! operator prepares it, or at the first list that needs it — and shared by every list
//! built on it. The service keeps the two newest months it has loaded.

use std::sync::Arc;

use dtks_eligibility::household::Standing;
use dtks_eligibility::month::Month;
use dtks_platform::auth::BearerToken;
use dtks_platform::{convert, grpc};
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::determination::v1::{SnapshotPage, StreamSnapshotRequest};
use dtks_proto::distribution::v1::{PrepareMonthRequest, PreparedMonth};
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::Distribution;
use crate::error::Result;

/// The determination service, called as distribution.
pub type Determination = DeterminationServiceClient<InterceptedService<Channel, BearerToken>>;

/// A month being loaded or loaded, shared by everyone who needs it.
pub type Cell = Arc<tokio::sync::OnceCell<Arc<Month>>>;

/// The months loaded, newest kept.
#[derive(Default)]
pub struct Months {
    loaded: tokio::sync::Mutex<Vec<(i32, u32, Cell)>>,
}

/// How many months stay loaded.
const KEEP: usize = 2;

impl Months {
    /// The cell of month `(year, month)`, made (and older months let go) if new.
    pub async fn cell(&self, year: i32, month: u32) -> Cell {
        let mut loaded = self.loaded.lock().await;
        if let Some((_, _, cell)) = loaded.iter().find(|(y, m, _)| (*y, *m) == (year, month)) {
            return cell.clone();
        }
        let cell = Arc::new(tokio::sync::OnceCell::new());
        loaded.push((year, month, cell.clone()));
        loaded.sort_by_key(|(y, m, _)| std::cmp::Reverse((*y, *m)));
        // A month older than the kept ones is still answered; it is just not kept.
        loaded.truncate(KEEP);
        cell
    }
}

/// Reads a determined month from the determination service's snapshot stream into the
/// columns lists are built from; pages are turned into columns on a blocking thread
/// while the next ones arrive.
async fn load_month(determination: Determination, year: i32, month: u32) -> Result<Month> {
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
    let builder = tokio::task::spawn_blocking(move || -> Result<Month> {
        let mut m =
            Month::new(year, month).ok_or_else(|| grpc::invalid_field("period", "not a month"))?;
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
                let standing = Standing {
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
    let mut m = builder.await??;
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
pub(crate) async fn prepared(
    months: &Months,
    determination: &Determination,
    year: i32,
    month: u32,
) -> Result<Arc<Month>> {
    let cell = months.cell(year, month).await;
    cell.get_or_try_init(|| async {
        load_month(determination.clone(), year, month)
            .await
            .map(Arc::new)
    })
    .await
    .cloned()
}

impl Distribution {
    /// Loads a determined month ahead of the lists that will need it.
    pub(crate) async fn prepare_month(
        &self,
        _who: &dtks_platform::auth::Claims,
        req: &PrepareMonthRequest,
    ) -> Result<PreparedMonth> {
        let (year, month) = convert::period_key(req.period.as_ref())?;
        let m = self.month(year, month as u32).await?;
        Ok(PreparedMonth {
            period: req.period,
            households: m.households() as u64,
            persons: m.ages.len() as u64,
            load_seconds: m.load_seconds,
            megabytes: (m.bytes() >> 20) as u64,
        })
    }

    /// The determined month `(year, month)`, loaded once and shared.
    pub(crate) async fn month(&self, year: i32, month: u32) -> Result<Arc<Month>> {
        prepared(&self.months, &self.determination, year, month).await
    }
}
