//! DICOMweb under `/dicomweb` on imaging's HTTP listener: STOW-RS (store), QIDO-RS (query) and
//! WADO-RS (instances, metadata, frames, bulk data) over the [`Store`] and its index.

pub mod attachments;
pub mod multipart;
pub mod rendered;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{Map, Value as Json, json};

use crate::access::InstitutionScope;
use crate::store::query::{Include, Level, MAX_LIMIT, Query, QueryError, parse_tag};
use crate::store::{Refused, Store, record};
use crate::viewer::cache::VolumeCache;

/// The largest STOW-RS request accepted.
pub const MAX_STOW_BYTES: usize = 2 << 30;

#[derive(Debug)]
struct Web {
    store: Store,
    /// Decoded images (shared with the viewer, within its byte budget).
    volumes: Arc<VolumeCache>,
    /// Rendered answers already made.
    answers: rendered::Answers,
}

/// The most bytes of rendered answers kept, beside the decoded images in `volumes`.
pub const ANSWERS_BYTES: u64 = 64 << 20;

/// The DICOMweb routes; `rendered` keeps decoded images in `volumes`.
pub fn routes(store: Store, volumes: Arc<VolumeCache>) -> Router {
    let web = Arc::new(Web {
        store,
        volumes,
        answers: rendered::Answers::new(ANSWERS_BYTES),
    });
    Router::new()
        .route("/dicomweb/studies", get(qido_studies).post(stow))
        .route("/dicomweb/series", get(qido_series_all))
        .route("/dicomweb/instances", get(qido_instances_all))
        .route(
            "/dicomweb/studies/{study}",
            get(wado_study).post(stow_study),
        )
        .route("/dicomweb/studies/{study}/metadata", get(metadata_study))
        .route("/dicomweb/studies/{study}/series", get(qido_series))
        .route(
            "/dicomweb/studies/{study}/instances",
            get(qido_study_instances),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}",
            get(wado_series),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/metadata",
            get(metadata_series),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances",
            get(qido_series_instances),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}",
            get(wado_instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(metadata_instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(frames),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/bulk/{*path}",
            get(bulk),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(rendered_instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
            get(rendered_frame),
        )
        .layer(DefaultBodyLimit::max(MAX_STOW_BYTES))
        .with_state(web)
}

type Shared = State<Arc<Web>>;

/// An error answer: the status and a JSON body naming what was wrong.
fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn not_found(what: &str) -> Response {
    problem(StatusCode::NOT_FOUND, format!("{what} not found"))
}

fn index_failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "index query failed");
    problem(StatusCode::SERVICE_UNAVAILABLE, format!("index: {e}"))
}

fn dicom_json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/dicom+json")], body).into_response()
}

// ---- QIDO-RS -------------------------------------------------------------------------------

