//! The appliance's HTTP listener (8080): the landing page, the API under `/api/v1`, and
//! the operations routes; and the URLs the stack announces. The web apps are planned.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use firmware_config::{Config, Port};
use firmware_runtime::{Context, RuntimeError};

/// `http://public_host:port/`.
pub fn url(config: &Config, port: Port) -> String {
    let host = config.listeners.public_host.as_str();
    if host.contains(':') {
        format!("http://[{host}]:{port}/")
    } else {
        format!("http://{host}:{port}/")
    }
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
    let router = Router::new()
        .route("/api/v1", get(api_root))
        .with_state(site)
        .merge(pages)
        .merge(crate::api::routes(crate::http::Api {
            pool: db.pool().clone(),
            policy: crate::accounts::Policy::from_config(config),
            site: config.site.name.clone(),
            gateway: gateway.clone().map(std::sync::Arc::new),
            key,
            imaging_url: url(config, config.listeners.imaging_http),
            sfu_url: url(config, config.listeners.sfu_signalling),
            events: tokio::sync::broadcast::channel(1024).0,
            data_dir: config.storage.data_dir.clone(),
            imaging_index: Default::default(),
            rooms: Default::default(),
        }));
    if let Some(gateway) = gateway {
        tokio::spawn(crate::notify::run(
            db.pool().clone(),
            gateway,
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
