//! The gRPC edge: each call names its caller, hands the request to a use case and
//! answers with what it returns; `?` maps the use case's error to a `Status`.

use dtks_platform::auth::claims;
use dtks_proto::intake::v1::intake_service_server::IntakeService;
use dtks_proto::intake::v1::*;
use tonic::{Request, Response, Status, Streaming};

use crate::Intake;

#[tonic::async_trait]
impl IntakeService for Intake {
    #[tracing::instrument(skip_all)]
    async fn submit_proposal(
        &self,
        request: Request<SubmitProposalRequest>,
    ) -> Result<Response<SubmitProposalResponse>, Status> {
        let who = claims(&request)?.clone();
        let stored = self.submit(&who, request.into_inner()).await?;
        Ok(Response::new(SubmitProposalResponse {
            proposal_id: stored.proposal_id.to_string(),
            status: stored.status,
            replayed: stored.replayed,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn import_proposals(
        &self,
        request: Request<Streaming<ImportProposalsRequest>>,
    ) -> Result<Response<ImportProposalsResponse>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            self.import(&who, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_proposal(
        &self,
        request: Request<GetProposalRequest>,
    ) -> Result<Response<Proposal>, Status> {
        let who = claims(&request)?;
        Ok(Response::new(
            self.proposal(who, &request.get_ref().proposal_id).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_proposals(
        &self,
        request: Request<ListProposalsRequest>,
    ) -> Result<Response<ListProposalsResponse>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            self.proposals(&who, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn withdraw_proposal(
        &self,
        request: Request<WithdrawProposalRequest>,
    ) -> Result<Response<Proposal>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            self.withdraw(&who, request.into_inner()).await?,
        ))
    }
}
