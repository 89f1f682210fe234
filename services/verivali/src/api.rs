//! The gRPC edge of verivali: each call names its caller and hands the request to a use
//! case — `read`, `review` (the region's steps), `decide` (the deciding steps),
//! `aftercare`, `complaints`, `qa`, `officers` — and answers with what it returns; `?`
//! maps the use case's error to a `Status`.

use dtks_platform::auth;
use dtks_proto::verivali::v1::verivali_service_server::VerivaliService;
use dtks_proto::verivali::v1::*;
use tonic::{Request, Response, Status};

use crate::{Verivali, aftercare, complaints};

dtks_platform::grpc_edge! {
    impl VerivaliService for Verivali {
        use_cases {
            get_case(GetCaseRequest) -> Case = case;
            list_cases(ListCasesRequest) -> ListCasesResponse = cases;
            work_queue(WorkQueueRequest) -> ListCasesResponse = queue;
            record_village_review(RecordVillageReviewRequest) -> BatchResult = village_review;
            record_field_verification(RecordFieldVerificationRequest) -> Case = field_verification;
            sign_off(BatchRequest) -> BatchResult = sign_off_cases;
            forward_to_ministry(BatchRequest) -> BatchResult = forward_cases;
            assess(AssessRequest) -> Case = assess_one;
            assess_batch(BatchRequest) -> BatchResult = assess_all;
            return_to_region(BatchRequest) -> BatchResult = return_cases;
            resubmit(ResubmitRequest) -> Case = resubmit_case;
            list_reverifications(ListReverificationsRequest) -> ListReverificationsResponse = reverifications;
            draw_qa_sample(DrawQaSampleRequest) -> QaSample = qa_sample;
            record_qa_result(RecordQaResultRequest) -> QaItem = qa_result;
            qa_report(QaReportRequest) -> QaReportResponse = qa_summary;
            list_due(ListDueRequest) -> ListDueResponse = due;
            register_officer(RegisterOfficerRequest) -> Officer = enrol;
            reassign_officer(ReassignOfficerRequest) -> Officer = reassign;
            deactivate_officer(DeactivateOfficerRequest) -> Officer = deactivate;
            list_officers(ListOfficersRequest) -> ListOfficersResponse = officers;
        }

        // A complaint and a completed re-verification publish events: the relay is woken.
        #[tracing::instrument(skip_all)]
        async fn file_complaint(
            &self,
            request: Request<FileComplaintRequest>,
        ) -> Result<Response<Complaint>, Status> {
            let who = auth::claims(&request)?.clone();
            let (complaint, _) =
                complaints::file_complaint(&self.db, &who, request.into_inner(), self.now())
                    .await?;
            self.outbox.wake();
            Ok(Response::new(complaint))
        }

        #[tracing::instrument(skip_all)]
        async fn complete_reverification(
            &self,
            request: Request<CompleteReverificationRequest>,
        ) -> Result<Response<Reverification>, Status> {
            let who = auth::claims(&request)?.clone();
            let task =
                aftercare::complete_task(&self.db, &who, request.into_inner(), self.now()).await?;
            self.outbox.wake();
            Ok(Response::new(task))
        }
    }
}
