//! The imaging daemon's HTTP listener (8081): service description at `/` (with the renderer in
//! use), DICOMweb, attachments, the viewer and PACS routes behind the access guard
//! (`crate::access`), plus the operations routes.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use firmware_config::Config;
use firmware_runtime::{Context, RuntimeError};

use crate::renderer::{self, RendererError};
use crate::store::{Store, StoreError};

/// Why imaging stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImagingError {
    /// The HTTP listener could not start or failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The configured renderer is not available.
    #[error(transparent)]
    Renderer(#[from] RendererError),
    /// The instance store could not be opened.
    #[error("DICOM store: {0}")]
    Store(#[from] StoreError),
}

/// Name under which imaging reports readiness and labels its metrics.
pub const SERVICE: &str = "imaging";

/// Runs imaging on its own until `ctx.shutdown` fires, its access events going to the log.
pub async fn run(config: &Config, ctx: Context) -> Result<(), ImagingError> {
    run_with(config, ctx, std::sync::Arc::new(crate::access::LogSink)).await
}

/// Runs imaging until `ctx.shutdown` fires, handing every access to a data route to `audit`.
pub async fn run_with(
    config: &Config,
    ctx: Context,
    audit: std::sync::Arc<dyn crate::access::AuditSink>,
) -> Result<(), ImagingError> {
    // Every subsystem registers before any listener opens: /readyz must not say "ready" while
    // one of them has not started yet.
    for name in [SERVICE, crate::dimse::SUBSYSTEM, renderer::SUBSYSTEM] {
        ctx.readiness.set(name, firmware_runtime::State::Starting);
    }
    let render = match renderer::start(config, &ctx.readiness).await {
        Ok(r) => r,
        Err(e) => {
            // The rest of the stack must not run without the renderer it was told to use.
            ctx.shutdown.trigger();
            return Err(e.into());
        }
    };
    let store = match open_store(config).await {
        Ok(s) => s,
        Err(e) => {
            ctx.shutdown.trigger();
            return Err(e);
        }
    };
    let description = serde_json::json!({
        "service": SERVICE,
        "version": env!("CARGO_PKG_VERSION"),
        "render": { "backend": render.backend, "adapter": render.adapter },
    });
    let addr = SocketAddr::new(config.listeners.bind, config.listeners.imaging_http.get());
    // Decoded images, one budget for the viewer's series and `rendered`'s instances.
    let volumes = std::sync::Arc::new(crate::viewer::cache::VolumeCache::new(
        config.imaging.volume_cache.0,
    ));
    let router = Router::new()
        .route(
            "/",
            get(move || std::future::ready(axum::Json(description.clone()))),
        )
        .merge(crate::dicomweb::routes(
            store.clone(),
            std::sync::Arc::clone(&volumes),
        ))
        .merge(crate::dicomweb::attachments::routes(
            &config.storage.data_dir,
        ))
        .merge(crate::viewer::routes(
            store.clone(),
            std::sync::Arc::clone(&render.renderer),
            volumes,
            &config.imaging.viewer_token_key,
            Duration::from_secs(u64::from(config.imaging.viewer_grace_secs)),
            config.imaging.viewer_open_annotations,
        ))
        .merge(crate::dimse::scu::routes(
            config.listeners.dicom_ae_title.as_str().to_owned(),
            config.imaging.peers.clone(),
        ));
    // Every route above needs a credential unless it is on the public list.
    let dicom_audit = audit.clone();
    let access = crate::access::Access::new(
        &config.imaging.viewer_token_key,
        &config.storage.data_dir,
        audit,
    )
    .with_index(store.pool().clone());
    // Unknown paths too: a stranger learns nothing about what exists.
    let router = router
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::access::guard(access.clone(), req, next)
        }));
    // One listener failing stops the other: imaging runs whole or not at all.
    let stop_on_error = |r: Result<(), RuntimeError>| {
        if r.is_err() {
            ctx.shutdown.trigger();
        }
        r
    };
    let (http, dicom) = tokio::join!(
        async {
            stop_on_error(
                firmware_runtime::run_service(
                    &ctx,
                    SERVICE,
                    addr,
                    "listeners.imaging_http",
                    router,
                )
                .await,
            )
        },
        async { stop_on_error(crate::dimse::run(config, &ctx, store.clone(), dicom_audit).await) },
    );
    store.close().await;
    http?;
    dicom?;
    Ok(())
}

/// Opens the store and reports what its start-up check found.
async fn open_store(config: &Config) -> Result<Store, ImagingError> {
    let data_dir = &config.storage.data_dir;
    crate::store::sealing::register(config).map_err(StoreError::from)?;
    let (store, report) = Store::open(data_dir).await?;
    tracing::info!(
        instances = report.instances,
        temp_removed = report.temp_removed,
        files_indexed = report.files_indexed,
        "DICOM store checked"
    );
    for uid in &report.rows_removed {
        tracing::error!(sop_instance_uid = %uid, "instance file missing: removed from the index");
    }
    for (path, why) in &report.unreadable {
        tracing::error!(path = %path.display(), reason = %why, "unreadable file in the store, not indexed");
    }
    metrics::gauge!("imaging_instances").set(report.instances as f64);
    Ok(store)
}
