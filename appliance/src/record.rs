//! Reading the clinical record the hospital's systems feed (see `ingest.rs`): a patient's
//! encounters, orders, lab results, exam reports, documents and diagnoses with their provenance,
//! one analyte's trend with its reference range, and a report's PDF or a document's content.
//! The same scoping as every patient read: each read is audited, a refusal answers 404. A user
//! who sees the patient only through a consultation or referral reads only the items it shares
//! ([`RecordScope`]); anything else answers 404 as if absent.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::consult::{RecordScope, readable_scope};
use crate::http::{Api, ApiError, user};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/patients/{id}/record", get(record))
        .route("/api/v1/patients/{id}/labs/trend", get(trend))
        .route(
            "/api/v1/patients/{id}/exam-reports/{report}/pdf",
            get(report_pdf),
        )
        .route("/api/v1/patients/{id}/documents/{document}", get(document))
}

/// The most rows of each kind one record read returns (newest first).
pub const RECORD_LIMIT: i64 = 500;

/// The most points one trend returns.
pub const TREND_LIMIT: i64 = 5000;

/// Whether a lab value is outside its range: the sender's flag where it sent one (other than
/// N), else the value against the range. Returns H, L, HH, LL, A or "".
pub fn abnormal(flag: &str, value: Option<f64>, low: Option<f64>, high: Option<f64>) -> String {
    match flag {
        "" | "N" => {}
        f => return f.to_owned(),
    }
    match (value, low, high) {
        (Some(v), _, Some(h)) if v > h => "H".into(),
        (Some(v), Some(l), _) if v < l => "L".into(),
        _ => String::new(),
    }
}

async fn record(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let scope = readable_scope(&api, &u, &peer, id).await?;
    let merged_into: Option<i64> =
        sqlx::query_scalar("SELECT merged_into FROM patients WHERE id = ?")
            .bind(id)
            .fetch_one(&api.pool)
            .await?;
    let encounters = rows_of(
        &api,
        id,
        "id, visit_number, class, location, department, attending, admitted_at, discharged_at",
        "encounters",
        "COALESCE(admitted_at, received_at) DESC",
        Only::ids(&scope, "encounter"),
    )
    .await?;
    let orders = rows_of(
        &api,
        id,
        "id, kind, placer, filler, code, name, status, ordered_at, provider",
        "orders",
        "COALESCE(ordered_at, received_at) DESC",
        Only::ids(&scope, "order"),
    )
    .await?;
    let mut labs = rows_of(
        &api,
        id,
        "id, order_id AS \"order\", code, name, value, numeric, unit, range_text AS range, low, \
         high, flag, status, specimen, observed_at",
        "lab_results",
        "COALESCE(observed_at, received_at) DESC, id",
        Only::codes(&scope),
    )
    .await?;
    for l in &mut labs {
        let mark = abnormal(
            l["flag"].as_str().unwrap_or_default(),
            l["numeric"].as_f64(),
            l["low"].as_f64(),
            l["high"].as_f64(),
        );
        l["abnormal"] = json!(mark);
    }
    let reports = rows_of(
        &api,
        id,
        "id, order_id AS \"order\", kind, code, name, status, text, \
         json(CASE WHEN pdf IS NULL THEN 'false' ELSE 'true' END) AS has_pdf, observed_at, reported_at",
        "exam_reports",
        "COALESCE(observed_at, received_at) DESC",
        Only::ids(&scope, "exam_report"),
    )
    .await?;
    let documents = rows_of(
        &api,
        id,
        "id, kind, number, title, status, mime, time",
        "clinical_documents",
        "COALESCE(time, received_at) DESC",
        Only::ids(&scope, "document"),
    )
    .await?;
    let diagnoses = rows_of(
        &api,
        id,
        "id, code, name, system, kind, time",
        "diagnoses",
        "COALESCE(time, received_at) DESC",
        Only::ids(&scope, "diagnosis"),
    )
    .await?;
    Ok(Json(json!({
        "patient": id,
        "merged_into": merged_into,
        // Whether this is the whole record or what a consultation or referral shares.
        "shared_only": scope != RecordScope::All,
        "encounters": encounters,
        "orders": orders,
        "labs": labs,
        "exam_reports": reports,
        "documents": documents,
        "diagnoses": diagnoses,
    })))
}

