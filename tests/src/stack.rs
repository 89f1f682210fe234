//! A run's stack: its own database, bus and cache namespace, every service started as
//! its own process, and all of it taken down when the stack is dropped.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::process::{Child, Command};

use crate::ports::{LOG_DIR, bin_dir, env_or, free_port, run_database};
use crate::time;

/// The six stage services, each of which consumes events.
pub const SERVICES: &[&str] = &dtks_platform::bus::CONSUMERS;
pub const JWT_SECRET: &str = "e2e-secret-not-for-production";
/// The tests' data key (32 bytes of 0x42), sealing personal data at rest.
pub const DATA_KEYS: &str = "e2e:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
/// A run's queues delete themselves this long after their consumers are gone, should
/// the run die before [`Stack`]'s drop removes them.
const QUEUE_EXPIRES_MS: u32 = 10 * 60 * 1000;

pub struct Stack {
    pub run_id: String,
    /// The run's own database; dropped with the stack.
    pub database_url: String,
    /// The server's maintenance database, from which the run's database is created.
    base_url: String,
    /// The broker the run's queues live on (removed with the stack).
    bus_url: String,
    pub ports: HashMap<&'static str, u16>,
    pub registry_port: u16,
    /// Where matching takes the registry's DCI callbacks.
    pub callback_port: u16,
    pub db: DatabaseConnection,
    env: Vec<(String, String)>,
    children: Vec<Child>,
    /// Services run inside the test process (see [`Stack::start_verivali_with_clock`]).
    in_process: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The services started as processes, in the order of `children[1..]`.
    started: Vec<&'static str>,
    /// Services that speak TLS, with the client side's settings (CA, client identity).
    pub tls: HashMap<&'static str, dtks_platform::config::TlsConfig>,
}

impl Stack {
    /// A setting the run hands its processes (`DTKS_DCI__SIGNING_KEY`, …).
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The run's broker, as its services reach it: its namespace, and queues that delete
    /// themselves a minute after their consumer is gone.
    pub fn bus_config(&self) -> dtks_platform::config::BusConfig {
        dtks_platform::config::BusConfig {
            url: secrecy::SecretString::from(self.bus_url.clone()),
            namespace: format!("e2e.{}", self.run_id),
            delivery_limit: 5,
            prefetch: 10,
            lanes: 2,
            queue_expires_ms: Some(60_000),
        }
    }
}

fn required(var: &str) -> anyhow::Result<String> {
    std::env::var(var)
        .with_context(|| format!("{var} is not set: run the tests through scripts/test.sh"))
}

impl Stack {
    /// Creates the run's database, migrates every service, loads `registry_csv` into the
    /// reference civil registry and starts all seven processes.
    pub async fn start(registry_csv: &str) -> anyhow::Result<Self> {
        Self::start_services(registry_csv, SERVICES, &[]).await
    }

