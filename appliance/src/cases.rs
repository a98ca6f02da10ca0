//! The shell every workflow record shares (consultations and referrals): loading what the
//! user may see, listing, and applying an action. An action takes the write lock first, checks
//! the version the client saw (`If-Match`), applies the pure workflow, and writes the new state,
//! its parties (for scoping), its in-app notifications and its SMS outbox rows in one
//! transaction, then audits. A conflict (a stale version, or an action the state no longer
//! allows because someone else acted first) is a 409 carrying the current state.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use workflow::{Actor, Millis, Notice, Refusal, Role};

use crate::accounts::{User, now_ms, role_name};
use crate::audit::{self, Record};
use crate::http::{Api, ApiError, body, user};

/// A workflow record kept as JSON in its own table.
pub(crate) trait Flow: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// What someone does to it.
    type Action: DeserializeOwned + Send;
    /// The kind, as in audit targets and `case_parties`.
    const KIND: &'static str;
    /// Its name in messages (Chinese).
    const LABEL: &'static str;
    /// Takes the write lock on row `?`.
    const LOCK: &'static str;
    /// `id, patient_id, version, data` of row `?`.
    const LOAD: &'static str;
    /// Sets `state, data, updated_at` and bumps the version, for `id, version`.
    const SAVE: &'static str;
    /// Rows visible to (all?, party user, party institution, applicant), with an optional
    /// state, limit and offset: `id, patient_id, version, data`.
    const LIST: &'static str;
    /// The action's name.
    fn action_name(action: &Self::Action) -> &'static str;
    /// Applies an action (the workflow's rules).
    fn apply(
        &mut self,
        actor: &Actor,
        action: Self::Action,
        now: Millis,
    ) -> Result<Vec<Notice>, Refusal>;
    /// The state's name.
    fn state_name(&self) -> &'static str;
    /// Whether `u` may see it.
    fn visible_to(&self, u: &User) -> bool;
    /// Who besides the applicant takes part: `user:ID` or `institution:ID`.
    fn parties(&self) -> Vec<String>;
    /// Whether `role` sees every record of this kind (centre staff).
    fn sees_all(role: Role) -> bool;
    /// Imaging studies attached (Study Instance UIDs).
    fn studies(&self) -> &[String];
    /// Whether `u` may view the studies at `now`, and until when (default: whoever sees the
    /// record, with no end beyond the token's own).
    fn may_view(&self, _u: &User, _now: Millis) -> (bool, Option<Millis>) {
        (true, None)
    }
    /// Actions that must go through their own endpoint (signing binds a report), with where.
    fn shell_only(_action: &Self::Action) -> Option<&'static str> {
        None
    }
    /// What a notice of `event` says beyond its kind (a scheduled consultation's time and
    /// room), or nothing.
    fn detail(&self, _event: &str) -> String {
        String::new()
    }
}

pub(crate) fn actor(u: &User) -> Actor {
    Actor {
        user: u.id,
        role: u.role,
        institution: u.institution,
    }
}

pub(crate) async fn audit_event(
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

/// The Chinese text of an event for `object` (e.g. "会诊 12 "), with `detail` (the time and
/// room of a scheduled consultation) where the event has one.
pub fn message(event: &str, object: &str, detail: &str) -> String {
    if event == "consultation_scheduled" && !detail.is_empty() {
        return format!("{object}已安排：{detail}，请按时参加。");
    }
    let text = match event {
        "consultation_submitted" | "referral_submitted" => "已提交，请审核。",
        "consultation_rejected" | "referral_rejected" => "未通过审核，请按意见修改后重新提交。",
        "consultation_qc_passed" => "已通过审核，请安排会诊。",
        "consultation_scheduled" => "已安排，请按时参加。",
        "consultation_report_signed" => "的报告已签发。",
        "referral_assigned" => "已分配给您，请处理。",
        "referral_accepted" => "已被接收，请按时前往。",
        "referral_refused" => "被拒收，请重新分配。",
        "consultation_cancelled" | "referral_cancelled" => "已取消。",
        _ => "有新的进展。",
    };
    format!("{object}{text}")
}

pub(crate) fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::Field { field, message } => ApiError::field(field, message),
        Refusal::Forbidden { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", r.to_string())
        }
        _ => ApiError::new(StatusCode::CONFLICT, "conflict", r.to_string()),
    }
}

pub(crate) fn view<F: Flow>(id: i64, patient: i64, version: i64, c: &F) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    v["id"] = json!(id);
    v["patient"] = json!(patient);
    v["version"] = json!(version);
    v
}

