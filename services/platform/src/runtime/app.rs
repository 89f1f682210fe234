//! The life of a service process, written once: `<binary> migrate` applies migrations
//! and exits; `<binary>` (or `<binary> serve`) loads config, starts telemetry, connects
//! PostgreSQL and RabbitMQ, runs the outbox relay and the audit log's sequencer, hands a [`Context`] to the service's
//! own start function, and drains on SIGTERM/SIGINT.

use std::future::Future;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::config::Config;
use crate::outbox::OutboxSignal;
use crate::shutdown::Shutdown;

/// What every service's start function receives.
#[derive(Clone)]
pub struct Context {
    pub config: Config,
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub outbox: OutboxSignal,
    pub shutdown: Shutdown,
    pub auth: Authenticator,
}

pub async fn run<M, F, Fut>(service: &'static str, start: F) -> anyhow::Result<()>
where
    M: MigratorTrait,
    F: FnOnce(Context, TcpListener) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = Config::load(service)?;
    let _telemetry = crate::telemetry::init(service, &config.telemetry)?;
    match std::env::args().nth(1).as_deref() {
        Some("migrate") => return crate::schema::migrate::<M>(&config.database, service).await,
        None | Some("serve") => {}
        Some(other) => anyhow::bail!("unknown command `{other}`; use `migrate` or `serve`"),
    }
    let (context, relay) = Context::connect(config).await?;
    let listener = TcpListener::bind(&context.config.grpc_addr).await?;
    let result = start(context, listener).await;
    let _ = relay.await;
    tracing::info!("stopped");
    result
}

impl Context {
    /// Connects PostgreSQL and RabbitMQ for `config` and starts the outbox relay (the
    /// handle ends after shutdown). `run` does this for a service process; a test that
    /// runs a service in its own process (to give it a paused clock) does it itself.
    pub async fn connect(config: Config) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let keys = config.data_keys.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "DTKS_DATA_KEYS is required: the keys that seal personal data at rest \
                 (`dtksctl data-key` makes one)"
            )
        })?;
        crate::sealed::install(keys)?;
        let db = crate::db::connect(&config.database, &config.service).await?;
        let bus = Bus::connect(&config.bus).await?;
        let shutdown = Shutdown::on_signals();
        let outbox = OutboxSignal::default();
        let relay = tokio::spawn(crate::outbox::run_relay(
            db.clone(),
            bus.clone(),
            outbox.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(crate::audit::run_sequencer(
            db.clone(),
            crate::audit::Signer::from_config(&config)?,
            shutdown.clone(),
        ));
        let revocations = crate::revocation::Revocations::default();
        tokio::spawn(crate::revocation::watch(
            config.redis.clone(),
            revocations.clone(),
            shutdown.clone(),
        ));
        // Officers are refused until the revocation state is loaded: give it a moment.
        if !revocations
            .wait_current(std::time::Duration::from_secs(5))
            .await
        {
            tracing::warn!("the revocation state is not loaded yet; officers' calls wait for it");
        }
        let auth = Authenticator::new(&config.auth).with_revocations(revocations);
        tokio::spawn(auth.clone().keep_keys_current(shutdown.clone()));
        Ok((
            Self {
                config,
                db,
                bus,
                outbox,
                shutdown,
                auth,
            },
            relay,
        ))
    }

    /// Declares `service`'s queue bound to `routing_keys` and consumes it with `handler`
    /// until shutdown, in the background.
    pub async fn spawn_consumer<H: crate::bus::EventHandler + 'static>(
        &self,
        routing_keys: &[&str],
        handler: H,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let queue = self
            .bus
            .declare_queue(&self.config.service, routing_keys)
            .await?;
        let (bus, db, shutdown) = (self.bus.clone(), self.db.clone(), self.shutdown.clone());
        Ok(tokio::spawn(async move {
            bus.consume(&queue, db, handler, shutdown).await
        }))
    }

    /// Serves `service` behind the access guard (token, reach, the access matrix) until shutdown, then waits
    /// for the background `consumer` (if any) to drain.
    pub async fn serve<S>(
        &self,
        listener: TcpListener,
        service: S,
        consumer: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    ) -> anyhow::Result<()>
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let service =
            crate::security::guard::Guard::new(service, self.auth.clone(), &self.config.limits);
        // The server stops on a signal, or when the consumer ends before one: a service
        // whose consumer is gone turns NOT_SERVING and exits with the reason, so that
        // Kubernetes restarts it instead of probing a live port with a dead consumer.
        let (stop, serving) = crate::shutdown::Shutdown::manual();
        let signals = self.shutdown.clone();
        let watcher = tokio::spawn(async move {
            let Some(mut consumer) = consumer else {
                signals.wait().await;
                let _ = stop.send(true);
                return Ok(());
            };
            tokio::select! {
                ended = &mut consumer => {
                    let _ = stop.send(true);
                    if signals.is_triggered() {
                        return ended?;
                    }
                    let why = match ended {
                        Ok(Ok(())) => "it returned".to_owned(),
                        Ok(Err(error)) => format!("{error:#}"),
                        Err(join) => format!("its task failed: {join}"),
                    };
                    tracing::error!(%why, "the event consumer stopped; the service stops so that it is restarted");
                    Err(anyhow::anyhow!("the event consumer stopped: {why}"))
                }
                _ = signals.clone().wait() => {
                    let _ = stop.send(true);
                    consumer.await?
                }
            }
        });
        crate::grpc::serve(listener, service, serving, &self.config.tls).await?;
        watcher.await?
    }
}

/// A stage's binary: `dtks_platform::service_main!("intake", dtks_intake);` runs
/// `dtks_intake::start` under the bootstrap with `dtks_intake::Migrator` (`migrate` or
/// `serve`, the first argument says which).
#[macro_export]
macro_rules! service_main {
    ($name:literal, $stage:ident) => {
        #[tokio::main]
        async fn main() -> anyhow::Result<()> {
            $crate::app::run::<$stage::Migrator, _, _>($name, $stage::start).await
        }
    };
}
