//! The sfu daemon's signalling listener (8082): service description at `/`, plus the operations
//! routes.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use firmware_config::Config;
use firmware_runtime::{Context, RuntimeError};

/// Why sfu stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// The HTTP listener could not start or failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Name under which sfu reports readiness and labels its metrics.
pub const SERVICE: &str = "sfu";

/// Runs sfu until `ctx.shutdown` fires.
pub async fn run(config: &Config, ctx: Context) -> Result<(), SfuError> {
    let addr = SocketAddr::new(config.listeners.bind, config.listeners.sfu_signalling.get());
    let router = Router::new().route(
        "/",
        get(|| async {
            axum::Json(
                serde_json::json!({ "service": SERVICE, "version": env!("CARGO_PKG_VERSION") }),
            )
        }),
    );
    firmware_runtime::run_service(&ctx, SERVICE, addr, "listeners.sfu_signalling", router).await?;
    Ok(())
}
