//! Consultation reports: written from a template by the consultation's experts (an MDT adds
//! each expert's contribution), signed through their own endpoint so the signature always
//! binds the signer's signature image, a hash of the exact content and the server's time in a
//! seal and an SM2 signature (`report_sign`), and kept version by version: a signed report is final (the database refuses a change), and
//! amending it starts the next version from its text. Anyone who may see the consultation can
//! read every version and verify a signed one's hashes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use workflow::{Consultation, ConsultationAction, ConsultationState, Role};

use crate::accounts::now_ms;
use crate::cases::{apply, commit, if_match, load, open};
use crate::http::{Api, ApiError, body, user};
use crate::report_templates::{all_templates, template};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/me/signature", put(upload_signature))
        .route(
            "/api/v1/consultations/{id}/report",
            put(save_report).get(get_report),
        )
        .route("/api/v1/consultations/{id}/report/sign", post(sign_report))
        .route(
            "/api/v1/consultations/{id}/report/verify",
            get(verify_report),
        )
        .route("/api/v1/consultations/{id}/report.pdf", get(report_pdf))
        .route(
            "/api/v1/consultations/{id}/report/signed.zip",
            get(signed_bundle),
        )
}

/// A report's content: section texts and, for an MDT, each expert's contribution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// Section key → text.
    pub sections: BTreeMap<String, String>,
    /// Expert user id → contribution.
    pub contributions: BTreeMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The seal: `alg` (`sm3`, else SHA-256) over the content hash, the signature image hash, the
/// signer and the time.
pub fn seal(
    alg: &str,
    content_sha256: &str,
    signature_sha256: &str,
    signer: i64,
    at: i64,
) -> String {
    let text = format!("{content_sha256}\n{signature_sha256}\n{signer}\n{at}");
    if alg == "sm3" {
        hex(&crate::gm::sm3(text.as_bytes()))
    } else {
        hex(&Sha256::digest(text.as_bytes()))
    }
}

/// The largest signature image accepted.
pub const SIGNATURE_MAX_BYTES: usize = 256 * 1024;

/// Checks a signature image: PNG or JPEG by its bytes, decodable, at most 2000 x 1000 pixels.
pub fn check_signature(mime: &str, bytes: &[u8]) -> Result<(u32, u32), String> {
    if bytes.len() > SIGNATURE_MAX_BYTES {
        return Err(format!("larger than {} KiB", SIGNATURE_MAX_BYTES / 1024));
    }
    let (w, h) = match mime {
        "image/png" => {
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let reader = decoder.read_info().map_err(|e| format!("not a PNG: {e}"))?;
            let info = reader.info();
            (info.width, info.height)
        }
        "image/jpeg" => {
            let mut decoder = jpeg_decoder::Decoder::new(bytes);
            decoder
                .read_info()
                .map_err(|e| format!("not a JPEG: {e}"))?;
            let info = decoder.info().ok_or("not a JPEG")?;
            (u32::from(info.width), u32::from(info.height))
        }
        other => return Err(format!("{other:?}: PNG or JPEG only")),
    };
    if w == 0 || h == 0 || w > 2000 || h > 1000 {
        return Err(format!("{w}x{h}: at most 2000x1000 pixels"));
    }
    Ok((w, h))
}

