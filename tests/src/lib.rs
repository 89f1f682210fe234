//! End-to-end harness: starts every DTKS service as its own process against the real
//! PostgreSQL, RabbitMQ and Redis of `scripts/stack.sh`, isolated per run by a fresh
//! database and a fresh bus/cache namespace.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

pub mod benchtable;
pub mod time;

use anyhow::Context as _;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::process::{Child, Command};

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

pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/e2e-xxxx → target/debug
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf()
}

/// The variable a test sets (in `Stack::start_services`' `env`) to capture the services'
/// logs in a directory, one file per service.
pub const LOG_DIR: &str = "DTKS_E2E_LOG_DIR";

/// A port for a service to listen on: one below the kernel's ephemeral range
/// (32768–60999 on Linux, so no outgoing connection takes it), chosen at random, reserved
/// across the concurrently running test processes by creating a marker file for it (a
/// probe that binds and lets go is not enough: another test can probe the same port
/// before either service binds it), and free when chosen. Markers older than ten minutes
/// are from runs long over and are taken back.
pub fn free_port() -> u16 {
    let dir = std::env::temp_dir().join("dtks-e2e-ports");
    let _ = std::fs::create_dir_all(&dir);
    loop {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        let marker = dir.join(port.to_string());
        let stale = std::fs::metadata(&marker)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if stale {
            let _ = std::fs::remove_file(&marker);
        }
        let reserved = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .is_ok();
        if reserved && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The database of run `run_id`: `dtks_e2e_<pid>_<start>_<run>`, naming the process that
/// owns it and the time that process started (in clock ticks since boot, as
/// `/proc/<pid>/stat` gives it), so that `scripts/stack.sh sweep` drops it only once that
/// process is gone — not while its test still runs, and not when a new process took
/// the pid over.
pub fn run_database(run_id: &str) -> String {
    let pid = std::process::id();
    format!(
        "dtks_e2e_{pid}_{}_{run_id}",
        process_start_ticks(pid).unwrap_or(0)
    )
}

/// When process `pid` started, in clock ticks since boot (field 22 of its
/// `/proc/<pid>/stat`); `None` when there is no such process.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(19)?.parse().ok()
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
    /// `DTKS_REDIS__URL` in `env` put the run on other servers (see [`OwnServers`]).
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
        let out = Command::new(bin_dir().join("dtksctl"))
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

/// A household member as the fixtures propose one: a married farm labourer of
/// Bandung with complete attributes.
pub fn person(
    nik: &str,
    name: &str,
    (year, month, day): (i32, i32, i32),
    sex: i32,
    relationship: i32,
) -> dtks_proto::common::v1::Person {
    use dtks_proto::common::v1 as pb;
    pb::Person {
        nik: nik.into(),
        full_name: name.into(),
        birth_place: "Bandung".into(),
        birth_date: Some(pb::Date { year, month, day }),
        sex,
        marital_status: 2,
        relationship,
        education: 2,
        school_status: 3,
        work_status: 2,
        occupation: "buruh tani".into(),
        sector: "pertanian".into(),
        monthly_income: 900_000,
        health: Some(pb::Health {
            disability: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Household `i` of the benchmarks' synthetic population: a couple in village
/// `32.RR.01.VVVV` (ten regencies of 50 villages, `i` mod 500), with dwelling and assets varied so that scores spread.
pub fn synthetic_household(i: u64) -> dtks_proto::common::v1::Household {
    use dtks_proto::common::v1 as pb;
    let v = i % 500;
    let village = format!("32.{:02}.01.{}", v / 50 + 1, 2001 + v % 50);
    let district = village[..8].replace('.', "");
    let born =
        chrono::NaiveDate::from_ymd_opt(1960, 1, 1).expect("date") + chrono::Days::new(i % 12_000);
    use chrono::Datelike;
    let serial = 1 + (i / 12_000) % 9_000;
    let member = |offset: u32, name: &str, sex: i32, relationship: i32| {
        let nik = format!(
            "{district}{:02}{:02}{:02}{serial:04}",
            born.day() + offset,
            born.month(),
            born.year() % 100
        );
        let mut p = person(
            &nik,
            name,
            (born.year(), born.month() as i32, born.day() as i32),
            sex,
            relationship,
        );
        p.monthly_income = 300_000 + (i % 97) as i64 * 25_000;
        p
    };
    pb::Household {
        household_id: String::new(),
        address: Some(pb::Address {
            village_code: village,
            rt: "001".into(),
            rw: "002".into(),
            street: "Jl. Melati".into(),
            postal_code: "40375".into(),
        }),
        location: Some(pb::GeoPoint {
            latitude: -7.0,
            longitude: 107.6,
        }),
        families: vec![pb::Family {
            kk_number: format!("{district}010120{:04}", 1 + i % 9_999),
            members: vec![
                member(0, "Asep Sunandar", 1, 1),
                member(40, "Siti Aminah", 2, 2),
            ],
        }],
        dwelling: Some(pb::Dwelling {
            tenure: 1,
            floor_area_m2: 18.0 + (i % 61) as f64,
            floor: 1 + (i % 4) as i32,
            wall: 1 + (i / 4 % 4) as i32,
            roof: 1 + (i / 16 % 4) as i32,
            water: 1 + (i / 64 % 4) as i32,
            sanitation: 1 + (i / 256 % 3) as i32,
            electricity: 1 + (i / 768 % 5) as i32,
        }),
        assets: Some(pb::Assets {
            motorcycles: (i % 3) as u32,
            refrigerator: i.is_multiple_of(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A synthetic regency (Kabupaten Bandung, 32.04) of `households` generated by `dtksctl
/// gen` into `dir` (`extra` arguments added, e.g. `--corruption 0`): its civil-registry
/// file and its musdes proposals, with the minutes numbered `minutes`.
pub async fn generated_regency(
    dir: &std::path::Path,
    households: usize,
    extra: &[&str],
    minutes: &str,
) -> anyhow::Result<(String, Vec<dtks_proto::intake::v1::SubmitProposalRequest>)> {
    let households = households.to_string();
    let mut args = vec!["--regencies", "32.04", "--households", &households];
    args.extend(extra);
    generate(dir, &args).await?;
    let registry = std::fs::read_to_string(dir.join("registry.csv"))?;
    Ok((registry, generated_proposals(dir, minutes)?))
}

/// `dtksctl gen ARGS --out DIR`, on the run's clock.
pub async fn generate(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(bin_dir().join("dtksctl"))
        .env(
            dtks_platform::clock::OFFSET_VAR,
            time::offset_secs().to_string(),
        )
        .arg("gen")
        .args(args)
        .arg("--out")
        .arg(dir)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "dtksctl gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The columns of the persons file [`splink_baseline`] reads.
pub const SPLINK_PERSONS_HEADER: [&str; 7] = [
    "id",
    "full_name",
    "birth_date",
    "sex",
    "village_code",
    "nik",
    "true_nik",
];

/// The Splink baseline (`tests/bench/splink_link.py`, Splink 5.0.0 in the benchmarks'
/// virtual environment) linking the `persons` file to the `registry` file: its JSON
/// figures (seconds, links, correct, persons, precision, recall, f1).
pub fn splink_baseline(
    registry: &std::path::Path,
    persons: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    let python = bench_python(&["splink==5.0.0"])?;
    let output = std::process::Command::new(python)
        .arg("tests/bench/splink_link.py")
        .arg(registry)
        .arg(persons)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "splink failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    Ok(serde_json::from_str(text.lines().last().unwrap_or("{}"))?)
}

/// The musdes proposals `dtksctl gen` wrote to `dir/proposals.jsonl`, minutes held a
/// week ago, each keyed by its external reference.
pub fn generated_proposals(
    dir: &std::path::Path,
    minutes: &str,
) -> anyhow::Result<Vec<dtks_proto::intake::v1::SubmitProposalRequest>> {
    let held = time::today() - chrono::Days::new(7);
    let mut out = Vec::new();
    for line in std::fs::read_to_string(dir.join("proposals.jsonl"))?.lines() {
        let value: serde_json::Value = serde_json::from_str(line)?;
        let household: dtks_domain::Household = serde_json::from_value(value["household"].clone())?;
        let reference = value["external_reference"].as_str().unwrap_or_default();
        out.push(dtks_platform::convert::musdes_proposal(
            &household, reference, minutes, held,
        ));
    }
    Ok(out)
}

/// `proposals` as import streams of `size` rows, numbered from 1 across all of them.
pub fn import_batches(
    proposals: Vec<dtks_proto::intake::v1::SubmitProposalRequest>,
    size: usize,
) -> Vec<Vec<dtks_proto::intake::v1::ImportProposalsRequest>> {
    let mut batches: Vec<Vec<_>> = Vec::new();
    for (i, proposal) in proposals.into_iter().enumerate() {
        if i % size == 0 {
            batches.push(Vec::with_capacity(size));
        }
        if let Some(batch) = batches.last_mut() {
            batch.push(dtks_proto::intake::v1::ImportProposalsRequest {
                row: i as u64 + 1,
                proposal: Some(proposal),
            });
        }
    }
    batches
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

/// The benchmarks' throw-away Python environment (`target/bench-venv`), made if
/// missing, with `packages` installed (pip does nothing for those already there);
/// answers its `python`.
pub fn bench_python(packages: &[&str]) -> anyhow::Result<PathBuf> {
    let venv = PathBuf::from("target/bench-venv");
    if !venv.join("bin/python").exists() {
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?;
        anyhow::ensure!(
            ok.success(),
            "python3 -m venv failed (apt-get install python3-venv)"
        );
    }
    let ok = std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "-q"])
        .args(packages)
        .status()?;
    anyhow::ensure!(ok.success(), "pip install {packages:?} failed");
    Ok(venv.join("bin/python"))
}

/// A benchmark's setting from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Attaches a bearer token to a request.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// Copies households `from..to` of the synthetic population into the determination
/// service's master registry (the tables its consumer fills from `household.accepted`).
pub async fn fill_registry(
    conn: &mut sqlx::PgConnection,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let mut start = from;
    while start < to {
        let end = (start + 100_000).min(to);
        fill_registry_with(conn, (start..end).map(|i| (i, synthetic_household(i)))).await?;
        start = end;
    }
    Ok(())
}

/// The id `fill_registry_with` gives household number `i`.
pub fn registry_id(i: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0000_dead_0000_0000_0000_0000_0000_0000 | u128::from(i))
}

/// Copies the given households (each with its number: its id is [`registry_id`], its
/// change sequence the number plus one) into the determination service's master
/// registry, by one COPY per table.
pub async fn fill_registry_with(
    conn: &mut sqlx::PgConnection,
    households: impl IntoIterator<Item = (u64, dtks_proto::common::v1::Household)>,
) -> anyhow::Result<()> {
    let now = time::now();
    let (mut current, mut versions) = (
        dtks_platform::copy::BinaryRows::new(),
        dtks_platform::copy::BinaryRows::new(),
    );
    let today = now.date_naive();
    for (i, h) in households {
        let region = h
            .address
            .as_ref()
            .map(|a| a.village_code.clone())
            .unwrap_or_default();
        let bytes = prost::Message::encode_to_vec(&h);
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
        // What the service's consumer stores beside each household it takes in.
        let inputs = dtks_domain::pmt::Inputs::of(
            &dtks_platform::convert::household_from_proto(&h, today)
                .map_err(|v| anyhow::anyhow!("household {i}: {v}"))?,
        )
        .encode();
        let persons: usize = h.families.iter().map(|f| f.members.len()).sum();
        let id = registry_id(i);
        let seq = i as i64 + 1;
        current
            .row(7)
            .uuid(id)
            .text(&region)
            .i32(persons as i32)
            .i64(seq)
            .timestamptz(now)
            .bytea(&digest)
            .bytea(&inputs);
        versions
            .row(6)
            .uuid(id)
            .i64(seq)
            .text(&region)
            .timestamptz(now)
            .bytea(&bytes)
            .bytea(&digest);
    }
    dtks_platform::copy::copy_in(
        conn,
        "determination.registry_households (household_id, region_code, persons, change_seq, verified_at, digest, inputs)",
        current,
    )
    .await?;
    dtks_platform::copy::copy_in(
        conn,
        "determination.registry_versions (household_id, version, region_code, valid_from, household, digest)",
        versions,
    )
    .await?;
    Ok(())
}

/// One span an OTLP receiver was sent: the service that made it, its trace, its name and
/// its attributes as text.
#[derive(Debug, Clone)]
pub struct SpanSeen {
    pub service: String,
    pub trace_id: String,
    pub name: String,
    pub attributes: Vec<(String, String)>,
}

/// An OpenTelemetry collector's trace and metrics endpoints (OTLP over gRPC) inside the
/// test, keeping every span and the name of every metric the services export.
#[derive(Clone, Default)]
pub struct OtlpReceiver {
    spans: std::sync::Arc<std::sync::Mutex<Vec<SpanSeen>>>,
    /// (service, metric name) of every metric exported.
    metrics: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

fn service_name(resource: &Option<opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
        .map(|a| any_text(&a.value))
        .unwrap_or_default()
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService
    for OtlpReceiver
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse,
        >,
        tonic::Status,
    > {
        let mut seen = Vec::new();
        for resource in request.into_inner().resource_metrics {
            let service = service_name(&resource.resource);
            for scope in resource.scope_metrics {
                seen.extend(scope.metrics.into_iter().map(|m| (service.clone(), m.name)));
            }
        }
        self.metrics.lock().expect("metrics").extend(seen);
        Ok(tonic::Response::new(
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse {
                partial_success: None,
            },
        ))
    }
}

fn any_text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for OtlpReceiver
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut seen = Vec::new();
        for resource in request.into_inner().resource_spans {
            let service = service_name(&resource.resource);
            for scope in resource.scope_spans {
                for span in scope.spans {
                    seen.push(SpanSeen {
                        service: service.clone(),
                        trace_id: span.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                        name: span.name,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), any_text(&a.value)))
                            .collect(),
                    });
                }
            }
        }
        self.spans.lock().expect("spans").extend(seen);
        Ok(tonic::Response::new(
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse {
                partial_success: None,
            },
        ))
    }
}

impl OtlpReceiver {
    /// Listens on a free port; answers the receiver and its endpoint URL.
    pub async fn start() -> anyhow::Result<(Self, String)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let receiver = Self::default();
        let traces = opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(receiver.clone());
        let metrics = opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(traces)
                .add_service(metrics)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Ok((receiver, endpoint))
    }

    pub fn spans(&self) -> Vec<SpanSeen> {
        self.spans.lock().expect("spans").clone()
    }

    /// (service, metric name) of every metric exported so far.
    pub fn metrics(&self) -> Vec<(String, String)> {
        self.metrics.lock().expect("metrics").clone()
    }
}

/// PostgreSQL, RabbitMQ and Redis of a test's own, started by `scripts/stack.sh` in a
/// directory and on ports of their own, so that the test can stop and start them
/// without disturbing the other tests; stopped and removed when dropped. PostgreSQL
/// commits synchronously here, so a crash loses nothing that was acknowledged.
pub struct OwnServers {
    dir: PathBuf,
    settings: Vec<(&'static str, String)>,
    urls: Vec<(&'static str, String)>,
}

impl OwnServers {
    pub async fn start() -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let dir = std::env::temp_dir().join(format!("dtks-own-{id}"));
        let (pg, amqp, redis) = (free_port(), free_port(), free_port());
        let settings = vec![
            ("DTKS_STACK_DIR", dir.display().to_string()),
            ("DTKS_PG_PORT", pg.to_string()),
            ("DTKS_AMQP_PORT", amqp.to_string()),
            ("DTKS_REDIS_PORT", redis.to_string()),
            ("DTKS_RABBIT_NODE", format!("dtks-own-{id}@localhost")),
            ("DTKS_RABBIT_MGMT_PORT", free_port().to_string()),
            ("DTKS_RABBIT_PROM_PORT", free_port().to_string()),
            ("DTKS_RABBIT_DIST_PORT", free_port().to_string()),
            ("DTKS_PG_SYNCHRONOUS_COMMIT", "on".to_owned()),
        ];
        let urls = vec![
            (
                "DTKS_DATABASE__URL",
                format!("postgres://dtks:dtks@127.0.0.1:{pg}/dtks"),
            ),
            (
                "DTKS_BUS__URL",
                format!("amqp://guest:guest@127.0.0.1:{amqp}/%2f"),
            ),
            ("DTKS_REDIS__URL", format!("redis://127.0.0.1:{redis}/")),
        ];
        let servers = Self {
            dir,
            settings,
            urls,
        };
        servers.stack(&["start"]).await?;
        Ok(servers)
    }

    /// The connection settings to hand to [`Stack::start_services`].
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.urls.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// Stops `server` (`postgres`, `rabbitmq`, `redis`); `crash` stops it without a
    /// clean shutdown.
    pub async fn stop(&self, server: &str, crash: bool) -> anyhow::Result<()> {
        let mut args = vec!["stop", server];
        if crash {
            args.push("--crash");
        }
        self.stack(&args).await
    }

    /// Starts `server` again and waits until it answers.
    pub async fn start_server(&self, server: &str) -> anyhow::Result<()> {
        self.stack(&["start", server]).await
    }

    fn script() -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack.sh")
    }

    async fn stack(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(Self::script())
            .args(args)
            .envs(self.settings.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "scripts/stack.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for OwnServers {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script())
            .args(["stop", "--crash"])
            .envs(self.settings.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
