//! Patients and consultations over HTTP, around the `workflow` core: every query limited to
//! what the user's role and institution allow, every change checked against the version the
//! client saw (`If-Match`; two reviewers acting at once: one wins, the other gets 409 with the
//! current state), and each transition written with its in-app notifications and SMS outbox
//! rows in one transaction, then audited.

use std::collections::HashSet;
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use workflow::{
    Actor, Application, Consultation, ConsultationAction, ConsultationKind, Mode, Role,
};

use crate::accounts::{User, now_ms};
use crate::cases::{Flow, act, actor, audit_event, get_one, list, refusal, view_token};
use crate::http::{Api, ApiError, body, user};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/api/v1/patients",
            post(create_patient).get(crate::patients::search),
        )
        .route("/api/v1/patients/{id}", get(get_patient))
        .route(
            "/api/v1/consultations",
            post(create_consultation).get(list::<Consultation>),
        )
        .route(
            "/api/v1/consultations/{id}",
            get(get_one::<Consultation>).put(revise_consultation),
        )
        .route(
            "/api/v1/consultations/{id}/actions",
            post(act::<Consultation>),
        )
        .route(
            "/api/v1/consultations/{id}/view-token",
            post(view_token::<Consultation>),
        )
        .route("/api/v1/consultations/{id}/room-token", post(room_token))
        .route("/api/v1/notifications", get(notifications))
        .route("/api/v1/notifications/ws", get(notifications_ws))
        .route("/api/v1/notifications/{id}/read", post(mark_read))
}

/// Centre staff see every consultation; they work for the whole alliance.
fn centre_staff(role: Role) -> bool {
    matches!(role, Role::Coordinator | Role::QcReviewer)
}

const INSERT: &str = "INSERT INTO consultations (patient_id, institution_id, applicant_id, \
     state, version, data, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)";

impl Flow for Consultation {
    type Action = ConsultationAction;
    const KIND: &'static str = "consultation";
    const LABEL: &'static str = "会诊";
    const LOCK: &'static str = "UPDATE consultations SET version = version WHERE id = ?";
    const LOAD: &'static str =
        "SELECT id, patient_id, version, data FROM consultations WHERE id = ?";
    const SAVE: &'static str = "UPDATE consultations SET state = ?, version = version + 1, \
         data = ?, updated_at = ? WHERE id = ? AND version = ?";
    const LIST: &'static str = "SELECT c.id, c.patient_id, c.version, c.data FROM consultations c \
         WHERE (? OR EXISTS (SELECT 1 FROM case_parties p WHERE p.kind = 'consultation' AND \
         p.case_id = c.id AND p.party IN (?, ?)) OR c.applicant_id = ?) \
         AND (? IS NULL OR c.state = ?) ORDER BY c.id DESC LIMIT ? OFFSET ?";