async fn upload_signature(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    if u.role != Role::Expert {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "signature images are for experts",
        ));
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    check_signature(&mime, &bytes).map_err(|e| ApiError::field("signature", e))?;
    sqlx::query(
        "INSERT INTO signatures (user_id, mime, image, sha256, uploaded_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (user_id) DO UPDATE SET mime = excluded.mime, image = excluded.image, \
         sha256 = excluded.sha256, uploaded_at = excluded.uploaded_at",
    )
    .bind(u.id)
    .bind(&mime)
    .bind(&bytes[..])
    .bind(hex(&Sha256::digest(&bytes)))
    .bind(now_ms())
    .execute(&api.pool)
    .await?;
    crate::cases::audit_event(
        &api,
        &u,
        &peer,
        "upload_signature",
        format!("user:{}", u.id),
        "ok",
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveBody {
    template: String,
    #[serde(default)]
    sections: BTreeMap<String, String>,
    /// This expert's contribution (MDT).
    #[serde(default)]
    contribution: Option<String>,
}

type ReportRow = (
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const REPORT_COLUMNS: &str = "SELECT version, template, content, signed_by, signed_at, \
     content_sha256, signature_sha256, seal_sha256 FROM reports WHERE consultation_id = ? \
     AND version = ?";

async fn save_report(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let expected = if_match(&headers)?;
    let b: SaveBody = body(&bytes)?;
    let Some(template) = template(&api, &b.template).await? else {
        let keys: Vec<String> = all_templates(&api)
            .await?
            .into_iter()
            .map(|t| t.key)
            .collect();
        return Err(ApiError::field(
            "template",
            format!("one of {}", keys.join(", ")),
        ));
    };
    if let Some(bad) = b
        .sections
        .keys()
        .find(|k| !template.sections.iter().any(|(key, _)| key == *k))
    {
        return Err(ApiError::field(
            "sections",
            format!("{bad:?} is not a section of {}", template.key),
        ));
    }
    if b.sections
        .values()
        .chain(b.contribution.iter())
        .any(|t| t.chars().count() > 20_000)
    {
        return Err(ApiError::field(
            "sections",
            "a text is longer than 20000 characters",
        ));
    }
    let mut change = Some(open::<Consultation>(&api, &u, id, expected).await?);
    let notices = apply(
        &api,
        &u,
        &peer,
        &mut change,
        ConsultationAction::DraftReport,
    )
    .await?;
    let mut change = change.ok_or_else(|| ApiError::internal("no open change"))?;
    let version = i64::from(change.record.report_version);
    let existing: Option<ReportRow> = sqlx::query_as(REPORT_COLUMNS)
        .bind(id)
        .bind(version)
        .fetch_optional(&mut *change.tx)
        .await?;
    // A new version starts from the previous one's text.
    let mut content: Content = match &existing {
        Some(row) => serde_json::from_str(&row.2).map_err(ApiError::internal)?,
        None => {
            let previous: Option<String> = sqlx::query_scalar(
                "SELECT content FROM reports WHERE consultation_id = ? AND version = ?",
            )
            .bind(id)
            .bind(version - 1)
            .fetch_optional(&mut *change.tx)
            .await?;
            previous
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or_default()
        }
    };
    for (k, v) in b.sections {
        content.sections.insert(k, v);
    }
    if let Some(text) = b.contribution {
        content.contributions.insert(u.id.to_string(), text);
    }
    let text = serde_json::to_string(&content).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO reports (consultation_id, version, template, content, updated_by, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (consultation_id, version) DO UPDATE SET \
         template = excluded.template, content = excluded.content, \
         updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(version)
    .bind(&template.key)
    .bind(text)
    .bind(u.id)
    .bind(now_ms())
    .execute(&mut *change.tx)
    .await?;
    commit(&api, &u, &peer, change, &notices, "draft_report").await
}

async fn sign_report(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<axum::response::Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let expected = if_match(&headers)?;
    let signature: Option<String> =
        sqlx::query_scalar("SELECT sha256 FROM signatures WHERE user_id = ?")
            .bind(u.id)
            .fetch_optional(&api.pool)
            .await?;
    let mut change = Some(open::<Consultation>(&api, &u, id, expected).await?);
    let version = change
        .as_ref()
        .map_or(0, |c| i64::from(c.record.report_version));
    let row: Option<ReportRow> = match change.as_mut() {
        Some(c) => {
            sqlx::query_as(REPORT_COLUMNS)
                .bind(id)
                .bind(version)
                .fetch_optional(&mut *c.tx)
                .await?
        }
        None => None,
    };
    let Some(row) = row else {
        return Err(ApiError::field("report", "there is no report to sign yet"));
    };
    let template = template(&api, &row.1).await?;
    let content: Content = serde_json::from_str(&row.2).map_err(ApiError::internal)?;
    if let Some((_, title)) = template.as_ref().and_then(|t| {
        t.sections.iter().find(|(k, _)| {
            content
                .sections
                .get(k)
                .is_none_or(|text| text.trim().is_empty())
        })
    }) {
        return Err(ApiError::field(
            "sections",
            format!("{title} is empty: every section is needed before signing"),
        ));
    }
    let Some(signature) = signature else {
        return Err(ApiError::field(
            "signature",
            "upload a signature image (PUT /api/v1/me/signature) before signing",
        ));
    };
    let notices = apply(&api, &u, &peer, &mut change, ConsultationAction::Sign).await?;
    let mut change = change.ok_or_else(|| ApiError::internal("no open change"))?;
    let at = now_ms();
    let content_sha256 = hex(&Sha256::digest(row.2.as_bytes()));
    // The seal follows the audit chain's hash (`security.audit_hash`).
    let alg: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'audit_hash'")
        .fetch_optional(&mut *change.tx)
        .await?
        .unwrap_or_else(|| "sha256".into());
    let sealed = seal(&alg, &content_sha256, &signature, u.id, at);
    let statement = crate::report_sign::Statement {
        consultation: id,
        version,
        content_sm3: hex(&crate::gm::sm3(row.2.as_bytes())),
        signature_image_sha256: signature.clone(),
        signer: u.id,
        signer_name: u.display_name.clone(),
        signed_at: at,
        seal_alg: alg.clone(),
        seal: sealed.clone(),
    }
    .text();
    let sm2 = api
        .report_signer
        .sign(statement.as_bytes())
        .map_err(ApiError::internal)?;
    sqlx::query(
        "UPDATE reports SET signed_by = ?, signed_at = ?, content_sha256 = ?, \
         signature_sha256 = ?, seal_sha256 = ?, seal_alg = ?, sm2_statement = ?, \
         sm2_signature = ?, sm2_certificate = ? WHERE consultation_id = ? AND version = ?",
    )
    .bind(u.id)
    .bind(at)
    .bind(&content_sha256)
    .bind(&signature)
    .bind(&sealed)
    .bind(&alg)
    .bind(&statement)
    .bind(base64::engine::general_purpose::STANDARD.encode(&sm2))
    .bind(api.report_signer.chain_pem())
    .bind(id)
    .bind(version)
    .execute(&mut *change.tx)
    .await?;
    commit(&api, &u, &peer, change, &notices, "sign").await
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<i64>,
}

/// The report row `version` (default: the consultation's current one) of a consultation `u`
/// may see.
async fn report_row(
    api: &Api,
    u: &crate::accounts::User,
    id: i64,
    version: Option<i64>,
) -> Result<(ReportRow, Vec<i64>, Consultation), ApiError> {
    let mut conn = api.pool.acquire().await?;
    let (_, _, c) = load::<Consultation>(&mut conn, u, id).await?;
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT version FROM reports WHERE consultation_id = ? ORDER BY version",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    // By default the latest saved version: while an amendment is not yet saved, the signed one.
    let version = version
        .or(versions.last().copied())
        .unwrap_or(i64::from(c.report_version));
    let row: Option<ReportRow> = sqlx::query_as(REPORT_COLUMNS)
        .bind(id)
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?;
    let row = row.ok_or_else(|| ApiError::not_found("report version"))?;
    Ok((row, versions, c))
}

async fn get_report(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let (row, versions, c) = report_row(&api, &u, id, q.version).await?;
    let content: Content = serde_json::from_str(&row.2).map_err(ApiError::internal)?;
    let signed = row.4.map(|at| {
        json!({ "by": row.3, "at": at, "content_sha256": row.5, "signature_sha256": row.6,
                "seal_sha256": row.7 })
    });
    Ok(Json(json!({
        "consultation": id, "version": row.0, "template": row.1,
        "sections": content.sections, "contributions": content.contributions,
        "signed": signed, "versions": versions,
        "final": c.state == ConsultationState::Signed || c.state == ConsultationState::Closed,
    })))
}

async fn verify_report(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let (row, _, _) = report_row(&api, &u, id, q.version).await?;
    let (Some(by), Some(at), Some(content_sha), Some(signature_sha), Some(sealed)) =
        (row.3, row.4, &row.5, &row.6, &row.7)
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_signed",
            "this report version is not signed",
        ));
    };
    let content_ok = hex(&Sha256::digest(row.2.as_bytes())) == *content_sha;
    let image: Option<String> =
        sqlx::query_scalar("SELECT sha256 FROM signatures WHERE user_id = ?")
            .bind(by)
            .fetch_optional(&api.pool)
            .await?;
    let sm2 = sm2_parts(&api, id, row.0).await?;
    let seal_ok = seal(&sm2.seal_alg, content_sha, signature_sha, by, at) == *sealed;
    // Reports signed before SM2 signatures existed have none; every later one must verify.
    let sm2_ok = sm2.statement.as_ref().map(|(statement, sig, chain)| {
        let fields = crate::report_sign::Statement::fields(statement).unwrap_or_default();
        let leaf = crate::report_sign::pem_certificates(chain)
            .into_iter()
            .next()
            .unwrap_or_default();
        fields.get("content-sm3") == Some(&hex(&crate::gm::sm3(row.2.as_bytes())))
            && fields.get("seal") == Some(sealed)
            && crate::report_sign::verify(statement.as_bytes(), sig, &leaf)
    });
    Ok(Json(json!({
        "version": row.0,
        "intact": content_ok && seal_ok && sm2_ok != Some(false),
        "content_matches": content_ok,
        "seal_matches": seal_ok,
        "seal_alg": sm2.seal_alg,
        "sm2_signature_valid": sm2_ok,
        "signature_image_current": image.as_deref() == Some(signature_sha.as_str()),
    })))
}