/// Which rows a shared record may read, applied before [`RECORD_LIMIT`] (so a shared item
/// older than the newest 500 of its kind is still there): `column IN` a JSON array.
struct Only {
    column: &'static str,
    values: Value,
}

impl Only {
    /// The items of `kind` the scope shares, by id; None for the whole record.
    fn ids(scope: &RecordScope, kind: &str) -> Option<Self> {
        let ids: Vec<i64> = scope
            .shared_of(kind)?
            .into_iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        Some(Self {
            column: "id",
            values: json!(ids),
        })
    }

    /// The analytes the scope shares (`lab:CODE`), each with its whole series.
    fn codes(scope: &RecordScope) -> Option<Self> {
        Some(Self {
            column: "code",
            values: json!(scope.shared_of("lab")?),
        })
    }
}

/// A patient's newest rows of `table` (at most [`RECORD_LIMIT`]; of those `only` names, when
/// the record is shared), each as a JSON object of `columns` (each plain or `expression AS
/// name`) and its provenance, built by SQLite in one array: one row across from its worker
/// thread, not one per record item.
async fn rows_of(
    api: &Api,
    patient: i64,
    columns: &'static str,
    table: &'static str,
    order: &'static str,
    only: Option<Only>,
) -> Result<Vec<Value>, ApiError> {
    let pairs: Vec<String> = columns
        .split(", ")
        .map(|c| {
            let c = c.trim();
            match c.rsplit_once(" AS ") {
                Some((expr, name)) => format!("'{}', {expr}", name.trim_matches('"')),
                None => format!("'{c}', {c}"),
            }
        })
        .collect();
    let filter = match &only {
        Some(o) => format!(" AND {} IN (SELECT value FROM json_each(?))", o.column),
        None => String::new(),
    };
    // The table, columns, order and filter column are the constants above, never input.
    let sql = format!(
        "SELECT json_group_array(json(item) ORDER BY n) FROM (SELECT row_number() OVER \
         (ORDER BY {order}) AS n, json_object({}, 'provenance', json_object('source', source, \
         'reference', source_ref, 'received_at', received_at)) AS item FROM {table} \
         WHERE patient_id = ?{filter} ORDER BY {order} LIMIT ?)",
        pairs.join(", ")
    );
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(patient);
    if let Some(o) = only {
        query = query.bind(o.values.to_string());
    }
    let packed: String = query.bind(RECORD_LIMIT).fetch_one(&api.pool).await?;
    serde_json::from_str(&packed).map_err(ApiError::internal)
}

#[derive(Deserialize)]
struct TrendQuery {
    /// The analyte's code (e.g. a LOINC code or the LIS's own).
    code: Option<String>,
    /// From (ms since the epoch), inclusive.
    from: Option<i64>,
    /// To (ms since the epoch), inclusive.
    to: Option<i64>,
}