    fn action_name(action: &ConsultationAction) -> &'static str {
        action.name()
    }

    fn apply(
        &mut self,
        actor: &Actor,
        action: ConsultationAction,
        now: workflow::Millis,
    ) -> Result<Vec<workflow::Notice>, workflow::Refusal> {
        Consultation::apply(self, actor, action, now)
    }

    fn state_name(&self) -> &'static str {
        self.state.name()
    }

    fn visible_to(&self, u: &User) -> bool {
        self.applicant == u.id || self.experts.contains(&u.id) || centre_staff(u.role)
    }

    fn parties(&self) -> Vec<String> {
        self.experts.iter().map(|e| format!("user:{e}")).collect()
    }

    fn sees_all(role: Role) -> bool {
        centre_staff(role)
    }

    fn detail(&self, event: &str) -> String {
        match (event, self.scheduled_at, &self.room) {
            ("consultation_scheduled", Some(at), Some(room)) => {
                format!("{}，{room}", crate::reports::china_time(at))
            }
            _ => String::new(),
        }
    }

    fn studies(&self) -> &[String] {
        &self.studies
    }

    fn shell_only(action: &ConsultationAction) -> Option<&'static str> {
        match action {
            ConsultationAction::DraftReport => {
                Some("save the report with PUT /api/v1/consultations/{id}/report")
            }
            ConsultationAction::Sign => Some(
                "sign with POST /api/v1/consultations/{id}/report/sign, which binds the \
                 signature",
            ),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPatient {
    name: String,
    sex: String,
    birth_date: String,
    #[serde(default)]
    phone: String,
    /// The resident identity card number (links records across institutions).
    #[serde(default)]
    id_number: String,
    /// The institution's own record number.
    #[serde(default)]
    record_number: String,
}

/// Whether `id` is a valid 18-character resident identity card number (GB 11643: the last
/// character is the ISO 7064 MOD 11-2 check of the first 17).
pub fn valid_id_number(id: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    b[17].to_ascii_uppercase() == CHECK[(sum % 11) as usize]
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
    let id_number = p.id_number.trim().to_ascii_uppercase();
    if !id_number.is_empty() && !valid_id_number(&id_number) {
        return Err(ApiError::field(
            "id_number",
            "not a valid 18-character identity card number",
        ));
    }
    if !id_number.is_empty() && id_number[6..14] != p.birth_date.replace('-', "") {
        return Err(ApiError::field(
            "id_number",
            "its birth date is not the patient's birth_date",
        ));
    }
    let record_number = p.record_number.trim();
    if record_number.chars().count() > 32 {
        return Err(ApiError::field("record_number", "at most 32 characters"));
    }
    let mut tx = api.pool.begin().await?;
    // One master record per person: found by the identity card number, else a new one.
    let master: i64 = if id_number.is_empty() {
        sqlx::query("INSERT INTO master_patients (id_number) VALUES (NULL)")
            .execute(&mut *tx)
            .await?
            .last_insert_rowid()
    } else {
        let index = api.sealer.index("id_number", &id_number);
        sqlx::query(
            "INSERT INTO master_patients (id_number, id_number_index) VALUES (?, ?) \
             ON CONFLICT (id_number_index) DO NOTHING",
        )
        .bind(api.sealer.seal("id_number", &id_number))
        .bind(&index)
        .execute(&mut *tx)
        .await?;
        sqlx::query_scalar("SELECT id FROM master_patients WHERE id_number_index = ?")
            .bind(&index)
            .fetch_one(&mut *tx)
            .await?
    };
    let id = sqlx::query(
        "INSERT INTO patients (institution_id, name, sex, birth_date, phone, created_by, \
         created_at, master_id, record_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(u.institution)
    .bind(name)
    .bind(&p.sex)
    .bind(&p.birth_date)
    .bind(api.sealer.seal("phone", phone))
    .bind(u.id)
    .bind(now_ms())
    .bind(master)
    .bind(record_number)
    .execute(&mut *tx)
    .await?
    .last_insert_rowid();
    tx.commit().await?;
    audit_event(&api, &u, &peer, "create", format!("patient:{id}"), "ok").await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "master": master })),
    )
        .into_response())
}

pub(crate) type PatientRow = (i64, i64, String, String, String, String);

/// Whether `u` may read patient `p`: their institution's doctors, centre staff, whoever may
/// see a consultation about the patient, and a referral's receiving side while its grant lasts.
pub(crate) async fn may_read_patient(
    api: &Api,
    u: &User,
    p: &PatientRow,
) -> Result<bool, ApiError> {
    Ok(record_scope(api, u, p).await?.is_some())
}

/// What of a patient's clinical record and studies a user may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordScope {
    /// Everything: the patient's institution's doctors and experts, and centre staff.
    All,
    /// Only what the consultations and referrals that let them see the patient share, item
    /// by item (`kind:id`) and study by study.
    Shared {
        /// Record items (`kind:id`).
        records: HashSet<String>,
        /// Study Instance UIDs.
        studies: HashSet<String>,
    },
}

impl RecordScope {
    /// Whether the record item `kind:id` may be read.
    pub(crate) fn has(&self, item: &str) -> bool {
        match self {
            Self::All => true,
            Self::Shared { records, .. } => records.contains(item),
        }
    }

    /// The ids (after `kind:`) of the record items of `kind` that may be read; None for all.
    pub(crate) fn shared_of(&self, kind: &str) -> Option<Vec<&str>> {
        match self {
            Self::All => None,
            Self::Shared { records, .. } => Some(
                records
                    .iter()
                    .filter_map(|r| r.strip_prefix(kind)?.strip_prefix(':'))
                    .collect(),
            ),
        }
    }

