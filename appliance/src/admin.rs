//! The separated administrators' API (MLPS level 3: system, security and audit administration
//! held by different people). The security administrator manages accounts (create, unlock,
//! reset a password, disable); an institution administrator manages its own institution's
//! non-administrator accounts; the audit administrator reads and verifies the audit trail.
//! None of them reads patient data, none can do another's work, and nobody can change or
//! delete audit records. Every action here is itself audited.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use workflow::Role;

use crate::accounts::{self, User, role_name};
use crate::cases::audit_event;
use crate::http::{Api, ApiError, body, user};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/users", post(create_user).get(list_users))
        .route("/api/v1/users/{id}/unlock", post(unlock))
        .route("/api/v1/users/{id}/reset-password", post(reset_password))
        .route("/api/v1/users/{id}/disable", post(disable))
        .route("/api/v1/audit", get(audit_records))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/api/v1/sfu/admin-token", post(sfu_admin_token))
}

fn forbidden(what: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", what.to_owned())
}

/// Whether `admin` may manage an account with `role` at `institution`.
fn may_manage(admin: &User, role: Role, institution: i64) -> bool {
    match admin.role {
        Role::SecurityAdmin => true,
        Role::InstitutionAdmin => institution == admin.institution && !role.is_admin(),
        _ => false,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    login: String,
    display_name: String,
    role: String,
    institution: i64,
    #[serde(default)]
    phone: String,
}

async fn create_user(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (admin, _) = user(&api, &headers, false).await?;
    let b: NewUser = body(&bytes)?;
    let role = accounts::parse_role(&b.role)?;
    if !may_manage(&admin, role, b.institution) {
        audit_event(
            &api,
            &admin,
            &peer,
            "create_user",
            format!("login:{}", b.login),
            "denied",
        )
        .await?;
        return Err(forbidden(
            "the security administrator creates accounts (an institution administrator, its own \
             institution's non-administrators)",
        ));
    }
    if !accounts::valid_phone(b.phone.trim()) {
        return Err(ApiError::field("phone", "an 11-digit mobile number"));
    }
    let (id, password) =
        accounts::add_user(&api.pool, &b.login, &b.display_name, role, b.institution).await?;
    accounts::set_phone(&api.pool, &api.sealer, id, &b.phone).await?;
    audit_event(
        &api,
        &admin,
        &peer,
        "create_user",
        format!("user:{id}"),
        "ok",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "one_time_password": password })),
    ))
}

#[derive(Deserialize)]
struct UserQuery {
    institution: Option<i64>,
}

async fn list_users(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<UserQuery>,
) -> Result<Json<Value>, ApiError> {
    let (admin, _) = user(&api, &headers, false).await?;
    let institution = match admin.role {
        Role::SecurityAdmin => q.institution,
        Role::InstitutionAdmin => Some(admin.institution),
        _ => return Err(forbidden("account lists are for account administrators")),
    };
    type UserListRow = (i64, String, String, String, i64, String, i64, i64);
    let rows: Vec<UserListRow> = sqlx::query_as(
        "SELECT id, login, display_name, role, institution_id, phone, active, locked_until \
         FROM users WHERE (? IS NULL OR institution_id = ?) ORDER BY id",
    )
    .bind(institution)
    .bind(institution)
    .fetch_all(&api.pool)
    .await?;
    let now = accounts::now_ms();
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, login, name, role, inst, phone, active, locked)| {
            // A value that does not open is shown as nothing rather than failing the list.
            let phone = api.sealer.open("phone", &phone).unwrap_or_default();
            json!({ "id": id, "login": login, "display_name": name, "role": role,
                    "institution": inst, "phone": phone, "active": active != 0,
                    "locked": locked > now })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// The account `id` if `admin` may manage it.
async fn managed(api: &Api, admin: &User, id: i64) -> Result<(Role, i64), ApiError> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT role, institution_id FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&api.pool)
            .await?;
    let Some((role, institution)) = row else {
        return Err(ApiError::not_found("user"));
    };
    let role = accounts::parse_role(&role)?;
    if !may_manage(admin, role, institution) {
        return Err(forbidden("this account is not yours to manage"));
    }
    if id == admin.id {
        return Err(forbidden("administrators do not manage their own accounts"));
    }
    Ok((role, institution))
}

