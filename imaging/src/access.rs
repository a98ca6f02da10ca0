//! Who may reach imaging's HTTP routes, and the record of every image read. Every route needs
//! a credential except the public list ([`PUBLIC`]: the service description, operations
//! routes, and the viewer page and script, which carry no patient data). A credential is a
//! token signed by the appliance (`firmware_runtime::token`), as `Authorization: Bearer` or as
//! `?token=` (images in `<img>` and the viewer socket cannot send headers):
//! - a viewer token ([`crate::viewer::token::Claims`]) reads the studies it names, nothing else;
//! - a service token ([`ServiceClaims`], for a PACS, a clinic's viewer or OHIF) reads every
//!   study, or only the studies of the institutions it names (by Institution Name; searches
//!   are filtered through [`InstitutionScope`]), and stores and pulls from PACS when it says
//!   `write`; the security administrator revokes it by listing its `jti` in
//!   `DATA_DIR/keys/revoked-tokens`.
//!
//! Each request on a data route is handed to an [`AuditSink`] with who, what, when (the
//! sink's clock), from where and the result: the appliance writes them into its hash-chained
//! trail; imaging alone logs them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::viewer::token::Claims as ViewerClaims;

/// Routes open without a credential (exact paths).
pub const PUBLIC: &[&str] = &["/", "/healthz", "/readyz", "/metrics", "/view", "/view.js"];

/// What a service account's token grants (signed by the appliance when the security
/// administrator creates the account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceClaims {
    /// `svc:NAME`.
    pub sub: String,
    /// The token's id, listed when revoked.
    pub jti: String,
    /// Whether it may store (STOW-RS, attachments) and pull from PACS, besides reading.
    pub write: bool,
    /// The institutions (Institution Name, 0008,0080) whose studies it reads; empty: every
    /// study. A scoped token never writes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub institutions: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// The institutions a request's searches are limited to, set by the guard for a scoped
/// service token and read by the QIDO-RS handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstitutionScope(pub Vec<String>);

impl firmware_runtime::token::Expiring for ServiceClaims {
    fn exp(&self) -> u64 {
        self.exp
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AnyClaims {
    Viewer(ViewerClaims),
    Service(ServiceClaims),
}

impl firmware_runtime::token::Expiring for AnyClaims {
    fn exp(&self) -> u64 {
        match self {
            Self::Viewer(c) => c.exp,
            Self::Service(c) => c.exp,
        }
    }
}

/// One access to a data route, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    /// The token's subject (a login, or `svc:NAME`); empty without a valid credential.
    pub who: String,
    /// `viewer` or `service`; empty without a valid credential.
    pub role: String,
    /// `image_read`, `image_query`, `image_store`, `viewer_session`, `pacs_query`,
    /// `pacs_retrieve`, or `denied`.
    pub action: String,
    /// `study:UID` where one is named, else the route.
    pub target: String,
    /// The client's address.
    pub source: String,
    /// `ok`, or the HTTP status.
    pub result: String,
}

/// Where access events go. `record` must not block: the request waits for it.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records one event.
    fn record(&self, event: AccessEvent);
}

/// Imaging on its own: the events go to the log (target `audit`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

impl AuditSink for LogSink {
    fn record(&self, e: AccessEvent) {
        tracing::info!(target: "audit", who = %e.who, role = %e.role, action = %e.action,
            target_object = %e.target, source = %e.source, result = %e.result, "image access");
    }
}

/// The file's modification time and length when last read, and the ids it listed.
type Listed = (Option<(SystemTime, u64)>, HashSet<String>);

/// The revoked token ids, re-read when the file changes.
#[derive(Debug)]
struct Revoked {
    path: PathBuf,
    seen: Mutex<Listed>,
}

impl Revoked {
    fn contains(&self, jti: &str) -> bool {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let Ok(mut seen) = self.seen.lock() else {
            // A poisoned lock: refuse rather than let a revoked token through.
            return true;
        };
        if seen.0 != stamp {
            let list = std::fs::read_to_string(&self.path).unwrap_or_default();
            seen.1 = list
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            seen.0 = stamp;
        }
        seen.1.contains(jti)
    }
}

/// The revocation list's file under the data directory.
pub fn revoked_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("keys").join("revoked-tokens")
}

/// The access policy of imaging's listener.
#[derive(Debug, Clone)]
pub struct Access {
    key: Result<VerifyingKey, firmware_runtime::token::TokenError>,
    revoked: Arc<Revoked>,
    audit: Arc<dyn AuditSink>,
    index: Option<sqlx::SqlitePool>,
}

/// What a verified credential allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Reads these studies.
    Viewer {
        /// The login.
        sub: String,
        /// Study Instance UIDs.
        studies: Vec<String>,
    },
    /// A service account.
    Service {
        /// `svc:NAME`.
        sub: String,
        /// May store and pull.
        write: bool,
        /// Reads only these institutions' studies (empty: all).
        institutions: Vec<String>,
    },
}

