//! Patients and consultations over HTTP, around the `workflow` core: every query limited to
//! what the user's role and institution allow, every change checked against the version the
//! client saw (`If-Match`; two reviewers acting at once: one wins, the other gets 409 with the
//! current state), and each transition written with its in-app notifications and SMS outbox
//! rows in one transaction, then audited.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::{Sqlite, Transaction};
use workflow::{
    Actor, Consultation, ConsultationAction, ConsultationKind, Mode, Notice, Refusal, Role,
};

use crate::accounts::{User, now_ms, role_name};
use crate::api::{Api, ApiError, body, user};
use crate::audit::{self, Record};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/patients", post(create_patient))
        .route("/api/v1/patients/{id}", get(get_patient))
        .route(
            "/api/v1/consultations",
            post(create_consultation).get(list_consultations),
        )
        .route("/api/v1/consultations/{id}", get(get_consultation))
        .route("/api/v1/consultations/{id}/actions", post(act))
        .route("/api/v1/consultations/{id}/view-token", post(view_token))
        .route("/api/v1/notifications", get(notifications))
        .route("/api/v1/notifications/{id}/read", post(mark_read))
}

fn actor(u: &User) -> Actor {
    Actor {
        user: u.id,
        role: u.role,
        institution: u.institution,
    }
}

/// Centre staff see every application; they work for the whole alliance.
fn centre_staff(role: Role) -> bool {
    matches!(role, Role::Coordinator | Role::QcReviewer)
}

/// The Chinese text of an event for `object` (e.g. "会诊 12").
pub fn message(event: &str, object: &str) -> String {
    let text = match event {
        "consultation_submitted" => "已提交，请审核。",
        "consultation_rejected" => "未通过审核，请按意见修改后重新提交。",
        "consultation_qc_passed" => "已通过审核，请安排会诊。",
        "consultation_scheduled" => "已安排，请按时参加。",
        "consultation_report_signed" => "的报告已签发。",
        "consultation_cancelled" => "已取消。",
        _ => "有新的进展。",
    };
    format!("{object}{text}")
}

async fn audit_event(
    api: &Api,
    u: &User,
    peer: &SocketAddr,
    action: &str,
    target: String,
    result: &str,
) -> Result<(), ApiError> {
    audit::append(
        &api.pool,
        &Record {
            user_id: Some(u.id),
            login: u.login.clone(),
            role: role_name(u.role),
            institution: Some(u.institution),
            action: action.to_owned(),
            target,
            source: peer.ip().to_string(),
            result: result.to_owned(),
        },
    )
    .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPatient {
    name: String,
    sex: String,
    birth_date: String,
    #[serde(default)]
    phone: String,
}

fn valid_date(d: &str) -> bool {
    let b = d.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| d.get(r).and_then(|s| s.parse::<u32>().ok());
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(day)) => {
            let days = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
                2 => 28,
                _ => 0,
            };
            (1900..=2100).contains(&y) && (1..=days).contains(&day)
        }
        _ => false,
    }
}

