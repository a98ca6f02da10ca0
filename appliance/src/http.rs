//! What every API module shares, kept in a leaf so imports run one way (route modules ->
//! `http` -> `accounts`): the handlers' state (`Api`), the error every handler answers
//! (`ApiError`, as `{code, message, field}` and `current` on a conflict), the bearer-token
//! extractor (`user`) and the JSON body reader (`body`).

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sqlx::SqlitePool;

use crate::accounts::{self, AccountError, Policy, User};

/// What the API handlers share.
#[derive(Debug, Clone)]
pub struct Api {
    /// The database.
    pub pool: SqlitePool,
    /// The account policy.
    pub policy: Policy,
    /// The site's name (the issuer authenticator apps show).
    pub site: String,
    /// The SMS gateway, when one is configured (else notices are in-app only); previews word
    /// their SMS with it as it will be sent.
    pub gateway: Option<std::sync::Arc<crate::notify::Gateway>>,
    /// The key that signs viewer and room tokens.
    pub key: std::sync::Arc<ed25519_dalek::SigningKey>,
    /// Imaging's base URL (the viewer page is under it).
    pub imaging_url: String,
    /// The appliance's own public URL (`http(s)://host:8080/`), for FHIR's full URLs.
    pub base_url: String,
    /// The SFU's signalling base URL.
    pub sfu_url: String,
    /// New in-app notifications, for the WebSockets that push them.
    pub events: tokio::sync::broadcast::Sender<Pushed>,
    /// The data directory (imaging's index is under it).
    pub data_dir: std::path::PathBuf,
    /// The consultation rooms' shared focus.
    pub rooms: std::sync::Arc<crate::focus::Rooms>,
    /// Imaging's index, read-only, once it exists.
    pub imaging_index: std::sync::Arc<tokio::sync::OnceCell<SqlitePool>>,
    /// Seals and opens the sensitive columns.
    pub sealer: crate::gm::Sealer,
    /// Signs reports with SM2.
    pub report_signer: std::sync::Arc<crate::report_sign::ReportSigner>,
    /// Failed logins per address and per name.
    pub throttle: std::sync::Arc<std::sync::Mutex<crate::throttle::Throttle>>,
}

impl Api {
    /// Imaging's index, opened read-only the first time it is needed; `None` while imaging has
    /// stored nothing yet.
    pub async fn imaging_index(&self) -> Result<Option<SqlitePool>, imaging::store::StoreError> {
        if let Some(pool) = self.imaging_index.get() {
            return Ok(Some(pool.clone()));
        }
        let Some(pool) = imaging::store::Store::read_only_index(&self.data_dir).await? else {
            return Ok(None);
        };
        Ok(Some(
            self.imaging_index
                .get_or_init(|| async { pool })
                .await
                .clone(),
        ))
    }
}

/// An in-app notification for one user, pushed to their open WebSockets.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The user.
    pub user: i64,
    /// The notification, as the unread list shows it.
    pub notification: serde_json::Value,
}

/// An API error: the status and the `{code, message, field}` body (with the resource's current
/// state on a conflict).
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// The field at fault.
    pub field: Option<&'static str>,
    /// The resource as it is now (conflicts).
    pub current: Option<serde_json::Value>,
}

impl ApiError {
    /// An error without a field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            current: None,
        }
    }

    /// A 422 naming `field`.
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
    }

    /// A 404 that does not say whether the thing exists for someone else.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    /// A 500, logged.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (logged)",
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        Self::internal(e)
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let status = match &e {
            AccountError::Field { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AccountError::BadCredentials
            | AccountError::Unauthenticated
            | AccountError::TotpRequired
            | AccountError::BadTotp => StatusCode::UNAUTHORIZED,
            AccountError::TotpEnrollmentRequired => StatusCode::FORBIDDEN,
            AccountError::Locked { .. } => StatusCode::LOCKED,
            AccountError::PasswordChangeRequired => StatusCode::FORBIDDEN,
            AccountError::Taken { .. } => StatusCode::CONFLICT,
            AccountError::Db(_) | AccountError::Audit(_) => return Self::internal(e),
        };
        Self {
            status,
            code: e.code(),
            message: e.to_string(),
            field: e.field(),
            current: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message, "field": self.field });
        if let Some(current) = self.current {
            body["current"] = current;
        }
        (self.status, Json(body)).into_response()
    }
}

fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AccountError::Unauthenticated.into())
}

/// The user behind the request; `allow_pending` lets a user who must change the password in.
pub(crate) async fn user(
    api: &Api,
    headers: &HeaderMap,
    allow_pending: bool,
) -> Result<(User, String), ApiError> {
    let token = bearer(headers)?;
    let user = accounts::authenticate(&api.pool, &api.policy, &token).await?;
    if user.must_change_password && !allow_pending {
        return Err(AccountError::PasswordChangeRequired.into());
    }
    if user.must_enroll_totp && !allow_pending {
        return Err(AccountError::TotpEnrollmentRequired.into());
    }
    Ok((user, token))
}

/// A JSON body, or a 422 naming what is wrong with it.
pub(crate) fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::field("body", e.to_string()))
}