pub(crate) fn with_etag(version: i64, v: Value, status: StatusCode) -> Response {
    let mut r = (status, Json(v)).into_response();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, tag);
    }
    r
}

type Row = (i64, i64, i64, String);

/// Loads record `id` if `u` may see it (else 404, which says nothing about others' records).
pub(crate) async fn load<F: Flow>(
    conn: &mut SqliteConnection,
    u: &User,
    id: i64,
) -> Result<(i64, i64, F), ApiError> {
    let row: Option<Row> = sqlx::query_as(F::LOAD)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((_, patient, version, data)) = row else {
        return Err(ApiError::not_found(F::KIND));
    };
    let c: F = serde_json::from_str(&data).map_err(ApiError::internal)?;
    if !c.visible_to(u) {
        return Err(ApiError::not_found(F::KIND));
    }
    Ok((patient, version, c))
}

/// `GET /api/v1/{kind}s/{id}`.
pub(crate) async fn get_one<F: Flow>(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let mut conn = api.pool.acquire().await?;
    let (patient, version, c) = load::<F>(&mut conn, &u, id).await?;
    drop(conn);
    audit_event(&api, &u, &peer, "read", format!("{}:{id}", F::KIND), "ok").await?;
    Ok(with_etag(
        version,
        view(id, patient, version, &c),
        StatusCode::OK,
    ))
}

#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
    #[serde(default)]
    offset: i64,
    limit: Option<i64>,
}

/// `GET /api/v1/{kind}s?state=&offset=&limit=`: what the user may see, newest first.
pub(crate) async fn list<F: Flow>(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
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
    let rows: Vec<Row> = sqlx::query_as(F::LIST)
        .bind(F::sees_all(u.role))
        .bind(format!("user:{}", u.id))
        .bind(format!("institution:{}", u.institution))
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
            let c: F = serde_json::from_str(data).ok()?;
            c.visible_to(&u).then(|| view(*id, *patient, *version, &c))
        })
        .collect();
    // A list shows patient data too: audited with what it showed.
    let shown: Vec<String> = items
        .iter()
        .filter_map(|v| v["id"].as_i64())
        .map(|id| id.to_string())
        .collect();
    audit_event(
        &api,
        &u,
        &peer,
        "list",
        format!("{}:[{}]", F::KIND, shown.join(",")),
        "ok",
    )
    .await?;
    Ok(Json(
        json!({ "items": items, "offset": q.offset, "limit": limit }),
    ))
}

pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
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

/// The users a notice goes to (none for the patient, who is reached by SMS only), its event,
/// and whether it is the patient's.
pub(crate) async fn recipients<'n>(
    conn: &mut SqliteConnection,
    n: &'n Notice,
) -> Result<(Vec<i64>, &'n str, bool), ApiError> {
    Ok(match n {
        Notice::Applicant { user, event }
        | Notice::Expert { user, event }
        | Notice::Receiver { user, event } => (vec![*user], event, false),
        Notice::Centre { role, event } => {
            let ids: Vec<i64> =
                sqlx::query_scalar("SELECT id FROM users WHERE role = ? AND active = 1")
                    .bind(role_name(*role))
                    .fetch_all(&mut *conn)
                    .await?;
            (ids, event, false)
        }
        Notice::Patient { event } => (Vec::new(), event, true),
    })
}

