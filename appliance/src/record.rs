//! Reading the clinical record the hospital's systems feed (see `ingest.rs`): a patient's
//! encounters, orders, lab results, exam reports, documents and diagnoses with their provenance,
//! one analyte's trend with its reference range, and a report's PDF or a document's content.
//! The same scoping as every patient read: each read is audited, a refusal answers 404.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::consult::readable_patient;
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
    readable_patient(&api, &u, &peer, id).await?;
    let merged_into: Option<i64> =
        sqlx::query_scalar("SELECT merged_into FROM patients WHERE id = ?")
            .bind(id)
            .fetch_one(&api.pool)
            .await?;
    type Enc = (
        i64,
        String,
        String,
        String,
        String,
        String,
        Option<i64>,
        Option<i64>,
        String,
        String,
        i64,
    );
    let encounters: Vec<Enc> = sqlx::query_as(
        "SELECT id, visit_number, class, location, department, attending, admitted_at, \
         discharged_at, source, source_ref, received_at FROM encounters WHERE patient_id = ? \
         ORDER BY COALESCE(admitted_at, received_at) DESC LIMIT ?",
    )
    .bind(id)
    .bind(RECORD_LIMIT)
    .fetch_all(&api.pool)
    .await?;
    let encounters: Vec<Value> = encounters
        .into_iter()
        .map(|e| {
            json!({ "id": e.0, "visit_number": e.1, "class": e.2, "location": e.3,
                "department": e.4, "attending": e.5, "admitted_at": e.6, "discharged_at": e.7,
                "provenance": provenance(&e.8, &e.9, e.10) })
        })
        .collect();
    type Ord = (
        i64,
        String,
        String,
        String,
        String,
        String,
        String,
        Option<i64>,
        String,
        String,
        String,
        i64,
    );
    let orders: Vec<Ord> = sqlx::query_as(
        "SELECT id, kind, placer, filler, code, name, status, ordered_at, provider, source, \
         source_ref, received_at FROM orders WHERE patient_id = ? \
         ORDER BY COALESCE(ordered_at, received_at) DESC LIMIT ?",
    )
    .bind(id)
    .bind(RECORD_LIMIT)
    .fetch_all(&api.pool)
    .await?;
    let orders: Vec<Value> = orders
        .into_iter()
        .map(|o| {
            json!({ "id": o.0, "kind": o.1, "placer": o.2, "filler": o.3, "code": o.4,
                "name": o.5, "status": o.6, "ordered_at": o.7, "provider": o.8,
                "provenance": provenance(&o.9, &o.10, o.11) })
        })
        .collect();
    type Lab = (
        i64,
        Option<i64>,
        String,
        String,
        String,
        Option<f64>,
        String,
        String,
        Option<f64>,
        Option<f64>,
        String,
        String,
        String,
        Option<i64>,
        String,
    );
    let labs: Vec<Lab> = sqlx::query_as(
        "SELECT id, order_id, code, name, value, numeric, unit, range_text, low, high, flag, \
         status, specimen, observed_at, \
         json_object('source', source, 'reference', source_ref, 'received_at', received_at) \
         FROM lab_results \
         WHERE patient_id = ? ORDER BY COALESCE(observed_at, received_at) DESC, id LIMIT ?",
    )
    .bind(id)
    .bind(RECORD_LIMIT)
    .fetch_all(&api.pool)
    .await?;
    let labs: Vec<Value> = labs
        .into_iter()
        .map(|l| {
            json!({ "id": l.0, "order": l.1, "code": l.2, "name": l.3, "value": l.4,
                "numeric": l.5, "unit": l.6, "range": l.7, "low": l.8, "high": l.9,
                "flag": l.10, "abnormal": abnormal(&l.10, l.5, l.8, l.9), "status": l.11,
                "specimen": l.12, "observed_at": l.13,
                "provenance": serde_json::from_str::<Value>(&l.14).unwrap_or(Value::Null) })
        })
        .collect();
    type Rep = (
        i64,
        Option<i64>,
        String,
        String,
        String,
        String,
        String,
        bool,
        Option<i64>,
        Option<i64>,
        String,
        String,
        i64,
    );
    let reports: Vec<Rep> = sqlx::query_as(
        "SELECT id, order_id, kind, code, name, status, text, pdf IS NOT NULL, observed_at, \
         reported_at, source, source_ref, received_at FROM exam_reports WHERE patient_id = ? \
         ORDER BY COALESCE(observed_at, received_at) DESC LIMIT ?",
    )
    .bind(id)
    .bind(RECORD_LIMIT)
    .fetch_all(&api.pool)
    .await?;
    let reports: Vec<Value> = reports
        .into_iter()
        .map(|r| {
            json!({ "id": r.0, "order": r.1, "kind": r.2, "code": r.3, "name": r.4,
                "status": r.5, "text": r.6, "has_pdf": r.7, "observed_at": r.8,
                "reported_at": r.9, "provenance": provenance(&r.10, &r.11, r.12) })
        })
        .collect();
    type Doc = (
        i64,
        String,
        String,
        String,
        String,
        String,
        Option<i64>,
        String,
        String,
        i64,
    );
    let documents: Vec<Doc> = sqlx::query_as(
        "SELECT id, kind, number, title, status, mime, time, source, source_ref, received_at \
         FROM clinical_documents WHERE patient_id = ? \
         ORDER BY COALESCE(time, received_at) DESC LIMIT ?",
    )
    .bind(id)
    .bind(RECORD_LIMIT)
    .fetch_all(&api.pool)
    .await?;
    let documents: Vec<Value> = documents
        .into_iter()
        .map(|d| {
            json!({ "id": d.0, "kind": d.1, "number": d.2, "title": d.3, "status": d.4,
                "mime": d.5, "time": d.6, "provenance": provenance(&d.7, &d.8, d.9) })
        })
        .collect();
    type Dx = (
        i64,
        String,
        String,
        String,
        String,
        Option<i64>,
        String,
        String,
        i64,
    );
    let diagnoses: Vec<Dx> = sqlx::query_as(
        "SELECT id, code, name, system, kind, time, source, source_ref, received_at \
         FROM diagnoses WHERE patient_id = ? ORDER BY COALESCE(time, received_at) DESC LIMIT ?",
    )
    .bind(id)
    .bind(RECORD_LIMIT)
    .fetch_all(&api.pool)
    .await?;
    let diagnoses: Vec<Value> = diagnoses
        .into_iter()
        .map(|d| {
            json!({ "id": d.0, "code": d.1, "name": d.2, "system": d.3, "kind": d.4,
                "time": d.5, "provenance": provenance(&d.6, &d.7, d.8) })
        })
        .collect();
    Ok(Json(json!({
        "patient": id,
        "merged_into": merged_into,
        "encounters": encounters,
        "orders": orders,
        "labs": labs,
        "exam_reports": reports,
        "documents": documents,
        "diagnoses": diagnoses,
    })))
}

