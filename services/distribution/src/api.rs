//! The gRPC edge of distribution: each call names its caller, hands the request to a use
//! case and answers with what it returns; `?` maps the use case's error to a `Status`.

use dtks_platform::auth::claims;
use dtks_platform::convert;
use dtks_proto::distribution::v1::distribution_service_server::DistributionService;
use dtks_proto::distribution::v1::*;
use tonic::{Request, Response, Status};

use crate::{Distribution, delivery, extract, lists, programmes, requests};

impl Distribution {
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

dtks_platform::grpc_edge! {
    impl DistributionService for Distribution {
        use_cases {
            build_list(BuildListRequest) -> BeneficiaryList = build;
            get_list(GetListRequest) -> BeneficiaryList = list;
            create_data_request(CreateDataRequestRequest) -> DataRequest = file_request;
            record_handover(RecordHandoverRequest) -> DataRequest = handover_minutes;
            get_data_request(GetDataRequestRequest) -> DataRequest = data_request;
            save_programme(Programme) -> Programme = save;
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
}