/// A signed report's seal algorithm and, when it has one, its SM2 statement, signature (DER)
/// and certificate chain.
struct Sm2Parts {
    seal_alg: String,
    statement: Option<(String, Vec<u8>, String)>,
}

async fn sm2_parts(api: &Api, id: i64, version: i64) -> Result<Sm2Parts, ApiError> {
    let (seal_alg, statement, sig, chain): (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT seal_alg, sm2_statement, sm2_signature, sm2_certificate FROM reports \
             WHERE consultation_id = ? AND version = ?",
    )
    .bind(id)
    .bind(version)
    .fetch_one(&api.pool)
    .await?;
    let statement = match (statement, sig, chain) {
        (Some(statement), Some(sig), Some(chain)) => Some((
            statement,
            base64::engine::general_purpose::STANDARD
                .decode(sig)
                .map_err(ApiError::internal)?,
            chain,
        )),
        _ => None,
    };
    Ok(Sm2Parts {
        seal_alg,
        statement,
    })
}

/// The signed report as a zip anyone can check without the appliance: the content (the exact
/// bytes hashed), the statement, its SM2 signature (DER) and the certificate chain, with a
/// VERIFY.txt giving the openssl commands (docs/security.md).
async fn signed_bundle(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<VersionQuery>,
) -> Result<axum::response::Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let (row, _, _) = report_row(&api, &u, id, q.version).await?;
    let Some((statement, sig, chain)) = sm2_parts(&api, id, row.0).await?.statement else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_signed",
            "this report version has no SM2 signature (unsigned, or signed before SM2 signatures)",
        ));
    };
    use axum::response::IntoResponse;
    let bytes =
        crate::report_sign::bundle(&row.2, &statement, &sig, &chain).map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"report-{id}-v{}-signed.zip\"", row.0),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `ms` since the epoch as China Standard Time (UTC+8), `YYYY-MM-DD HH:MM`.
