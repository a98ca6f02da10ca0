//! `appliance run`: the whole stack in one process. Opens the database, then runs the
//! appliance, imaging and sfu services side by side on one shutdown signal, prints the URLs to
//! open once every listener is up, and on Ctrl-C or SIGTERM stops accepting, lets requests in
//! flight finish, closes the database and returns.

use std::time::Duration;

use firmware_config::Config;
use firmware_runtime::{Context, State};

use crate::db::Database;
use crate::server::url;

/// Readiness name of the database.
pub const DATABASE: &str = "database";

/// Why the stack stopped on an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// The database could not be opened.
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    /// A service failed.
    #[error("{0}")]
    Service(String),
}

/// Every subsystem of the stack.
const EXPECTED: [&str; 7] = [
    DATABASE,
    crate::server::SERVICE,
    crate::mllp::SERVICE,
    "render",
    "imaging",
    "dicom",
    "sfu",
];

/// Runs every service until shutdown.
pub async fn run(config: Config, ctx: Context) -> Result<(), StackError> {
    // All register before any listener opens, so /readyz never reports a partial stack ready.
    for name in EXPECTED {
        ctx.readiness.set(name, State::Starting);
    }
    let db = match Database::open(&config).await {
        Ok(db) => db,
        Err(e) => {
            ctx.readiness.set(DATABASE, State::Failed(e.to_string()));
            return Err(e.into());
        }
    };
    ctx.readiness.set(DATABASE, State::Ready);
    let key = match crate::keys::signing_key(&config.storage.data_dir) {
        Ok(k) => std::sync::Arc::new(k),
        Err(e) => {
            ctx.readiness.set(DATABASE, State::Failed(e.to_string()));
            return Err(StackError::Service(e.to_string()));
        }
    };
    // Reports are signed with SM2 under a certificate from the local CA (made on first start).
    let report_signer =
        match crate::report_sign::ReportSigner::load(&config.storage.data_dir, &config.site.name) {
            Ok(s) => std::sync::Arc::new(s),
            Err(e) => {
                ctx.readiness.set(DATABASE, State::Failed(e.to_string()));
                return Err(StackError::Service(e.to_string()));
            }
        };
    // Imaging checks the tokens the appliance signs.
    let mut config = config;
    let public = imaging::viewer::token::public_key_base64(&key);
    if config.sfu.token_key.is_empty() {
        config.sfu.token_key = public.clone();
    }
    if config.imaging.viewer_token_key.is_empty() {
        config.imaging.viewer_token_key = public;
    } else if config.imaging.viewer_token_key != public {
        tracing::warn!(
            "imaging.viewer_token_key is not this appliance's key: the viewer will refuse the \
             tokens the appliance signs"
        );
    }
    tracing::info!(path = %db.path().display(), "database open");

    // Imaging's access events go into the audit trail; revoked service tokens are listed for it.
    let audit: std::sync::Arc<dyn imaging::access::AuditSink> =
        std::sync::Arc::new(crate::imaging_access::TrailSink::start(db.pool().clone()));
    if let Err(e) = crate::imaging_access::write_revoked(db.pool(), &config.storage.data_dir).await
    {
        return Err(StackError::Service(e.to_string()));
    }
    if !config.integration.fhir_sources.is_empty() {
        tokio::spawn(crate::fhir::pull::run(
            db.pool().clone(),
            db.sealer().clone(),
            config.integration.fhir_sources.clone(),
            ctx.shutdown.clone(),
        ));
    }
    if !config.integration.dicomweb_sources.is_empty() && ctx.tls.is_some() {
        // The pull stores through imaging's STOW-RS, and its client speaks plain HTTP only.
        tracing::error!(
            "integration.dicomweb_sources is not pulled while TLS is on (planned: the pull \
             stores through imaging's HTTPS listener)"
        );
    } else if !config.integration.dicomweb_sources.is_empty() {
        // imaging runs in this process: reached on loopback unless bound to one address.
        let bind = config.listeners.bind;
        let host = if bind.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            bind
        };
        let imaging_url = format!(
            "http://{}/",
            std::net::SocketAddr::new(host, config.listeners.imaging_http.get())
        );
        let pullers = config
            .integration
            .dicomweb_sources
            .iter()
            .map(|s| crate::dicomweb_pull::Puller {
                pool: db.pool().clone(),
                sealer: db.sealer().clone(),
                source: s.clone(),
                imaging_url: imaging_url.clone(),
                data_dir: config.storage.data_dir.clone(),
                key: key.clone(),
            })
            .collect();
        tokio::spawn(crate::dicomweb_pull::run(
            pullers,
            ctx.readiness.clone(),
            ctx.shutdown.clone(),
        ));
    }
    tokio::spawn(crate::backup::schedule(
        config.clone(),
        ctx.shutdown.clone(),
    ));
    let announce = announce_when_ready(&config, &ctx);
    let services = async {
        let (a, h, i, s) = tokio::join!(
            stop_all_on_error(
                &ctx,
                crate::server::run(&config, &ctx, &db, key.clone(), report_signer.clone())
            ),
            stop_all_on_error(
                &ctx,
                crate::mllp::run(&config, &ctx, db.connect_options(), db.sealer().clone())
            ),
            stop_all_on_error(&ctx, imaging::run_with(&config, ctx.clone(), audit.clone())),
            stop_all_on_error(&ctx, sfu::run(&config, ctx.clone())),
        );
        a.and(h).and(i).and(s)
    };
    let (result, ()) = tokio::join!(services, announce);
    ctx.readiness.set(DATABASE, State::Stopping);
    db.close().await;
    result
}

/// Awaits a service; if it fails, shuts the others down too so the process exits instead of
/// running half a stack.
async fn stop_all_on_error<E: std::fmt::Display>(
    ctx: &Context,
    service: impl Future<Output = Result<(), E>>,
) -> Result<(), StackError> {
    service.await.map_err(|e| {
        ctx.shutdown.trigger();
        StackError::Service(e.to_string())
    })
}

async fn announce_when_ready(config: &Config, ctx: &Context) {
    loop {
        let states = ctx.readiness.snapshot();
        if states.values().any(|s| matches!(s, State::Failed(_))) || ctx.shutdown.is_triggered() {
            return;
        }
        // Everything registered at the start, so all ready means the whole stack is up.
        if ctx.readiness.all_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let l = &config.listeners;
    let web = url(config, l.http);
    println!(
        "{site} 已启动 / is running\n  \
         网页与接口 Web and API:        {web}\n  \
         影像服务 Imaging (DICOMweb):   {imaging}\n  \
         视频会诊 Video rooms:          {sfu}\n  \
         运行状态 Health / readiness:   {web}healthz  {web}readyz  {web}metrics\n  \
         数据目录 Data directory:       {data}\n\
         按 Ctrl-C 停止 / Press Ctrl-C to stop.",
        site = config.site.name,
        imaging = url(config, l.imaging_http),
        sfu = url(config, l.sfu_signalling),
        data = config.storage.data_dir.display(),
    );
}
