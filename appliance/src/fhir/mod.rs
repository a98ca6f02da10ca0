//! The FHIR R4 REST facade at `/fhir` (JSON, read and search): the CapabilityStatement, and
//! the clinical record, the registry and the consultation workflow as resources
//! (`map.rs`). The same login and scoping as the API: a patient's resources are read by
//! whoever may read the patient (audited); a search without `patient` covers the user's
//! institution's patients (centre staff: everyone's). Errors are OperationOutcomes naming the
//! parameter.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use workflow::Role;

use crate::accounts::User;
use crate::cases::audit_event;
use crate::consult::{RecordScope, patient_row, record_scope};
pub mod intake;
pub mod map;
pub mod pull;
mod query;
mod search;

use crate::http::{Api, ApiError, user};
use query::{Bind, fetch, int, resource, table};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/{kind}", get(search::search))
        .route("/fhir/{kind}/{id}", get(read))
}

/// The resource types served.
pub const TYPES: [&str; 13] = [
    "Patient",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Encounter",
    "Condition",
    "ServiceRequest",
    "Observation",
    "DiagnosticReport",
    "DocumentReference",
    "ImagingStudy",
    "Appointment",
    "Task",
];

/// Default and largest `_count`.
pub const DEFAULT_COUNT: i64 = 50;
/// The largest `_count`.
pub const MAX_COUNT: i64 = 1000;

/// An error as an OperationOutcome.
#[derive(Debug)]
pub struct FhirError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) diagnostics: String,
    pub(super) expression: Option<String>,
}

impl FhirError {
    pub(super) fn invalid(param: &str, text: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid",
            diagnostics: text.into(),
            expression: Some(param.to_owned()),
        }
    }

    pub(super) fn not_found(what: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not-found",
            diagnostics: format!("no such {what}, or not visible to this user"),
            expression: None,
        }
    }
}

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        let code = match e.status.as_u16() {
            401 => "login",
            403 => "forbidden",
            404 => "not-found",
            409 => "conflict",
            422 | 400 => "invalid",
            429 => "throttled",
            _ => "exception",
        };
        Self {
            status: e.status,
            code,
            diagnostics: e.message,
            expression: e.field.map(str::to_owned),
        }
    }
}

impl From<sqlx::Error> for FhirError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e).into()
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let mut issue =
            json!({ "severity": "error", "code": self.code, "diagnostics": self.diagnostics });
        if let Some(x) = self.expression {
            issue["expression"] = json!([x]);
        }
        fhir_json(
            self.status,
            &json!({ "resourceType": "OperationOutcome", "issue": [issue] }),
        )
    }
}

pub(super) fn fhir_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn metadata(State(api): State<Api>) -> Response {
    let common = ["_id", "_lastUpdated", "_count", "_sort", "_offset"];
    let params = |extra: &[&str]| -> Vec<Value> {
        common
            .iter()
            .chain(extra)
            .map(|n| {
                let kind = match *n {
                    "_lastUpdated" | "date" | "birthdate" | "authored" => "date",
                    "_count" | "_offset" => "number",
                    "patient" | "subject" | "organization" | "practitioner" => "reference",
                    "name" | "_sort" => "string",
                    _ => "token",
                };
                json!({ "name": n, "type": kind })
            })
            .collect()
    };
    let resources: Vec<Value> = TYPES
        .iter()
        .map(|t| {
            let extra: &[&str] = match *t {
                "Patient" => &["identifier", "name", "birthdate"],
                "Organization" | "Practitioner" => &["name"],
                "PractitionerRole" => &["practitioner", "organization"],
                "Observation" => &["patient", "subject", "code", "date", "category"],
                "DiagnosticReport" => &["patient", "subject", "code", "date", "category"],
                "ServiceRequest" => &["patient", "subject", "code", "authored", "category"],
                "Encounter" | "DocumentReference" | "Appointment" => {
                    &["patient", "subject", "date"]
                }
                "Task" => &["patient", "subject", "status"],
                _ => &["patient", "subject"],
            };
            let mut r = json!({
                "type": t,
                "interaction": [{ "code": "read" }, { "code": "search-type" }],
                "searchParam": params(extra),
            });
            if *t == "DiagnosticReport" {
                r["searchInclude"] = json!(["DiagnosticReport:result", "DiagnosticReport:patient"]);
            } else if extra.contains(&"patient") {
                r["searchInclude"] = json!([format!("{t}:patient")]);
            }
            r
        })
        .collect();
    fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": map::datetime(crate::accounts::now_ms()),
            "publisher": api.site,
            "kind": "instance",
            "software": { "name": "appliance", "version": env!("CARGO_PKG_VERSION") },
            "implementation": { "description": "远程会诊与双向转诊平台 FHIR 接口", "url": format!("{}fhir", api.base_url) },
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{
                "mode": "server",
                "security": { "description": "Bearer session token of an appliance account (POST /api/v1/auth/login)" },
                "resource": resources,
            }],
        }),
    )
}

pub(super) fn centre(u: &User) -> bool {
    matches!(u.role, Role::Coordinator | Role::QcReviewer)
}

