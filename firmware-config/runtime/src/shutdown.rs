//! Graceful shutdown: one signal shared by every server and task in the process, triggered by
//! Ctrl-C, SIGTERM or code.

use std::sync::Arc;

use tokio::sync::watch;

use crate::RuntimeError;

/// A shutdown signal; clones share it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// Triggers shutdown; waiters wake.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is triggered.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which cannot happen while `self` holds one.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Triggers shutdown on Ctrl-C (SIGINT) or SIGTERM; SIGHUP is only logged here. Must be called inside a Tokio runtime.
    pub fn on_signals(&self) -> Result<(), RuntimeError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(RuntimeError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(RuntimeError::Signals)?;
        // SIGHUP asks for a reload (the TLS certificate listens for it); it must never end the
        // process the way its default action would.
        let mut hup = signal(SignalKind::hangup()).map_err(RuntimeError::Signals)?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!(signal = "SIGHUP", "reload requested");
            }
        });
        let this = self.clone();
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(
                signal = which,
                "shutting down: no new connections, finishing requests in flight"
            );
            this.trigger();
        });
        Ok(())
    }
}
