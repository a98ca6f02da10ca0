//! The operations routes every daemon serves (`/healthz`, `/readyz`, `/metrics`), the request
//! metrics middleware, and serving a router until shutdown.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::{Context, Readiness, RuntimeError, State};

/// `/healthz` (the process answers), `/readyz` (every subsystem is ready: 200, else 503, with
/// each subsystem's state as JSON) and `/metrics` (Prometheus text).
pub fn ops_routes(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || ready(readiness.clone())))
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
}

async fn ready(readiness: Readiness) -> Response {
    let snapshot = readiness.snapshot();
    let subsystems: serde_json::Map<String, serde_json::Value> = snapshot
        .iter()
        .map(|(name, state)| {
            let mut v = serde_json::json!({ "state": state.as_str() });
            if let State::Failed(why) = state {
                v["reason"] = why.clone().into();
            }
            (name.clone(), v)
        })
        .collect();
    let ok = readiness.all_ready();
    let body = serde_json::json!({ "status": if ok { "ready" } else { "not-ready" }, "subsystems": subsystems });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// Middleware: counts requests and times them, labelled by service, method, matched route
/// (never the raw path, which may carry identifiers) and status.
pub async fn track_requests(service: &'static str, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("service", service.to_owned()),
        ("method", method),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..3])
        .record(start.elapsed().as_secs_f64());
    response
}

/// Serves `router` on `listener` until `shutdown` (with TLS when `ctx.tls` is set, and the
/// security headers of `ctx.web`), then stops accepting and waits for the requests in flight
/// to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    ctx: &Context,
    service: &'static str,
) -> std::io::Result<()> {
    let policy = ctx.web;
    let router = router
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::headers::secure(policy, service, req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            track_requests(service, req, next)
        }));
    let addr = listener.local_addr()?;
    let scheme = if ctx.tls.is_some() { "https" } else { "http" };
    tracing::info!(service, %addr, scheme, "listening");
    let shutdown = ctx.shutdown.clone();
    let incoming = crate::tls::Incoming::start(listener, ctx.tls.clone(), shutdown.clone())?;
    // The no-op tap gives handlers the client's address (ConnectInfo), e.g. for the audit trail.
    let incoming = axum::serve::ListenerExt::tap_io(incoming, |_| {});
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(incoming, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    tracing::info!(service, %addr, "stopped");
    Ok(())
}

/// Runs one daemon's HTTP service until shutdown: reports `service` as starting, binds `addr`
/// (errors name `field`), adds the operations routes to `router`, reports ready, serves, and
/// reports stopping.
pub async fn run_service(
    ctx: &Context,
    service: &'static str,
    addr: SocketAddr,
    field: &'static str,
    router: Router,
) -> Result<(), RuntimeError> {
    ctx.readiness.set(service, State::Starting);
    let listener = match crate::bind(addr, field).await {
        Ok(l) => l,
        Err(e) => {
            ctx.readiness.set(service, State::Failed(e.to_string()));
            return Err(e);
        }
    };
    let router = router.merge(ops_routes(ctx.readiness.clone(), ctx.metrics.clone()));
    ctx.readiness.set(service, State::Ready);
    let result = serve(listener, router, ctx, service).await;
    ctx.readiness.set(service, State::Stopping);
    result.map_err(|source| RuntimeError::Serve { service, source })
}
