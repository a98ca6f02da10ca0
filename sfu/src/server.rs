//! The sfu daemon's signalling listener (8082): service description at `/`, the room
//! signalling WebSocket at `/rooms/ws`, the room page at `/room`, the admin API, plus the
//! operations routes.

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

/// The room page (`/room?token=...`; Chinese first, English on a button).
async fn room_page() -> impl axum::response::IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../assets/room.html"),
    )
}

/// The room page's script (a file of its own: the content security policy allows no inline
/// script).
async fn room_script() -> impl axum::response::IntoResponse {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../assets/room.js"),
    )
}

/// Runs sfu until `ctx.shutdown` fires.
pub async fn run(config: &Config, ctx: Context) -> Result<(), SfuError> {
    let addr = SocketAddr::new(config.listeners.bind, config.listeners.sfu_signalling.get());
    let rooms = crate::signalling::Rooms::new(config);
    if config.sfu.transport == firmware_config::SfuTransport::Str0m {
        rooms
            .start_transport(config)
            .map_err(|e| RuntimeError::Bind {
                addr: SocketAddr::new(
                    config.listeners.bind,
                    config.listeners.sfu_media_udp.first().get(),
                ),
                field: "listeners.sfu_media_udp",
                source: e,
            })?;
    }
    // The grace of dropped participants runs out on this clock.
    let ticking = rooms.clone();
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                _ = every.tick() => ticking.tick(),
            }
        }
    });
    // Per-room media figures for /metrics.
    let measured = rooms.clone();
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
        let mut last = std::collections::BTreeMap::new();
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                _ = every.tick() => measured.measure(&mut last).await,
            }
        }
    });
    let router = Router::new()
        .route(
            "/",
            get(|| async {
                axum::Json(
                    serde_json::json!({ "service": SERVICE, "version": env!("CARGO_PKG_VERSION") }),
                )
            }),
        )
        .route("/rooms/ws", get(crate::signalling::upgrade))
        .route("/room", get(room_page))
        .route("/room.js", get(room_script))
        .route("/admin/rooms", get(crate::signalling::list_rooms))
        .route(
            "/admin/rooms/{room}",
            axum::routing::delete(crate::signalling::close_room),
        )
        .route(
            "/admin/rooms/{room}/participants/{id}",
            axum::routing::delete(crate::signalling::remove_participant),
        )
        .with_state(rooms);
    firmware_runtime::run_service(&ctx, SERVICE, addr, "listeners.sfu_signalling", router).await?;
    Ok(())
}
