//! The data centre's master data over HTTP: the alliance's institutions as a tree, their
//! departments, experts (department, title, specialties, profile) and their bookable slots,
//! booking a slot for an appointment-mode consultation (which schedules it), a patient's
//! records at other institutions linked through the master record, and favourite patients.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use workflow::{Consultation, ConsultationAction, Mode, Role};

use crate::accounts::now_ms;
use crate::cases::{apply, audit_event, commit, if_match, open};
use crate::http::{Api, ApiError, body, user};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/institutions", get(institutions))
        .route(
            "/api/v1/institutions/{id}/departments",
            get(departments).post(add_department),
        )
        .route("/api/v1/experts", get(experts))
        .route("/api/v1/experts/{id}", put(set_expert))
        .route("/api/v1/experts/{id}/slots", get(slots).post(add_slots))
        .route("/api/v1/consultations/{id}/book", post(book))
        .route("/api/v1/patients/{id}/linked", get(linked))
        .route("/api/v1/me/favourites", get(favourites))
        .route(
            "/api/v1/me/favourites/{patient}",
            put(add_favourite).delete(remove_favourite),
        )
}

fn forbidden(why: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", why.to_owned())
}

/// Every institution with its parent: the client draws the tree.
async fn institutions(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    user(&api, &headers, false).await?;
    let rows: Vec<(i64, String, String, Option<i64>)> =
        sqlx::query_as("SELECT id, name, kind, parent_id FROM institutions ORDER BY id")
            .fetch_all(&api.pool)
            .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, name, kind, parent)| {
            json!({ "id": id, "name": name, "kind": kind, "parent": parent })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn departments(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    user(&api, &headers, false).await?;
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, name FROM departments WHERE institution_id = ? ORDER BY id")
            .bind(id)
            .fetch_all(&api.pool)
            .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, name)| json!({ "id": id, "name": name }))
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDepartment {
    name: String,
}

async fn add_department(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    if !(u.role == Role::InstitutionAdmin && u.institution == id) {
        return Err(forbidden(
            "an institution's administrator manages its departments",
        ));
    }
    let b: NewDepartment = body(&bytes)?;
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::field("name", "1-64 characters"));
    }
    let r = sqlx::query("INSERT INTO departments (institution_id, name) VALUES (?, ?)")
        .bind(id)
        .bind(name)
        .execute(&api.pool)
        .await;
    let dept = match r {
        Ok(done) => done.last_insert_rowid(),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError {
                field: Some("name"),
                ..ApiError::new(StatusCode::CONFLICT, "conflict", format!("{name} exists"))
            });
        }
        Err(e) => return Err(e.into()),
    };
    audit_event(
        &api,
        &u,
        &peer,
        "create",
        format!("department:{dept}"),
        "ok",
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": dept }))))
}

#[derive(Deserialize)]
struct ExpertQuery {
    specialty: Option<String>,
    department: Option<i64>,
}

