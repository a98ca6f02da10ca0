//! Finding a patient and their images for an application: search by name, identity card number
//! or record number within what the user may read (their institution's patients; centre staff:
//! the alliance's), with identity card numbers masked in lists; and the studies the data
//! centre holds for one patient, read from imaging's index (read-only, same host), matched by
//! the record number as DICOM Patient ID, or by name and birth date, each with a thumbnail URL
//! rendered by imaging. Every search and read is audited.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use imaging::store::query::{Level, Query as Qido, parse_tag};
use serde::Deserialize;
use serde_json::{Value, json};
use workflow::Role;

use crate::cases::audit_event;
use crate::http::{Api, ApiError, user};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/patients/{id}/studies", get(studies))
        .route("/api/v1/icd10", get(icd10))
}

/// The most patients one search returns.
pub const SEARCH_LIMIT: i64 = 50;

#[derive(Deserialize)]
pub(crate) struct Search {
    /// A name (or part of one), an identity card number or a record number.
    q: Option<String>,
}

/// `110101195603140012` as `110101********0012`: enough to tell two people apart in a list.
pub fn mask_id_number(id: &str) -> String {
    if id.chars().count() != 18 {
        return String::new();
    }
    format!("{}********{}", &id[..6], &id[14..])
}

/// `GET /api/v1/patients?q=`: the patients the user may read whose name contains `q`, or whose
/// identity card or record number is `q`, newest first.
pub(crate) async fn search(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(s): Query<Search>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let everyone = matches!(u.role, Role::Coordinator | Role::QcReviewer);
    if !everyone && !matches!(u.role, Role::Doctor | Role::Expert) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "patients are searched by doctors and centre staff",
        ));
    }
    let q = s.q.unwrap_or_default();
    let q = q.trim();
    if q.is_empty() || q.chars().count() > 64 {
        return Err(ApiError::field("q", "1-64 characters"));
    }
    let pattern = format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    type Row = (
        i64,
        i64,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        bool,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT p.id, p.institution_id, p.name, p.sex, p.birth_date, p.record_number, \
         m.id_number, i.name, EXISTS (SELECT 1 FROM favourite_patients f WHERE f.user_id = ? \
         AND f.patient_id = p.id) FROM patients p LEFT JOIN master_patients m ON m.id = \
         p.master_id JOIN institutions i ON i.id = p.institution_id WHERE (? OR \
         p.institution_id = ?) AND p.merged_into IS NULL AND (p.name LIKE ? ESCAPE '\\' OR m.id_number_index = ? OR \
         (p.record_number <> '' AND p.record_number = ?)) ORDER BY p.id DESC LIMIT ?",
    )
    .bind(u.id)
    .bind(everyone)
    .bind(u.institution)
    .bind(&pattern)
    .bind(api.sealer.index("id_number", &q.to_ascii_uppercase()))
    .bind(q)
    .bind(SEARCH_LIMIT)
    .fetch_all(&api.pool)
    .await?;
    audit_event(&api, &u, &peer, "search", "patients".to_owned(), "ok").await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(
            |(id, inst, name, sex, birth, record, id_number, inst_name, fav)| {
                let id_number =
                    id_number.map(|n| api.sealer.open("id_number", &n).unwrap_or_default());
                json!({
                    "id": id, "institution": inst, "institution_name": inst_name, "name": name,
                    "sex": sex, "birth_date": birth, "record_number": record,
                    "id_number_masked": mask_id_number(id_number.as_deref().unwrap_or_default()),
                    "favourite": fav,
                })
            },
        )
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// A DICOM JSON attribute's first value as text (person names by their alphabetic group).
fn first(obj: &Value, tag: &str) -> String {
    match obj
        .get(tag)
        .and_then(|a| a.get("Value"))
        .and_then(|v| v.get(0))
    {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Object(pn)) => pn
            .get("Alphabetic")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// A person's name without DICOM's component separators and spaces, for matching
/// `王^建国` with `王建国`.
pub fn name_key(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '^' | '=' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

fn index_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "imaging index");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "imaging_unavailable",
        "the imaging index cannot be read now",
    )
}

/// How long a thumbnail's URL works (the page that lists them is read within that).
const THUMBNAIL_TOKEN_SECS: i64 = 15 * 60;

/// `GET /api/v1/patients/{id}/studies`: the data centre's studies of a patient the user may
/// read (through a consultation or referral: those it shares).
async fn studies(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let scope = crate::consult::readable_scope(&api, &u, &peer, id).await?;
    let mut items = studies_of(&api, &u.login, id).await?;
    // Seen through a consultation or referral: the studies it shares.
    items.retain(|s| scope.has_study(s["uid"].as_str().unwrap_or_default()));
    Ok(Json(json!({ "items": items })))
}

