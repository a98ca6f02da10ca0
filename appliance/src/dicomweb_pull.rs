//! Pulling a clinic's cloud PACS over DICOMweb (`integration.dicomweb_sources`) into the data
//! centre: QIDO-RS lists the source's studies page by page; a study whose instances are not all
//! held here yet has the missing ones fetched one by one with WADO-RS and stored in imaging with
//! STOW-RS (under a short-lived write token the appliance signs), so imaging indexes them like
//! any other; then the study is linked to the patient its Patient ID names in the source's
//! institution (the master patient index, as the HL7 and FHIR feeds match). A pull cut short
//! leaves what it stored, and the next one fetches only what is still missing.

use std::sync::Arc;
use std::time::Duration;

use firmware_config::DicomWebSource;
use hl7v2::content::{Ids, Person};
use serde_json::Value;
use sqlx::SqlitePool;

use crate::http_client::{HttpError, request};

/// Studies listed per QIDO-RS page.
const PAGE: usize = 100;
/// The largest answer read (one instance, or one page of a search).
const MAX_ANSWER: usize = 512 << 20;
/// Instances stored in imaging per STOW-RS request, at most (and at most [`BATCH_BYTES`]).
const BATCH: usize = 32;
const BATCH_BYTES: usize = 64 << 20;
/// How long a source or imaging may take to answer one request.
const DEADLINE: Duration = Duration::from_secs(120);
/// How long the write token for imaging lives.
const TOKEN_SECS: u64 = 600;

/// Why a pull stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// The source or imaging could not be reached, or answered with an error.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What one pull did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Studies the source lists.
    pub studies: usize,
    /// Instances fetched and stored.
    pub stored: usize,
    /// Instances imaging refused (each is logged with why).
    pub refused: usize,
    /// Studies linked to a patient.
    pub linked: usize,
}

/// One source and where its studies go.
#[derive(Clone)]
pub struct Puller {
    /// The appliance database.
    pub pool: SqlitePool,
    /// The sealer of sensitive columns (the master patient index).
    pub sealer: crate::gm::Sealer,
    /// The source.
    pub source: DicomWebSource,
    /// imaging's base URL (ends with `/`).
    pub imaging_url: String,
    /// Where imaging keeps its index (read only: what is already held).
    pub data_dir: std::path::PathBuf,
    /// The appliance's signing key (the write token for imaging).
    pub key: Arc<ed25519_dalek::SigningKey>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("source", &self.source.base)
            .finish_non_exhaustive()
    }
}

fn first<'a>(v: &'a Value, tag: &str) -> &'a Value {
    &v[tag]["Value"][0]
}