async fn qido_studies(
    State(w): Shared,
    scope: Option<Extension<InstitutionScope>>,
    RawQuery(q): RawQuery,
) -> Response {
    qido(&w, scope, Level::Study, &[], q).await
}
async fn qido_series_all(
    State(w): Shared,
    scope: Option<Extension<InstitutionScope>>,
    RawQuery(q): RawQuery,
) -> Response {
    qido(&w, scope, Level::Series, &[], q).await
}
async fn qido_instances_all(
    State(w): Shared,
    scope: Option<Extension<InstitutionScope>>,
    RawQuery(q): RawQuery,
) -> Response {
    qido(&w, scope, Level::Instance, &[], q).await
}
async fn qido_series(
    State(w): Shared,
    scope: Option<Extension<InstitutionScope>>,
    Path(study): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    qido(&w, scope, Level::Series, &[("StudyInstanceUID", study)], q).await
}
async fn qido_study_instances(
    State(w): Shared,
    scope: Option<Extension<InstitutionScope>>,
    Path(study): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    qido(
        &w,
        scope,
        Level::Instance,
        &[("StudyInstanceUID", study)],
        q,
    )
    .await
}
async fn qido_series_instances(
    State(w): Shared,
    scope: Option<Extension<InstitutionScope>>,
    Path((study, series)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    qido(
        &w,
        scope,
        Level::Instance,
        &[("StudyInstanceUID", study), ("SeriesInstanceUID", series)],
        q,
    )
    .await
}

/// Reads QIDO-RS query parameters into a [`Query`].
pub fn parse_qido(
    level: Level,
    scope: &[(&str, String)],
    raw: Option<&str>,
) -> Result<Query, QueryError> {
    let bad = |param: &str, reason: String| QueryError::Param {
        param: param.to_owned(),
        reason,
    };
    let mut q = Query::new(level);
    for (name, value) in scope {
        let tag = parse_tag(name).ok_or_else(|| bad(name, "unknown".into()))?;
        q.key(name, tag, value)?;
    }
    let mut include = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "limit" => {
                q.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit", format!("{value:?} is not 1-{MAX_LIMIT}")))?;
            }
            "offset" => {
                q.offset = value
                    .parse()
                    .map_err(|_| bad("offset", format!("{value:?} is not a count")))?;
            }
            "fuzzymatching" => {
                q.fuzzy = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    v => return Err(bad("fuzzymatching", format!("{v:?} is not true/false"))),
                };
            }
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if field == "all" {
                        q.include = Include::All;
                    } else {
                        include.push(parse_tag(field).ok_or_else(|| {
                            bad("includefield", format!("{field:?} is not an attribute"))
                        })?);
                    }
                }
            }
            // Accepted and ignored, as the standard allows.
            "orderby" | "_" => {}
            key => {
                let tag = parse_tag(key).ok_or_else(|| {
                    bad(
                        key,
                        "not a query parameter (limit, offset, fuzzymatching, includefield) \
                         nor an attribute keyword or tag"
                            .into(),
                    )
                })?;
                q.key(key, tag, &value)?;
            }
        }
    }
    if q.include != Include::All && !include.is_empty() {
        q.include = Include::Tags(include);
    }
    Ok(q)
}

async fn qido(
    w: &Web,
    institutions: Option<Extension<InstitutionScope>>,
    level: Level,
    scope: &[(&str, String)],
    raw: Option<String>,
) -> Response {
    let mut q = match parse_qido(level, scope, raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    q.institutions = institutions.map(|Extension(InstitutionScope(names))| names);
    match q.run(w.store.pool()).await {
        Ok((mut results, more)) => {
            for r in &mut results {
                add_retrieve_url(level, r);
            }
            metrics::counter!("dicomweb_requests_total", "kind" => "qido").increment(1);
            let mut resp = dicom_json(Json::Array(results).to_string());
            if more {
                resp.headers_mut().insert(
                    header::WARNING,
                    HeaderValue::from_static(
                        "299 imaging \"There are more results than the limit: use offset\"",
                    ),
                );
            }
            resp
        }
        Err(e @ QueryError::Param { .. }) => problem(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => index_failed(e),
    }
}

fn first_str<'a>(obj: &'a Map<String, Json>, key: &str) -> &'a str {
    obj.get(key)
        .and_then(|e| e["Value"][0].as_str())
        .unwrap_or_default()
}

fn add_retrieve_url(level: Level, result: &mut Json) {
    let Json::Object(obj) = result else { return };
    let study = first_str(obj, "0020000D");
    let mut url = format!("/dicomweb/studies/{study}");
    if level >= Level::Series {
        url.push_str(&format!("/series/{}", first_str(obj, "0020000E")));
    }
    if level >= Level::Instance {
        url.push_str(&format!("/instances/{}", first_str(obj, "00080018")));
    }
    obj.insert("00081190".into(), json!({ "vr": "UR", "Value": [url] }));
}

// ---- STOW-RS -------------------------------------------------------------------------------

async fn stow(State(w): Shared, headers: HeaderMap, body: Bytes) -> Response {
    store_parts(&w, None, &headers, &body).await
}

async fn stow_study(
    State(w): Shared,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    store_parts(&w, Some(study), &headers, &body).await
}

