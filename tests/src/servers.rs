//! PostgreSQL, RabbitMQ and Redis of a test's own, on free ports, for the tests that
//! stop and restart them.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

use crate::ports::free_port;

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
