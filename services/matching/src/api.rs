//! The gRPC edge of matching: each method decodes and checks its request, authorizes
//! the caller, calls its use case and encodes the answer. No SQL lives here; errors
//! reach the caller through [`crate::error::Error`]'s one mapping.

use dtks_platform::{grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use dtks_proto::matching::v1::matching_service_server::MatchingService;
use dtks_proto::matching::v1::*;
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

use crate::matcher::Matcher;
use crate::{lookup, results, review, wave};

pub struct Api {
    pub db: DatabaseConnection,
    pub matcher: Matcher,
    pub outbox: outbox::OutboxSignal,
    /// Persons one MatchWave stream may carry.
    pub wave_limit: u64,
}

fn uuid_field(field: &str, text: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(text).map_err(|_| grpc::invalid_field(field, "must be a UUID"))
}

type WaveStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<MatchWaveResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl MatchingService for Api {
    #[tracing::instrument(skip_all)]
    async fn match_person(
        &self,
        request: Request<MatchPersonRequest>,
    ) -> Result<Response<MatchPersonResponse>, Status> {
        let who = dtks_platform::auth::claims(&request)?.clone();
        let (person, village_code) = lookup::admit(&who, request.into_inner())?;
        let answer = lookup::person(&self.db, &self.matcher, &who, person, village_code).await?;
        Ok(Response::new(answer))
    }

    type MatchWaveStream = WaveStream;

    #[tracing::instrument(skip_all)]
    async fn match_wave(
        &self,
        request: Request<tonic::Streaming<MatchWaveRequest>>,
    ) -> Result<Response<WaveStream>, Status> {
        let who = dtks_platform::auth::claims(&request)?.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(wave::CHUNK);
        tokio::spawn(wave::run(
            self.db.clone(),
            self.matcher.clone(),
            who,
            self.wave_limit,
            request.into_inner(),
            tx,
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_proposal_match(
        &self,
        request: Request<GetProposalMatchRequest>,
    ) -> Result<Response<ev::ProposalMatched>, Status> {
        let who = dtks_platform::auth::claims(&request)?;
        let id = uuid_field("proposal_id", &request.get_ref().proposal_id)?;
        Ok(Response::new(
            results::of_proposal(&self.db, who, id).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_review_pairs(
        &self,
        request: Request<ListReviewPairsRequest>,
    ) -> Result<Response<ListReviewPairsResponse>, Status> {
        let who = dtks_platform::auth::claims(&request)?;
        let r = request.get_ref();
        let (pairs, next_page_token) = review::list(
            &self.db,
            who,
            &r.region_code,
            r.include_decided,
            r.page.as_ref(),
        )
        .await?;
        Ok(Response::new(ListReviewPairsResponse {
            pairs,
            page: Some(pb::PageResponse { next_page_token }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn decide_review_pair(
        &self,
        request: Request<DecideReviewPairRequest>,
    ) -> Result<Response<ReviewPair>, Status> {
        let who = dtks_platform::auth::claims(&request)?;
        let r = request.get_ref();
        let decision = ReviewDecision::try_from(r.decision).unwrap_or_default();
        let pair = review::decide(&self.db, who, &r.pair_id, decision, &r.note).await?;
        self.outbox.wake();
        Ok(Response::new(pair))
    }
}