async fn store_parts(w: &Web, study: Option<String>, headers: &HeaderMap, body: &[u8]) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parts = match multipart::parse(content_type, body) {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
    };
    if let Some(t) = multipart::param(content_type, "type")
        && !t.eq_ignore_ascii_case("application/dicom")
    {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("type={t:?}: only application/dicom instances can be stored"),
        );
    }
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    for (n, part) in parts.into_iter().enumerate() {
        if let Some(ct) = &part.content_type
            && multipart::media_type(ct) != "application/dicom"
        {
            failed.push(failure(
                None,
                0xC000,
                &format!(
                    "part {}: Content-Type {ct:?} is not application/dicom",
                    n + 1
                ),
            ));
            continue;
        }
        let outcome = w.store.put(part.body).await;
        let outcome = match (outcome, &study) {
            (Ok(s), Some(want)) if &s.study != want => Err((
                Some(s),
                Refused::Identity(format!("the instance is not in study {want}")),
            )),
            (Ok(s), _) => Ok(s),
            (Err(e), _) => Err((None, e)),
        };
        match outcome {
            Ok(s) => {
                record("stow", &Ok(s.clone()));
                referenced.push(json!({
                    "00081150": { "vr": "UI", "Value": [s.sop_class] },
                    "00081155": { "vr": "UI", "Value": [s.sop_instance] },
                    "00081190": { "vr": "UR", "Value": [format!(
                        "/dicomweb/studies/{}/series/{}/instances/{}", s.study, s.series, s.sop_instance
                    )] },
                }));
            }
            Err((stored, why)) => {
                let status = record("stow", &Err(why.clone()));
                failed.push(failure(
                    stored.as_ref(),
                    status,
                    &format!("part {}: {why}", n + 1),
                ));
            }
        }
    }
    let mut answer = Map::new();
    if let Some(study) = &study {
        answer.insert(
            "00081190".into(),
            json!({ "vr": "UR", "Value": [format!("/dicomweb/studies/{study}")] }),
        );
    }
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    if !referenced.is_empty() {
        answer.insert(
            "00081199".into(),
            json!({ "vr": "SQ", "Value": referenced }),
        );
    }
    if !failed.is_empty() {
        answer.insert("00081198".into(), json!({ "vr": "SQ", "Value": failed }));
    }
    metrics::counter!("dicomweb_requests_total", "kind" => "stow").increment(1);
    (status, dicom_json(Json::Object(answer).to_string())).into_response()
}

fn failure(stored: Option<&crate::store::Stored>, status: u16, reason: &str) -> Json {
    let mut item = Map::new();
    if let Some(s) = stored {
        item.insert(
            "00081150".into(),
            json!({ "vr": "UI", "Value": [s.sop_class] }),
        );
        item.insert(
            "00081155".into(),
            json!({ "vr": "UI", "Value": [s.sop_instance] }),
        );
    }
    item.insert("00081197".into(), json!({ "vr": "US", "Value": [status] }));
    // Error Comment: why, for the people reading the response.
    item.insert("00000902".into(), json!({ "vr": "LO", "Value": [reason] }));
    Json::Object(item)
}

// ---- WADO-RS -------------------------------------------------------------------------------

/// The instances of a study, a series or one instance: (file, transfer syntax), in order.
async fn files(
    w: &Web,
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
) -> Result<Vec<(String, String)>, Response> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.file, i.metadata FROM instances i JOIN series se USING (series_uid) \
         WHERE se.study_uid = ?1 AND (?2 IS NULL OR se.series_uid = ?2) \
         AND (?3 IS NULL OR i.sop_instance_uid = ?3) \
         ORDER BY se.series_number, se.series_uid, i.instance_number, i.sop_instance_uid",
    )
    .bind(study)
    .bind(series)
    .bind(instance)
    .fetch_all(w.store.pool())
    .await
    .map_err(index_failed)?;
    if rows.is_empty() {
        return Err(not_found(match (series, instance) {
            (_, Some(_)) => "instance",
            (Some(_), None) => "series",
            _ => "study",
        }));
    }
    Ok(rows)
}

async fn metadata(w: &Web, study: &str, series: Option<&str>, instance: Option<&str>) -> Response {
    let rows = match files(w, study, series, instance).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let size = rows.iter().map(|(_, m)| m.len() + 1).sum::<usize>() + 2;
    let mut body = String::with_capacity(size);
    body.push('[');
    for (n, (_, m)) in rows.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(m);
    }
    body.push(']');
    metrics::counter!("dicomweb_requests_total", "kind" => "metadata").increment(1);
    dicom_json(body)
}

