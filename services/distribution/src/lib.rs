//! Distribution (penggunaan data): programmes and their beneficiary lists (KPM), built
//! from a determined snapshot read over gRPC from determination, fixed with a content
//! hash and announced as `distribution.list_fixed`; data requests (permohonan) routed to
//! the authority that decides them; programmes with CEL eligibility rules (the engine is
//! the `dtks-eligibility` crate).
//!
//! The crate's inside, edge first:
//! - [`api`]: the gRPC edge (name the caller, call a use case, answer);
//! - use cases: [`lists`] (build, approve), [`programmes`], [`requests`] (data
//!   requests and their routes), [`delivery`] and [`extract`] (streams to recipients);
//! - [`months`]: determined months loaded once and shared; [`consume`]: the events taken;
//! - [`store`]: statements of the schema; `migrations/*.sql` beside the crate;
//! - [`error`]: the one error type and its gRPC mapping.

pub mod api;
pub mod consume;
pub mod delivery;
pub mod error;
pub mod extract;
pub mod lists;
pub mod months;
pub mod programmes;
pub mod requests;
pub mod store;

use std::sync::Arc;

use dtks_platform::app::Context;
use dtks_platform::auth::BearerToken;
use dtks_platform::{events, grpc, outbox};
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::distribution::v1::distribution_service_server::DistributionServiceServer;
use sea_orm::DatabaseConnection;

use crate::months::Determination;
pub use store::Migrator;

/// Wires the service: the shipped programmes, the determination client, the month
/// preparer and the gRPC edge.
pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let url = ctx.config.upstream.determination()?;
    programmes::seed(&ctx.db).await?;
    let channel = grpc::endpoint(url, &ctx.config.tls)?.connect_lazy();
    let token = BearerToken::for_service(&ctx.config.auth, "service:distribution")?;
    let determination = DeterminationServiceClient::with_interceptor(channel, token)
        .max_decoding_message_size(grpc::MAX_SEND_BYTES);
    let months = Arc::<months::Months>::default();
    let consumer = ctx
        .spawn_consumer(
            &[events::DETERMINATION_PUBLISHED],
            consume::Preparer {
                months: months.clone(),
                determination: determination.clone(),
            },
        )
        .await?;
    let service = dtks_platform::with_limits!(DistributionServiceServer::new(Distribution {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
        determination,
        months,
    }));
    ctx.serve(listener, service, Some(consumer)).await
}

/// What the use cases share: the schema, the outbox, the determination service and the
/// months loaded from it.
pub struct Distribution {
    db: DatabaseConnection,
    outbox: outbox::OutboxSignal,
    determination: Determination,
    months: Arc<months::Months>,
}
