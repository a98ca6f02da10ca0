//! The appliance's HTTP listener (8080): the web apps (or a landing page when they are not
//! built), the API under `/api/v1`, the local CA certificate at `/ca.pem`, and the operations
//! routes; and the URLs the stack announces.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use firmware_config::{Config, Port};
use firmware_runtime::{Context, RuntimeError};

/// `http(s)://public_host:port/`, following the scheme in force.
pub fn url(config: &Config, port: Port) -> String {
    config.public_url(port)
}

/// Name under which the appliance reports readiness and labels its metrics.
pub const SERVICE: &str = "appliance";

#[derive(Debug, Clone)]
struct Site {
    name: String,
    imaging_url: String,
    sfu_url: String,
}

/// Runs the appliance HTTP service until `ctx.shutdown` fires.
pub async fn run(
    config: &Config,
    ctx: &Context,
    db: &crate::db::Database,
    key: std::sync::Arc<ed25519_dalek::SigningKey>,
    report_signer: std::sync::Arc<crate::report_sign::ReportSigner>,
) -> Result<(), RuntimeError> {
    let addr = SocketAddr::new(config.listeners.bind, config.listeners.http.get());
    let site = Site {
        name: config.site.name.clone(),
        imaging_url: url(config, config.listeners.imaging_http),
        sfu_url: url(config, config.listeners.sfu_signalling),
    };
    // The web apps where they are built (`/` opens the consultation centre); else the
    // landing page says how to build them.
    let web = crate::web::dir(config.storage.web_dir.as_deref());
    let pages = if crate::web::built(&web) {
        crate::web::routes(web)
    } else {
        tracing::warn!(dir = %web.display(), "web apps not built: run scripts/run");
        Router::new()
            .route("/", get(landing))
            .with_state(site.clone())
    };
    let gateway = crate::notify::Gateway::from_config(config);
    let ca = crate::tls_cmd::ca_path(&config.storage.data_dir);
    let router = Router::new()
        .route("/api/v1", get(api_root))
        .with_state(site)
        .route("/ca.pem", get(move || ca_certificate(ca.clone())))
        .merge(pages)
        .merge(crate::api::routes(crate::http::Api {
            pool: db.pool().clone(),
            policy: crate::accounts::Policy::from_config(config),
            site: config.site.name.clone(),
            gateway: gateway.clone().map(std::sync::Arc::new),
            key,
            imaging_url: url(config, config.listeners.imaging_http),
            base_url: url(config, config.listeners.http),
            sfu_url: url(config, config.listeners.sfu_signalling),
            events: tokio::sync::broadcast::channel(1024).0,
            data_dir: config.storage.data_dir.clone(),
            imaging_index: Default::default(),
            rooms: Default::default(),
            throttle: Default::default(),
            sealer: db.sealer().clone(),
            report_signer,
        }));
    if let Some(gateway) = gateway {
        tokio::spawn(crate::notify::run(
            db.pool().clone(),
            gateway,
            db.sealer().clone(),
            ctx.shutdown.clone(),
        ));
    }
    firmware_runtime::run_service(ctx, SERVICE, addr, "listeners.http", router).await
}

async fn api_root(State(site): State<Site>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "service": SERVICE,
        "version": env!("CARGO_PKG_VERSION"),
        "site": site.name,
    }))
}

/// The local CA's certificate (`appliance tls init`), for clients to install; 404 when the
/// hospital uses its own PKI.
async fn ca_certificate(path: std::path::PathBuf) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::fs::read(&path).await {
        Ok(pem) => (
            [
                (axum::http::header::CONTENT_TYPE, "application/x-pem-file"),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    "attachment; filename=\"ca.pem\"",
                ),
            ],
            pem,
        )
            .into_response(),
        Err(_) => (
            axum::http::StatusCode::NOT_FOUND,
            "no local CA: this site's certificates come from the hospital's own PKI\n",
        )
            .into_response(),
    }
}

async fn landing(State(site): State<Site>) -> Html<String> {
    let name = escape(&site.name);
    let imaging = escape(&site.imaging_url);
    let sfu = escape(&site.sfu_url);
    Html(format!(
        r#"<!doctype html>
<html lang="zh-CN">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}</title></head>
<body>
<h1>{name}</h1>
<p lang="zh-CN">远程会诊与双向转诊平台已启动。</p>
<p lang="en">The remote consultation and referral appliance is running.</p>
<ul>
<li><a href="{imaging}">影像服务 / Imaging</a></li>
<li><a href="{sfu}">视频会诊 / Video rooms</a></li>
<li><a href="/api/v1">接口 / API</a></li>
<li><a href="/readyz">运行状态 / Readiness</a></li>
<li><a href="/ca.pem">安装本地根证书 / Install the local CA certificate</a></li>
</ul>
<p lang="zh-CN">会诊中心网页尚未构建：请用 <code>scripts/run</code> 启动。</p>
<p lang="en">The consultation centre's pages are not built: start with <code>scripts/run</code>.</p>
</body>
</html>
"#
    ))
}

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
