//! The MatchWave stream: persons admitted one by one as they arrive, assessed in chunks
//! of [`CHUNK`] with [`CHUNKS_IN_FLIGHT`] at once, answered in chunk order. A person
//! refused at the edge is answered at once, naming the field; the rest go on.

use dtks_platform::auth::Claims;
use dtks_platform::grpc;
use dtks_proto::matching::v1::{MatchWaveRequest, MatchWaveResponse, Refusal};
use sea_orm::DatabaseConnection;
use tonic::Status;

use crate::matcher::Matcher;

/// Persons of a wave assessed together (their NIKs in one round of messages, their
/// searches in the next).
pub const CHUNK: usize = 500;
/// Chunks of one wave being assessed at once.
const CHUNKS_IN_FLIGHT: usize = 4;

pub type Answers = tokio::sync::mpsc::Sender<Result<MatchWaveResponse, Status>>;

/// A person of a wave refused at the edge: the fields the refusal names, within
/// `prefix`; a refusal naming none (the region) is the village's.
fn refused(reference: String, prefix: &str, status: &Status) -> MatchWaveResponse {
    let code = grpc::code_name(status.code());
    let mut refusals: Vec<Refusal> = grpc::violations_of(status)
        .into_iter()
        .map(|(field, reason)| Refusal {
            field: format!("{prefix}{field}"),
            reason,
            code: code.to_owned(),
        })
        .collect();
    if refusals.is_empty() {
        refusals.push(Refusal {
            field: format!("{prefix}village_code"),
            reason: status.message().to_owned(),
            code: code.to_owned(),
        });
    }
    MatchWaveResponse {
        reference,
        result: None,
        refused: refusals,
    }
}

type Working = tokio::task::JoinSet<crate::error::Result<Vec<MatchWaveResponse>>>;

/// Answers what a finished chunk found; false once the caller has gone or a chunk failed
/// (the failure is the stream's last answer).
async fn deliver(
    done: Result<crate::error::Result<Vec<MatchWaveResponse>>, tokio::task::JoinError>,
    tx: &Answers,
) -> bool {
    match done
        .map_err(crate::error::Error::from)
        .and_then(|r| r)
        .map_err(Status::from)
    {
        Ok(answers) => {
            for answer in answers {
                if tx.send(Ok(answer)).await.is_err() {
                    return false;
                }
            }
            true
        }
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            false
        }
    }
}

/// Drives one wave until the caller's stream ends (or the caller goes).
/// A wave's answers as the edge streams them.
pub type WaveStream = tonic::codegen::BoxStream<MatchWaveResponse>;

impl crate::Api {
    /// MatchWave: the caller's persons matched as they arrive, answered in chunks.
    pub(crate) async fn match_wave(
        &self,
        who: &Claims,
        persons: tonic::Streaming<MatchWaveRequest>,
    ) -> Result<WaveStream, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNK);
        let (db, matcher) = (self.db.clone(), self.matcher.clone());
        let run = run(db, matcher, who.clone(), self.wave_limit, persons, tx);
        tokio::spawn(run);
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

pub async fn run(
    db: DatabaseConnection,
    matcher: Matcher,
    who: Claims,
    limit: u64,
    mut incoming: tonic::Streaming<MatchWaveRequest>,
    tx: Answers,
) {
    let mut working = Working::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut received = 0u64;
    loop {
        let item = match incoming.message().await {
            Ok(item) => item,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        let last = item.is_none();
        if let Some(item) = item {
            received += 1;
            match admit(&who, item, received, limit) {
                Ok(admitted) => chunk.push(admitted),
                Err(answer) => {
                    if tx.send(Ok(answer)).await.is_err() {
                        return;
                    }
                }
            }
        }
        if chunk.len() >= CHUNK || (last && !chunk.is_empty()) {
            while working.len() >= CHUNKS_IN_FLIGHT {
                if let Some(done) = working.join_next().await
                    && !deliver(done, &tx).await
                {
                    return;
                }
            }
            let batch = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            working.spawn(crate::lookup::chunk(
                db.clone(),
                matcher.clone(),
                who.clone(),
                batch,
            ));
        }
        if last {
            break;
        }
    }
    while let Some(done) = working.join_next().await {
        if !deliver(done, &tx).await {
            return;
        }
    }
}

/// The `received`-th person of a wave, admitted (reference, person, village), or the
/// answer that refuses them.
fn admit(
    who: &Claims,
    item: MatchWaveRequest,
    received: u64,
    limit: u64,
) -> Result<(String, dtks_proto::common::v1::Person, String), MatchWaveResponse> {
    let violations = dtks_platform::edge::violations("dtks.matching.v1.MatchWaveRequest", &item);
    let admitted = if received > limit {
        Err((
            "",
            grpc::invalid_field(
                "reference",
                format!("a wave carries at most {limit} persons; send the rest in another"),
            ),
        ))
    } else if !violations.0.is_empty() {
        Err(("", grpc::invalid_argument(&violations)))
    } else {
        item.request
            .ok_or_else(|| ("", grpc::invalid_field("request", "is required")))
            .and_then(|r| crate::lookup::admit(who, r).map_err(|s| ("request.", s)))
    };
    match admitted {
        Ok((person, village)) => Ok((item.reference, person, village)),
        Err((prefix, status)) => Err(refused(item.reference, prefix, &status)),
    }
}