async fn metadata_study(State(w): Shared, Path(study): Path<String>) -> Response {
    metadata(&w, &study, None, None).await
}
async fn metadata_series(
    State(w): Shared,
    Path((study, series)): Path<(String, String)>,
) -> Response {
    metadata(&w, &study, Some(&series), None).await
}
async fn metadata_instance(
    State(w): Shared,
    Path((study, series, instance)): Path<(String, String, String)>,
) -> Response {
    metadata(&w, &study, Some(&series), Some(&instance)).await
}

async fn instances(
    w: &Web,
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && !accepts(accept, "multipart/related", Some("application/dicom"))
    {
        return problem(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Accept {accept:?}: instances are sent as multipart/related; type=\"application/dicom\""
            ),
        );
    }
    let rows = match files(w, study, series, instance).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let root = w.store.root().to_owned();
    let read = tokio::task::spawn_blocking(move || {
        rows.iter()
            .map(|(f, _)| crate::store::sealing::read(&root.join(f)))
            .collect::<std::io::Result<Vec<Vec<u8>>>>()
    })
    .await;
    let parts = match read {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "an indexed instance file cannot be read");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading an instance: {e}"),
            );
        }
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (ct, body) = multipart::build("application/dicom", &parts);
    metrics::counter!("dicomweb_requests_total", "kind" => "instances").increment(1);
    ([(header::CONTENT_TYPE, ct)], Body::from(body)).into_response()
}

/// Whether an Accept header admits `media` (with `type` parameter `part`, when the header gives
/// one).
fn accepts(accept: &str, media: &str, part: Option<&str>) -> bool {
    accept.split(',').any(|range| {
        let m = multipart::media_type(range);
        if m == "*/*" || m == "multipart/*" && media.starts_with("multipart/") {
            return true;
        }
        m == media
            && match (multipart::param(range, "type"), part) {
                (Some(t), Some(p)) => t.eq_ignore_ascii_case(p),
                _ => true,
            }
    })
}

async fn wado_study(State(w): Shared, Path(study): Path<String>, h: HeaderMap) -> Response {
    instances(&w, &study, None, None, &h).await
}
async fn wado_series(
    State(w): Shared,
    Path((study, series)): Path<(String, String)>,
    h: HeaderMap,
) -> Response {
    instances(&w, &study, Some(&series), None, &h).await
}
async fn wado_instance(
    State(w): Shared,
    Path((study, series, instance)): Path<(String, String, String)>,
    h: HeaderMap,
) -> Response {
    instances(&w, &study, Some(&series), Some(&instance), &h).await
}

/// Frame numbers from a WADO-RS path segment: "1", "1,3,5" (1-based).
fn frame_list(s: &str, frames: u32) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(|f| {
            let n: u32 = f
                .trim()
                .parse()
                .map_err(|_| format!("frame {f:?} is not a number"))?;
            if n == 0 || n > frames {
                Err(format!("frame {n} is outside 1-{frames}"))
            } else {
                Ok(n)
            }
        })
        .collect()
}