fn text(v: &Value, tag: &str) -> String {
    match first(v, tag) {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Whether `uid` is a UID (it goes into URLs and SQL binds).
fn is_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The person a study's patient attributes describe: Patient ID as the institution's record
/// number; the ideographic name where there is one (Chinese names), else the alphabetic one.
pub fn person(study: &Value) -> Option<Person> {
    let record = text(study, "00100020");
    if record.is_empty() {
        return None;
    }
    // DICOM JSON splits a name into its groups; some servers leave them joined with "=".
    let value = first(study, "00100010");
    let joined = value
        .as_str()
        .or(value["Alphabetic"].as_str())
        .unwrap_or_default();
    let mut groups = joined.split('=').map(str::trim);
    let alphabetic = groups.next().unwrap_or_default();
    // A group of only separators ("^") is empty.
    let ideographic = value["Ideographic"]
        .as_str()
        .or_else(|| groups.next())
        .map(|i| i.replace('^', "").trim().to_owned())
        .filter(|i| !i.is_empty());
    let name = ideographic.unwrap_or_else(|| alphabetic.replace('^', " ").trim().to_owned());
    let birth = text(study, "00100030");
    let birth_date = (birth.len() == 8 && birth.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{}-{}-{}", &birth[..4], &birth[4..6], &birth[6..]));
    let sex = match text(study, "00100040").as_str() {
        "M" => "M",
        "F" => "F",
        "O" => "O",
        _ => "U",
    };
    Some(Person {
        ids: Ids {
            id_card: None,
            record_number: Some(record),
        },
        name,
        sex: sex.into(),
        birth_date,
        phone: String::new(),
    })
}

impl Puller {
    fn token(&self) -> Option<String> {
        let f = self.source.token_file.as_ref()?;
        match std::fs::read_to_string(f) {
            Ok(t) => t.lines().next().map(|l| l.trim().to_owned()),
            Err(e) => {
                tracing::error!(source = %self.source.base, file = %f.display(), error = %e,
                    "the DICOMweb source's token file cannot be read");
                None
            }
        }
    }

    async fn json(&self, url: &str, token: Option<&str>) -> Result<Value, PullError> {
        let a = request(
            "GET",
            url,
            &[("Accept", "application/dicom+json")],
            token,
            &[],
            MAX_ANSWER,
            DEADLINE,
        )
        .await?;
        match a.status {
            // No matches.
            204 => Ok(Value::Array(Vec::new())),
            200 => serde_json::from_slice(&a.body).map_err(|e| {
                PullError::Http(HttpError {
                    url: url.to_owned(),
                    reason: format!("not DICOM JSON: {e}"),
                })
            }),
            s => Err(PullError::Http(HttpError {
                url: url.to_owned(),
                reason: format!("answered {s}"),
            })),
        }
    }

    /// One pull of every study the source lists.
    pub async fn pull_once(&self) -> Result<Pulled, PullError> {
        let token = self.token();
        let token = token.as_deref();
        let base = self.source.base.as_str();
        let index = imaging::store::Store::read_only_index(&self.data_dir)
            .await
            .map_err(|e| {
                PullError::Http(HttpError {
                    url: "imaging index".into(),
                    reason: e.to_string(),
                })
            })?;
        let mut pulled = Pulled::default();
        let mut offset = 0;
        loop {
            let url = format!(
                "{base}/studies?limit={PAGE}&offset={offset}&includefield=00201208&includefield=00100030&includefield=00100040"
            );
            let page = self.json(&url, token).await?;
            let studies = page.as_array().cloned().unwrap_or_default();
            for study in &studies {
                pulled.studies += 1;
                self.pull_study(study, index.as_ref(), token, &mut pulled)
                    .await?;
            }
            if studies.len() < PAGE {
                break;
            }
            offset += studies.len();
        }
        Ok(pulled)
    }

    /// The instances of `study` imaging holds.
    async fn held(
        index: Option<&SqlitePool>,
        study: &str,
    ) -> Result<std::collections::HashSet<String>, PullError> {
        let Some(pool) = index else {
            return Ok(Default::default());
        };
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT i.sop_instance_uid FROM instances i JOIN series se USING (series_uid) \
             WHERE se.study_uid = ?",
        )
        .bind(study)
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn pull_study(
        &self,
        study: &Value,
        index: Option<&SqlitePool>,
        token: Option<&str>,
        pulled: &mut Pulled,
    ) -> Result<(), PullError> {
        let uid = text(study, "0020000D");
        if !is_uid(&uid) {
            tracing::warn!(source = %self.source.base, uid = %uid, "a study without a valid Study Instance UID is skipped");
            return Ok(());
        }
        let base = self.source.base.as_str();
        let listed: Option<i64> = text(study, "00201208").parse().ok();
        let linked: Option<i64> =
            sqlx::query_scalar("SELECT instances FROM study_links WHERE study_uid = ?")
                .bind(&uid)
                .fetch_optional(&self.pool)
                .await?;
        let mut held = Self::held(index, &uid).await?;
        // Taken whole before, and the source has nothing new: nothing to fetch.
        if listed.is_some() && linked == listed && held.len() as i64 >= listed.unwrap_or(0) {
            return Ok(());
        }
        let instances = self
            .json(&format!("{base}/studies/{uid}/instances"), token)
            .await?;
        let instances = instances.as_array().cloned().unwrap_or_default();
        let mut batch: Vec<Vec<u8>> = Vec::new();
        for i in &instances {
            let (series, sop) = (text(i, "0020000E"), text(i, "00080018"));
            if !is_uid(&series) || !is_uid(&sop) || held.contains(&sop) {
                continue;
            }
            let url = format!("{base}/studies/{uid}/series/{series}/instances/{sop}");
            let a = request(
                "GET",
                &url,
                &[(
                    "Accept",
                    "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
                )],
                token,
                &[],
                MAX_ANSWER,
                DEADLINE,
            )
            .await?;
            if a.status != 200 {
                return Err(PullError::Http(HttpError {
                    url,
                    reason: format!("answered {}", a.status),
                }));
            }
            let parts =
                imaging::dicomweb::multipart::parse(&a.content_type, &a.body).map_err(|e| {
                    PullError::Http(HttpError {
                        url: url.clone(),
                        reason: e.to_string(),
                    })
                })?;
            batch.extend(parts.into_iter().map(|p| p.body));
            held.insert(sop);
            if batch.len() >= BATCH || batch.iter().map(Vec::len).sum::<usize>() >= BATCH_BYTES {
                self.stow(std::mem::take(&mut batch), pulled).await?;
            }
        }
        if !batch.is_empty() {
            self.stow(batch, pulled).await?;
        }
        let count = listed.unwrap_or(instances.len() as i64);
        if self.link(&uid, study, count).await? {
            pulled.linked += 1;
        }
        Ok(())
    }

    /// Stores `parts` in imaging with STOW-RS.
    async fn stow(&self, parts: Vec<Vec<u8>>, pulled: &mut Pulled) -> Result<(), PullError> {
        let (content_type, body) = imaging::dicomweb::multipart::build("application/dicom", &parts);
        let exp = (crate::accounts::now_ms() / 1000).max(0) as u64 + TOKEN_SECS;
        let token = firmware_runtime::token::sign(
            &imaging::access::ServiceClaims {
                sub: "svc:dicomweb-pull".into(),
                jti: format!("dicomweb-pull-{}", crate::accounts::now_ms()),
                write: true,
                institutions: Vec::new(),
                exp,
            },
            &self.key,
        );
        let url = format!("{}dicomweb/studies", self.imaging_url);
        let a = request(
            "POST",
            &url,
            &[
                ("Content-Type", content_type.as_str()),
                ("Accept", "application/dicom+json"),
            ],
            Some(&token),
            &body,
            16 << 20,
            DEADLINE,
        )
        .await?;
        let answer: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        let failed = answer["00081198"]["Value"].as_array().map_or(0, Vec::len);
        if !(200..300).contains(&a.status) && failed == 0 {
            return Err(PullError::Http(HttpError {
                url,
                reason: format!("imaging answered {}", a.status),
            }));
        }
        for f in answer["00081198"]["Value"].as_array().into_iter().flatten() {
            tracing::warn!(source = %self.source.base, instance = %text(f, "00081155"),
                reason = %text(f, "00081196"), "imaging refused a pulled instance");
        }
        let stored = parts.len() - failed.min(parts.len());
        metrics::counter!("dicomweb_pulled_instances_total", "result" => "stored")
            .increment(stored as u64);
        metrics::counter!("dicomweb_pulled_instances_total", "result" => "refused")
            .increment(failed as u64);
        pulled.stored += stored;
        pulled.refused += failed;
        Ok(())
    }

    /// Links the study to its patient in the source's institution; whether it is linked.
    async fn link(&self, uid: &str, study: &Value, instances: i64) -> Result<bool, PullError> {
        let Some(person) = person(study) else {
            tracing::warn!(source = %self.source.base, study = %uid, "a pulled study without a Patient ID is not linked to a patient");
            return Ok(false);
        };
        // A write transaction from its start: one that reads first cannot take the write lock
        // once another writer (the audit trail of the STOW just sent) has committed.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let institution: Option<i64> =
            sqlx::query_scalar("SELECT id FROM institutions WHERE name = ?")
                .bind(&self.source.institution)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(institution) = institution else {
            tracing::warn!(source = %self.source.base, institution = %self.source.institution,
                "the DICOMweb source's institution is not registered; its studies are not linked");
            return Ok(false);
        };
        let mut events = Vec::new();
        let patient = match crate::mpi::match_patient(
            &self.sealer,
            &mut tx,
            (institution, None),
            &person,
            crate::mpi::Update::None,
            &mut events,
        )
        .await
        {
            Ok(p) => p,
            Err(crate::ingest::Fail::Db(e)) => return Err(e.into()),
            Err(crate::ingest::Fail::Refused(e)) => {
                tracing::warn!(source = %self.source.base, study = %uid, reason = %e.text,
                    "a pulled study's patient is refused by the patient index; not linked");
                return Ok(false);
            }
        };
        sqlx::query(
            "INSERT INTO study_links (study_uid, patient_id, source, instances, linked_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (study_uid) DO UPDATE SET \
             patient_id = excluded.patient_id, source = excluded.source, \
             instances = excluded.instances, linked_at = excluded.linked_at",
        )
        .bind(uid)
        .bind(patient)
        .bind(&self.source.base)
        .bind(instances)
        .bind(crate::accounts::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Pulls every source on its schedule until shutdown, once imaging (which stores what is
/// pulled) is ready.
pub async fn run(
    pullers: Vec<Puller>,
    readiness: firmware_runtime::Readiness,
    shutdown: firmware_runtime::Shutdown,
) {
    let imaging_ready =
        || readiness.snapshot().get("imaging") == Some(&firmware_runtime::State::Ready);
    while !imaging_ready() {
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let mut tasks = Vec::new();
    for p in pullers {
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match p.pull_once().await {
                    Ok(r) => {
                        tracing::info!(source = %p.source.base, studies = r.studies, stored = r.stored,
                            refused = r.refused, linked = r.linked, "DICOMweb pull done");
                    }
                    Err(e) => {
                        metrics::counter!("dicomweb_pull_failures_total").increment(1);
                        tracing::warn!(source = %p.source.base, error = %e,
                            "DICOMweb pull failed; the next one fetches what is still missing");
                    }
                }
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(Duration::from_secs(u64::from(p.source.every))) => {}
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_study_names_its_patient() {
        let study = json!({
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Wang^Jianguo", "Ideographic": "王^建国"}]},
            "00100020": {"vr": "LO", "Value": ["CL-0042"]},
            "00100030": {"vr": "DA", "Value": ["19580312"]},
            "00100040": {"vr": "CS", "Value": ["M"]},
        });
        let p = person(&study).unwrap();
        assert_eq!(p.name, "王建国");
        assert_eq!(p.ids.record_number.as_deref(), Some("CL-0042"));
        assert_eq!(p.birth_date.as_deref(), Some("1958-03-12"));
        assert_eq!(p.sex, "M");
        let latin = json!({
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
            "00100020": {"vr": "LO", "Value": ["X1"]},
            "00100030": {"vr": "DA", "Value": ["1990"]},
        });
        let p = person(&latin).unwrap();
        assert_eq!(
            (p.name.as_str(), p.birth_date, p.sex.as_str()),
            ("Doe Jane", None, "U")
        );
        assert!(person(&json!({})).is_none(), "no Patient ID, no patient");
        let joined = json!({
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Wang^Jianguo=王^建国"}]},
            "00100020": {"vr": "LO", "Value": ["CL-0042"]},
        });
        assert_eq!(person(&joined).unwrap().name, "王建国");
        let lost = json!({
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Wang^Jianguo", "Ideographic": "^"}]},
            "00100020": {"vr": "LO", "Value": ["CL-0042"]},
        });
        assert_eq!(person(&lost).unwrap().name, "Wang Jianguo");
    }

    #[test]
    fn only_uids_reach_urls() {
        assert!(is_uid("1.2.840.113619.2.55"));
        assert!(!is_uid("1.2/../x"));
        assert!(!is_uid(""));
        assert!(!is_uid("1..2"));
    }
}
