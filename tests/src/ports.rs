//! Ports, binaries, log directories and process identities of a run.

use std::path::PathBuf;
use std::time::Duration;

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

/// A benchmark's setting from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