/// Decoded frames of an instance as little-endian native pixel bytes (what WADO-RS sends as
/// application/octet-stream).
async fn frame_bytes(
    w: &Web,
    study: &str,
    series: &str,
    instance: &str,
) -> Result<(Vec<Vec<u8>>, u32), Response> {
    let Some(file) = w.store.instance(instance).await.map_err(index_failed)? else {
        return Err(not_found("instance"));
    };
    if file.study != study || file.series != series {
        return Err(not_found("instance"));
    }
    let bits: Option<i64> =
        sqlx::query_scalar("SELECT bits_allocated FROM instances WHERE sop_instance_uid = ?")
            .bind(instance)
            .fetch_one(w.store.pool())
            .await
            .map_err(index_failed)?;
    let path = file.path.clone();
    let decoded = tokio::task::spawn_blocking(move || crate::dicom::decode::decode_file(&path))
        .await
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| problem(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let per_frame = decoded.rows * decoded.cols * decoded.samples;
    let bytes_per = match bits.unwrap_or(16) {
        8 => 1,
        32 => 4,
        _ => 2,
    };
    if let Some(real) = &decoded.real {
        // Float pixel data goes out as stored: 32-bit floats for OF, 64-bit for OD.
        let frames = real
            .values
            .chunks(per_frame.max(1))
            .map(|f| {
                f.iter()
                    .flat_map(|&v| match bits {
                        Some(64) => v.to_le_bytes().to_vec(),
                        _ => (v as f32).to_le_bytes().to_vec(),
                    })
                    .collect()
            })
            .collect();
        return Ok((frames, decoded.frames as u32));
    }
    let frames = decoded
        .values
        .chunks(per_frame.max(1))
        .map(|f| {
            let mut out = Vec::with_capacity(f.len() * bytes_per);
            for &v in f {
                out.extend_from_slice(&v.to_le_bytes()[..bytes_per]);
            }
            out
        })
        .collect();
    Ok((frames, decoded.frames as u32))
}

async fn frames(
    State(w): Shared,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
) -> Response {
    let (all, count) = match frame_bytes(&w, &study, &series, &instance).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let wanted = match frame_list(&list, count) {
        Ok(l) => l,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    let parts: Vec<Vec<u8>> = wanted
        .iter()
        .filter_map(|&n| all.get(n as usize - 1).cloned())
        .collect();
    let (ct, body) = multipart::build("application/octet-stream", &parts);
    metrics::counter!("dicomweb_requests_total", "kind" => "frames").increment(1);
    ([(header::CONTENT_TYPE, ct)], Body::from(body)).into_response()
}

async fn bulk(
    State(w): Shared,
    Path((study, series, instance, path)): Path<(String, String, String, String)>,
) -> Response {
    if path.eq_ignore_ascii_case("7FE00010") {
        let (all, _) = match frame_bytes(&w, &study, &series, &instance).await {
            Ok(f) => f,
            Err(r) => return r,
        };
        let (ct, body) = multipart::build("application/octet-stream", &[all.concat()]);
        return ([(header::CONTENT_TYPE, ct)], Body::from(body)).into_response();
    }
    let Ok(Some(file)) = w.store.instance(&instance).await else {
        return not_found("instance");
    };
    if file.study != study || file.series != series {
        return not_found("instance");
    }
    let value = tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, String> {
        let obj = crate::dicom::guard::open_file(&file.path)?;
        let mut steps = path.split('/');
        let mut current: &dicom_object::InMemDicomObject = &obj;
        loop {
            let Some(tag) = steps.next().and_then(parse_tag) else {
                return Ok(None);
            };
            let Ok(elem) = current.element(tag) else {
                return Ok(None);
            };
            match steps.next() {
                None => return Ok(elem.to_bytes().ok().map(|b| b.into_owned())),
                Some(item) => {
                    let Some(items) = elem.items() else {
                        return Ok(None);
                    };
                    let Some(next) = item.parse::<usize>().ok().and_then(|i| items.get(i)) else {
                        return Ok(None);
                    };
                    current = next;
                }
            }
        }
    })
    .await;
    match value {
        Ok(Ok(Some(bytes))) => {
            let (ct, body) = multipart::build("application/octet-stream", &[bytes]);
            ([(header::CONTENT_TYPE, ct)], Body::from(body)).into_response()
        }
        Ok(Ok(None)) => not_found("bulk data"),
        Ok(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

// ---- rendered ------------------------------------------------------------------------------

async fn rendered_instance(
    State(w): Shared,
    Path((study, series, instance)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Response {
    rendered(&w, &study, &series, &instance, "1", q, &h).await
}

async fn rendered_frame(
    State(w): Shared,
    Path((study, series, instance, frame)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Response {
    rendered(&w, &study, &series, &instance, &frame, q, &h).await
}

/// The image format an Accept header asks for: PNG when it names image/png before any JPEG,
/// JPEG otherwise; `None` when it accepts neither.
fn image_format(accept: Option<&str>, quality: u8) -> Option<rendered::Format> {
    use rendered::Format;
    let Some(accept) = accept else {
        return Some(Format::Jpeg(quality));
    };
    for range in accept.split(',') {
        match multipart::media_type(range).as_str() {
            "image/png" => return Some(Format::Png),
            "image/jpeg" | "image/*" | "*/*" => return Some(Format::Jpeg(quality)),
            _ => {}
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
async fn rendered(
    w: &Arc<Web>,
    study: &str,
    series: &str,
    instance: &str,
    frame: &str,
    raw: Option<String>,
    headers: &HeaderMap,
) -> Response {
    use rendered::{Format, RenderedError, parse_params, render_built};
    let params = match parse_params(raw.as_deref()) {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let Some(format) = image_format(accept, params.quality) else {
        return problem(
            StatusCode::NOT_ACCEPTABLE,
            format!("Accept {accept:?}: rendered images are image/jpeg or image/png"),
        );
    };
    let Ok(frame) = frame.trim().parse::<usize>() else {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("frame {frame:?} is not a number"),
        );
    };
    if frame == 0 {
        return problem(StatusCode::BAD_REQUEST, "frames are numbered from 1");
    }
    let file = match w.store.instance(instance).await {
        Ok(Some(f)) if f.study == study && f.series == series => f,
        Ok(_) => return not_found("instance"),
        Err(e) => return index_failed(e),
    };
    let started = std::time::Instant::now();
    let web = Arc::clone(w);
    let out = tokio::task::spawn_blocking(move || {
        let key = rendered::file_key(&file.path)?;
        let answer_key = format!("{key}/{frame}/{params:?}/{format:?}");
        if let Some(bytes) = web.answers.get(&answer_key) {
            metrics::counter!("dicomweb_rendered_answers_total", "kept" => "yes").increment(1);
            return Ok(bytes);
        }
        let built = web
            .volumes
            .get_or_build(&key, || {
                crate::dicom::stack::build_stack(std::slice::from_ref(&file.path))
            })
            .map_err(|e| RenderedError::Instance(e.to_string()))?;
        let bytes: Arc<[u8]> = render_built(&built, frame - 1, &params, format)?.into();
        web.answers.put(answer_key, Arc::clone(&bytes));
        metrics::counter!("dicomweb_rendered_answers_total", "kept" => "no").increment(1);
        Ok::<_, RenderedError>(bytes)
    })
    .await;
    metrics::histogram!("dicomweb_rendered_seconds").record(started.elapsed().as_secs_f64());
    match out {
        Ok(Ok(bytes)) => {
            let ct = match format {
                Format::Png => "image/png",
                Format::Jpeg(_) => "image/jpeg",
            };
            metrics::counter!("dicomweb_requests_total", "kind" => "rendered").increment(1);
            (
                [(header::CONTENT_TYPE, ct)],
                Body::from(Bytes::from_owner(bytes)),
            )
                .into_response()
        }
        Ok(Err(e @ RenderedError::Param { .. })) => problem(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => problem(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qido_parameters_are_read_or_named_when_wrong() {
        let q = parse_qido(
            Level::Study,
            &[],
            Some("PatientID=P1&limit=5&offset=10&fuzzymatching=true&includefield=00081030,PatientAge"),
        )
        .unwrap();
        assert_eq!((q.limit, q.offset, q.fuzzy), (5, 10, true));
        assert!(matches!(q.include, Include::Tags(ref t) if t.len() == 2));
        for (query, param) in [
            ("limit=0", "limit"),
            ("offset=-1", "offset"),
            ("NoSuchThing=1", "NoSuchThing"),
            ("includefield=Nope", "includefield"),
            ("fuzzymatching=yes", "fuzzymatching"),
        ] {
            let e = parse_qido(Level::Study, &[], Some(query)).unwrap_err();
            assert!(
                matches!(&e, QueryError::Param { param: p, .. } if p == param),
                "{query}: {e}"
            );
        }
    }

    #[test]
    fn frame_lists_are_checked() {
        assert_eq!(frame_list("1,3", 3), Ok(vec![1, 3]));
        assert!(frame_list("0", 3).is_err());
        assert!(frame_list("4", 3).is_err());
        assert!(frame_list("x", 3).is_err());
    }

    #[test]
    fn accept_headers() {
        assert!(accepts(
            "multipart/related; type=\"application/dicom\"",
            "multipart/related",
            Some("application/dicom")
        ));
        assert!(accepts(
            "*/*",
            "multipart/related",
            Some("application/dicom")
        ));
        assert!(!accepts(
            "multipart/related; type=\"image/jpeg\"",
            "multipart/related",
            Some("application/dicom")
        ));
        assert!(!accepts("application/json", "multipart/related", None));
    }
}
