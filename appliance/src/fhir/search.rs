//! The facade's searches: the parameters checked (an unknown one is an error naming it), the
//! patient scope, the query, paging links, `_include`, and the resources that are not rows of
//! one table (a patient's cases as ServiceRequest, Task and Appointment; ImagingStudy from
//! imaging's index).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use workflow::Role;

use super::query::{Bind, Where, date_clause, date_param, fetch, int, resource, table};
use super::{
    DEFAULT_COUNT, FhirError, MAX_COUNT, TYPES, centre, fhir_json, map, pairs, patient_id, readable,
};
use crate::cases::audit_event;
use crate::http::{Api, ApiError, user};

/// A patient's consultations (`c`) and referrals (`r`).
pub(super) async fn cases_of(api: &Api, patient: i64) -> Result<Vec<map::CaseRow>, FhirError> {
    let rows: Vec<(String, i64, i64, String, String, i64, i64)> = sqlx::query_as(
        "SELECT 'c', id, institution_id, state, data, created_at, updated_at FROM consultations \
         WHERE patient_id = ? UNION ALL SELECT 'r', id, institution_id, state, data, created_at, \
         updated_at FROM referrals WHERE patient_id = ? ORDER BY 6 DESC",
    )
    .bind(patient)
    .bind(patient)
    .fetch_all(&api.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(kind, id, institution, state, data, created_at, updated_at)| {
                let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                map::CaseRow {
                    prefix: if kind == "c" { "c" } else { "r" },
                    id,
                    patient,
                    institution,
                    state,
                    reason: data["reason"].as_str().unwrap_or_default().to_owned(),
                    created_at,
                    updated_at,
                    scheduled_at: data["scheduled_at"].as_i64(),
                }
            },
        )
        .collect())
}

struct Page {
    count: i64,
    offset: i64,
}

fn bundle(
    api: &Api,
    kind: &str,
    params: &[(String, String)],
    page: &Page,
    total: i64,
    matches: Vec<Value>,
    included: Vec<Value>,
) -> Value {
    let base = format!("{}fhir", api.base_url);
    let query = |offset: i64| -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().filter(|(k, _)| k != "_offset") {
            s.append_pair(k, v);
        }
        s.append_pair("_offset", &offset.to_string());
        format!("{base}/{kind}?{}", s.finish())
    };
    let mut links = vec![json!({ "relation": "self", "url": query(page.offset) })];
    if page.offset + page.count < total {
        links.push(json!({ "relation": "next", "url": query(page.offset + page.count) }));
    }
    let entry = |r: Value, mode: &str| {
        let url = format!(
            "{base}/{}/{}",
            r["resourceType"].as_str().unwrap_or_default(),
            r["id"].as_str().unwrap_or_default()
        );
        json!({ "fullUrl": url, "resource": r, "search": { "mode": mode } })
    };
    let mut entries: Vec<Value> = matches.into_iter().map(|r| entry(r, "match")).collect();
    entries.extend(included.into_iter().map(|r| entry(r, "include")));
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    })
}

/// Fills each DiagnosticReport's `result` with the Observations of its order; returns them.
pub(super) async fn report_results(
    api: &Api,
    reports: &mut [Value],
) -> Result<Vec<i64>, FhirError> {
    let mut all = Vec::new();
    for r in reports.iter_mut() {
        let Some(order) = r["basedOn"][0]["reference"]
            .as_str()
            .and_then(|s| s.strip_prefix("ServiceRequest/o"))
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM lab_results WHERE order_id = ? ORDER BY id")
                .bind(order)
                .fetch_all(&api.pool)
                .await?;
        if !ids.is_empty() {
            r["result"] = json!(
                ids.iter()
                    .map(|i| json!({ "reference": format!("Observation/{i}") }))
                    .collect::<Vec<_>>()
            );
        }
        all.extend(ids);
    }
    Ok(all)
}

async fn rows_by_ids(api: &Api, kind: &str, ids: &[i64]) -> Result<Vec<Value>, FhirError> {
    let Some(t) = table(kind) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let binds: Vec<Bind> = chunk.iter().map(|i| Bind::Int(*i)).collect();
        let rows = fetch(
            api,
            format!(
                "SELECT {} FROM {} WHERE {} IN ({marks})",
                t.columns, t.from, t.id.0
            ),
            &binds,
        )
        .await?;
        out.extend(rows.iter().map(|r| resource(kind, r)));
    }
    Ok(out)
}

