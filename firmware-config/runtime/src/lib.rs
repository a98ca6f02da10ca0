//! Daemon plumbing shared by the `appliance`, `imaging` and `sfu` binaries, so the three behave
//! alike: logging set up from `RUST_LOG`, one Prometheus recorder per process, a readiness
//! registry each subsystem reports to, the `/healthz`, `/readyz` and `/metrics` routes, request
//! metrics, binding a listener with an error that names the config field, and graceful shutdown
//! on Ctrl-C or SIGTERM (stop accepting, finish in-flight requests, exit 0), and the signed
//! token format the appliance issues and the other daemons check (`token`), TLS with reload
//! (`tls`), the security headers (`headers`), the C allocator's housekeeping (`memory`), and
//! the national cryptography primitives and key files (`gm`).
//!
//! Nothing here knows about DICOM, media or consultations.

mod cli;
pub mod gm;
pub mod headers;
pub mod memory;
mod ops;
mod readiness;
mod shutdown;
pub mod tls;
pub mod token;

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

pub use cli::{ConfigArgs, Context, LogFormatArg, daemon_main, run_daemon};
pub use ops::{ops_routes, run_service, serve, track_requests};
pub use readiness::{Readiness, State};
pub use shutdown::Shutdown;

/// Why the runtime could not start something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({field}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The configuration field that chose it.
        field: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    /// A server failed while serving.
    #[error("{service} HTTP server: {source}")]
    Serve {
        /// The service.
        service: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The signal handlers could not be installed.
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Sets up `tracing` output on stderr, filtered by `RUST_LOG` (default `info`). Calling it
/// again does nothing.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The process's Prometheus recorder, installed on first use and shared by every daemon in the
/// process (the appliance runs all three).
pub fn metrics() -> Result<PrometheusHandle, RuntimeError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("http_request_duration_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ],
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| RuntimeError::Metrics(e.to_string()))?;
    let handle = HANDLE.get_or_init(|| handle).clone();
    describe();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    metrics::gauge!("process_start_time_seconds").set(start);
    metrics::gauge!("build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Histograms are summarised on upkeep; without it their buffers would grow.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| RuntimeError::Metrics(e.to_string()))?;
    Ok(handle)
}

fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by service, method, route and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request"
    );
    metrics::describe_gauge!(
        "process_start_time_seconds",
        metrics::Unit::Seconds,
        "When the process started"
    );
    metrics::describe_gauge!("build_info", "Version of the running build");
    metrics::describe_gauge!(
        "subsystem_ready",
        "1 when the subsystem is ready, 0 otherwise"
    );
}

/// Binds a TCP listener; the error names the configuration field that chose the address.
pub async fn bind(addr: SocketAddr, field: &'static str) -> Result<TcpListener, RuntimeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Bind {
            addr,
            field,
            source,
        })
}
