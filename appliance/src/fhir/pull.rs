//! Pulling a FHIR R4 server's record (a clinic's cloud HIS, `integration.fhir_sources`) into
//! the clinical record: each resource type in turn (patients first), newest-updated last
//! (`_sort=_lastUpdated`), from where the last pull stopped (`_lastUpdated=ge`, the cursor
//! saved after every page, so a pull cut short resumes), following `next` links; a resource
//! whose patient is not taken yet brings its Patient first. The types are those the server's
//! CapabilityStatement lists.

use std::time::Duration;

use firmware_config::FhirSource;
use serde_json::Value;

use super::intake::{FhirIntake, Taken};
use super::map::fhir_time;

/// The types pulled, in order.
pub const KINDS: [&str; 7] = [
    "Patient",
    "Encounter",
    "Condition",
    "ServiceRequest",
    "Observation",
    "DiagnosticReport",
    "DocumentReference",
];

/// The largest answer read.
const MAX_ANSWER: usize = 64 << 20;

/// Why a pull stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The server could not be reached or did not answer in time.
    #[error("{url}: {reason}")]
    Http {
        /// What was asked.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What one pull took.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Resources stored.
    pub stored: usize,
    /// Resources skipped (not for the record, or unreadable).
    pub skipped: usize,
}

/// `GET url` with a bearer token; the status and the body.
async fn get(url: &str, token: Option<&str>) -> Result<(u16, Vec<u8>), PullError> {
    let a = crate::http_client::request(
        "GET",
        url,
        &[("Accept", "application/fhir+json")],
        token,
        &[],
        MAX_ANSWER,
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| PullError::Http {
        url: e.url,
        reason: e.reason,
    })?;
    Ok((a.status, a.body))
}

async fn get_json(url: &str, token: Option<&str>) -> Result<Value, PullError> {
    let (status, body) = get(url, token).await?;
    if status != 200 {
        let why = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|o| o["issue"][0]["diagnostics"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(PullError::Http {
            url: url.to_owned(),
            reason: format!("answered {status} {why}"),
        });
    }
    serde_json::from_slice(&body).map_err(|e| PullError::Http {
        url: url.to_owned(),
        reason: format!("not JSON: {e}"),
    })
}

/// One pull of every type from `source`.
pub async fn pull_once(
    intake: &FhirIntake,
    base: &str,
    token: Option<&str>,
) -> Result<Pulled, PullError> {
    let mut pulled = Pulled::default();
    let origin = url::Url::parse(base).map_err(|e| PullError::Http {
        url: base.to_owned(),
        reason: e.to_string(),
    })?;
    // Only what the server says it serves (its CapabilityStatement).
    let capability = get_json(&format!("{base}/metadata"), token).await?;
    let served: Vec<&str> = capability["rest"][0]["resource"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["type"].as_str())
        .collect();
    for kind in KINDS.into_iter().filter(|k| served.contains(k)) {
        let cursor: Option<String> =
            sqlx::query_scalar("SELECT cursor FROM fhir_cursors WHERE source = ? AND kind = ?")
                .bind(&intake.source)
                .bind(kind)
                .fetch_optional(&intake.pool)
                .await?;
        let mut url = format!("{base}/{kind}?_count=100&_sort=_lastUpdated");
        if let Some(c) = cursor.as_deref().filter(|c| !c.is_empty()) {
            url.push_str(&format!(
                "&_lastUpdated=ge{}",
                url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
            ));
        }
        let mut newest = cursor.clone().unwrap_or_default();
        loop {
            let bundle = get_json(&url, token).await?;
            let mut page = 0;
            for e in bundle["entry"].as_array().into_iter().flatten() {
                let r = &e["resource"];
                let mut taken = intake.take(r).await?;
                if let Taken::NeedsPatient(reference) = &taken {
                    let patient = get_json(&format!("{base}/{reference}"), token).await?;
                    intake.take(&patient).await?;
                    taken = intake.take(r).await?;
                }
                match taken {
                    Taken::Stored(_) => pulled.stored += 1,
                    Taken::Skipped(why) => {
                        tracing::debug!(resource = %r["id"], %why, "FHIR resource skipped");
                        pulled.skipped += 1;
                    }
                    Taken::NeedsPatient(_) => pulled.skipped += 1,
                }
                page += 1;
                if let Some(updated) = r["meta"]["lastUpdated"].as_str()
                    && fhir_time(updated) > fhir_time(&newest).or(Some(i64::MIN))
                {
                    newest = updated.to_owned();
                }
            }
            sqlx::query(
                "INSERT INTO fhir_cursors (source, kind, cursor, pulled, updated_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (source, kind) DO UPDATE SET cursor = excluded.cursor, pulled = pulled + excluded.pulled, updated_at = excluded.updated_at",
            )
            .bind(&intake.source)
            .bind(kind)
            .bind(&newest)
            .bind(page as i64)
            .bind(crate::accounts::now_ms())
            .execute(&intake.pool)
            .await?;
            // The next page, asked of the same server whatever host its link names.
            let next = bundle["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .and_then(|u| url::Url::parse(u).ok());
            match next {
                Some(n) if page > 0 => {
                    let mut same = origin.clone();
                    same.set_path(n.path());
                    same.set_query(n.query());
                    url = same.to_string();
                }
                _ => break,
            }
        }
    }
    Ok(pulled)
}

/// Pulls every source on its schedule until shutdown.
pub async fn run(
    pool: sqlx::SqlitePool,
    sealer: crate::gm::Sealer,
    sources: Vec<FhirSource>,
    shutdown: firmware_runtime::Shutdown,
) {
    let mut tasks = Vec::new();
    for s in sources {
        let intake = FhirIntake {
            pool: pool.clone(),
            sealer: sealer.clone(),
            source: s.base.clone(),
            institution: s.institution.clone(),
        };
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let token = match &s.token_file {
                    Some(f) => match tokio::fs::read_to_string(f).await {
                        Ok(t) => t.lines().next().map(|l| l.trim().to_owned()),
                        Err(e) => {
                            tracing::error!(source = %s.base, file = %f.display(), error = %e, "the FHIR source's token file cannot be read");
                            None
                        }
                    },
                    None => None,
                };
                match pull_once(&intake, &s.base, token.as_deref()).await {
                    Ok(p) => {
                        metrics::counter!("fhir_pulled_total", "result" => "stored").increment(p.stored as u64);
                        metrics::counter!("fhir_pulled_total", "result" => "skipped").increment(p.skipped as u64);
                        tracing::info!(source = %s.base, stored = p.stored, skipped = p.skipped, "FHIR pull done");
                    }
                    Err(e) => {
                        metrics::counter!("fhir_pull_failures_total").increment(1);
                        tracing::warn!(source = %s.base, error = %e, "FHIR pull failed; it resumes at the next one");
                    }
                }
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(Duration::from_secs(u64::from(s.every))) => {}
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
