//! The appliance's side of imaging's access control (`imaging::access`): service accounts for
//! systems that read imaging over DICOMweb (created, listed and revoked by the security
//! administrator; the bearer token shown once), the revocation list imaging reads, and the
//! sink that writes imaging's access events into the hash-chained audit trail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use workflow::Role;

use crate::accounts;
use crate::audit::{self, Record};
use crate::cases::audit_event;
use crate::http::{Api, ApiError, body, user};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/service-accounts", post(create).get(list))
        .route("/api/v1/service-accounts/{id}/revoke", post(revoke))
}

/// The security administrator behind the request; anyone else is refused, and, when the
/// request would change something (`change` names the action and target), audited.
async fn security_admin(
    api: &Api,
    headers: &HeaderMap,
    peer: &SocketAddr,
    change: Option<(&str, String)>,
) -> Result<accounts::User, ApiError> {
    let (admin, _) = user(api, headers, false).await?;
    if admin.role != Role::SecurityAdmin {
        if let Some((action, target)) = change {
            audit_event(api, &admin, peer, action, target, "denied").await?;
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "service accounts are managed by the security administrator",
        ));
    }
    Ok(admin)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    write: bool,
    days: i64,
    /// Institution ids whose studies it reads; empty or absent: every study.
    #[serde(default)]
    institutions: Vec<i64>,
}

fn valid_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

async fn create(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let admin = security_admin(
        &api,
        &headers,
        &peer,
        Some(("create_service_account", "service".into())),
    )
    .await?;
    let b: NewAccount = body(&bytes)?;
    let name = b.name.trim();
    if !valid_name(name) {
        return Err(ApiError::field(
            "name",
            "2-64 letters, digits, '-', '_' or '.'",
        ));
    }
    if !(1..=730).contains(&b.days) {
        return Err(ApiError::field("days", "the token lasts 1-730 days"));
    }
    if b.description.chars().count() > 200 {
        return Err(ApiError::field("description", "at most 200 characters"));
    }
    if b.write && !b.institutions.is_empty() {
        return Err(ApiError::field(
            "institutions",
            "an account that writes (stores, pulls from PACS) reads every study: leave \
             institutions empty, or make it read-only",
        ));
    }
    let mut names = Vec::new();
    for id in &b.institutions {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM institutions WHERE id = ?")
            .bind(id)
            .fetch_optional(&api.pool)
            .await?;
        match name {
            Some(n) if !names.contains(&n) => names.push(n),
            Some(_) => {}
            None => {
                return Err(ApiError::field(
                    "institutions",
                    format!("there is no institution {id}"),
                ));
            }
        }
    }
    let mut id_bytes = [0u8; 16];
    OsRng.fill_bytes(&mut id_bytes);
    let jti: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let now = accounts::now_ms();
    let expires_ms = now + b.days * 86_400_000;
    let inserted = sqlx::query(
        "INSERT INTO service_accounts (name, description, write, jti, created_by, created_at, \
         expires_at, institutions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(name)
    .bind(b.description.trim())
    .bind(b.write)
    .bind(&jti)
    .bind(admin.id)
    .bind(now)
    .bind(expires_ms)
    .bind(serde_json::to_string(&b.institutions).map_err(ApiError::internal)?)
    .execute(&api.pool)
    .await;
    let id = match inserted {
        Ok(r) => r.last_insert_rowid(),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError {
                field: Some("name"),
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    "taken",
                    format!("a service account named {name} exists"),
                )
            });
        }
        Err(e) => return Err(e.into()),
    };
    let exp = (expires_ms / 1000).max(0) as u64;
    let token = firmware_runtime::token::sign(
        &imaging::access::ServiceClaims {
            sub: format!("svc:{name}"),
            jti,
            write: b.write,
            institutions: names.clone(),
            exp,
        },
        &api.key,
    );
    audit_event(
        &api,
        &admin,
        &peer,
        "create_service_account",
        format!("service:{id}"),
        "ok",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id,
            "name": name,
            "write": b.write,
            "institutions": b.institutions,
            "institution_names": names,
            "expires_at": exp,
            "token": token,
            "dicomweb_url": format!("{}dicomweb", api.imaging_url),
        })),
    ))
}