/// The search parameters, decoded, in order.
pub(super) fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(super) fn patient_id(name: &str, v: &str) -> Result<i64, FhirError> {
    v.strip_prefix("Patient/")
        .unwrap_or(v)
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| {
            FhirError::invalid(
                name,
                format!("\"{v}\" is not a patient reference (Patient/123 or 123)"),
            )
        })
}

/// Checks `u` may read patient `id` (audited), and for a clinical record type (`kind`), the
/// whole record: a user who sees the patient only through a consultation or referral reads the
/// items it shares in the API, not here (403).
pub(super) async fn readable(
    api: &Api,
    u: &User,
    peer: &SocketAddr,
    id: i64,
    kind: &str,
) -> Result<(), FhirError> {
    let scope = crate::consult::readable_scope(api, u, peer, id).await?;
    whole_record(&scope, id, kind)
}

/// The resource types that are the clinical record (not the patient or a case).
const RECORD_TYPES: [&str; 7] = [
    "Encounter",
    "Condition",
    "ServiceRequest",
    "Observation",
    "DiagnosticReport",
    "DocumentReference",
    "ImagingStudy",
];

/// Refuses a record type (`kind`) of patient `id` to a reader whose `scope` is not the whole
/// record.
fn whole_record(scope: &RecordScope, id: i64, kind: &str) -> Result<(), FhirError> {
    if !RECORD_TYPES.contains(&kind) || *scope == RecordScope::All {
        return Ok(());
    }
    Err(FhirError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        diagnostics: format!(
            "this patient's record is shared with you item by item: read it at \
             /api/v1/patients/{id}/record"
        ),
        expression: None,
    })
}

async fn read(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Response, FhirError> {
    let (u, _) = user(&api, &headers, false).await?;
    if !TYPES.contains(&kind.as_str()) {
        return Err(FhirError::not_found("resource type"));
    }
    // Cases: ServiceRequest/c1, Task/r2, Appointment/3.
    let case = match (kind.as_str(), id.get(..1)) {
        ("Task" | "ServiceRequest", Some(p @ ("c" | "r"))) => Some((p, &id[1..])),
        ("Appointment", _) => Some(("c", id.as_str())),
        _ => None,
    };
    if let Some((prefix, number)) = case {
        let number: i64 = number.parse().map_err(|_| FhirError::not_found(&kind))?;
        let table = if prefix == "c" {
            "consultations"
        } else {
            "referrals"
        };
        let patient: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT patient_id FROM {table} WHERE id = ?"
        )))
        .bind(number)
        .fetch_optional(&api.pool)
        .await?;
        let patient = patient.ok_or_else(|| FhirError::not_found(&kind))?;
        readable(&api, &u, &peer, patient, "Task").await?;
        let c = search::cases_of(&api, patient)
            .await?
            .into_iter()
            .find(|c| c.prefix == prefix && c.id == number)
            .ok_or_else(|| FhirError::not_found(&kind))?;
        let r = match kind.as_str() {
            "Task" => map::case_task(&c),
            "ServiceRequest" => map::case_request(&c),
            _ => map::appointment(
                &c,
                c.scheduled_at
                    .ok_or_else(|| FhirError::not_found("Appointment"))?,
            ),
        };
        return Ok(fhir_json(StatusCode::OK, &r));
    }
    if kind == "ImagingStudy" {
        return Err(FhirError {
            status: StatusCode::NOT_FOUND,
            code: "not-supported",
            diagnostics: "ImagingStudy is searched by patient: /fhir/ImagingStudy?patient=ID"
                .into(),
            expression: None,
        });
    }
    let t = table(&kind).ok_or_else(|| FhirError::not_found(&kind))?;
    let number: i64 = id
        .strip_prefix(t.id.1)
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| FhirError::not_found(&kind))?;
    let fixed = if t.fixed.is_empty() {
        String::new()
    } else {
        format!(" AND {}", t.fixed)
    };
    let rows = fetch(
        &api,
        format!(
            "SELECT {} FROM {} WHERE {} = ?{fixed}",
            t.columns, t.from, t.id.0
        ),
        &[Bind::Int(number)],
    )
    .await?;
    let row = rows.first().ok_or_else(|| FhirError::not_found(&kind))?;
    if t.patient.is_some() {
        let patient = if kind == "Patient" {
            int(row, 0)
        } else {
            int(row, 1)
        };
        let Some(p) = patient_row(&api, patient).await? else {
            return Err(FhirError::not_found(&kind));
        };
        let Some(scope) = record_scope(&api, &u, &p).await? else {
            audit_event(
                &api,
                &u,
                &peer,
                "read",
                format!("patient:{patient}"),
                "denied",
            )
            .await?;
            return Err(FhirError::not_found(&kind));
        };
        whole_record(&scope, patient, &kind)?;
        audit_event(&api, &u, &peer, "read", format!("fhir:{kind}/{id}"), "ok").await?;
    }
    let mut r = resource(&kind, row);
    if kind == "DiagnosticReport" {
        search::report_results(&api, std::slice::from_mut(&mut r)).await?;
    }
    Ok(fhir_json(StatusCode::OK, &r))
}
