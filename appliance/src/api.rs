//! The REST API under /api/v1 (JSON; errors as `{code, message, field}`): login, logout,
//! password change and the current user. Every route but login needs `Authorization: Bearer
//! <token>`; a user whose password must change may only change it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
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
    /// Whether an SMS gateway is configured (else notices are in-app only).
    pub sms: bool,
    /// The key that signs viewer and room tokens.
    pub key: std::sync::Arc<ed25519_dalek::SigningKey>,
    /// Imaging's base URL (the viewer page is under it).
    pub imaging_url: String,
    /// The SFU's signalling base URL.
    pub sfu_url: String,
    /// New in-app notifications, for the WebSockets that push them.
    pub events: tokio::sync::broadcast::Sender<Pushed>,
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

/// Every API route ("METHOD path"), as the OpenAPI document must describe them.
pub const ROUTES: &[&str] = &[
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/logout",
    "POST /api/v1/auth/password",
    "POST /api/v1/auth/totp/setup",
    "POST /api/v1/auth/totp/confirm",
    "GET /api/v1/me",
    "GET /api/v1/token-key",
    "POST /api/v1/patients",
    "GET /api/v1/patients/{id}",
    "POST /api/v1/consultations",
    "GET /api/v1/consultations",
    "GET /api/v1/consultations/{id}",
    "PUT /api/v1/consultations/{id}",
    "POST /api/v1/consultations/{id}/actions",
    "POST /api/v1/consultations/{id}/view-token",
    "POST /api/v1/consultations/{id}/room-token",
    "POST /api/v1/referrals",
    "GET /api/v1/referrals",
    "GET /api/v1/referrals/{id}",
    "POST /api/v1/referrals/{id}/actions",
    "POST /api/v1/referrals/{id}/view-token",
    "GET /api/v1/notifications",
    "GET /api/v1/notifications/ws",
    "POST /api/v1/notifications/{id}/read",
    "POST /api/v1/users",
    "GET /api/v1/users",
    "POST /api/v1/users/{id}/unlock",
    "POST /api/v1/users/{id}/reset-password",
    "POST /api/v1/users/{id}/disable",
    "GET /api/v1/audit",
    "GET /api/v1/audit/verify",
    "POST /api/v1/sfu/admin-token",
    "GET /api/v1/statistics",
    "GET /api/v1/report-templates",
    "POST /api/v1/report-templates",
    "PUT /api/v1/me/signature",
    "PUT /api/v1/consultations/{id}/report",
    "GET /api/v1/consultations/{id}/report",
    "POST /api/v1/consultations/{id}/report/sign",
    "GET /api/v1/consultations/{id}/report/verify",
    "GET /api/v1/consultations/{id}/report.pdf",
    "GET /api/v1/referrals/{id}/admission-slip.pdf",
    "GET /api/v1/institutions",
    "GET /api/v1/institutions/{id}/departments",
    "POST /api/v1/institutions/{id}/departments",
    "GET /api/v1/experts",
    "PUT /api/v1/experts/{id}",
    "GET /api/v1/experts/{id}/slots",
    "POST /api/v1/experts/{id}/slots",
    "POST /api/v1/consultations/{id}/book",
    "GET /api/v1/patients/{id}/linked",
    "GET /api/v1/me/favourites",
    "PUT /api/v1/me/favourites/{patient}",
    "DELETE /api/v1/me/favourites/{patient}",
];

/// The API routes.
pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/password", post(change_password))
        .route("/api/v1/auth/totp/setup", post(totp_setup))
        .route("/api/v1/auth/totp/confirm", post(totp_confirm))
        .route("/api/v1/me", get(me))
        .route(
            "/api/v1/token-key",
            get(|State(api): State<Api>| async move {
                Json(serde_json::json!({
                    "public_key": firmware_runtime::token::public_key_base64(&api.key),
                    "algorithm": "Ed25519",
                }))
            }),
        )
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .merge(crate::consult::routes())
        .merge(crate::referral::routes())
        .merge(crate::admin::routes())
        .merge(crate::stats::routes())
        .merge(crate::reports::routes())
        .merge(crate::registry::routes())
        .with_state(api)
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    login: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

async fn login(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: LoginBody = body(&bytes)?;
    let (token, user) = accounts::login(
        &api.pool,
        &api.policy,
        &b.login,
        &b.password,
        b.totp.as_deref(),
        &peer.ip().to_string(),
    )
    .await?;
    Ok(Json(json!({ "token": token, "user": user })).into_response())
}

async fn logout(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (user, token) = user(&api, &headers, true).await?;
    accounts::logout(&api.pool, &user, &token, &peer.ip().to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    old_password: String,
    new_password: String,
}

async fn change_password(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let (user, token) = user(&api, &headers, true).await?;
    let b: PasswordBody = body(&bytes)?;
    accounts::change_password(
        &api.pool,
        &api.policy,
        &user,
        &token,
        &b.old_password,
        &b.new_password,
        &peer.ip().to_string(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(api): State<Api>, headers: HeaderMap) -> Result<Json<User>, ApiError> {
    let (user, _) = user(&api, &headers, true).await?;
    Ok(Json(user))
}

async fn totp_setup(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (user, _) = user(&api, &headers, true).await?;
    let (secret, uri) = accounts::totp_setup(&api.pool, &api.site, &user).await?;
    Ok(Json(json!({ "secret": secret, "otpauth_uri": uri })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

async fn totp_confirm(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let (user, _) = user(&api, &headers, true).await?;
    let b: CodeBody = body(&bytes)?;
    accounts::totp_confirm(&api.pool, &user, &b.code, &peer.ip().to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}