pub fn china_time(ms: i64) -> String {
    let local = ms + 8 * 3_600_000;
    let (y, m, d) = crate::audit::civil(local.div_euclid(86_400_000));
    let minutes = local.rem_euclid(86_400_000) / 60_000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        minutes / 60,
        minutes % 60
    )
}

/// A user's display name (or "#id").
pub(crate) async fn name_of(api: &Api, user: i64) -> Result<String, ApiError> {
    let name: Option<String> = sqlx::query_scalar("SELECT display_name FROM users WHERE id = ?")
        .bind(user)
        .fetch_optional(&api.pool)
        .await?;
    Ok(name.unwrap_or_else(|| format!("#{user}")))
}

/// The patient's line for a printed document: name, sex, birth date.
pub(crate) async fn patient_line(api: &Api, patient: i64) -> Result<String, ApiError> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT name, sex, birth_date FROM patients WHERE id = ?")
            .bind(patient)
            .fetch_optional(&api.pool)
            .await?;
    Ok(row.map_or_else(String::new, |(name, sex, birth)| {
        let sex = match sex.as_str() {
            "M" => "男",
            "F" => "女",
            _ => "未知",
        };
        format!("{name}  {sex}  {birth}")
    }))
}

/// An institution's name.
pub(crate) async fn institution_name(api: &Api, id: i64) -> Result<String, ApiError> {
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM institutions WHERE id = ?")
        .bind(id)
        .fetch_optional(&api.pool)
        .await?;
    Ok(name.unwrap_or_else(|| format!("#{id}")))
}

