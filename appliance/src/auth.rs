//! The account routes every user has: login (throttled per address and per name, `throttle`),
//! logout, password change, the current user and the TOTP second factor's enrolment. Every route but login needs `Authorization: Bearer
//! <token>`; a user whose password must change (or who must enrol a second factor) may reach
//! only these.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::{self, User};
use crate::http::{Api, ApiError, body, user};
use crate::throttle::Verdict;

/// The account routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/password", post(change_password))
        .route("/api/v1/auth/totp/setup", post(totp_setup))
        .route("/api/v1/auth/totp/confirm", post(totp_confirm))
        .route("/api/v1/me", get(me))
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
    let source = peer.ip().to_string();
    let now = accounts::now_ms();
    let verdict = api
        .throttle
        .lock()
        .map_or(Verdict::Allow, |t| t.check(&source, &b.login, now));
    if verdict != Verdict::Allow {
        let result = match verdict {
            Verdict::Address { .. } => "throttled",
            _ => "locked",
        };
        crate::audit::append(
            &api.pool,
            &crate::audit::Record {
                login: b.login.trim().to_owned(),
                action: "login_failed".into(),
                source: source.clone(),
                result: result.into(),
                ..Default::default()
            },
        )
        .await?;
    }
    match verdict {
        Verdict::Allow => {}
        Verdict::Name { minutes } => return Err(accounts::AccountError::Locked { minutes }.into()),
        Verdict::Address { retry_secs } => {
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!(
                    "too many failed logins from this address: try again in {} minutes",
                    (retry_secs + 59) / 60
                ),
            )
            .into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&retry_secs.to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            return Ok(r);
        }
    }
    let outcome = accounts::login(
        &api.pool,
        &api.policy,
        &b.login,
        &b.password,
        b.totp.as_deref(),
        &source,
    )
    .await;
    if let Ok(mut t) = api.throttle.lock() {
        match &outcome {
            Ok(_) => t.succeeded(&b.login),
            Err(
                accounts::AccountError::BadCredentials
                | accounts::AccountError::BadTotp
                | accounts::AccountError::Locked { .. },
            ) => t.failed(
                &source,
                &b.login,
                now,
                api.policy.lockout_threshold,
                api.policy.lockout_ms,
            ),
            Err(_) => {}
        }
    }
    let (token, user) = outcome?;
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
