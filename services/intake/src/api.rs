//! The gRPC edge: each call names its caller, hands the request to a use case and
//! answers with what it returns; `?` maps the use case's error to a `Status`.

use dtks_platform::auth::claims;
use dtks_proto::intake::v1::intake_service_server::IntakeService;
use dtks_proto::intake::v1::*;
use tonic::{Request, Response, Status, Streaming};

use crate::Intake;

dtks_platform::grpc_edge! {
    impl IntakeService for Intake {
        use_cases {
            submit_proposal(SubmitProposalRequest) -> SubmitProposalResponse = submit;
            get_proposal(GetProposalRequest) -> Proposal = proposal;
            list_proposals(ListProposalsRequest) -> ListProposalsResponse = proposals;
            withdraw_proposal(WithdrawProposalRequest) -> Proposal = withdraw;
        }

        #[tracing::instrument(skip_all)]
        async fn import_proposals(
            &self,
            request: Request<Streaming<ImportProposalsRequest>>,
        ) -> Result<Response<ImportProposalsResponse>, Status> {
            let who = claims(&request)?.clone();
            Ok(Response::new(self.import(&who, request.into_inner()).await?))
        }
    }
}
