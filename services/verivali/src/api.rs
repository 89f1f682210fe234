//! The gRPC edge of verivali: each call names its caller and hands the request to a use
//! case — [`crate::read`], [`crate::review`] (the region's steps), [`crate::decide`] (the
//! deciding steps), [`crate::aftercare`], [`crate::qa`], [`crate::officers`] — and answers
//! with what it returns; `?` maps the use case's error to a `Status`.

use dtks_platform::auth;
use dtks_proto::verivali::v1::verivali_service_server::VerivaliService;
use dtks_proto::verivali::v1::*;
use tonic::{Request, Response, Status};

use crate::workflow::Step;
use crate::{Verivali, aftercare, complaints, officers, qa};

#[tonic::async_trait]
impl VerivaliService for Verivali {
    #[tracing::instrument(skip_all)]
    async fn get_case(&self, request: Request<GetCaseRequest>) -> Result<Response<Case>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(self.case(who, request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn list_cases(
        &self,
        request: Request<ListCasesRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(self.cases(who, request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn work_queue(
        &self,
        request: Request<WorkQueueRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(self.queue(who, request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn record_village_review(
        &self,
        request: Request<RecordVillageReviewRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            self.village_review(who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn record_field_verification(
        &self,
        request: Request<RecordFieldVerificationRequest>,
    ) -> Result<Response<Case>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            self.field_verification(who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn sign_off(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            self.plain_batch(who, Step::SignOff, request.get_ref())
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn forward_to_ministry(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            self.plain_batch(who, Step::Forward, request.get_ref())
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn assess(&self, request: Request<AssessRequest>) -> Result<Response<Case>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            self.assess_one(who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn assess_batch(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            self.assess_all(who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn return_to_region(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            self.return_cases(who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn resubmit(&self, request: Request<ResubmitRequest>) -> Result<Response<Case>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            self.resubmit_case(who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn file_complaint(
        &self,
        request: Request<FileComplaintRequest>,
    ) -> Result<Response<Complaint>, Status> {
        let who = auth::claims(&request)?.clone();
        let (complaint, _) =
            complaints::file_complaint(&self.db, &who, request.into_inner(), self.now()).await?;
        self.outbox.wake();
        Ok(Response::new(complaint))
    }

    #[tracing::instrument(skip_all)]
    async fn list_reverifications(
        &self,
        request: Request<ListReverificationsRequest>,
    ) -> Result<Response<ListReverificationsResponse>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            aftercare::list_tasks(&self.db, who, request.get_ref(), self.now()).await?,
        ))
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

    #[tracing::instrument(skip_all)]
    async fn draw_qa_sample(
        &self,
        request: Request<DrawQaSampleRequest>,
    ) -> Result<Response<QaSample>, Status> {
        let who = auth::claims(&request)?.clone();
        Ok(Response::new(
            qa::draw_sample(&self.db, &who, request.into_inner(), self.now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn record_qa_result(
        &self,
        request: Request<RecordQaResultRequest>,
    ) -> Result<Response<QaItem>, Status> {
        let who = auth::claims(&request)?.clone();
        Ok(Response::new(
            qa::record_result(&self.db, &who, request.into_inner(), self.now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn qa_report(
        &self,
        request: Request<QaReportRequest>,
    ) -> Result<Response<QaReportResponse>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            qa::report(&self.db, who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_due(
        &self,
        request: Request<ListDueRequest>,
    ) -> Result<Response<ListDueResponse>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            aftercare::list_due(&self.db, who, request.get_ref(), self.now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn register_officer(
        &self,
        request: Request<RegisterOfficerRequest>,
    ) -> Result<Response<Officer>, Status> {
        let who = auth::claims(&request)?.clone();
        let now = self.clock.now();
        let officer = officers::register(&self.db, &who, request.into_inner(), now).await?;
        Ok(Response::new(officer))
    }

    #[tracing::instrument(skip_all)]
    async fn reassign_officer(
        &self,
        request: Request<ReassignOfficerRequest>,
    ) -> Result<Response<Officer>, Status> {
        let who = auth::claims(&request)?.clone();
        let now = self.clock.now();
        let officer =
            officers::reassign(&self.db, &self.redis, &who, request.into_inner(), now).await?;
        Ok(Response::new(officer))
    }

    #[tracing::instrument(skip_all)]
    async fn deactivate_officer(
        &self,
        request: Request<DeactivateOfficerRequest>,
    ) -> Result<Response<Officer>, Status> {
        let who = auth::claims(&request)?.clone();
        let now = self.clock.now();
        let officer =
            officers::deactivate(&self.db, &self.redis, &who, request.into_inner(), now).await?;
        Ok(Response::new(officer))
    }

    #[tracing::instrument(skip_all)]
    async fn list_officers(
        &self,
        request: Request<ListOfficersRequest>,
    ) -> Result<Response<ListOfficersResponse>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            officers::list(&self.db, who, request.get_ref()).await?,
        ))
    }
}