impl Grant {
    fn who(&self) -> (&str, &str) {
        match self {
            Self::Viewer { sub, .. } => (sub, "viewer"),
            Self::Service { sub, .. } => (sub, "service"),
        }
    }
}

/// The `token` query parameter, when present.
fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// What a request does, from its method and path: the audit action, the study it names, and
/// whether it writes.
fn classify(method: &Method, path: &str) -> (&'static str, Option<String>, bool) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let write = *method != Method::GET && *method != Method::HEAD;
    match parts.as_slice() {
        ["view", "ws"] => ("viewer_session", None, false),
        ["pacs", _, "retrieve"] => ("pacs_retrieve", None, true),
        ["pacs", ..] => ("pacs_query", None, write),
        ["dicomweb", "studies", study, rest @ ..] => {
            let action = if write {
                "image_store"
            } else if matches!(rest.last(), Some(&"series" | &"instances" | &"attachments"))
                && rest.len() <= 3
                && !rest.contains(&"attachments")
            {
                "image_query"
            } else {
                "image_read"
            };
            (action, Some((*study).to_owned()), write)
        }
        ["dicomweb", ..] => (
            if write { "image_store" } else { "image_query" },
            None,
            write,
        ),
        _ => (
            if write { "image_store" } else { "image_read" },
            None,
            write,
        ),
    }
}

impl Access {
    /// With the configured verifying key (`imaging.viewer_token_key`), the data directory's
    /// revocation list, and where events go.
    pub fn new(
        configured_key: &str,
        data_dir: &std::path::Path,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Self {
            key: firmware_runtime::token::key(configured_key),
            revoked: Arc::new(Revoked {
                path: revoked_path(data_dir),
                seen: Mutex::new((None, HashSet::new())),
            }),
            audit,
            index: None,
        }
    }

    /// With the index, where a scoped service token's studies are looked up.
    #[must_use]
    pub fn with_index(mut self, pool: sqlx::SqlitePool) -> Self {
        self.index = Some(pool);
        self
    }

    /// The Institution Name a stored study comes from; `None` when it is not stored (or there
    /// is no index to ask).
    async fn study_institution(&self, study: &str) -> Option<String> {
        let pool = self.index.as_ref()?;
        sqlx::query_scalar("SELECT institution_name FROM studies WHERE study_uid = ?")
            .bind(study)
            .fetch_optional(pool)
            .await
            .ok()
            .flatten()
    }

    /// Verifies a token at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, String> {
        let key = self.key.as_ref().map_err(ToString::to_string)?;
        match firmware_runtime::token::verify::<AnyClaims>(token, key, now)
            .map_err(|e| e.to_string())?
        {
            AnyClaims::Viewer(c) => Ok(Grant::Viewer {
                sub: c.sub,
                studies: c.studies,
            }),
            AnyClaims::Service(c) => {
                if self.revoked.contains(&c.jti) {
                    return Err("the token was revoked".into());
                }
                Ok(Grant::Service {
                    sub: c.sub,
                    write: c.write && c.institutions.is_empty(),
                    institutions: c.institutions,
                })
            }
        }
    }

    /// Records an event (the viewer socket reports its sessions this way too).
    pub fn record(&self, event: AccessEvent) {
        self.audit.record(event);
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer realm=\"imaging\""),
        );
    }
    r
}