/// `GET /api/v1/patients/{id}/labs/trend?code=`: one analyte over time, oldest first, each
/// point with its range and abnormal flag, and the newest reference range.
async fn trend(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<TrendQuery>,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let code = q.code.unwrap_or_default();
    let code = code.trim();
    if code.is_empty() || code.chars().count() > 64 {
        return Err(ApiError::field(
            "code",
            "the analyte's code, 1-64 characters",
        ));
    }
    let (from, to) = (q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX));
    if from > to {
        return Err(ApiError::field("from", "after `to`"));
    }
    if !readable_scope(&api, &u, &peer, id)
        .await?
        .has(&format!("lab:{code}"))
    {
        return Err(ApiError::not_found("analyte"));
    }
    // The points come from the trend index alone (patient, code, time and the values), each
    // with its abnormal mark (as [`abnormal`] decides it), as the final JSON array made by
    // SQLite: one row across from its worker thread, and no parse or rewrite here. The name,
    // unit and range come from the newest point's row.
    let (points, newest_at): (String, Option<i64>) = sqlx::query_as(
        "SELECT json_group_array(json_object('time', observed_at, 'value', value, \
         'numeric', numeric, 'abnormal', CASE WHEN flag NOT IN ('', 'N') THEN flag \
         WHEN numeric > high THEN 'H' WHEN numeric < low THEN 'L' ELSE '' END, \
         'low', low, 'high', high) ORDER BY observed_at), max(observed_at) \
         FROM (SELECT observed_at, value, numeric, flag, low, high FROM lab_results \
         INDEXED BY lab_results_trend \
         WHERE patient_id = ? AND code = ? AND observed_at BETWEEN ? AND ? \
         ORDER BY observed_at LIMIT ?)",
    )
    .bind(id)
    .bind(code)
    .bind(from)
    .bind(to)
    .bind(TREND_LIMIT)
    .fetch_one(&api.pool)
    .await?;
    type Newest = (String, String, String, Option<f64>, Option<f64>);
    let newest: Option<Newest> = match newest_at {
        Some(at) => {
            sqlx::query_as(
                "SELECT name, unit, range_text, low, high FROM lab_results WHERE \
                 patient_id = ? AND code = ? AND observed_at = ? ORDER BY id DESC LIMIT 1",
            )
            .bind(id)
            .bind(code)
            .bind(at)
            .fetch_optional(&api.pool)
            .await?
        }
        None => None,
    };
    let range = newest
        .as_ref()
        .map(|n| json!({ "low": n.3, "high": n.4, "text": n.2 }));
    let (name, unit) = newest.map(|n| (n.0, n.1)).unwrap_or_default();
    let body = format!(
        "{{\"code\":{},\"name\":{},\"unit\":{},\"range\":{},\"points\":{points}}}",
        json!(code),
        json!(name),
        json!(unit),
        range.unwrap_or(Value::Null),
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn report_pdf(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, report)): Path<(i64, i64)>,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    if !readable_scope(&api, &u, &peer, id)
        .await?
        .has(&format!("exam_report:{report}"))
    {
        return Err(ApiError::not_found("report PDF"));
    }
    let pdf: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT pdf FROM exam_reports WHERE id = ? AND patient_id = ? AND pdf IS NOT NULL",
    )
    .bind(report)
    .bind(id)
    .fetch_optional(&api.pool)
    .await?;
    let pdf = pdf.ok_or_else(|| ApiError::not_found("report PDF"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        pdf,
    )
        .into_response())
}

async fn document(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, document)): Path<(i64, i64)>,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    if !readable_scope(&api, &u, &peer, id)
        .await?
        .has(&format!("document:{document}"))
    {
        return Err(ApiError::not_found("document"));
    }
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT mime, content FROM clinical_documents WHERE id = ? AND patient_id = ?",
    )
    .bind(document)
    .bind(id)
    .fetch_optional(&api.pool)
    .await?;
    let (mime, content) = row.ok_or_else(|| ApiError::not_found("document"))?;
    let content_type = match mime.as_str() {
        "application/pdf" => "application/pdf",
        "text/html" => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    // HTML from the EMR runs in a sandbox: no scripts, no forms, no access to this origin.
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'",
            ),
        ],
        content,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::abnormal;

    #[test]
    fn the_senders_flag_wins_else_the_range_decides() {
        assert_eq!(abnormal("HH", Some(5.0), Some(1.0), Some(9.0)), "HH");
        assert_eq!(abnormal("", Some(9.5), Some(1.0), Some(9.0)), "H");
        assert_eq!(abnormal("N", Some(0.5), Some(1.0), Some(9.0)), "L");
        assert_eq!(abnormal("", Some(5.0), Some(1.0), Some(9.0)), "");
        assert_eq!(abnormal("", None, Some(1.0), Some(9.0)), "");
        assert_eq!(abnormal("", Some(130.0), None, Some(125.0)), "H");
    }
}
