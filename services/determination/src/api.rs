//! The gRPC edge of determination: each call names its caller, hands the request to a
//! use case ([`crate::run`], [`crate::read`]) and answers with what it returns; `?`
//! maps the use case's error to a `Status`.

use dtks_platform::auth::claims;
use dtks_platform::{convert, grpc};
use dtks_proto::determination::v1::determination_service_server::DeterminationService;
use dtks_proto::determination::v1::*;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::read::PageStream;
use crate::run::Api;

dtks_platform::grpc_edge! {
    impl DeterminationService for Api {
        use_cases {
            stream_snapshot(StreamSnapshotRequest) -> PageStream = stream;
            get_household_standing(GetHouseholdStandingRequest) -> HouseholdStanding = standing;
            get_registry_household(GetRegistryHouseholdRequest) -> RegistryHousehold = registry_household;
        }

        #[tracing::instrument(skip_all)]
        async fn determine(
            &self,
            request: Request<DetermineRequest>,
        ) -> Result<Response<Snapshot>, Status> {
            // Finding 13: 2099-12 was determined. A month is determined once it has begun.
            let period = convert::begun_period_key(
                request.get_ref().period.as_ref(),
                dtks_platform::clock::now(),
            )?;
            Ok(Response::new(self.determine(period).await?))
        }

        #[tracing::instrument(skip_all)]
        async fn get_snapshot(
            &self,
            request: Request<GetSnapshotRequest>,
        ) -> Result<Response<Snapshot>, Status> {
            claims(&request)?;
            let period = convert::period_key(request.get_ref().period.as_ref())?;
            let snapshot = self.snapshot(&self.db, period).await?;
            Ok(Response::new(snapshot.ok_or(Error::NotDetermined)?))
        }

        type StreamSnapshotStream = PageStream;

        #[tracing::instrument(skip_all)]
        async fn diff_snapshots(
            &self,
            request: Request<DiffSnapshotsRequest>,
        ) -> Result<Response<SnapshotDiff>, Status> {
            claims(&request)?;
            let req = request.get_ref();
            let from = convert::period_key(req.from.as_ref())
                .map_err(|_| grpc::invalid_field("from", "must be a period"))?;
            let to = convert::period_key(req.to.as_ref())
                .map_err(|_| grpc::invalid_field("to", "must be a period"))?;
            Ok(Response::new(self.difference(from, to).await?))
        }
    }
}