async fn experts(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<ExpertQuery>,
) -> Result<Json<Value>, ApiError> {
    user(&api, &headers, false).await?;
    type ExpertRow = (
        i64,
        String,
        i64,
        Option<i64>,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<ExpertRow> = sqlx::query_as(
        "SELECT u.id, u.display_name, u.institution_id, e.department_id, e.title, \
         e.specialties, e.profile, COALESCE(d.name, '') FROM users u JOIN experts e ON \
         e.user_id = u.id LEFT JOIN departments d ON d.id = e.department_id WHERE u.active = 1 AND u.role = 'expert' AND (? IS NULL OR e.department_id = ?) \
         ORDER BY u.id",
    )
    .bind(q.department)
    .bind(q.department)
    .fetch_all(&api.pool)
    .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .filter(|r| {
            q.specialty
                .as_deref()
                .is_none_or(|s| r.5.split(',').any(|x| x.trim() == s))
        })
        .map(|(id, name, inst, dept, title, specialties, profile, dept_name)| {
            json!({ "id": id, "name": name, "institution": inst, "department": dept,
                    "department_name": dept_name,
                    "title": title, "profile": profile,
                    "specialties": specialties.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>() })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpertProfile {
    department: Option<i64>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    specialties: Vec<String>,
    #[serde(default)]
    profile: String,
}

async fn set_expert(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let target: Option<(String, i64)> =
        sqlx::query_as("SELECT role, institution_id FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&api.pool)
            .await?;
    let Some((role, institution)) = target else {
        return Err(ApiError::not_found("user"));
    };
    if role != "expert" {
        return Err(ApiError::field("id", "the user is not an expert"));
    }
    let allowed = u.id == id || u.role == Role::InstitutionAdmin && u.institution == institution;
    if !allowed {
        return Err(forbidden(
            "the expert or their institution's administrator edits this",
        ));
    }
    let b: ExpertProfile = body(&bytes)?;
    if let Some(d) = b.department {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT institution_id FROM departments WHERE id = ?")
                .bind(d)
                .fetch_optional(&api.pool)
                .await?;
        if at != Some(institution) {
            return Err(ApiError::field(
                "department",
                "no such department at the expert's institution",
            ));
        }
    }
    if b.title.chars().count() > 32 || b.profile.chars().count() > 4000 {
        return Err(ApiError::field(
            "profile",
            "title at most 32, profile 4000 characters",
        ));
    }
    if b.specialties
        .iter()
        .any(|s| s.contains(',') || s.trim().is_empty())
    {
        return Err(ApiError::field(
            "specialties",
            "non-empty names without commas",
        ));
    }
    sqlx::query(
        "INSERT INTO experts (user_id, department_id, title, specialties, profile) VALUES \
         (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET department_id = \
         excluded.department_id, title = excluded.title, specialties = excluded.specialties, \
         profile = excluded.profile",
    )
    .bind(id)
    .bind(b.department)
    .bind(b.title.trim())
    .bind(b.specialties.join(","))
    .bind(b.profile.trim())
    .execute(&api.pool)
    .await?;
    audit_event(&api, &u, &peer, "update", format!("expert:{id}"), "ok").await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct SlotQuery {
    #[serde(default)]
    free: bool,
}

async fn slots(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<SlotQuery>,
) -> Result<Json<Value>, ApiError> {
    user(&api, &headers, false).await?;
    let rows: Vec<(i64, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, starts_at, minutes, consultation_id FROM expert_slots WHERE expert_id = ? \
         AND starts_at > ? AND (NOT ? OR consultation_id IS NULL) ORDER BY starts_at LIMIT 500",
    )
    .bind(id)
    .bind(now_ms())
    .bind(q.free)
    .fetch_all(&api.pool)
    .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(slot, at, minutes, c)| {
            json!({ "id": slot, "starts_at": at, "minutes": minutes, "booked": c.is_some() })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSlots {
    /// The first slot's start (ms since the epoch).
    starts_at: i64,
    /// Each slot's length.
    minutes: i64,
    /// How many back to back (default 1).
    #[serde(default = "one")]
    count: i64,
}

fn one() -> i64 {
    1
}

async fn add_slots(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    if !(u.id == id && u.role == Role::Expert || u.role == Role::Coordinator) {
        return Err(forbidden(
            "the expert or the consultation centre publishes slots",
        ));
    }
    let is_expert: Option<i64> =
        sqlx::query_scalar("SELECT user_id FROM experts WHERE user_id = ?")
            .bind(id)
            .fetch_optional(&api.pool)
            .await?;
    if is_expert.is_none() {
        return Err(ApiError::not_found("expert profile"));
    }
    let b: NewSlots = body(&bytes)?;
    if b.starts_at <= now_ms() {
        return Err(ApiError::field("starts_at", "must be in the future"));
    }
    if !(10..=240).contains(&b.minutes) {
        return Err(ApiError::field("minutes", "10-240"));
    }
    if !(1..=48).contains(&b.count) {
        return Err(ApiError::field("count", "1-48"));
    }
    let mut tx = api.pool.begin().await?;
    let mut ids = Vec::new();
    for k in 0..b.count {
        let r = sqlx::query(
            "INSERT INTO expert_slots (expert_id, starts_at, minutes) VALUES (?, ?, ?)",
        )
        .bind(id)
        .bind(b.starts_at + k * b.minutes * 60_000)
        .bind(b.minutes)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(done) => ids.push(done.last_insert_rowid()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(ApiError {
                    field: Some("starts_at"),
                    ..ApiError::new(
                        StatusCode::CONFLICT,
                        "conflict",
                        "a slot already starts then",
                    )
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit().await?;
    audit_event(
        &api,
        &u,
        &peer,
        "create",
        format!("expert:{id}:slots"),
        "ok",
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "ids": ids }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Booking {
    slot: i64,
    room: String,
}

/// Books a free slot for an appointment-mode consultation: the slot is taken and the
/// consultation scheduled with its expert and time, in one transaction (a slot is booked once).
async fn book(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let expected = if_match(&headers)?;
    let b: Booking = body(&bytes)?;
    let mut change = Some(open::<Consultation>(&api, &u, id, expected).await?);
    let Some(c) = change.as_mut() else {
        return Err(ApiError::internal("no open change"));
    };
    if c.record.mode != Mode::Appointment {
        return Err(ApiError::field(
            "slot",
            "slots are booked for appointment-mode consultations",
        ));
    }
    let slot: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT expert_id, starts_at, consultation_id FROM expert_slots WHERE id = ?",
    )
    .bind(b.slot)
    .fetch_optional(&mut *c.tx)
    .await?;
    let Some((expert, at, taken)) = slot else {
        return Err(ApiError::field("slot", "no such slot"));
    };
    if taken.is_some() {
        return Err(ApiError {
            field: Some("slot"),
            ..ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the slot is already booked",
            )
        });
    }
    let action = ConsultationAction::Schedule {
        at,
        experts: vec![expert],
        room: b.room,
    };
    let notices = apply(&api, &u, &peer, &mut change, action).await?;
    let mut change = change.ok_or_else(|| ApiError::internal("no open change"))?;
    sqlx::query(
        "UPDATE expert_slots SET consultation_id = ? WHERE id = ? AND consultation_id IS NULL",
    )
    .bind(id)
    .bind(b.slot)
    .execute(&mut *change.tx)
    .await?;
    commit(&api, &u, &peer, change, &notices, "schedule").await
}

/// The same person's records at other institutions (through the master record), those the
/// user may read.
async fn linked(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let p = crate::consult::readable_patient(&api, &u, &peer, id).await?;
    let master: Option<i64> = sqlx::query_scalar("SELECT master_id FROM patients WHERE id = ?")
        .bind(p)
        .fetch_one(&api.pool)
        .await?;
    let others: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM patients WHERE master_id = ? AND id != ? ORDER BY id")
            .bind(master)
            .bind(p)
            .fetch_all(&api.pool)
            .await?;
    let mut items = Vec::new();
    for other in others {
        if let Some(row) = crate::consult::patient_row(&api, other).await?
            && crate::consult::may_read_patient(&api, &u, &row).await?
        {
            items.push(json!({ "id": row.0, "institution": row.1, "name": row.2 }));
        }
    }
    Ok(Json(json!({ "master": master, "items": items })))
}

async fn favourites(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT p.id, p.name FROM favourite_patients f JOIN patients p ON p.id = f.patient_id \
         WHERE f.user_id = ? ORDER BY p.id",
    )
    .bind(u.id)
    .fetch_all(&api.pool)
    .await?;
    let mut items = Vec::new();
    for (id, name) in rows {
        // Access can lapse (a referral's grant ends): list only what is still readable.
        if let Some(row) = crate::consult::patient_row(&api, id).await?
            && crate::consult::may_read_patient(&api, &u, &row).await?
        {
            items.push(json!({ "id": id, "name": name }));
        }
    }
    Ok(Json(json!({ "items": items })))
}

async fn add_favourite(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(patient): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    crate::consult::readable_patient(&api, &u, &peer, patient).await?;
    sqlx::query(
        "INSERT INTO favourite_patients (user_id, patient_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(u.id)
    .bind(patient)
    .execute(&api.pool)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_favourite(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(patient): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    sqlx::query("DELETE FROM favourite_patients WHERE user_id = ? AND patient_id = ?")
        .bind(u.id)
        .bind(patient)
        .execute(&api.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
