//! Links for documents a page opens in a new browser tab (report PDFs, admission slips), where
//! no `Authorization` header can be sent: `POST /api/v1/tickets` turns the caller's session
//! into a ticket for one document path, signed with the appliance's key and valid for a minute;
//! the document route accepts `?ticket=` in place of the header. A ticket is bound to the
//! session that asked for it (logging out ends it) and to its path (it opens nothing else).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::accounts::{self, AccountError, User};
use crate::http::{Api, ApiError, body, user};

/// How long a ticket opens its document.
pub const TICKET_SECS: u64 = 60;

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new().route("/api/v1/tickets", post(issue))
}

/// What a ticket says.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Ticket {
    /// Always "document": keeps tickets apart from the other tokens this key signs.
    kind: String,
    /// The session's id (the hash its row is kept under).
    sid: String,
    /// The document's path.
    path: String,
    /// Expiry, Unix seconds.
    exp: u64,
}

impl firmware_runtime::token::Expiring for Ticket {
    fn exp(&self) -> u64 {
        self.exp
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `path` is a document a ticket may open: a PDF under the API.
pub fn document_path(path: &str) -> bool {
    path.starts_with("/api/v1/")
        && path.ends_with(".pdf")
        && !path.contains("..")
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    path: String,
}

/// `POST /api/v1/tickets`: a one-minute link to a document for this session.
async fn issue(
    State(api): State<Api>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let (_, token) = user(&api, &headers, false).await?;
    let r: Request = body(&bytes)?;
    if !document_path(&r.path) {
        return Err(ApiError::field(
            "path",
            "a document path under /api/v1/ ending in .pdf, without a query",
        ));
    }
    let exp = now_secs() + TICKET_SECS;
    let ticket = firmware_runtime::token::sign(
        &Ticket {
            kind: "document".to_owned(),
            sid: accounts::session_id(&token),
            path: r.path.clone(),
            exp,
        },
        &api.key,
    );
    Ok(Json(json!({
        "ticket": ticket,
        "url": format!("{}?ticket={ticket}", r.path),
        "expires_at": exp,
    })))
}

/// The user behind a document request: the bearer token when there is one, else a valid
/// `ticket` for exactly this path whose session is still alive.
pub(crate) async fn user_for_document(
    api: &Api,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<User, ApiError> {
    if headers.contains_key("authorization") {
        return Ok(user(api, headers, false).await?.0);
    }
    let ticket = uri
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "ticket")
                .map(|(_, v)| v.into_owned())
        })
        .ok_or(AccountError::Unauthenticated)?;
    let t: Ticket = firmware_runtime::token::verify(&ticket, &api.key.verifying_key(), now_secs())
        .map_err(|_| AccountError::Unauthenticated)?;
    if t.kind != "document" || t.path != uri.path() {
        return Err(AccountError::Unauthenticated.into());
    }
    let u = accounts::authenticate_session(&api.pool, &api.policy, &t.sid).await?;
    if u.must_change_password || u.must_enroll_totp {
        return Err(AccountError::Unauthenticated.into());
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_api_pdfs_get_tickets() {
        assert!(document_path("/api/v1/consultations/3/report.pdf"));
        assert!(document_path("/api/v1/referrals/4/admission-slip.pdf"));
        assert!(!document_path("/api/v1/consultations/3/report"));
        assert!(!document_path(
            "/api/v1/consultations/3/report.pdf?version=1"
        ));
        assert!(!document_path("/api/v1/../x.pdf"));
        assert!(!document_path("/other/x.pdf"));
    }
}
