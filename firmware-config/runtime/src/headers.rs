//! The security headers every answer of every listener carries: HSTS when TLS is on; a content
//! security policy that allows scripts only from the page's own origin and lets the stack's
//! three HTTP origins talk to (and, for imaging and the SFU, be framed by) each other and
//! nothing else; `nosniff`; no referrer; and `no-store` on data routes that did not choose.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// What the headers depend on: the scheme in force and the three HTTP ports of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebPolicy {
    /// TLS is on (HSTS; `https:`/`wss:` origins).
    pub tls: bool,
    /// The appliance's port (the pages that may frame imaging and SFU pages).
    pub appliance: u16,
    /// Imaging's port.
    pub imaging: u16,
    /// The SFU's signalling port.
    pub sfu: u16,
}

impl WebPolicy {
    /// From the configuration.
    pub fn from_config(c: &firmware_config::Config) -> Self {
        Self {
            tls: c.tls.cert.is_some() && c.tls.key.is_some(),
            appliance: c.listeners.http.get(),
            imaging: c.listeners.imaging_http.get(),
            sfu: c.listeners.sfu_signalling.get(),
        }
    }

    /// The content security policy for a page served by `service` to a client that reached it
    /// as `host` (the request's Host header, without its port; `None` when absent or odd).
    pub fn csp(&self, service: &str, host: Option<&str>) -> String {
        let (http, ws) = if self.tls {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        let mut origins = String::new();
        let mut appliance = String::new();
        if let Some(host) = host {
            for port in [self.appliance, self.imaging, self.sfu] {
                origins.push_str(&format!(" {http}://{host}:{port} {ws}://{host}:{port}"));
            }
            appliance = format!(" {http}://{host}:{}", self.appliance);
        }
        let ancestors = if service == "appliance" {
            "'self'".to_owned()
        } else {
            format!("'self'{appliance}")
        };
        // blob: frames: a report's PDF or an EMR document fetched with the session and shown in
        // the page (HTML ones in a sandboxed frame), never kept as a file.
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob:{origins}; media-src 'self' blob: mediastream:; \
             font-src 'self' data:; connect-src 'self'{origins}; frame-src 'self' blob:{origins}; \
             worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; \
             frame-ancestors {ancestors}"
        )
    }
}

/// The host name from a Host header, when it is a plain name, IPv4 or bracketed IPv6 address.
fn host(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::HOST)?.to_str().ok()?;
    let name = if let Some(rest) = value.strip_prefix('[') {
        format!("[{}]", rest.split_once(']')?.0)
    } else {
        value.split(':').next()?.to_owned()
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ok.then_some(name)
}

/// Whether answers under `path` carry patient data and must not be kept by caches.
fn data_route(path: &str) -> bool {
    [
        "/api/",
        "/fhir",
        "/dicomweb",
        "/pacs",
        "/admin/",
        "/view/ws",
        "/rooms/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// Middleware: adds the headers to every answer of `service`.
pub async fn secure(
    policy: WebPolicy,
    service: &'static str,
    req: Request,
    next: Next,
) -> Response {
    let host = host(req.headers());
    let data = data_route(req.uri().path());
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    // A handler that set its own (stricter) policy keeps it: e.g. EMR HTML in a sandbox.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY)
        && let Ok(v) = HeaderValue::from_str(&policy.csp(service, host.as_deref()))
    {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if policy.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if data && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    #[test]
    fn hosts_are_taken_only_when_plain() {
        assert_eq!(host(&headers("a.b:8080")).as_deref(), Some("a.b"));
        assert_eq!(host(&headers("10.0.0.1")).as_deref(), Some("10.0.0.1"));
        assert_eq!(host(&headers("[::1]:8081")).as_deref(), Some("[::1]"));
        assert_eq!(host(&headers("evil;script-src *")), None);
        assert_eq!(host(&HeaderMap::new()), None);
    }

    #[test]
    fn policies_name_the_stack_and_who_may_frame() {
        let p = WebPolicy {
            tls: true,
            appliance: 8080,
            imaging: 8081,
            sfu: 8082,
        };
        let a = p.csp("appliance", Some("h"));
        assert!(a.ends_with("frame-ancestors 'self'"), "{a}");
        assert!(a.contains("connect-src 'self' https://h:8080 wss://h:8080 https://h:8081"));
        let i = p.csp("imaging", Some("h"));
        assert!(i.ends_with("frame-ancestors 'self' https://h:8080"), "{i}");
        assert!(!p.csp("imaging", None).contains("https://"));
        assert!(data_route("/api/v1/patients") && data_route("/dicomweb/studies"));
        assert!(!data_route("/assets/app.js") && !data_route("/healthz"));
    }
}
