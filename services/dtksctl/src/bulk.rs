//! The client side of intake's bulk path: proposals go in streams of at most
//! [`STREAM_ROWS`] (the service's per-stream limit), several streams in flight, with a
//! progress line on standard error.

use std::io::IsTerminal;
use std::time::Instant;

use dtks_proto::intake::v1::{
    ImportProposalsRequest, RowResult, SubmitProposalRequest,
    intake_service_client::IntakeServiceClient,
};
use futures::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use dtks_platform::auth::BearerToken;

pub type Client = IntakeServiceClient<InterceptedService<Channel, BearerToken>>;

/// Rows per import stream: intake's default `limits.import_rows_per_stream`.
pub const STREAM_ROWS: usize = 10_000;

#[derive(Default)]
pub struct Outcome {
    pub accepted: u64,
    /// Accepted rows that repeated an earlier proposal (answered with the first one).
    pub replayed: u64,
    /// Every refused row with its reasons, by row number.
    pub rejected: Vec<RowResult>,
}

/// A progress line on standard error, redrawn at most ten times a second, only on a
/// terminal (or when `force` is set).
pub struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
    show: bool,
}

impl Progress {
    pub fn new(total: u64, force: bool) -> Self {
        Self {
            total,
            done: 0,
            started: Instant::now(),
            last: Instant::now(),
            show: force || std::io::stderr().is_terminal(),
        }
    }

    pub fn advance(&mut self, rows: u64) {
        self.done += rows;
        if self.show && (self.last.elapsed().as_millis() >= 100 || self.done == self.total) {
            self.last = Instant::now();
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            eprint!(
                "\r  {:>9} / {} rows ({:>3.0} %)  {:>8.0} rows/s",
                self.done,
                self.total,
                100.0 * self.done as f64 / self.total.max(1) as f64,
                rate
            );
        }
    }

    pub fn finish(&self) {
        if self.show {
            eprintln!();
        }
    }
}

/// Sends `rows` (row number, proposal) through `ImportProposals`, `concurrency` streams
/// at a time.
pub async fn send(
    client: &Client,
    rows: Vec<(u64, SubmitProposalRequest)>,
    concurrency: usize,
    progress: &mut Progress,
) -> anyhow::Result<Outcome> {
    let mut chunks = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<ImportProposalsRequest> = rows
            .by_ref()
            .take(STREAM_ROWS)
            .map(|(row, proposal)| ImportProposalsRequest {
                row,
                proposal: Some(proposal),
            })
            .collect();
        chunks.push(chunk);
    }
    let mut answers = futures::stream::iter(chunks.into_iter().map(|chunk| {
        let mut client = client.clone();
        async move {
            let n = chunk.len() as u64;
            let response = client
                .import_proposals(futures::stream::iter(chunk))
                .await?
                .into_inner();
            Ok::<_, tonic::Status>((n, response))
        }
    }))
    .buffer_unordered(concurrency.max(1));
    let mut outcome = Outcome::default();
    while let Some(answer) = answers.next().await {
        let (n, response) = answer?;
        progress.advance(n);
        outcome.accepted += response.accepted;
        for row in response.rows {
            if !row.errors.is_empty() {
                outcome.rejected.push(row);
            } else if row.replayed {
                outcome.replayed += 1;
            }
        }
    }
    progress.finish();
    outcome.rejected.sort_by_key(|r| r.row);
    Ok(outcome)
}