    /// Whether the study may be read.
    pub(crate) fn has_study(&self, uid: &str) -> bool {
        match self {
            Self::All => true,
            Self::Shared { studies, .. } => studies.contains(uid),
        }
    }
}

/// What of patient `p` `u` may read (see [`RecordScope`]); `None` when nothing: not the
/// patient's institution nor the centre, and no consultation or referral lets them see it.
pub(crate) async fn record_scope(
    api: &Api,
    u: &User,
    p: &PatientRow,
) -> Result<Option<RecordScope>, ApiError> {
    if matches!(u.role, Role::Doctor | Role::Expert) && p.1 == u.institution || centre_staff(u.role)
    {
        return Ok(Some(RecordScope::All));
    }
    let cases: Vec<(String, String)> = sqlx::query_as(
        "SELECT 'consultation', data FROM consultations WHERE patient_id = ? \
         UNION ALL SELECT 'referral', data FROM referrals WHERE patient_id = ?",
    )
    .bind(p.0)
    .bind(p.0)
    .fetch_all(&api.pool)
    .await?;
    let now = now_ms();
    let mut seen: Option<(HashSet<String>, HashSet<String>)> = None;
    for (kind, data) in &cases {
        let shared = if kind == "consultation" {
            serde_json::from_str::<Consultation>(data)
                .ok()
                .filter(|c| c.visible_to(u))
                .map(|c| (c.records, c.studies))
        } else {
            match serde_json::from_str::<workflow::Referral>(data) {
                // The referring doctor reads everything they could share.
                Ok(r) if r.may_read_records(&actor(u), now) && r.applicant == u.id => {
                    return Ok(Some(RecordScope::All));
                }
                Ok(r) if r.may_read_records(&actor(u), now) => Some((r.records, r.studies)),
                _ => None,
            }
        };
        if let Some((r, s)) = shared {
            let (records, studies) = seen.get_or_insert_default();
            records.extend(r);
            studies.extend(s);
        }
    }
    Ok(seen.map(|(records, studies)| RecordScope::Shared { records, studies }))
}