async fn create_patient(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    if !matches!(u.role, Role::Doctor | Role::Expert) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only doctors register patients",
        ));
    }
    let p: NewPatient = body(&bytes)?;
    let name = p.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::field("name", "1-64 characters"));
    }
    if !matches!(p.sex.as_str(), "M" | "F" | "O" | "U") {
        return Err(ApiError::field("sex", "one of M, F, O, U"));
    }
    if !valid_date(&p.birth_date) {
        return Err(ApiError::field("birth_date", "a date as YYYY-MM-DD"));
    }
    let phone = p.phone.trim();
    if !crate::accounts::valid_phone(phone) {
        return Err(ApiError::field("phone", "an 11-digit mobile number"));
    }
    let id = sqlx::query(
        "INSERT INTO patients (institution_id, name, sex, birth_date, phone, created_by, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(u.institution)
    .bind(name)
    .bind(&p.sex)
    .bind(&p.birth_date)
    .bind(phone)
    .bind(u.id)
    .bind(now_ms())
    .execute(&api.pool)
    .await?
    .last_insert_rowid();
    audit_event(&api, &u, &peer, "create", format!("patient:{id}"), "ok").await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

type PatientRow = (i64, i64, String, String, String, String);

/// Whether `u` may read patient `p`: their institution's doctors, centre staff, and the
/// experts and applicant of a consultation about the patient.
async fn may_read_patient(api: &Api, u: &User, p: &PatientRow) -> Result<bool, ApiError> {
    if matches!(u.role, Role::Doctor | Role::Expert) && p.1 == u.institution || centre_staff(u.role)
    {
        return Ok(true);
    }
    let involved: Option<i64> = sqlx::query_scalar(
        "SELECT c.id FROM consultations c LEFT JOIN consultation_experts e \
         ON e.consultation_id = c.id WHERE c.patient_id = ? AND (c.applicant_id = ? OR \
         e.user_id = ?) LIMIT 1",
    )
    .bind(p.0)
    .bind(u.id)
    .bind(u.id)
    .fetch_optional(&api.pool)
    .await?;
    Ok(involved.is_some())
}

async fn get_patient(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let row: Option<PatientRow> = sqlx::query_as(
        "SELECT id, institution_id, name, sex, birth_date, phone FROM patients WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&api.pool)
    .await?;
    let Some(p) = row else {
        return Err(ApiError::not_found("patient"));
    };
    if !may_read_patient(&api, &u, &p).await? {
        audit_event(&api, &u, &peer, "read", format!("patient:{id}"), "denied").await?;
        return Err(ApiError::not_found("patient"));
    }
    audit_event(&api, &u, &peer, "read", format!("patient:{id}"), "ok").await?;
    Ok(Json(json!({
        "id": p.0, "institution": p.1, "name": p.2, "sex": p.3, "birth_date": p.4, "phone": p.5,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConsultation {
    patient: i64,
    kind: ConsultationKind,
    mode: Mode,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    question: String,
    #[serde(default)]
    diagnosis: String,
    #[serde(default)]
    requested_experts: Vec<i64>,
    /// Study Instance UIDs in imaging.
    #[serde(default)]
    studies: Vec<String>,
}

/// Whether `uid` is a DICOM UID: digits and dots, at most 64 characters.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.')
        && !uid.contains("..")
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::Field { field, message } => ApiError::field(field, message),
        Refusal::Forbidden { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", r.to_string())
        }
        Refusal::State { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", r.to_string()),
        _ => ApiError::new(StatusCode::CONFLICT, "conflict", r.to_string()),
    }
}

fn view(id: i64, patient: i64, version: i64, c: &Consultation) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    v["id"] = json!(id);
    v["patient"] = json!(patient);
    v["version"] = json!(version);
    v
}

fn with_etag(version: i64, v: Value, status: StatusCode) -> Response {
    let mut r = (status, Json(v)).into_response();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, tag);
    }
    r
}

async fn create_consultation(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let b: NewConsultation = body(&bytes)?;
    let patient: Option<i64> =
        sqlx::query_scalar("SELECT institution_id FROM patients WHERE id = ?")
            .bind(b.patient)
            .fetch_optional(&api.pool)
            .await?;
    if patient != Some(u.institution) {
        return Err(ApiError::field(
            "patient",
            "no such patient at the applicant's institution",
        ));
    }
    let mut c = Consultation::draft(&actor(&u), b.kind, b.mode).map_err(refusal)?;
    c.reason = b.reason;
    c.question = b.question;
    c.diagnosis = b.diagnosis;
    c.requested_experts = b.requested_experts;
    if let Some(bad) = b.studies.iter().find(|u| !valid_uid(u)) {
        return Err(ApiError::field(
            "studies",
            format!("{bad:?} is not a Study Instance UID"),
        ));
    }
    c.studies = b.studies;
    let now = now_ms();
    let data = serde_json::to_string(&c).map_err(ApiError::internal)?;
    let id = sqlx::query(
        "INSERT INTO consultations (patient_id, institution_id, applicant_id, state, version, \
         data, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
    )
    .bind(b.patient)
    .bind(u.institution)
    .bind(u.id)
    .bind(c.state.name())
    .bind(data)
    .bind(now)
    .bind(now)
    .execute(&api.pool)
    .await?
    .last_insert_rowid();
    audit_event(
        &api,
        &u,
        &peer,
        "create",
        format!("consultation:{id}"),
        "ok",
    )
    .await?;
    Ok(with_etag(
        1,
        view(id, b.patient, 1, &c),
        StatusCode::CREATED,
    ))
}

type ConsultationRow = (i64, i64, i64, String);

/// Loads a consultation `u` may see (the applicant, its experts, centre staff).
async fn load(
    conn: &mut sqlx::SqliteConnection,
    u: &User,
    id: i64,
) -> Result<(i64, i64, Consultation), ApiError> {
    let row: Option<ConsultationRow> =
        sqlx::query_as("SELECT id, patient_id, version, data FROM consultations WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((_, patient, version, data)) = row else {
        return Err(ApiError::not_found("consultation"));
    };
    let c: Consultation = serde_json::from_str(&data).map_err(ApiError::internal)?;
    let visible = c.applicant == u.id || c.experts.contains(&u.id) || centre_staff(u.role);
    if !visible {
        return Err(ApiError::not_found("consultation"));
    }
    Ok((patient, version, c))
}

async fn get_consultation(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let mut conn = api.pool.acquire().await?;
    let (patient, version, c) = load(&mut conn, &u, id).await?;
    drop(conn);
    audit_event(&api, &u, &peer, "read", format!("consultation:{id}"), "ok").await?;
    Ok(with_etag(
        version,
        view(id, patient, version, &c),
        StatusCode::OK,
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    #[serde(default)]
    offset: i64,
    limit: Option<i64>,
}

async fn list_consultations(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::field("limit", "1-200"));
    }
    if q.offset < 0 {
        return Err(ApiError::field("offset", "0 or more"));
    }
    let rows: Vec<ConsultationRow> = sqlx::query_as(
        "SELECT DISTINCT c.id, c.patient_id, c.version, c.data FROM consultations c \
         LEFT JOIN consultation_experts e ON e.consultation_id = c.id \
         WHERE (? OR c.applicant_id = ? OR e.user_id = ?) AND (? IS NULL OR c.state = ?) \
         ORDER BY c.id DESC LIMIT ? OFFSET ?",
    )
    .bind(centre_staff(u.role))
    .bind(u.id)
    .bind(u.id)
    .bind(&q.state)
    .bind(&q.state)
    .bind(limit)
    .bind(q.offset)
    .fetch_all(&api.pool)
    .await?;
    let items: Vec<Value> = rows
        .iter()
        .filter_map(|(id, patient, version, data)| {
            let c: Consultation = serde_json::from_str(data).ok()?;
            Some(view(*id, *patient, *version, &c))
        })
        .collect();
    Ok(Json(
        json!({ "items": items, "offset": q.offset, "limit": limit }),
    ))
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::field("If-Match", "an ETag this API gave, e.g. \"3\""))
}

/// Turns notices into in-app notifications and SMS outbox rows, inside `tx`.
async fn deliver(
    tx: &mut Transaction<'_, Sqlite>,
    sms: bool,
    notices: &[Notice],
    object: &str,
    patient: i64,
) -> Result<(), ApiError> {
    let now = now_ms();
    for n in notices {
        let (users, event, patient_sms): (Vec<i64>, &str, bool) = match n {
            Notice::Applicant { user, event }
            | Notice::Expert { user, event }
            | Notice::Receiver { user, event } => (vec![*user], event, false),
            Notice::Centre { role, event } => {
                let ids: Vec<i64> =
                    sqlx::query_scalar("SELECT id FROM users WHERE role = ? AND active = 1")
                        .bind(role_name(*role))
                        .fetch_all(&mut **tx)
                        .await?;
                (ids, event, false)
            }
            Notice::Patient { event } => (Vec::new(), event, true),
        };
        let text = message(event, object);
        for u in users {
            sqlx::query(
                "INSERT INTO notifications (user_id, event, object, message, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(u)
            .bind(event)
            .bind(object)
            .bind(&text)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            if sms && !matches!(n, Notice::Centre { .. }) {
                let phone: String = sqlx::query_scalar("SELECT phone FROM users WHERE id = ?")
                    .bind(u)
                    .fetch_one(&mut **tx)
                    .await?;
                queue_sms(tx, &phone, &text, now).await?;
            }
        }
        if patient_sms && sms {
            let phone: String = sqlx::query_scalar("SELECT phone FROM patients WHERE id = ?")
                .bind(patient)
                .fetch_one(&mut **tx)
                .await?;
            queue_sms(tx, &phone, &text, now).await?;
        }
    }
    Ok(())
}

async fn queue_sms(
    tx: &mut Transaction<'_, Sqlite>,
    phone: &str,
    text: &str,
    now: i64,
) -> Result<(), ApiError> {
    if phone.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (channel, recipient, message, created_at, next_attempt_at) \
         VALUES ('sms', ?, ?, ?, ?)",
    )
    .bind(phone)
    .bind(text)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn act(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let expected = if_match(&headers)?;
    let action: ConsultationAction = body(&bytes)?;
    let name = action.name();
    let mut tx = api.pool.begin().await?;
    // Take the write lock before reading, so concurrent actions queue instead of racing.
    sqlx::query("UPDATE consultations SET version = version WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let (patient, version, mut c) = load(&mut tx, &u, id).await?;
    let conflict = |message: String, c: &Consultation| ApiError {
        current: Some(view(id, patient, version, c)),
        ..ApiError::new(StatusCode::CONFLICT, "conflict", message)
    };
    if expected.is_some_and(|v| v != version) {
        return Err(conflict(
            format!("the consultation changed (version {version}); reload it"),
            &c,
        ));
    }
    let before = c.clone();
    let notices = match c.apply(&actor(&u), action, now_ms()) {
        Ok(n) => n,
        Err(r @ Refusal::State { .. }) => return Err(conflict(r.to_string(), &before)),
        Err(r) => {
            drop(tx);
            audit_event(
                &api,
                &u,
                &peer,
                name,
                format!("consultation:{id}"),
                "refused",
            )
            .await?;
            return Err(refusal(r));
        }
    };
    let data = serde_json::to_string(&c).map_err(ApiError::internal)?;
    sqlx::query(
        "UPDATE consultations SET state = ?, version = version + 1, data = ?, updated_at = ? \
         WHERE id = ? AND version = ?",
    )
    .bind(c.state.name())
    .bind(data)
    .bind(now_ms())
    .bind(id)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM consultation_experts WHERE consultation_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for e in &c.experts {
        sqlx::query("INSERT INTO consultation_experts (consultation_id, user_id) VALUES (?, ?)")
            .bind(id)
            .bind(e)
            .execute(&mut *tx)
            .await?;
    }
    deliver(&mut tx, api.sms, &notices, &format!("会诊 {id} "), patient).await?;
    tx.commit().await?;
    audit_event(&api, &u, &peer, name, format!("consultation:{id}"), "ok").await?;
    metrics::counter!("appliance_consultation_transitions_total", "action" => name).increment(1);
    let version = version + 1;
    Ok(with_etag(
        version,
        view(id, patient, version, &c),
        StatusCode::OK,
    ))
}

/// How long a viewer token lasts.
const VIEW_TOKEN_SECS: u64 = 2 * 3600;

/// A signed token for imaging's viewer, limited to the consultation's studies, for anyone who
/// may see the consultation; with the viewer page's address.
async fn view_token(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let mut conn = api.pool.acquire().await?;
    let (_, _, c) = load(&mut conn, &u, id).await?;
    drop(conn);
    if c.studies.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_studies",
            "the consultation has no imaging studies attached",
        ));
    }
    let exp = (now_ms() / 1000) as u64 + VIEW_TOKEN_SECS;
    let token = imaging::token::sign(
        &imaging::token::Claims {
            sub: u.login.clone(),
            studies: c.studies.clone(),
            exp,
        },
        &api.key,
    );
    audit_event(
        &api,
        &u,
        &peer,
        "view_token",
        format!("consultation:{id}"),
        "ok",
    )
    .await?;
    let session = format!("consultation-{id}");
    Ok(Json(json!({
        "token": token,
        "expires_at": exp,
        "session": session,
        "viewer_url": format!("{}view?token={token}&session={session}", api.imaging_url),
    })))
}

async fn notifications(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, true).await?;
    let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, event, object, message, created_at FROM notifications \
         WHERE user_id = ? AND read_at IS NULL ORDER BY id DESC LIMIT 200",
    )
    .bind(u.id)
    .fetch_all(&api.pool)
    .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, event, object, message, at)| {
            json!({ "id": id, "event": event, "object": object.trim(), "message": message, "at": at })
        })
        .collect();
    Ok(Json(json!({ "unread": items })))
}

async fn mark_read(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let (u, _) = user(&api, &headers, true).await?;
    let done = sqlx::query(
        "UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL",
    )
    .bind(now_ms())
    .bind(id)
    .bind(u.id)
    .execute(&api.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("unread notification"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked() {
        assert!(valid_date("2024-02-29"));
        assert!(!valid_date("2023-02-29"));
        assert!(!valid_date("2024-13-01"));
        assert!(!valid_date("24-01-01"));
        assert!(!valid_date("1800-01-01"));
    }

    #[test]
    fn messages_are_chinese() {
        assert_eq!(
            message("consultation_scheduled", "会诊 3 "),
            "会诊 3 已安排，请按时参加。"
        );
    }
}