pub(super) async fn search(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    let (u, _) = user(&api, &headers, false).await?;
    if !TYPES.contains(&kind.as_str()) {
        return Err(FhirError {
            status: StatusCode::NOT_FOUND,
            code: "not-supported",
            diagnostics: format!(
                "resource type \"{kind}\" is not served here (see /fhir/metadata)"
            ),
            expression: None,
        });
    }
    let params = pairs(raw.as_deref());
    let mut page = Page {
        count: DEFAULT_COUNT,
        offset: 0,
    };
    let mut patient: Option<i64> = None;
    let mut includes: Vec<String> = Vec::new();
    let mut sort: Option<String> = None;
    for (k, v) in &params {
        match k.as_str() {
            "_count" => {
                page.count = v
                    .parse()
                    .ok()
                    .filter(|c| (1..=MAX_COUNT).contains(c))
                    .ok_or_else(|| {
                        FhirError::invalid(
                            "_count",
                            format!("\"{v}\" is not a count of 1 to {MAX_COUNT}"),
                        )
                    })?;
            }
            "_offset" => {
                page.offset = v.parse().ok().filter(|o| *o >= 0).ok_or_else(|| {
                    FhirError::invalid("_offset", format!("\"{v}\" is not an offset"))
                })?;
            }
            "_format"
                if matches!(
                    v.as_str(),
                    "json" | "application/json" | "application/fhir+json"
                ) => {}
            "_format" => return Err(FhirError::invalid("_format", "only JSON is served")),
            "_sort" => {
                if !matches!(
                    v.as_str(),
                    "date" | "-date" | "_lastUpdated" | "-_lastUpdated" | "authored" | "-authored"
                ) {
                    return Err(FhirError::invalid(
                        "_sort",
                        format!("\"{v}\": sort by date, -date, _lastUpdated or -_lastUpdated"),
                    ));
                }
                sort = Some(v.clone());
            }
            "_include" => includes.push(v.clone()),
            "patient" | "subject" => {
                let id = patient_id(k, v)?;
                if patient.is_some_and(|p| p != id) {
                    return Err(FhirError::invalid(k, "two different patients"));
                }
                patient = Some(id);
            }
            _ => {}
        }
    }
    for inc in &includes {
        let ok = inc == &format!("{kind}:patient")
            || inc == &format!("{kind}:subject")
            || (kind == "DiagnosticReport" && inc == "DiagnosticReport:result");
        if !ok || kind == "Patient" {
            return Err(FhirError::invalid(
                "_include",
                format!("\"{inc}\" is not supported for {kind}"),
            ));
        }
    }
    if let Some(p) = patient {
        readable(&api, &u, &peer, p, &kind).await?;
    }
    audit_event(&api, &u, &peer, "search", format!("fhir:{kind}"), "ok").await?;
    let category = params
        .iter()
        .find(|(k, _)| k == "category")
        .map(|(_, v)| v.as_str());
    let case_types = kind == "Task"
        || kind == "Appointment"
        || kind == "ImagingStudy"
        || (kind == "ServiceRequest" && matches!(category, Some("consultation" | "referral")));
    if case_types {
        let p = patient.ok_or_else(|| {
            FhirError::invalid("patient", format!("{kind} is searched by patient"))
        })?;
        for (k, _) in &params {
            let known = matches!(
                k.as_str(),
                "_count"
                    | "_offset"
                    | "_format"
                    | "_include"
                    | "patient"
                    | "subject"
                    | "category"
                    | "status"
                    | "_sort"
            );
            if !known {
                return Err(FhirError::invalid(
                    k,
                    format!("unknown search parameter \"{k}\" for {kind}"),
                ));
            }
        }
        let status = params
            .iter()
            .find(|(k, _)| k == "status")
            .map(|(_, v)| v.clone());
        let mut all: Vec<Value> = if kind == "ImagingStudy" {
            crate::patients::studies_of(&api, &u.login, p)
                .await?
                .iter()
                .map(|s| map::imaging_study(p, s))
                .collect()
        } else {
            cases_of(&api, p)
                .await?
                .iter()
                .filter_map(|c| match kind.as_str() {
                    "Task" => Some(map::case_task(c)),
                    "Appointment" => c
                        .scheduled_at
                        .filter(|_| c.prefix == "c")
                        .map(|at| map::appointment(c, at)),
                    _ => (category
                        == Some(if c.prefix == "c" {
                            "consultation"
                        } else {
                            "referral"
                        }))
                    .then(|| map::case_request(c)),
                })
                .collect()
        };
        if let Some(s) = status {
            all.retain(|r| r["status"] == s.as_str());
        }
        let total = all.len() as i64;
        let matches: Vec<Value> = all
            .into_iter()
            .skip(page.offset as usize)
            .take(page.count as usize)
            .collect();
        let included = if includes.is_empty() {
            Vec::new()
        } else {
            rows_by_ids(&api, "Patient", &[p]).await?
        };
        return Ok(fhir_json(
            StatusCode::OK,
            &bundle(&api, &kind, &params, &page, total, matches, included),
        ));
    }
    let t = table(&kind).ok_or_else(|| FhirError::not_found("resource type"))?;
    let mut w = Where::default();
    if !t.fixed.is_empty() {
        w.push(t.fixed.to_owned(), vec![]);
    }
    match (t.patient, patient) {
        (Some(col), Some(p)) => w.push(format!("{col} = ?"), vec![Bind::Int(p)]),
        (Some(col), None) if !centre(&u) => {
            if !matches!(u.role, Role::Doctor | Role::Expert) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the clinical record is read by doctors and centre staff",
                )
                .into());
            }
            w.push(
                format!("{col} IN (SELECT id FROM patients WHERE institution_id = ?)"),
                vec![Bind::Int(u.institution)],
            );
        }
        (None, Some(_)) => {
            return Err(FhirError::invalid(
                "patient",
                format!("{kind} is not searched by patient"),
            ));
        }
        _ => {}
    }
    if kind == "Patient" && !params.iter().any(|(k, _)| k == "_id") {
        w.push("t.merged_into IS NULL".into(), vec![]);
    }
    for (k, v) in &params {
        match k.as_str() {
            "_count" | "_offset" | "_format" | "_sort" | "_include" | "patient" | "subject" => {}
            "_id" => {
                let id = v
                    .strip_prefix(t.id.1)
                    .and_then(|i| i.parse::<i64>().ok())
                    .ok_or_else(|| {
                        FhirError::invalid("_id", format!("\"{v}\" is not an id of {kind}"))
                    })?;
                w.push(format!("{} = ?", t.id.0), vec![Bind::Int(id)]);
            }
            "_lastUpdated" => {
                let (op, start, end) = date_param(k, v)?;
                date_clause(t.updated, &op, start, end, &mut w);
            }
            "date" | "authored" if t.date.is_some() => {
                let (op, start, end) = date_param(k, v)?;
                date_clause(t.date.unwrap_or_default(), &op, start, end, &mut w);
            }
            "code" if t.code.is_some() => {
                let codes: Vec<Bind> = v
                    .split(',')
                    .map(|c| Bind::Text(c.rsplit('|').next().unwrap_or_default().to_owned()))
                    .collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, Bind::Text(t) if t.is_empty()))
                {
                    return Err(FhirError::invalid("code", format!("\"{v}\" names no code")));
                }
                let marks = vec!["?"; codes.len()].join(", ");
                w.push(
                    format!("{} IN ({marks})", t.code.unwrap_or_default()),
                    codes,
                );
            }
            "category" if kind == "Observation" => {
                if v.rsplit('|').next() != Some("laboratory") {
                    w.push("0".into(), vec![]);
                }
            }
            "category" if kind == "DiagnosticReport" => {
                let kinds: Vec<Bind> = v
                    .split(',')
                    .map(|c| {
                        let c = c.rsplit('|').next().unwrap_or_default();
                        Bind::Text(match c {
                            "RAD" | "CT" | "MR" => "radiology".into(),
                            "RUS" | "US" | "CUS" | "OUS" | "VUS" => "ultrasound".into(),
                            "PAT" | "SP" => "pathology".into(),
                            "LAB" => "lab".into(),
                            "OTH" => "other".into(),
                            other => other.to_owned(),
                        })
                    })
                    .collect();
                let marks = vec!["?"; kinds.len()].join(", ");
                w.push(format!("t.kind IN ({marks})"), kinds);
            }
            "category" if kind == "ServiceRequest" => {
                let k = match v.rsplit('|').next().unwrap_or_default() {
                    "108252007" | "lab" | "laboratory" => "lab",
                    "363679005" | "exam" | "imaging" => "exam",
                    "medication" => "medication",
                    other => {
                        return Err(FhirError::invalid(
                            "category",
                            format!("\"{other}\": lab, exam, medication, consultation or referral"),
                        ));
                    }
                };
                w.push("t.kind = ?".into(), vec![Bind::Text(k.into())]);
            }
            "identifier" if kind == "Patient" => {
                let value = v.rsplit('|').next().unwrap_or_default().trim().to_owned();
                w.push(
                    "(t.record_number = ? OR t.master_id IN (SELECT id FROM master_patients WHERE id_number_index = ?))".into(),
                    vec![Bind::Text(value.clone()), Bind::Text(api.sealer.index("id_number", &value.to_ascii_uppercase()))],
                );
            }
            "name" if matches!(kind.as_str(), "Patient" | "Organization" | "Practitioner") => {
                let col = if kind == "Practitioner" {
                    "t.display_name"
                } else {
                    "t.name"
                };
                let pattern = format!(
                    "%{}%",
                    v.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                w.push(
                    format!("{col} LIKE ? ESCAPE '\\'"),
                    vec![Bind::Text(pattern)],
                );
            }
            "birthdate" if kind == "Patient" => {
                if v.len() != 10 {
                    return Err(FhirError::invalid("birthdate", "a full date, YYYY-MM-DD"));
                }
                w.push("t.birth_date = ?".into(), vec![Bind::Text(v.clone())]);
            }
            "practitioner" if kind == "PractitionerRole" => {
                let id = v
                    .strip_prefix("Practitioner/")
                    .unwrap_or(v)
                    .parse::<i64>()
                    .map_err(|_| FhirError::invalid(k, "a Practitioner reference"))?;
                w.push("t.id = ?".into(), vec![Bind::Int(id)]);
            }
            "organization" if kind == "PractitionerRole" => {
                let id = v
                    .strip_prefix("Organization/")
                    .unwrap_or(v)
                    .parse::<i64>()
                    .map_err(|_| FhirError::invalid(k, "an Organization reference"))?;
                w.push("t.institution_id = ?".into(), vec![Bind::Int(id)]);
            }
            other => {
                return Err(FhirError::invalid(
                    other,
                    format!("unknown search parameter \"{other}\" for {kind}"),
                ));
            }
        }
    }
    let order = match (sort.as_deref(), t.date) {
        (Some("date" | "authored"), Some(d)) => format!("{d} IS NULL, {d}, {} ", t.id.0),
        (Some("_lastUpdated"), _) => format!("{}, {}", t.updated, t.id.0),
        (Some("-_lastUpdated"), _) => format!("{} DESC, {} DESC", t.updated, t.id.0),
        (_, Some(d)) => format!("{d} IS NULL, {d} DESC, {} DESC", t.id.0),
        _ => t.id.0.to_string(),
    };
    let total: i64 = fetch(
        &api,
        format!("SELECT count(*) FROM {}{}", t.from, w.sql()),
        &w.binds,
    )
    .await?
    .first()
    .map(|r| int(r, 0))
    .unwrap_or_default();
    let mut binds = w.binds.clone();
    binds.extend([Bind::Int(page.count), Bind::Int(page.offset)]);
    let rows = fetch(
        &api,
        format!(
            "SELECT {} FROM {}{} ORDER BY {order} LIMIT ? OFFSET ?",
            t.columns,
            t.from,
            w.sql()
        ),
        &binds,
    )
    .await?;
    let mut matches: Vec<Value> = rows.iter().map(|r| resource(&kind, r)).collect();
    let mut included = Vec::new();
    if kind == "DiagnosticReport" {
        let results = report_results(&api, &mut matches).await?;
        if includes.iter().any(|i| i == "DiagnosticReport:result") {
            included.extend(rows_by_ids(&api, "Observation", &results).await?);
        }
    }
    if includes
        .iter()
        .any(|i| i.ends_with(":patient") || i.ends_with(":subject"))
    {
        let mut ids: Vec<i64> = matches
            .iter()
            .filter_map(|r| {
                r["subject"]["reference"]
                    .as_str()
                    .and_then(|s| s.strip_prefix("Patient/"))
                    .and_then(|s| s.parse().ok())
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        included.extend(rows_by_ids(&api, "Patient", &ids).await?);
    }
    Ok(fhir_json(
        StatusCode::OK,
        &bundle(&api, &kind, &params, &page, total, matches, included),
    ))
}