/// A patient's row (the phone opened).
pub(crate) async fn patient_row(api: &Api, id: i64) -> Result<Option<PatientRow>, ApiError> {
    let row: Option<PatientRow> = sqlx::query_as(
        "SELECT id, institution_id, name, sex, birth_date, phone FROM patients WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&api.pool)
    .await?;
    row.map(|mut r| {
        r.5 = api.sealer.open("phone", &r.5).map_err(ApiError::internal)?;
        Ok(r)
    })
    .transpose()
}

/// Patient `id` if `u` may read it (the read is audited; a refusal too, and answers 404).
pub(crate) async fn readable_patient(
    api: &Api,
    u: &User,
    peer: &SocketAddr,
    id: i64,
) -> Result<i64, ApiError> {
    readable_scope(api, u, peer, id).await.map(|_| id)
}

/// How much of patient `id` `u` may read, audited as [`readable_patient`] is.
pub(crate) async fn readable_scope(
    api: &Api,
    u: &User,
    peer: &SocketAddr,
    id: i64,
) -> Result<RecordScope, ApiError> {
    let Some(p) = patient_row(api, id).await? else {
        return Err(ApiError::not_found("patient"));
    };
    let Some(scope) = record_scope(api, u, &p).await? else {
        audit_event(api, u, peer, "read", format!("patient:{id}"), "denied").await?;
        return Err(ApiError::not_found("patient"));
    };
    audit_event(api, u, peer, "read", format!("patient:{id}"), "ok").await?;
    Ok(scope)
}

async fn get_patient(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    readable_patient(&api, &u, &peer, id).await?;
    let p = patient_row(&api, id)
        .await?
        .ok_or_else(|| ApiError::not_found("patient"))?;
    let extra: (Option<i64>, String) =
        sqlx::query_as("SELECT master_id, record_number FROM patients WHERE id = ?")
            .bind(id)
            .fetch_one(&api.pool)
            .await?;
    Ok(Json(json!({
        "id": p.0, "institution": p.1, "name": p.2, "sex": p.3, "birth_date": p.4, "phone": p.5,
        "master": extra.0, "record_number": extra.1,
    })))
}

#[derive(Deserialize)]
struct NewConsultation {
    patient: i64,
    kind: ConsultationKind,
    mode: Mode,
}

/// Revises `c` with `a` for `u`, checking study UIDs as well.
fn revise(c: &mut Consultation, u: &User, a: Application) -> Result<(), ApiError> {
    if let Some(bad) = a
        .studies
        .iter()
        .flatten()
        .find(|s| !imaging::uid::is_valid(s))
    {
        return Err(ApiError::field(
            "studies",
            format!("{bad:?} is not a Study Instance UID"),
        ));
    }
    c.revise(&actor(u), a, now_ms()).map_err(refusal)
}

/// A requested slot must exist, be free and belong to the expert asked for.
async fn check_slot(api: &Api, a: &Application) -> Result<(), ApiError> {
    let Some(slot) = a.requested_slot.filter(|s| *s > 0) else {
        return Ok(());
    };
    let row: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT expert_id, consultation_id FROM expert_slots WHERE id = ?")
            .bind(slot)
            .fetch_optional(&api.pool)
            .await?;
    match row {
        None => Err(ApiError::field("requested_slot", "no such slot")),
        Some((_, Some(_))) => Err(ApiError::field(
            "requested_slot",
            "the slot is already booked: choose another",
        )),
        Some((expert, None))
            if a.requested_experts
                .as_ref()
                .is_some_and(|e| !e.contains(&expert)) =>
        {
            Err(ApiError::field(
                "requested_slot",
                "the slot is not the requested expert's",
            ))
        }
        Some(_) => Ok(()),
    }
}

async fn create_consultation(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    // The record's own fields, then the application's (checked by the workflow's revise).
    let mut fields: Value = body(&bytes)?;
    let b: NewConsultation = serde_json::from_value(fields.clone())
        .map_err(|e| ApiError::field("body", e.to_string()))?;
    if let Some(map) = fields.as_object_mut() {
        for k in ["patient", "kind", "mode"] {
            map.remove(k);
        }
    }
    let application: Application =
        serde_json::from_value(fields).map_err(|e| ApiError::field("body", e.to_string()))?;
    if !crate::cases::patient_at(&api, b.patient, u.institution).await? {
        return Err(ApiError::field(
            "patient",
            "no such patient at the applicant's institution",
        ));
    }
    let mut c = Consultation::draft(&actor(&u), b.kind, b.mode).map_err(refusal)?;
    check_slot(&api, &application).await?;
    revise(&mut c, &u, application)?;
    // The draft starts with no history of its own writing.
    c.history.clear();
    crate::cases::create(&api, &u, &peer, INSERT, b.patient, &c).await
}

/// `PUT /api/v1/consultations/{id}` (If-Match): the applicant rewrites the application while
/// it is a draft or after a rejection.
async fn revise_consultation(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let expected = crate::cases::if_match(&headers)?;
    let a: Application = body(&bytes)?;
    check_slot(&api, &a).await?;
    let mut change = crate::cases::open::<Consultation>(&api, &u, id, expected).await?;
    if let Err(e) = revise(&mut change.record, &u, a) {
        let e = if e.status == StatusCode::CONFLICT {
            change.conflict(e.message)
        } else {
            e
        };
        drop(change);
        audit_event(
            &api,
            &u,
            &peer,
            "revise",
            format!("consultation:{id}"),
            "refused",
        )
        .await?;
        return Err(e);
    }
    crate::cases::commit(&api, &u, &peer, change, &[], "revise").await
}

/// How long a room token lasts.
const ROOM_TOKEN_SECS: i64 = 4 * 3600;

/// A signed token for the consultation's video room on the SFU, once it is scheduled: its
/// applicant, experts and the centre may speak and be seen; others who may see the
/// consultation (quality control) only watch.
async fn room_token(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let mut conn = api.pool.acquire().await?;
    let (_, _, c) = crate::cases::load::<Consultation>(&mut conn, &u, id).await?;
    drop(conn);
    if !matches!(
        c.state,
        workflow::ConsultationState::Scheduled
            | workflow::ConsultationState::InProgress
            | workflow::ConsultationState::ReportDrafted
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_room",
            format!(
                "the consultation is {}: its room opens once it is scheduled",
                c.state.name()
            ),
        ));
    }
    let publish = c.applicant == u.id || c.experts.contains(&u.id) || u.role == Role::Coordinator;
    let exp = ((now_ms() / 1000) + ROOM_TOKEN_SECS).max(0) as u64;
    let room = format!("consultation-{id}");
    let token = sfu::token::sign(
        &sfu::token::RoomClaims {
            room: room.clone(),
            sub: u.login.clone(),
            name: u.display_name.clone(),
            publish,
            subscribe: true,
            exp,
        },
        &api.key,
    );
    audit_event(
        &api,
        &u,
        &peer,
        "room_token",
        format!("consultation:{id}"),
        "ok",
    )
    .await?;
    Ok(Json(json!({
        "room_url": format!("{}room?token={token}", api.sfu_url),
        "token": token, "room": room, "publish": publish, "expires_at": exp,
        "signalling_url": api.sfu_url,
    })))
}