/// The studies imaging's index holds for patient `id` (already found readable), newest first,
/// each with a thumbnail URL signed for `login`: those whose Patient ID is the patient's record
/// number (or whose name and birth date are the patient's), and those a DICOMweb pull linked.
pub(crate) async fn studies_of(api: &Api, login: &str, id: i64) -> Result<Vec<Value>, ApiError> {
    let (name, birth, record): (String, String, String) =
        sqlx::query_as("SELECT name, birth_date, record_number FROM patients WHERE id = ?")
            .bind(id)
            .fetch_one(&api.pool)
            .await?;
    let Some(pool) = api.imaging_index().await.map_err(index_error)? else {
        return Ok(Vec::new());
    };
    let tag = |keyword: &str| {
        parse_tag(keyword).ok_or_else(|| ApiError::internal("an unknown DICOM keyword"))
    };
    let mut found: BTreeMap<String, Value> = BTreeMap::new();
    // By record number as Patient ID; then by birth date, kept where the name is the same.
    let mut searches = Vec::new();
    if !record.is_empty() {
        searches.push((tag("PatientID")?, record.clone(), false));
    }
    searches.push((tag("PatientBirthDate")?, birth.replace('-', ""), true));
    for (key, value, by_name) in searches {
        let mut q = Qido::new(Level::Study);
        q.limit = 200;
        q.key("PatientID/BirthDate", key, &value)
            .map_err(index_error)?;
        let (rows, _) = q.run(&pool).await.map_err(index_error)?;
        for s in rows {
            if by_name && name_key(&first(&s, "00100010")) != name_key(&name) {
                continue;
            }
            found.entry(first(&s, "0020000D")).or_insert(s);
        }
    }
    // Studies a DICOMweb pull linked to this patient (their Patient ID is another
    // institution's record number).
    let linked: Vec<String> =
        sqlx::query_scalar("SELECT study_uid FROM study_links WHERE patient_id = ?")
            .bind(id)
            .fetch_all(&api.pool)
            .await?;
    for uid in linked {
        if found.contains_key(&uid) {
            continue;
        }
        let mut q = Qido::new(Level::Study);
        q.key("StudyInstanceUID", tag("StudyInstanceUID")?, &uid)
            .map_err(index_error)?;
        let (rows, _) = q.run(&pool).await.map_err(index_error)?;
        if let Some(s) = rows.into_iter().next() {
            found.insert(uid, s);
        }
    }
    let mut items = Vec::new();
    let thumbnail_exp = (crate::accounts::now_ms() / 1000 + THUMBNAIL_TOKEN_SECS).max(0) as u64;
    for (uid, s) in found {
        let mut q = Qido::new(Level::Instance);
        q.key("StudyInstanceUID", tag("StudyInstanceUID")?, &uid)
            .map_err(index_error)?;
        let (instances, _) = q.run(&pool).await.map_err(index_error)?;
        // The first series' middle image stands for the study.
        let series = instances.first().map(|i| first(i, "0020000E"));
        let mut of_series: Vec<&Value> = instances
            .iter()
            .filter(|i| Some(first(i, "0020000E")) == series)
            .collect();
        of_series.sort_by_key(|i| first(i, "00200013").parse::<i64>().unwrap_or(0));
        // An <img> sends no header: the URL carries a short viewer token for this study only.
        let thumbnail = of_series.get(of_series.len() / 2).map(|i| {
            let token = imaging::viewer::token::sign(
                &imaging::viewer::token::Claims {
                    sub: login.to_owned(),
                    studies: vec![uid.clone()],
                    exp: thumbnail_exp,
                },
                &api.key,
            );
            format!(
                "{}dicomweb/studies/{uid}/series/{}/instances/{}/rendered?viewport=160,160&quality=80&token={token}",
                api.imaging_url,
                first(i, "0020000E"),
                first(i, "00080018"),
            )
        });
        items.push(json!({
            "uid": uid,
            "date": first(&s, "00080020"),
            "description": first(&s, "00081030"),
            "modalities": first(&s, "00080061"),
            "accession": first(&s, "00080050"),
            "series": first(&s, "00201206").parse::<i64>().unwrap_or(0),
            "instances": instances.len(),
            "thumbnail": thumbnail,
        }));
    }
    items.sort_by(|a, b| b["date"].as_str().cmp(&a["date"].as_str()));
    Ok(items)
}

#[derive(Deserialize)]
struct Icd10Query {
    q: Option<String>,
}

/// `GET /api/v1/icd10?q=`: diagnoses for the application form.
async fn icd10(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<Icd10Query>,
) -> Result<Json<Value>, ApiError> {
    user(&api, &headers, false).await?;
    let items = crate::icd10::search(q.q.as_deref().unwrap_or_default(), 20);
    Ok(Json(json!({ "items": items })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_numbers_are_masked_and_names_match_across_notations() {
        assert_eq!(mask_id_number("11010119560314001X"), "110101********001X");
        assert_eq!(mask_id_number("123"), "");
        assert_eq!(name_key("王^建国"), name_key("王建国"));
        assert_eq!(name_key("Smith^John"), name_key("smith john"));
        assert_ne!(name_key("王^建"), name_key("王建国"));
    }

    #[test]
    fn dicom_json_values_read_as_text() {
        let obj = json!({
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "王^建国"}]},
            "00201206": {"vr": "IS", "Value": [3]},
            "00080020": {"vr": "DA", "Value": ["20261206"]},
            "00081030": {"vr": "LO"},
        });
        assert_eq!(first(&obj, "00100010"), "王^建国");
        assert_eq!(first(&obj, "00201206"), "3");
        assert_eq!(first(&obj, "00080020"), "20261206");
        assert_eq!(first(&obj, "00081030"), "");
        assert_eq!(first(&obj, "0020000D"), "");
    }
}