/// A PDF answer.
pub(crate) fn pdf_response(bytes: Vec<u8>, name: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}.pdf\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// The report version as a printable PDF: template title, patient and consultation, sections,
/// MDT contributions, and for a signed version the signature image, signer, time and hashes.
async fn report_pdf(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path(id): Path<i64>,
    Query(q): Query<VersionQuery>,
) -> Result<axum::response::Response, ApiError> {
    use crate::pdf::Block;
    let u = crate::tickets::user_for_document(&api, &headers, &uri).await?;
    let (row, _, c) = report_row(&api, &u, id, q.version).await?;
    let patient: i64 = sqlx::query_scalar("SELECT patient_id FROM consultations WHERE id = ?")
        .bind(id)
        .fetch_one(&api.pool)
        .await?;
    let content: Content = serde_json::from_str(&row.2).map_err(ApiError::internal)?;
    let template = template(&api, &row.1).await?;
    let mut blocks = vec![
        Block::Title(
            template
                .as_ref()
                .map_or("远程会诊报告".to_owned(), |t| t.title.clone()),
        ),
        Block::Field("会诊编号".into(), format!("{id}（第 {} 版）", row.0)),
        Block::Field("患者".into(), patient_line(&api, patient).await?),
        Block::Field(
            "申请机构".into(),
            institution_name(&api, c.institution).await?,
        ),
        Block::Field("申请医生".into(), name_of(&api, c.applicant).await?),
        Block::Field("会诊目的".into(), c.question.clone()),
        Block::Field("初步诊断".into(), c.diagnosis.clone()),
    ];
    for (key, title) in template.map(|t| t.sections).unwrap_or_default() {
        blocks.push(Block::Heading(title));
        blocks.push(Block::Text(
            content.sections.get(&key).cloned().unwrap_or_default(),
        ));
    }
    if !content.contributions.is_empty() {
        blocks.push(Block::Heading("多学科专家意见".into()));
        for (expert, text) in &content.contributions {
            let name = match expert.parse::<i64>() {
                Ok(e) => name_of(&api, e).await?,
                Err(_) => expert.clone(),
            };
            blocks.push(Block::Field(name, text.clone()));
        }
    }
    blocks.push(Block::Space(18.0));
    match (row.3, row.4) {
        (Some(by), Some(at)) => {
            let image: Option<(String, Vec<u8>)> = sqlx::query_as(
                "SELECT mime, image FROM signatures WHERE user_id = ? AND sha256 = ?",
            )
            .bind(by)
            .bind(&row.6)
            .fetch_optional(&api.pool)
            .await?;
            blocks.push(Block::Heading("签名".into()));
            if let Some((mime, bytes)) = image
                && let Ok(pixels) = check_signature(&mime, &bytes)
            {
                blocks.push(Block::Image {
                    bytes,
                    mime,
                    width: 120.0,
                    pixels,
                });
            }
            blocks.push(Block::Field("签名专家".into(), name_of(&api, by).await?));
            blocks.push(Block::Field("签名时间".into(), china_time(at)));
            blocks.push(Block::Field(
                "内容 SHA-256".into(),
                row.5.clone().unwrap_or_default(),
            ));
            blocks.push(Block::Field(
                "签章 SHA-256".into(),
                row.7.clone().unwrap_or_default(),
            ));
        }
        _ => blocks.push(Block::Heading("草稿（未签名，不作为诊疗依据）".into())),
    }
    let footer = format!("{}  打印时间 {}", api.site, china_time(now_ms()));
    let bytes = crate::pdf::render(&blocks, &footer).map_err(ApiError::internal)?;
    crate::cases::audit_event(&api, &u, &peer, "print", format!("consultation:{id}"), "ok").await?;
    Ok(pdf_response(
        bytes,
        &format!("consultation-{id}-report-v{}", row.0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_time_is_utc_plus_8() {
        // 2026-11-26 13:30 UTC.
        assert_eq!(china_time(1_795_699_800_000), "2026-11-26 21:30");
    }

    #[test]
    fn the_seal_binds_every_part() {
        for alg in ["sha256", "sm3"] {
            let s = seal(alg, "c", "s", 4, 100);
            assert_ne!(s, seal(alg, "d", "s", 4, 100));
            assert_ne!(s, seal(alg, "c", "t", 4, 100));
            assert_ne!(s, seal(alg, "c", "s", 5, 100));
            assert_ne!(s, seal(alg, "c", "s", 4, 101));
        }
        // SM3 of the same text, as openssl's `dgst -sm3` prints it.
        assert_eq!(
            seal("sm3", "c", "s", 4, 100),
            crate::gm::hex(&crate::gm::sm3(b"c\ns\n4\n100"))
        );
        assert_ne!(
            seal("sm3", "c", "s", 4, 100),
            seal("sha256", "c", "s", 4, 100)
        );
        assert_eq!(seal("sm3", "c", "s", 4, 100).len(), 64);
    }

    #[test]
    fn signature_images_are_checked() {
        let mut png = Vec::new();
        {
            let mut e = png::Encoder::new(&mut png, 120, 40);
            e.set_color(png::ColorType::Grayscale);
            let mut w = e.write_header().unwrap();
            w.write_image_data(&[255u8; 120 * 40]).unwrap();
        }
        assert_eq!(check_signature("image/png", &png), Ok((120, 40)));
        assert!(
            check_signature("image/jpeg", &png)
                .unwrap_err()
                .contains("JPEG")
        );
        assert!(
            check_signature("image/gif", &png)
                .unwrap_err()
                .contains("PNG or JPEG")
        );
        assert!(check_signature("image/png", &png[..20]).is_err());
        let big = vec![0u8; SIGNATURE_MAX_BYTES + 1];
        assert!(
            check_signature("image/png", &big)
                .unwrap_err()
                .contains("KiB")
        );
    }
}