/// The user's unread notifications, newest first.
async fn unread(api: &Api, user: i64) -> Result<Vec<Value>, ApiError> {
    let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, event, object, message, created_at FROM notifications \
         WHERE user_id = ? AND read_at IS NULL ORDER BY id DESC LIMIT 200",
    )
    .bind(user)
    .fetch_all(&api.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, event, object, message, at)| {
            json!({ "id": id, "event": event, "object": object.trim(), "message": message, "at": at })
        })
        .collect())
}

async fn notifications(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, true).await?;
    Ok(Json(json!({ "unread": unread(&api, u.id).await? })))
}

#[derive(Deserialize)]
struct WsQuery {
    /// Missing is the same as wrong: 401.
    #[serde(default)]
    token: String,
}

/// `GET /api/v1/notifications/ws?token=...` (browsers cannot set headers on a WebSocket): the
/// unread list first (`{"type":"unread","items":[...]}`), then each new notification as it is
/// made (`{"type":"notification",...}`). If the socket falls behind it gets the unread list
/// again; when the session ends the socket closes (code 4001).
async fn notifications_ws(
    State(api): State<Api>,
    Query(q): Query<WsQuery>,
    ws: axum::extract::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let u = crate::accounts::authenticate(&api.pool, &api.policy, &q.token).await?;
    let mut events = api.events.subscribe();
    let first = unread(&api, u.id).await?;
    Ok(ws.on_upgrade(move |mut socket| async move {
        use axum::extract::ws::{CloseFrame, Message};
        let send = |v: Value| Message::Text(v.to_string().into());
        if socket
            .send(send(json!({ "type": "unread", "items": first })))
            .await
            .is_err()
        {
            return;
        }
        let mut check = tokio::time::interval(std::time::Duration::from_secs(60));
        check.tick().await;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(p) if p.user == u.id => {
                        let mut v = p.notification;
                        v["type"] = json!("notification");
                        if socket.send(send(v)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let Ok(items) = unread(&api, u.id).await else { return };
                        if socket.send(send(json!({ "type": "unread", "items": items }))).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
                _ = check.tick() => {
                    if !crate::accounts::session_alive(&api.pool, &api.policy, &q.token).await {
                        let _ = socket.send(Message::Close(Some(CloseFrame {
                            code: 4001,
                            reason: "session ended".into(),
                        }))).await;
                        return;
                    }
                }
            }
        }
    }))
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
    fn identity_card_numbers_are_checked() {
        // GB 11643's example number, and one with an X check character.
        assert!(valid_id_number("11010519491231002X"));
        assert!(valid_id_number("440524188001010014"));
        assert!(!valid_id_number("440524188001010015"));
        assert!(!valid_id_number("44052418800101001"));
        assert!(!valid_id_number("4405241880010100A4"));
    }

    #[test]
    fn dates_are_checked() {
        assert!(valid_date("2024-02-29"));
        assert!(!valid_date("2023-02-29"));
        assert!(!valid_date("2024-13-01"));
        assert!(!valid_date("24-01-01"));
        assert!(!valid_date("1800-01-01"));
    }
}
