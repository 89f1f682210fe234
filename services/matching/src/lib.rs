//! Matching (pemadanan): every person of a proposal is checked against the civil
//! registry (Dukcapil) through the DCI adapter, with answers cached in Redis; the
//! per-person and per-household outcomes are published as `proposal.matched`.
//!
//! The crate's inside, edge first:
//! - [`api`]: the gRPC edge (decode, authorize, call a use case, encode);
//! - use cases: [`lookup`] (MatchPerson, a wave's chunk), [`wave`] (the MatchWave
//!   stream), `results` (a proposal's stored result), `review` (clerical review),
//!   `pending` (matching what intake sends);
//! - [`consume`]: the events it takes; `callbacks`: the registry's DCI callbacks;
//! - [`matcher`] and [`link`]: identity by NIK, then by linkage; [`dci`]: the registry
//!   port;
//! - [`store`]: every statement of its schema; `migrations/*.sql` beside the crate;
//! - [`error`]: the one error type and its gRPC mapping.
//!
//! A library as well as the service's binary, so that the service benchmark can ask the
//! registry the very searches linkage asks (`link::candidate_queries`, in the matcher's
//! two rounds) and measure what they retrieve.

pub mod api;
mod callbacks;
pub mod consume;
pub mod dci;
pub mod error;
pub mod learn;
pub mod link;
pub mod lookup;
pub mod matcher;
mod pending;
mod results;
mod review;
mod settle;
pub mod store;
pub mod wave;

use std::sync::Arc;

use dtks_platform::app::Context;
use dtks_platform::cache::Cache;
use dtks_proto::matching::v1::matching_service_server::MatchingServiceServer;
use tokio::sync::Notify;

pub use store::Migrator;

/// Wires the service: the registry adapter, the DCI callback listener, the matching
/// worker, the event consumer and the gRPC edge.
pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let url = ctx.config.upstream.civil_registry()?;
    let registry = dci::DciRegistry::new(url, &ctx.config.dci)?;
    let cache = Cache::connect(&ctx.config.redis).await?;
    let matcher = matcher::Matcher {
        registry: registry.clone(),
        cache: cache.clone(),
        model: Arc::new(link::load_model()?),
        populations: Default::default(),
        learning: Default::default(),
    };
    if let Some(addr) = &ctx.config.dci.callback_addr {
        let callbacks = callbacks::router(callbacks::Callbacks {
            registry: registry.clone(),
            db: ctx.db.clone(),
            cache,
            outbox: ctx.outbox.clone(),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "DCI callbacks listening");
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(dtks_platform::dci::no_delay(listener), callbacks)
                .with_graceful_shutdown(shutdown.wait())
                .await
            {
                tracing::error!(%error, "DCI callback listener failed");
            }
        });
        if ctx.config.dci.callback_url.is_some() {
            tokio::spawn(callbacks::keep_subscribing(
                registry.clone(),
                ctx.shutdown.clone(),
            ));
        }
    }
    let wake = Arc::new(Notify::new());
    tokio::spawn(pending::run(
        ctx.db.clone(),
        matcher.clone(),
        ctx.outbox.clone(),
        wake.clone(),
        ctx.shutdown.clone(),
    ));
    let consumer = ctx
        .spawn_consumer(consume::TYPES, consume::Consumed { wake })
        .await?;
    let service = dtks_platform::with_limits!(MatchingServiceServer::new(Api {
        db: ctx.db.clone(),
        matcher,
        outbox: ctx.outbox.clone(),
        wave_limit: ctx.config.limits.wave_persons_per_stream,
    }));
    ctx.serve(listener, service, Some(consumer)).await
}

/// What the use cases share: the schema, the matcher, the outbox's signal.
pub struct Api {
    pub db: sea_orm::DatabaseConnection,
    pub matcher: matcher::Matcher,
    pub outbox: dtks_platform::outbox::OutboxSignal,
    /// Persons one MatchWave stream may carry.
    pub wave_limit: u64,
}