async fn list(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    security_admin(&api, &headers, &peer, None).await?;
    type Row = (
        i64,
        String,
        String,
        bool,
        String,
        i64,
        i64,
        Option<i64>,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.id, s.name, s.description, s.write, u.login, s.created_at, s.expires_at, \
         s.revoked_at, s.institutions FROM service_accounts s JOIN users u ON u.id = s.created_by \
         ORDER BY s.id",
    )
    .fetch_all(&api.pool)
    .await?;
    let now = accounts::now_ms();
    let items: Vec<Value> = rows
        .into_iter()
        .map(
            |(id, name, description, write, by, created, expires, revoked, institutions)| {
                let institutions: Vec<i64> =
                    serde_json::from_str(&institutions).unwrap_or_default();
                let state = if revoked.is_some() {
                    "revoked"
                } else if expires <= now {
                    "expired"
                } else {
                    "active"
                };
                json!({ "id": id, "name": name, "description": description, "write": write,
                    "created_by": by, "created_at": created, "expires_at": expires / 1000,
                    "revoked_at": revoked, "state": state, "institutions": institutions })
            },
        )
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn revoke(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
) -> Result<StatusCode, ApiError> {
    let admin = security_admin(
        &api,
        &headers,
        &peer,
        Some(("revoke_service_account", format!("service:{id}"))),
    )
    .await?;
    let done = sqlx::query(
        "UPDATE service_accounts SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
    )
    .bind(accounts::now_ms())
    .bind(id)
    .execute(&api.pool)
    .await?;
    if done.rows_affected() == 0 {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM service_accounts WHERE id = ?")
                .bind(id)
                .fetch_optional(&api.pool)
                .await?;
        if exists.is_none() {
            return Err(ApiError::not_found("service account"));
        }
    }
    write_revoked(&api.pool, &api.data_dir)
        .await
        .map_err(ApiError::internal)?;
    audit_event(
        &api,
        &admin,
        &peer,
        "revoke_service_account",
        format!("service:{id}"),
        "ok",
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Why the revocation list could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokedError {
    /// The database failed.
    #[error("revoked tokens: {0}")]
    Db(#[from] sqlx::Error),
    /// The file could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Writes every revoked token id to the file imaging reads (through a temporary file and a
/// rename, so imaging never reads half of it). Called on each revocation and at start.
pub async fn write_revoked(pool: &SqlitePool, data_dir: &Path) -> Result<(), RevokedError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT jti FROM service_accounts WHERE revoked_at IS NOT NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let path = imaging::access::revoked_path(data_dir);
    let tmp = path.with_extension("tmp");
    let mut text = String::from("# revoked service tokens (written by the appliance)\n");
    for id in ids {
        text.push_str(&id);
        text.push('\n');
    }
    let io = |source| RevokedError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    tokio::fs::write(&tmp, text).await.map_err(io)?;
    tokio::fs::rename(&tmp, &path).await.map_err(io)?;
    Ok(())
}

/// Imaging's access events, into the audit trail: `record` queues (never blocks a request), a
/// task appends in order.
#[derive(Debug)]
pub struct TrailSink {
    tx: tokio::sync::mpsc::UnboundedSender<imaging::access::AccessEvent>,
}

impl imaging::access::AuditSink for TrailSink {
    fn record(&self, event: imaging::access::AccessEvent) {
        if self.tx.send(event).is_err() {
            tracing::error!("image access not audited: the audit writer stopped");
        }
    }
}

impl TrailSink {
    /// The sink and the task that writes what it queues, until every sender is gone.
    pub fn start(pool: SqlitePool) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<imaging::access::AccessEvent>();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                // A viewer's subject is a login: the record names the user as the rest do.
                let known: Option<(i64, String, i64)> = if e.role == "viewer" {
                    sqlx::query_as("SELECT id, role, institution_id FROM users WHERE login = ?")
                        .bind(&e.who)
                        .fetch_optional(&pool)
                        .await
                        .ok()
                        .flatten()
                } else {
                    None
                };
                let record = Record {
                    user_id: known.as_ref().map(|k| k.0),
                    login: e.who,
                    role: known.as_ref().map_or(e.role, |k| k.1.clone()),
                    institution: known.as_ref().map(|k| k.2),
                    action: e.action,
                    target: e.target,
                    source: e.source,
                    result: e.result,
                };
                if let Err(err) = audit::append(&pool, &record).await {
                    tracing::error!(error = %err, action = %record.action, "image access not audited");
                }
            }
        });
        Self { tx }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_plain() {
        assert!(super::valid_name("orthanc-1"));
        assert!(!super::valid_name("a"));
        assert!(!super::valid_name("has space"));
        assert!(!super::valid_name("中文"));
    }
}