    /// As [`Stack::start`], but runs only `services` (all are migrated), with `env`
    /// added to every process. `DTKS_DATABASE__URL`, `DTKS_BUS__URL` and
    /// `DTKS_REDIS__URL` in `env` put the run on other servers (see `OwnServers` in the servers module).
    pub async fn start_services(
        registry_csv: &str,
        services: &[&'static str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let given = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let base_url = match given("DTKS_DATABASE__URL") {
            Some(url) => url,
            None => required("DTKS_DATABASE__URL")?,
        };
        let bus_url = match given("DTKS_BUS__URL") {
            Some(url) => url,
            None => required("DTKS_BUS__URL")?,
        };
        // The services' clock is this process's, set before anything reads it.
        time::offset_secs();
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let db_name = run_database(&run_id);
        Database::connect(&base_url)
            .await?
            .execute_unprepared(&format!("CREATE DATABASE {db_name}"))
            .await?;
        let (prefix, _) = base_url
            .rsplit_once('/')
            .context("database URL without a database name")?;
        let database_url = format!("{prefix}/{db_name}");
        let ports: HashMap<&'static str, u16> =
            SERVICES.iter().map(|s| (*s, free_port())).collect();
        let registry_port = free_port();
        let callback_port = free_port();
        // Signed DCI both ways: matching's key and the registry's, trusted by the other.
        let (matching_seed, matching_public) = dtks_platform::dci::generate_key();
        let (registry_seed, registry_public) = dtks_platform::dci::generate_key();
        let mut env_all: Vec<(String, String)> = [
            ("DTKS_DCI__SIGNING_KEY", matching_seed),
            (
                "DTKS_DCI__REGISTRY_KEYS",
                format!("dukcapil-reference|k1={registry_public}"),
            ),
            (
                "DTKS_DCI__CALLBACK_ADDR",
                format!("127.0.0.1:{callback_port}"),
            ),
            (
                "DTKS_DCI__CALLBACK_URL",
                format!("http://127.0.0.1:{callback_port}"),
            ),
            ("DTKS_REGISTRY_SIGNING_KEY", registry_seed),
            (
                "DTKS_REGISTRY_TRUSTED_KEYS",
                format!("dtks-matching|k1={matching_public}"),
            ),
            (
                "DTKS_REGISTRY_SENDER_URIS",
                format!("dtks-matching=http://127.0.0.1:{callback_port}"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        // The run's own database replaces the server's, so that one is not passed on.
        env_all.extend(
            env.iter()
                .filter(|(k, _)| *k != "DTKS_DATABASE__URL")
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut stack = Stack {
            base_url: base_url.clone(),
            bus_url,
            run_id,
            db: Database::connect(&database_url).await?,
            database_url,
            ports,
            registry_port,
            callback_port,
            env: env_all,
            children: Vec::new(),
            in_process: Vec::new(),
            tls: HashMap::new(),
            started: services.to_vec(),
        };

        let csv_path = std::env::temp_dir().join(format!("dtks-e2e-{}.csv", stack.run_id));
        std::fs::write(&csv_path, registry_csv)?;
        stack
            .run_to_end(
                "dtks-civil-registry",
                &["load", csv_path.to_str().unwrap_or_default()],
                "civil-registry",
            )
            .await?;
        for service in SERVICES {
            stack
                .run_to_end(&format!("dtks-{service}"), &["migrate"], service)
                .await?;
        }
        let child = stack
            .command("dtks-civil-registry", "civil-registry")
            .arg("serve")
            .spawn()?;
        stack.children.push(child);
        for service in services {
            let child = stack.command(&format!("dtks-{service}"), service).spawn()?;
            stack.children.push(child);
        }
        for (index, service) in services.iter().enumerate() {
            // children[0] is the civil registry; the services follow in order.
            stack.wait_serving(service, index + 1).await?;
        }
        Ok(stack)
    }

    fn command(&self, binary: &str, service: &str) -> Command {
        let mut cmd = Command::new(bin_dir().join(binary));
        let port = self
            .ports
            .get(service)
            .copied()
            .unwrap_or(self.registry_port);
        cmd.env("DTKS_DATABASE__URL", &self.database_url)
            .env("DTKS_BUS__NAMESPACE", format!("e2e.{}", self.run_id))
            .env("DTKS_BUS__QUEUE_EXPIRES_MS", QUEUE_EXPIRES_MS.to_string())
            .env("DTKS_REDIS__NAMESPACE", format!("e2e.{}", self.run_id))
            .env("DTKS_AUTH__JWT_SECRET", JWT_SECRET)
            .env("DTKS_DATA_KEYS", DATA_KEYS)
            .env("DTKS_GRPC_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "DTKS_CIVIL_REGISTRY_ADDR",
                format!("127.0.0.1:{}", self.registry_port),
            )
            .env(
                "DTKS_UPSTREAM__CIVIL_REGISTRY_URL",
                format!("http://127.0.0.1:{}", self.registry_port),
            )
            .env(
                "DTKS_UPSTREAM__DETERMINATION_URL",
                format!("http://127.0.0.1:{}", self.ports["determination"]),
            )
            .env("DTKS_DEMO_AUTO_APPROVE", "true")
            .env(
                dtks_platform::clock::OFFSET_VAR,
                time::offset_secs().to_string(),
            )
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // A test that reads the services' logs names a directory: each process writes
        // its standard output and error to `<dir>/<service>.log` there.
        if let Some((_, dir)) = self.env.iter().find(|(k, _)| k == LOG_DIR) {
            let path = std::path::Path::new(dir).join(format!("{service}.log"));
            if let Ok(file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                && let Ok(copy) = file.try_clone()
            {
                cmd.stdout(Stdio::from(file)).stderr(Stdio::from(copy));
            }
        }
        cmd
    }

    async fn run_to_end(&self, binary: &str, args: &[&str], service: &str) -> anyhow::Result<()> {
        let status = self.command(binary, service).args(args).status().await?;
        anyhow::ensure!(status.success(), "{binary} {args:?} failed: {status}");
        Ok(())
    }

    pub fn endpoint(&self, service: &str) -> String {
        let scheme = if self.tls.contains_key(service) {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.ports[service])
    }

    /// A channel whose client takes `bytes` at a time (HTTP/2 windows), as a slow link
    /// would: a streaming service runs only so far ahead of what it has read.
    pub async fn narrow_channel(
        &self,
        service: &str,
        bytes: u32,
    ) -> anyhow::Result<tonic::transport::Channel> {
        Ok(
            tonic::transport::Endpoint::from_shared(self.endpoint(service))?
                .initial_stream_window_size(Some(bytes))
                .initial_connection_window_size(Some(bytes))
                .connect()
                .await?,
        )
    }

    pub async fn channel(&self, service: &str) -> anyhow::Result<tonic::transport::Channel> {
        let tls = self.tls.get(service).cloned().unwrap_or_default();
        Ok(
            dtks_platform::grpc::endpoint(&self.endpoint(service), &tls)?
                .connect()
                .await?,
        )
    }

    async fn wait_serving(&mut self, service: &str, child: usize) -> anyhow::Result<()> {
        use tonic_health::pb::{
            HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
        };
        let deadline = tokio::time::Instant::now() + time::patience(60);
        loop {
            if let Ok(channel) = self.channel(service).await {
                let answer = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if answer.is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32) {
                    return Ok(());
                }
            }
            if let Some(status) = self.children[child].try_wait()? {
                anyhow::bail!("{service} exited before serving ({status}); its log is above");
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{service} did not become SERVING within 60 s; its log is above"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs verivali inside the test process with `clock` (a paused clock, so that a test
    /// can move time on by days), on the port the stack gave verivali, with the demo
    /// policy off. Start the stack without verivali first.
    pub async fn start_verivali_with_clock(
        &mut self,
        clock: dtks_platform::clock::SharedClock,
    ) -> anyhow::Result<()> {
        let addr = format!("127.0.0.1:{}", self.ports["verivali"]);
        let config: dtks_platform::Config = serde_json::from_value(serde_json::json!({
            "service": "verivali",
            "grpc_addr": addr,
            "database": { "url": self.database_url, "max_connections": 4 },
            "bus": {
                "url": required("DTKS_BUS__URL")?,
                "namespace": format!("e2e.{}", self.run_id),
                "queue_expires_ms": QUEUE_EXPIRES_MS,
            },
            "redis": {
                "url": required("DTKS_REDIS__URL")?,
                "namespace": format!("e2e.{}", self.run_id),
            },
            "auth": { "jwt_secret": JWT_SECRET },
            "data_keys": DATA_KEYS,
            "limits": {
                "calls_per_second": env_or("DTKS_LIMITS__CALLS_PER_SECOND", 100u32),
                "call_burst": env_or("DTKS_LIMITS__CALL_BURST", 500u32),
            },
        }))?;
        let (context, _relay) = dtks_platform::app::Context::connect(config).await?;
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        self.in_process
            .push(tokio::spawn(dtks_verivali::start_with_clock(
                context, listener, clock,
            )));
        let deadline = tokio::time::Instant::now() + time::patience(30);
        while self.channel("verivali").await.is_err() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "verivali did not start serving"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops `service` (whatever state it is in, a crashed process too) and starts it
    /// again with `env` added, waiting until it serves.
    pub async fn restart(
        &mut self,
        service: &'static str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let index = 1 + self
            .started
            .iter()
            .position(|s| *s == service)
            .with_context(|| format!("{service} was not started"))?;
        let _ = self.children[index].start_kill();
        let _ = self.children[index].wait().await;
        self.children[index] = self
            .command(&format!("dtks-{service}"), service)
            .envs(env.iter().copied())
            .spawn()?;
        self.wait_serving(service, index).await
    }

    /// Base URL of the reference civil registry's DCI API.
    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registry_port)
    }

    /// Stops the reference civil registry: an outage, as matching would meet one.
    pub async fn stop_registry(&mut self) -> anyhow::Result<()> {
        self.children[0].kill().await?;
        Ok(())
    }

    /// Starts the reference civil registry again and waits until it accepts connections.
    pub async fn start_registry(&mut self) -> anyhow::Result<()> {
        self.start_registry_with_fault("").await
    }

    /// As [`Stack::start_registry`], showing `fault` (`slow`, `malformed`, `error`;
    /// empty for none).
    pub async fn start_registry_with_fault(&mut self, fault: &str) -> anyhow::Result<()> {
        self.children[0] = self
            .command("dtks-civil-registry", "civil-registry")
            .arg("serve")
            .env("DTKS_REGISTRY_FAULT", fault)
            .spawn()?;
        self.wait_registry().await
    }

    /// Waits until the reference civil registry accepts connections.
    pub async fn wait_registry(&self) -> anyhow::Result<()> {
        let address = format!("127.0.0.1:{}", self.registry_port);
        let deadline = tokio::time::Instant::now() + time::patience(30);
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the civil registry is not serving"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Records a vital event in the reference civil registry (`POST /admin/vital-events`),
    /// which notifies its subscribers; answers the HTTP status and body.
    pub async fn vital_event(&self, event: serde_json::Value) -> anyhow::Result<(u16, String)> {
        let answer = reqwest::Client::new()
            .post(format!("{}/admin/vital-events", self.registry_url()))
            .json(&event)
            .send()
            .await?;
        Ok((answer.status().as_u16(), answer.text().await?))
    }

    /// Runs `dtksctl` against this stack's services as the holder of `token`; answers
    /// the exit code, standard output and standard error.
    pub async fn dtksctl(
        &self,
        token: &str,
        args: &[&str],
    ) -> anyhow::Result<(i32, String, String)> {
        self.dtksctl_with_env(token, &[], args).await
    }

    /// [`Stack::dtksctl`] with `env` added.
    pub async fn dtksctl_with_env(
        &self,
        token: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<(i32, String, String)> {
        let mut command = Command::new(bin_dir().join("dtksctl"));
        if self.ports.contains_key("determination") {
            command.env("DTKS_DETERMINATION_URL", self.endpoint("determination"));
        }
        let out = command
            .args(args)
            .env("DTKS_INTAKE_URL", self.endpoint("intake"))
            .env("DTKS_VERIVALI_URL", self.endpoint("verivali"))
            .env("DTKS_TOKEN", token)
            .env(
                dtks_platform::clock::OFFSET_VAR,
                time::offset_secs().to_string(),
            )
            .envs(env.iter().copied())
            .output()
            .await?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// A signed token for an officer of `role` scoped to `region` ("" = national).
    pub fn token(&self, role: dtks_platform::auth::Role, region: &str) -> String {
        self.token_for("e2e-officer", role, region)
    }

    /// A signed token for `sub` with `role` and `region`.
    pub fn token_for(&self, sub: &str, role: dtks_platform::auth::Role, region: &str) -> String {
        let config = dtks_platform::config::AuthConfig::local(JWT_SECRET);
        dtks_platform::auth::issue(&config, sub, role, region, time::token_secs()).expect("token")
    }

    /// Polls `probe` until it returns `Some`, for up to `secs` seconds.
    pub async fn eventually<T, F, Fut>(
        &self,
        secs: u64,
        what: &str,
        mut probe: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + time::patience(secs);
        loop {
            if let Some(value) = probe().await? {
                return Ok(value);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Stack {
    /// Stops the run's processes and removes what the run created on the shared
    /// servers — its database and its queues and exchanges — so that runs do not pile
    /// up state that slows the servers' later start-ups.
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        for task in &self.in_process {
            task.abort();
        }
        let base_url = self.base_url.clone();
        let bus_url = self.bus_url.clone();
        let database = run_database(&self.run_id);
        let namespace = format!("e2e.{}", self.run_id);
        let cleanup = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(20), async {
                    Database::connect(&base_url)
                        .await?
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                        ))
                        .await?;
                    let bus = dtks_platform::bus::Bus::connect(&dtks_platform::config::BusConfig {
                        url: secrecy::SecretString::from(bus_url),
                        namespace,
                        delivery_limit: 5,
                        prefetch: 1,
                        lanes: 1,
                        queue_expires_ms: None,
                    })
                    .await?;
                    bus.delete_namespace(SERVICES).await?;
                    anyhow::Ok(())
                })
                .await?
            })
        });
        if let Ok(Err(error)) = cleanup.join() {
            eprintln!("e2e clean-up of run {} incomplete: {error:#}", self.run_id);
        }
    }
}

/// Waits (up to `secs`) until `sql`'s count is `n`.
pub async fn count_becomes(stack: &Stack, secs: u64, sql: &str, n: i64) -> anyhow::Result<()> {
    stack
        .eventually(secs, sql, || async move {
            Ok((count(stack, sql).await? == n).then_some(()))
        })
        .await
}

/// `SELECT count(*) AS n …` (or any query answering one `n`) on the run's database.
pub async fn count(stack: &Stack, sql: &str) -> anyhow::Result<i64> {
    let row = stack
        .db
        .query_one_raw(dtks_platform::db::stmt(sql, []))
        .await?
        .context("a count row")?;
    Ok(row.try_get::<i64>("", "n")?)
}