/// The request without its `token` query parameter: handlers see only what they parse (the
/// viewer socket keeps it: it checks the token itself).
fn without_token(mut req: Request) -> Request {
    let Some(query) = req.uri().query() else {
        return req;
    };
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut pq = req.uri().path().to_owned();
    if !kept.is_empty() {
        pq.push('?');
        pq.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish(),
        );
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// Middleware: lets public routes through, checks the credential of every other request
/// against what it asks, and records the outcome.
pub async fn guard(access: Access, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if PUBLIC.contains(&path.as_str()) {
        return next.run(req).await;
    }
    let (action, study, write) = classify(req.method(), &path);
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .or_else(|| query_token(req.uri().query()));
    let target = study
        .as_ref()
        .map_or_else(|| path.clone(), |s| format!("study:{s}"));
    let event = |who: &str, role: &str, action: &str, result: String| AccessEvent {
        who: who.to_owned(),
        role: role.to_owned(),
        action: action.to_owned(),
        target: target.clone(),
        source: source.clone(),
        result,
    };
    // The viewer socket checks its token itself (its refusals name the reason); here it is
    // only required and recorded.
    if action == "viewer_session" && token.is_some() {
        let grant = token.as_deref().map(|t| access.verify(t, unix_now()));
        let response = next.run(req).await;
        let (who, role) = match &grant {
            Some(Ok(g)) => g.who(),
            _ => ("", ""),
        };
        let result = if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            "ok".to_owned()
        } else {
            response.status().as_u16().to_string()
        };
        let mut e = event(who, role, action, result);
        if let Some(Ok(Grant::Viewer { studies, .. })) = &grant {
            e.target = format!("study:{}", studies.join(","));
        }
        access.record(e);
        return response;
    }
    let Some(token) = token else {
        access.record(event("", "", "denied", "401".into()));
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a credential is required: Authorization: Bearer <token>",
        );
    };
    let grant = match access.verify(&token, unix_now()) {
        Ok(g) => g,
        Err(why) => {
            access.record(event("", "", "denied", "401".into()));
            return refuse(
                StatusCode::UNAUTHORIZED,
                &format!("credential refused: {why}"),
            );
        }
    };
    let allowed = match &grant {
        Grant::Service { write: w, .. } => *w || !write,
        Grant::Viewer { studies, .. } => {
            !write
                && study
                    .as_ref()
                    .is_some_and(|s| studies.iter().any(|x| x == s))
        }
    };
    // A token scoped to institutions reads their studies and searches (filtered), nothing else.
    let mut scoped = None;
    let mut allowed = allowed;
    if let Grant::Service { institutions, .. } = &grant
        && !institutions.is_empty()
    {
        allowed = allowed
            && match &study {
                Some(uid) => access
                    .study_institution(uid)
                    .await
                    .is_none_or(|name| institutions.contains(&name)),
                None => {
                    *req.method() == Method::GET
                        && matches!(
                            path.as_str(),
                            "/dicomweb/studies" | "/dicomweb/series" | "/dicomweb/instances"
                        )
                }
            };
        scoped = Some(InstitutionScope(institutions.clone()));
    }
    let (who, role) = grant.who();
    if !allowed {
        access.record(event(who, role, action, "403".into()));
        return refuse(
            StatusCode::FORBIDDEN,
            "this credential does not grant that: a viewer token reads only its studies, a \
             service token scoped to institutions reads only theirs, and storing or pulling \
             needs a service token with write for all studies",
        );
    }
    let mut req = req;
    if let Some(scope) = scoped {
        req.extensions_mut().insert(scope);
    }
    let (who, role) = (who.to_owned(), role.to_owned());
    let response = next.run(without_token(req)).await;
    let result = if response.status().is_success() {
        "ok".to_owned()
    } else {
        response.status().as_u16().to_string()
    };
    access.record(event(&who, &role, action, result));
    response
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Kept(Mutex<Vec<AccessEvent>>);
    impl AuditSink for Kept {
        fn record(&self, e: AccessEvent) {
            self.0.lock().unwrap().push(e);
        }
    }

    #[test]
    fn tokens_grant_what_they_say_and_revocation_holds() {
        let dir = tempfile::tempdir().unwrap();
        let signer = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let access = Access::new(
            &firmware_runtime::token::public_key_base64(&signer),
            dir.path(),
            Arc::new(Kept::default()),
        );
        let viewer = firmware_runtime::token::sign(
            &ViewerClaims {
                sub: "li".into(),
                studies: vec!["1.2".into()],
                exp: 100,
            },
            &signer,
        );
        assert_eq!(
            access.verify(&viewer, 50),
            Ok(Grant::Viewer {
                sub: "li".into(),
                studies: vec!["1.2".into()]
            })
        );
        let service = ServiceClaims {
            sub: "svc:pacs".into(),
            jti: "abc".into(),
            write: true,
            institutions: Vec::new(),
            exp: 100,
        };
        let token = firmware_runtime::token::sign(&service, &signer);
        assert!(matches!(
            access.verify(&token, 50),
            Ok(Grant::Service { write: true, .. })
        ));
        assert!(access.verify(&token, 100).is_err(), "expired");
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(revoked_path(dir.path()), "# revoked\nabc\n").unwrap();
        assert_eq!(
            access.verify(&token, 50),
            Err("the token was revoked".into())
        );
        let other = ed25519_dalek::SigningKey::from_bytes(&[4u8; 32]);
        assert!(
            access
                .verify(&firmware_runtime::token::sign(&service, &other), 50)
                .is_err()
        );
    }

    #[test]
    fn requests_are_classified_by_route() {
        let get = Method::GET;
        assert_eq!(
            classify(&get, "/dicomweb/studies"),
            ("image_query", None, false)
        );
        assert_eq!(
            classify(&get, "/dicomweb/studies/1.2/series"),
            ("image_query", Some("1.2".into()), false)
        );
        assert_eq!(
            classify(&get, "/dicomweb/studies/1.2/series/3/instances/4/rendered"),
            ("image_read", Some("1.2".into()), false)
        );
        assert_eq!(
            classify(&Method::POST, "/dicomweb/studies/1.2/attachments"),
            ("image_store", Some("1.2".into()), true)
        );
        assert_eq!(
            classify(&Method::POST, "/pacs/X/retrieve"),
            ("pacs_retrieve", None, true)
        );
        assert_eq!(classify(&get, "/pacs"), ("pacs_query", None, false));
        assert_eq!(query_token(Some("a=1&token=x%2By")), Some("x+y".into()));
        let req = Request::builder()
            .uri("/dicomweb/studies?limit=2&token=abc&PatientName=%E7%8E%8B*")
            .body(axum::body::Body::empty())
            .unwrap();
        let uri = without_token(req).uri().to_string();
        assert_eq!(uri, "/dicomweb/studies?limit=2&PatientName=%E7%8E%8B*");
    }
}
