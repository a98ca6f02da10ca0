//! The imaging daemon's HTTP listener (8081): service description at `/`, plus the operations
//! routes.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use firmware_config::Config;
use firmware_runtime::{Context, RuntimeError};

/// Why imaging stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImagingError {
    /// The HTTP listener could not start or failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Name under which imaging reports readiness and labels its metrics.
pub const SERVICE: &str = "imaging";

/// Runs imaging until `ctx.shutdown` fires.
pub async fn run(config: &Config, ctx: Context) -> Result<(), ImagingError> {
    let addr = SocketAddr::new(config.listeners.bind, config.listeners.imaging_http.get());
    let router = Router::new().route(
        "/",
        get(|| async {
            axum::Json(
                serde_json::json!({ "service": SERVICE, "version": env!("CARGO_PKG_VERSION") }),
            )
        }),
    );
    firmware_runtime::run_service(&ctx, SERVICE, addr, "listeners.imaging_http", router).await?;
    Ok(())
}
