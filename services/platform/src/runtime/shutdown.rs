//! Graceful shutdown: one future that completes on SIGTERM or SIGINT, shared by the gRPC
//! server, the outbox relay and the consumers of a service.

use tokio::sync::watch;

/// A cloneable shutdown signal.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Listens for SIGTERM and SIGINT.
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("installing the SIGTERM handler");
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!("shutdown signal received");
            let _ = tx.send(true);
        });
        Self(rx)
    }

    /// A signal that fires when `trigger` is set; for tests.
    pub fn manual() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Sleeps for `d`; `false` when shutdown came first.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_triggered(),
            _ = self.clone().wait() => false,
        }
    }

    pub async fn wait(mut self) {
        while !*self.0.borrow() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}