fn provenance(source: &str, reference: &str, received_at: i64) -> Value {
    json!({ "source": source, "reference": reference, "received_at": received_at })
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
) -> Result<Json<Value>, ApiError> {
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
    readable_patient(&api, &u, &peer, id).await?;
    // The points come from the trend index alone (patient, code, time and the values), as one
    // JSON array made by SQLite: one row across from its worker thread, not one per point.
    // The name, unit and range text come from the newest row.
    type Point = (
        Option<i64>,
        String,
        Option<f64>,
        String,
        Option<f64>,
        Option<f64>,
    );
    let packed: String = sqlx::query_scalar(
        "SELECT json_group_array(json_array(observed_at, value, numeric, flag, low, high)) \
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
    let rows: Vec<Point> = serde_json::from_str(&packed).map_err(ApiError::internal)?;
    let newest: Option<(String, String, String)> = match rows.last() {
        Some(last) => {
            sqlx::query_as(
                "SELECT name, unit, range_text FROM lab_results WHERE patient_id = ? AND \
                 code = ? AND observed_at IS ? ORDER BY id DESC LIMIT 1",
            )
            .bind(id)
            .bind(code)
            .bind(last.0)
            .fetch_optional(&api.pool)
            .await?
        }
        None => None,
    };
    let (name, unit, text) = newest.unwrap_or_default();
    let range = rows
        .last()
        .map(|r| json!({ "low": r.4, "high": r.5, "text": text }));
    let points: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({ "time": r.0, "value": r.1, "numeric": r.2,
                "abnormal": abnormal(&r.3, r.2, r.4, r.5), "low": r.4, "high": r.5 })
        })
        .collect();
    Ok(Json(json!({
        "code": code,
        "name": name,
        "unit": unit,
        "range": range,
        "points": points,
    })))
}

async fn report_pdf(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, report)): Path<(i64, i64)>,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    readable_patient(&api, &u, &peer, id).await?;
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
    readable_patient(&api, &u, &peer, id).await?;
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