/// Forgets the failed logins counted in memory against the account's name (its lockout in the
/// database is cleared by the caller).
async fn clear_throttle(api: &Api, id: i64) -> Result<(), ApiError> {
    let login: String = sqlx::query_scalar("SELECT login FROM users WHERE id = ?")
        .bind(id)
        .fetch_one(&api.pool)
        .await?;
    if let Ok(mut t) = api.throttle.lock() {
        t.clear(&login);
    }
    Ok(())
}

async fn unlock(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let (admin, _) = user(&api, &headers, false).await?;
    managed(&api, &admin, id).await?;
    sqlx::query("UPDATE users SET failed_count = 0, locked_until = 0 WHERE id = ?")
        .bind(id)
        .execute(&api.pool)
        .await?;
    clear_throttle(&api, id).await?;
    audit_event(&api, &admin, &peer, "unlock", format!("user:{id}"), "ok").await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reset_password(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let (admin, _) = user(&api, &headers, false).await?;
    managed(&api, &admin, id).await?;
    let password = accounts::reset_password(&api.pool, id).await?;
    clear_throttle(&api, id).await?;
    audit_event(
        &api,
        &admin,
        &peer,
        "reset_password",
        format!("user:{id}"),
        "ok",
    )
    .await?;
    Ok(Json(json!({ "one_time_password": password })))
}

async fn disable(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let (admin, _) = user(&api, &headers, false).await?;
    managed(&api, &admin, id).await?;
    let mut tx = api.pool.begin().await?;
    sqlx::query("UPDATE users SET active = 0 WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    audit_event(&api, &admin, &peer, "disable", format!("user:{id}"), "ok").await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AuditQuery {
    user: Option<i64>,
    action: Option<String>,
    target: Option<String>,
    /// From this sequence number on.
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

async fn audit_records(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let (admin, _) = user(&api, &headers, false).await?;
    if admin.role != Role::AuditAdmin {
        audit_event(&api, &admin, &peer, "read", "audit".into(), "denied").await?;
        return Err(forbidden("the audit trail is for the audit administrator"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "1-1000"));
    }
    type AuditRow = (
        i64,
        String,
        Option<i64>,
        String,
        String,
        Option<i64>,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT seq, at, user_id, login, role, institution, action, target, source, result \
         FROM audit_log WHERE seq > ? AND (? IS NULL OR user_id = ?) AND (? IS NULL OR \
         action = ?) AND (? IS NULL OR target = ?) ORDER BY seq LIMIT ?",
    )
    .bind(q.after)
    .bind(q.user)
    .bind(q.user)
    .bind(&q.action)
    .bind(&q.action)
    .bind(&q.target)
    .bind(&q.target)
    .bind(limit)
    .fetch_all(&api.pool)
    .await?;
    audit_event(&api, &admin, &peer, "read", "audit".into(), "ok").await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(
            |(seq, at, user, login, role, inst, action, target, source, result)| {
                json!({ "seq": seq, "at": at, "user": user, "login": login, "role": role,
                    "institution": inst, "action": action, "target": target,
                    "source": source, "result": result })
            },
        )
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn audit_verify(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let (admin, _) = user(&api, &headers, false).await?;
    if admin.role != Role::AuditAdmin {
        return Err(forbidden("the audit trail is for the audit administrator"));
    }
    let v = crate::audit::verify(&api.pool).await?;
    Ok(Json(json!({
        "records": v.records,
        "intact": v.problems.is_empty(),
        "problems": v.problems,
        "head": v.head.map(|(seq, hash)| json!({ "seq": seq, "hash": hash })),
        "checked_by": role_name(admin.role),
    })))
}

/// A token for the SFU's admin API (list rooms, remove a participant, close a room), for the
/// system administrator; it lasts an hour.
async fn sfu_admin_token(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (admin, _) = user(&api, &headers, false).await?;
    if admin.role != Role::SystemAdmin {
        return Err(forbidden(
            "the SFU is administered by the system administrator",
        ));
    }
    let exp = ((accounts::now_ms() / 1000) + 3600).max(0) as u64;
    let token = firmware_runtime::token::sign(
        &sfu::token::AdminClaims {
            sub: admin.login.clone(),
            scope: sfu::token::ADMIN_SCOPE.to_owned(),
            exp,
        },
        &api.key,
    );
    audit_event(&api, &admin, &peer, "sfu_admin_token", "sfu".into(), "ok").await?;
    Ok(Json(
        json!({ "token": token, "expires_at": exp, "admin_url": format!("{}admin/rooms", api.sfu_url) }),
    ))
}