/// Turns notices into in-app notifications and SMS outbox rows, inside `tx`.
async fn deliver<F: Flow>(
    tx: &mut Transaction<'_, Sqlite>,
    sms: bool,
    notices: &[Notice],
    record: &F,
    object: &str,
    patient: i64,
) -> Result<Vec<crate::http::Pushed>, ApiError> {
    let now = now_ms();
    let mut pushed = Vec::new();
    for n in notices {
        let (users, event, patient_sms) = recipients(tx, n).await?;
        let text = message(event, object, &record.detail(event));
        for u in users {
            let nid = sqlx::query(
                "INSERT INTO notifications (user_id, event, object, message, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(u)
            .bind(event)
            .bind(object)
            .bind(&text)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .last_insert_rowid();
            pushed.push(crate::http::Pushed {
                user: u,
                notification: json!({ "id": nid, "event": event, "object": object.trim(),
                                      "message": text, "at": now }),
            });
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
    Ok(pushed)
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

/// Writes the parties of record `id` (replacing the old ones).
pub(crate) async fn set_parties<F: Flow>(
    conn: &mut SqliteConnection,
    id: i64,
    c: &F,
) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM case_parties WHERE kind = ? AND case_id = ?")
        .bind(F::KIND)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for p in c.parties() {
        sqlx::query("INSERT INTO case_parties (kind, case_id, party) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(F::KIND)
            .bind(id)
            .bind(p)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A record opened for a change: the transaction holding the write lock, and what it read.
pub(crate) struct Change<F> {
    /// The transaction (SQLite's write lock is held from its first statement).
    pub tx: Transaction<'static, Sqlite>,
    /// The record's id.
    pub id: i64,
    /// Its patient.
    pub patient: i64,
    /// Its version when read.
    pub version: i64,
    /// The record, to be changed.
    pub record: F,
}

impl<F: Flow> Change<F> {
    /// A 409 carrying the record as it was read.
    pub fn conflict(&self, message: String) -> ApiError {
        ApiError {
            current: Some(view(self.id, self.patient, self.version, &self.record)),
            ..ApiError::new(StatusCode::CONFLICT, "conflict", message)
        }
    }
}

/// Opens record `id` for a change by `u`: takes the write lock first (so concurrent changes
/// queue instead of racing), loads it, and checks the version the client saw.
pub(crate) async fn open<F: Flow>(
    api: &Api,
    u: &User,
    id: i64,
    expected: Option<i64>,
) -> Result<Change<F>, ApiError> {
    let mut tx = api.pool.begin().await?;
    sqlx::query(F::LOCK).bind(id).execute(&mut *tx).await?;
    let (patient, version, record) = load::<F>(&mut tx, u, id).await?;
    let change = Change {
        tx,
        id,
        patient,
        version,
        record,
    };
    if expected.is_some_and(|v| v != version) {
        return Err(change.conflict(format!(
            "the {} changed (version {version}); reload it",
            F::KIND
        )));
    }
    Ok(change)
}

/// Applies `action` to the opened record. A refusal rolls back and is audited (a state
/// refusal is a 409 with the current record).
pub(crate) async fn apply<F: Flow>(
    api: &Api,
    u: &User,
    peer: &SocketAddr,
    change: &mut Option<Change<F>>,
    action: F::Action,
) -> Result<Vec<Notice>, ApiError> {
    let Some(c) = change.as_mut() else {
        return Err(ApiError::internal("no open change"));
    };
    let name = F::action_name(&action);
    let before = c.record.clone();
    match c.record.apply(&actor(u), action, now_ms()) {
        Ok(n) => Ok(n),
        Err(r) => {
            c.record = before;
            let opened = change.take();
            let err = match (&r, &opened) {
                (Refusal::State { .. }, Some(o)) => o.conflict(r.to_string()),
                _ => refusal(r),
            };
            let id = opened.as_ref().map_or(0, |o| o.id);
            drop(opened);
            audit_event(api, u, peer, name, format!("{}:{id}", F::KIND), "refused").await?;
            Err(err)
        }
    }
}

/// Writes the changed record, its parties, notifications and outbox rows, commits, audits,
/// and answers with the new version.
pub(crate) async fn commit<F: Flow>(
    api: &Api,
    u: &User,
    peer: &SocketAddr,
    change: Change<F>,
    notices: &[Notice],
    name: &'static str,
) -> Result<Response, ApiError> {
    let Change {
        mut tx,
        id,
        patient,
        version,
        record,
    } = change;
    let data = serde_json::to_string(&record).map_err(ApiError::internal)?;
    sqlx::query(F::SAVE)
        .bind(record.state_name())
        .bind(data)
        .bind(now_ms())
        .bind(id)
        .bind(version)
        .execute(&mut *tx)
        .await?;
    set_parties(&mut tx, id, &record).await?;
    let pushed = deliver(
        &mut tx,
        api.gateway.is_some(),
        notices,
        &record,
        &format!("{} {id} ", F::LABEL),
        patient,
    )
    .await?;
    tx.commit().await?;
    for p in pushed {
        // Nobody listening is fine: the notification is in the unread list.
        let _ = api.events.send(p);
    }
    audit_event(api, u, peer, name, format!("{}:{id}", F::KIND), "ok").await?;
    metrics::counter!("appliance_workflow_transitions_total", "kind" => F::KIND, "action" => name)
        .increment(1);
    let version = version + 1;
    Ok(with_etag(
        version,
        view(id, patient, version, &record),
        StatusCode::OK,
    ))
}

/// `POST /api/v1/{kind}s/{id}/actions` with `If-Match`.
pub(crate) async fn act<F: Flow>(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let expected = if_match(&headers)?;
    let action: F::Action = body(&bytes)?;
    let name = F::action_name(&action);
    if let Some(why) = F::shell_only(&action) {
        return Err(ApiError::new(StatusCode::CONFLICT, "use_endpoint", why));
    }
    let mut change = Some(open::<F>(&api, &u, id, expected).await?);
    let notices = apply(&api, &u, &peer, &mut change, action).await?;
    let change = change.ok_or_else(|| ApiError::internal("no open change"))?;
    commit(&api, &u, &peer, change, &notices, name).await
}

/// Whether `patient` is registered at `institution` (applications start there).
pub(crate) async fn patient_at(
    api: &Api,
    patient: i64,
    institution: i64,
) -> Result<bool, ApiError> {
    let at: Option<i64> = sqlx::query_scalar("SELECT institution_id FROM patients WHERE id = ?")
        .bind(patient)
        .fetch_optional(&api.pool)
        .await?;
    Ok(at == Some(institution))
}

/// Stores a new record and answers 201 with it (ETag "1"), audited as a creation.
pub(crate) async fn create<F: Flow>(
    api: &Api,
    u: &User,
    peer: &SocketAddr,
    insert_sql: &'static str,
    patient: i64,
    record: &F,
) -> Result<Response, ApiError> {
    let id = insert(api, insert_sql, patient, u, record).await?;
    audit_event(api, u, peer, "create", format!("{}:{id}", F::KIND), "ok").await?;
    Ok(with_etag(
        1,
        view(id, patient, 1, record),
        StatusCode::CREATED,
    ))
}

/// Inserts a new record (version 1) with its parties; returns its id.
pub(crate) async fn insert<F: Flow>(
    api: &Api,
    insert_sql: &'static str,
    patient: i64,
    u: &User,
    c: &F,
) -> Result<i64, ApiError> {
    let now = now_ms();
    let data = serde_json::to_string(c).map_err(ApiError::internal)?;
    let mut tx = api.pool.begin().await?;
    let id = sqlx::query(insert_sql)
        .bind(patient)
        .bind(u.institution)
        .bind(u.id)
        .bind(c.state_name())
        .bind(data)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
    set_parties(&mut tx, id, c).await?;
    tx.commit().await?;
    Ok(id)
}

/// How long a viewer token lasts at most.
const VIEW_TOKEN_SECS: i64 = 2 * 3600;

/// `POST /api/v1/{kind}s/{id}/view-token`: a signed token for imaging's viewer, limited to the
/// record's studies (and to a referral's grant), with the viewer page's address.
pub(crate) async fn view_token<F: Flow>(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let mut conn = api.pool.acquire().await?;
    let (_, _, c) = load::<F>(&mut conn, &u, id).await?;
    drop(conn);
    let now = now_ms();
    let (allowed, until) = c.may_view(&u, now);
    if !allowed {
        audit_event(
            &api,
            &u,
            &peer,
            "view_token",
            format!("{}:{id}", F::KIND),
            "denied",
        )
        .await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the records are not shared with this user now",
        ));
    }
    if c.studies().is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_studies",
            format!("the {} has no imaging studies attached", F::KIND),
        ));
    }
    let exp_ms = until.map_or(now + VIEW_TOKEN_SECS * 1000, |u| {
        u.min(now + VIEW_TOKEN_SECS * 1000)
    });
    let exp = (exp_ms / 1000).max(0) as u64;
    let token = imaging::viewer::token::sign(
        &imaging::viewer::token::Claims {
            sub: u.login.clone(),
            studies: c.studies().to_vec(),
            exp,
        },
        &api.key,
    );
    audit_event(
        &api,
        &u,
        &peer,
        "view_token",
        format!("{}:{id}", F::KIND),
        "ok",
    )
    .await?;
    let session = format!("{}-{id}", F::KIND);
    Ok(Json(json!({
        "token": token,
        "expires_at": exp,
        "session": session,
        "viewer_url": format!("{}view?token={token}&session={session}", api.imaging_url),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_chinese() {
        assert_eq!(
            message("consultation_scheduled", "会诊 3 ", ""),
            "会诊 3 已安排，请按时参加。"
        );
        assert_eq!(
            message(
                "consultation_scheduled",
                "会诊 3 ",
                "12月8日 09:00，会诊室2"
            ),
            "会诊 3 已安排：12月8日 09:00，会诊室2，请按时参加。"
        );
        assert_eq!(
            message("referral_refused", "转诊 4 ", ""),
            "转诊 4 被拒收，请重新分配。"
        );
    }
}
