//! FHIR R4 resources into the clinical record (what a clinic's cloud HIS serves, or files
//! imported by hand): Patient into the master patient index, Encounter, Condition,
//! ServiceRequest (lab and imaging orders), Observation, DiagnosticReport and DocumentReference
//! into their tables, each row keyed by its source and `Type/id`, so taking a resource again
//! updates it instead of adding a second copy. A resource the record cannot hold is skipped
//! with the reason.

use base64::Engine;
use hl7v2::content::{Ids, Person};
use serde_json::Value;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::map::fhir_time;
use crate::accounts::now_ms;
use crate::gm::Sealer;
use crate::ingest::Fail;

/// What became of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Stored for the patient.
    Stored(i64),
    /// The subject is a patient not taken yet (`Patient/x`): take it, then this again.
    NeedsPatient(String),
    /// Not for the record, or not readable: why.
    Skipped(String),
}

/// Takes resources from one source into one institution's record.
#[derive(Debug, Clone)]
pub struct FhirIntake {
    /// The database.
    pub pool: SqlitePool,
    /// Seals identity card and phone numbers.
    pub sealer: Sealer,
    /// The source's name in provenance (its base URL, or `file:NAME`).
    pub source: String,
    /// The registered institution whose patients these are.
    pub institution: String,
}

fn text_of(concept: &Value) -> (String, String, String) {
    let coding = &concept["coding"][0];
    let code = coding["code"].as_str().unwrap_or_default().to_owned();
    let text = concept["text"]
        .as_str()
        .or(coding["display"].as_str())
        .unwrap_or_default()
        .to_owned();
    let system = match coding["system"].as_str().unwrap_or_default() {
        "http://loinc.org" => "LN".to_owned(),
        "http://hl7.org/fhir/sid/icd-10" | "http://hl7.org/fhir/sid/icd-10-cm" => "I10".to_owned(),
        "http://snomed.info/sct" => "SCT".to_owned(),
        other => other
            .rsplit([':', '/'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    (
        if code.is_empty() { text.clone() } else { code },
        text,
        system,
    )
}

/// A Patient resource as the person the master patient index matches.
pub fn person(r: &Value) -> Result<Person, String> {
    let id = r["id"].as_str().unwrap_or_default();
    let mut ids = Ids::default();
    for i in r["identifier"].as_array().into_iter().flatten() {
        let value = i["value"].as_str().unwrap_or_default().trim();
        let kind = i["type"]["coding"][0]["code"].as_str().unwrap_or_default();
        let system = i["system"].as_str().unwrap_or_default();
        if value.is_empty() {
            continue;
        }
        if kind == "NNCHN" || system.contains("id-card") || system.ends_with("2.16.156.10011.1.1") {
            ids.id_card = Some(value.to_ascii_uppercase());
        } else if kind == "MR" && ids.record_number.is_none() {
            ids.record_number = Some(value.to_owned());
        }
    }
    // Without a record number, the source's own id is the patient's number there.
    if ids.record_number.is_none() && !id.is_empty() {
        ids.record_number = Some(id.to_owned());
    }
    let name = &r["name"][0];
    let text = name["text"].as_str().map(str::to_owned).unwrap_or_else(|| {
        let given: Vec<&str> = name["given"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let family = name["family"].as_str().unwrap_or_default();
        let cjk = family.chars().any(|c| c as u32 >= 0x2e80);
        if cjk {
            format!("{family}{}", given.join(""))
        } else {
            format!("{} {family}", given.join(" "))
        }
    });
    let sex = match r["gender"].as_str().unwrap_or_default() {
        "male" => "M",
        "female" => "F",
        "other" => "O",
        _ => "U",
    };
    let birth_date = match r["birthDate"].as_str() {
        Some(b) if b.len() == 10 => Some(
            hl7v2::time::parse_date(&b.replace('-', "")).map_err(|e| format!("birthDate: {e}"))?,
        ),
        Some(b) => return Err(format!("birthDate \"{b}\" is not a full date")),
        None => None,
    };
    let phone = r["telecom"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["system"] == "phone")
        .and_then(|t| t["value"].as_str())
        .unwrap_or_default()
        .to_owned();
    Ok(Person {
        ids,
        name: text.trim().to_owned(),
        sex: sex.into(),
        birth_date,
        phone,
    })
}

fn attachment_bytes(a: &Value) -> Option<(String, Vec<u8>)> {
    let data = a["data"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    let mime = a["contentType"]
        .as_str()
        .unwrap_or("text/plain")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    Some((mime, bytes))
}

impl FhirIntake {
    /// Takes one resource, in one transaction.
    pub async fn take(&self, r: &Value) -> Result<Taken, sqlx::Error> {
        // A write transaction from its start: one that reads first (the patient lookup) cannot
        // take the write lock once another writer (the HL7 writer's own connection, an API
        // request) has committed meanwhile, and SQLite answers "database is locked" at once.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let taken = match self.store(&mut tx, r).await {
            Ok(t) => t,
            Err(Fail::Db(e)) => return Err(e),
            Err(Fail::Refused(e)) => Taken::Skipped(e.text),
        };
        if matches!(taken, Taken::Stored(_)) {
            tx.commit().await?;
        }
        Ok(taken)
    }

    async fn patient_of(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        r: &Value,
    ) -> Result<Result<i64, Taken>, Fail> {
        let subject = r["subject"]["reference"]
            .as_str()
            .or(r["patient"]["reference"].as_str())
            .unwrap_or_default();
        if !subject.starts_with("Patient/") {
            return Ok(Err(Taken::Skipped(format!(
                "subject \"{subject}\" is not a Patient reference"
            ))));
        }
        let local: Option<i64> =
            sqlx::query_scalar("SELECT patient_id FROM fhir_links WHERE source = ? AND remote = ?")
                .bind(&self.source)
                .bind(subject)
                .fetch_optional(&mut **tx)
                .await?;
        Ok(local.ok_or_else(|| Taken::NeedsPatient(subject.to_owned())))
    }

    async fn store(&self, tx: &mut Transaction<'_, Sqlite>, r: &Value) -> Result<Taken, Fail> {
        let kind = r["resourceType"].as_str().unwrap_or_default();
        let id = r["id"].as_str().unwrap_or_default();
        if id.is_empty() {
            return Ok(Taken::Skipped(format!("{kind} without an id")));
        }
        let reference = format!("{kind}/{id}");
        let now = now_ms();
        let src = self.source.as_str();
        if kind == "Patient" {
            let person = match person(r) {
                Ok(p) => p,
                Err(e) => return Ok(Taken::Skipped(e)),
            };
            let institution: Option<i64> =
                sqlx::query_scalar("SELECT id FROM institutions WHERE name = ?")
                    .bind(&self.institution)
                    .fetch_optional(&mut **tx)
                    .await?;
            let Some(institution) = institution else {
                return Ok(Taken::Skipped(format!(
                    "the institution \"{}\" is not registered",
                    self.institution
                )));
            };
            let mut events = Vec::new();
            let patient = crate::mpi::match_patient(
                &self.sealer,
                tx,
                (institution, None),
                &person,
                crate::mpi::Update::Demographics,
                &mut events,
            )
            .await?;
            sqlx::query("INSERT INTO fhir_links (source, remote, patient_id) VALUES (?, ?, ?) ON CONFLICT (source, remote) DO UPDATE SET patient_id = excluded.patient_id")
                .bind(src)
                .bind(&reference)
                .bind(patient)
                .execute(&mut **tx)
                .await?;
            return Ok(Taken::Stored(patient));
        }
        const KEPT: [&str; 6] = [
            "Observation",
            "DiagnosticReport",
            "Encounter",
            "Condition",
            "ServiceRequest",
            "DocumentReference",
        ];
        if !KEPT.contains(&kind) {
            return Ok(Taken::Skipped(format!("{kind} is not kept in the record")));
        }
        let patient = match self.patient_of(tx, r).await? {
            Ok(p) => p,
            Err(t) => return Ok(t),
        };
        match kind {
            "Observation" => {
                let (code, name, system) = text_of(&r["code"]);
                let q = &r["valueQuantity"];
                let (value, numeric, unit) = if let Some(v) = q["value"].as_f64() {
                    let unit = q["unit"]
                        .as_str()
                        .or(q["code"].as_str())
                        .unwrap_or_default();
                    (
                        format!("{}{v}", q["comparator"].as_str().unwrap_or_default()),
                        Some(v),
                        unit.to_owned(),
                    )
                } else if let Some(s) = r["valueString"].as_str() {
                    (s.to_owned(), None, String::new())
                } else if r["valueCodeableConcept"].is_object() {
                    (text_of(&r["valueCodeableConcept"]).1, None, String::new())
                } else if r["dataAbsentReason"].is_object() {
                    // Said to be absent: kept, with no value.
                    (String::new(), None, String::new())
                } else {
                    return Ok(Taken::Skipped(format!(
                        "{reference} has no value the record holds"
                    )));
                };
                let range = &r["referenceRange"][0];
                let (low, high) = (
                    range["low"]["value"].as_f64(),
                    range["high"]["value"].as_f64(),
                );
                let range_text =
                    range["text"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| match (low, high) {
                            (Some(l), Some(h)) => format!("{l}-{h}"),
                            (Some(l), None) => format!(">={l}"),
                            (None, Some(h)) => format!("<={h}"),
                            _ => String::new(),
                        });
                let flag = r["interpretation"][0]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or_default();
                let status = match r["status"].as_str().unwrap_or_default() {
                    "corrected" | "amended" => "C",
                    "preliminary" | "registered" => "P",
                    "cancelled" | "entered-in-error" => "X",
                    _ => "F",
                };
                let observed = r["effectiveDateTime"]
                    .as_str()
                    .or(r["effectivePeriod"]["start"].as_str())
                    .or(r["issued"].as_str())
                    .and_then(fhir_time);
                sqlx::query("DELETE FROM lab_results WHERE source = ? AND source_ref = ?")
                    .bind(src)
                    .bind(&reference)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO lab_results (patient_id, order_id, code, name, system, value_type, value, numeric, unit, range_text, low, high, flag, status, specimen, observed_at, source, source_ref, received_at) \
                     VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?)",
                )
                .bind(patient).bind(&code).bind(&name).bind(&system)
                .bind(if numeric.is_some() { "NM" } else { "ST" })
                .bind(&value).bind(numeric).bind(&unit).bind(&range_text).bind(low).bind(high)
                .bind(if flag == "N" { "" } else { flag }).bind(status).bind(observed)
                .bind(src).bind(&reference).bind(now)
                .execute(&mut **tx)
                .await?;
            }
            "DiagnosticReport" => {
                let (code, name, _) = text_of(&r["code"]);
                let category = r["category"][0]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or_default();
                let kind = match category {
                    "RAD" | "CT" | "MR" | "XRC" | "NMR" => "radiology",
                    "US" | "RUS" | "CUS" | "OUS" | "VUS" => "ultrasound",
                    "PAT" | "SP" | "CP" => "pathology",
                    "LAB" | "HM" | "CH" | "MB" => "lab",
                    _ => "other",
                };
                let pdf = r["presentedForm"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(attachment_bytes)
                    .find(|(m, b)| m == "application/pdf" && b.starts_with(b"%PDF"))
                    .map(|(_, b)| b);
                let text = r["conclusion"].as_str().unwrap_or_default();
                sqlx::query("DELETE FROM exam_reports WHERE source = ? AND source_ref = ?")
                    .bind(src)
                    .bind(&reference)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO exam_reports (patient_id, order_id, kind, code, name, status, text, pdf, observed_at, reported_at, source, source_ref, received_at) \
                     VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(patient).bind(kind).bind(&code).bind(&name)
                .bind(if r["status"] == "final" { "F" } else { "P" })
                .bind(text).bind(pdf)
                .bind(r["effectiveDateTime"].as_str().or(r["effectivePeriod"]["start"].as_str()).and_then(fhir_time))
                .bind(r["issued"].as_str().and_then(fhir_time))
                .bind(src).bind(&reference).bind(now)
                .execute(&mut **tx)
                .await?;
            }
            "Encounter" => {
                let class = match r["class"]["code"].as_str().unwrap_or_default() {
                    "IMP" | "ACUTE" | "NONAC" => "I",
                    "EMER" => "E",
                    "PRENC" => "P",
                    _ => "O",
                };
                let department = r["serviceType"]["text"]
                    .as_str()
                    .or(r["serviceType"]["coding"][0]["display"].as_str())
                    .unwrap_or_default();
                let location = r["location"][0]["location"]["display"]
                    .as_str()
                    .unwrap_or_default();
                sqlx::query(
                    "INSERT INTO encounters (patient_id, visit_number, class, location, department, attending, admitted_at, discharged_at, source, source_ref, received_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (patient_id, source, visit_number) DO UPDATE SET class = excluded.class, \
                     location = excluded.location, department = excluded.department, admitted_at = excluded.admitted_at, discharged_at = excluded.discharged_at, received_at = excluded.received_at",
                )
                .bind(patient).bind(&reference).bind(class).bind(location).bind(department)
                .bind(r["participant"][0]["individual"]["display"].as_str().unwrap_or_default())
                .bind(r["period"]["start"].as_str().and_then(fhir_time))
                .bind(r["period"]["end"].as_str().and_then(fhir_time))
                .bind(src).bind(&reference).bind(now)
                .execute(&mut **tx)
                .await?;
            }
            "Condition" => {
                let (code, name, system) = text_of(&r["code"]);
                if code.is_empty() {
                    return Ok(Taken::Skipped(format!("{reference} has no code")));
                }
                let kind = match r["verificationStatus"]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or_default()
                {
                    "confirmed" => "F",
                    "provisional" | "differential" => "W",
                    _ => "",
                };
                let time = r["onsetDateTime"]
                    .as_str()
                    .or(r["recordedDate"].as_str())
                    .and_then(fhir_time);
                sqlx::query(
                    "INSERT INTO diagnoses (patient_id, code, name, system, kind, time, source, source_ref, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (patient_id, code, kind, source) DO UPDATE SET name = excluded.name, time = excluded.time, source_ref = excluded.source_ref, received_at = excluded.received_at",
                )
                .bind(patient).bind(&code).bind(&name).bind(&system).bind(kind).bind(time)
                .bind(src).bind(&reference).bind(now)
                .execute(&mut **tx)
                .await?;
            }
            "ServiceRequest" => {
                let category = r["category"][0]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or_default();
                let kind = match category {
                    "108252007" => "lab",
                    "363679005" => "exam",
                    _ => {
                        return Ok(Taken::Skipped(format!(
                            "{reference} is neither a lab nor an imaging order"
                        )));
                    }
                };
                let (code, name, system) = text_of(&r["code"]);
                let status = match r["status"].as_str().unwrap_or_default() {
                    "revoked" => "CA",
                    "completed" => "CM",
                    _ => "",
                };
                sqlx::query(
                    "DELETE FROM orders WHERE source = ? AND placer = ? AND patient_id = ?",
                )
                .bind(src)
                .bind(&reference)
                .bind(patient)
                .execute(&mut **tx)
                .await?;
                sqlx::query(
                    "INSERT INTO orders (patient_id, kind, placer, filler, code, name, system, status, ordered_at, provider, source, source_ref, received_at) \
                     VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(patient).bind(kind).bind(&reference).bind(&code).bind(&name).bind(&system).bind(status)
                .bind(r["authoredOn"].as_str().and_then(fhir_time))
                .bind(r["requester"]["display"].as_str().unwrap_or_default())
                .bind(src).bind(&reference).bind(now)
                .execute(&mut **tx)
                .await?;
            }
            "DocumentReference" => {
                let Some((mime, bytes)) = r["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|c| attachment_bytes(&c["attachment"]))
                else {
                    return Ok(Taken::Skipped(format!(
                        "{reference} carries no content inline"
                    )));
                };
                let mime = match mime.as_str() {
                    "application/pdf" => "application/pdf",
                    "text/html" => "text/html",
                    _ => "text/plain",
                };
                let loinc = r["type"]["coding"][0]["code"].as_str().unwrap_or_default();
                let kind = match loinc {
                    "34117-2" => "admission",
                    "11506-3" => "progress",
                    "18842-5" => "discharge",
                    _ => "other",
                };
                let title = r["description"]
                    .as_str()
                    .or(r["type"]["text"].as_str())
                    .or(r["type"]["coding"][0]["display"].as_str())
                    .unwrap_or("病历文书");
                sqlx::query(
                    "INSERT INTO clinical_documents (patient_id, kind, number, title, status, mime, content, time, source, source_ref, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (patient_id, source, number) DO UPDATE SET kind = excluded.kind, title = excluded.title, mime = excluded.mime, content = excluded.content, time = excluded.time, received_at = excluded.received_at",
                )
                .bind(patient).bind(kind).bind(&reference).bind(title)
                .bind(r["docStatus"].as_str().unwrap_or_default())
                .bind(mime).bind(&bytes)
                .bind(r["date"].as_str().and_then(fhir_time))
                .bind(src).bind(&reference).bind(now)
                .execute(&mut **tx)
                .await?;
            }
            other => return Ok(Taken::Skipped(format!("{other} is not kept in the record"))),
        }
        Ok(Taken::Stored(patient))
    }
}

/// `appliance fhir-import`: the resources in `files` (each a resource or a Bundle), patients
/// first; what was stored and skipped, in words.
pub async fn import_files(
    intake: &FhirIntake,
    files: &[std::path::PathBuf],
) -> Result<String, String> {
    let mut resources = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", f.display()))?;
        if v["resourceType"] == "Bundle" {
            resources.extend(
                v["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"].clone()),
            );
        } else {
            resources.push(v);
        }
    }
    resources.sort_by_key(|r| r["resourceType"] != "Patient");
    let (mut stored, mut skipped) = (0, Vec::new());
    for r in &resources {
        match intake.take(r).await.map_err(|e| e.to_string())? {
            Taken::Stored(_) => stored += 1,
            Taken::NeedsPatient(p) => skipped.push(format!(
                "{}/{}: its patient {p} is not among the files",
                r["resourceType"].as_str().unwrap_or("?"),
                r["id"].as_str().unwrap_or("?")
            )),
            Taken::Skipped(why) => skipped.push(format!(
                "{}/{}: {why}",
                r["resourceType"].as_str().unwrap_or("?"),
                r["id"].as_str().unwrap_or("?")
            )),
        }
    }
    let mut out = format!(
        "stored {stored}, skipped {} of {} resources\n",
        skipped.len(),
        resources.len()
    );
    for s in skipped {
        out.push_str(&format!("  skipped {s}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_times_and_patients() {
        assert_eq!(fhir_time("2026-03-01"), Some(1_772_294_400_000));
        assert_eq!(fhir_time("2026-03-01T00:00:00Z"), Some(1_772_323_200_000));
        assert_eq!(
            fhir_time("2026-03-01T09:00:00+09:00"),
            Some(1_772_323_200_000)
        );
        assert_eq!(fhir_time("yesterday"), None);
        let p = person(&serde_json::json!({
            "resourceType": "Patient", "id": "example",
            "identifier": [{ "type": { "coding": [{ "code": "MR" }] }, "value": "12345" }],
            "name": [{ "family": "Chalmers", "given": ["Peter", "James"] }],
            "gender": "male", "birthDate": "1974-12-25",
        }))
        .unwrap();
        assert_eq!(
            (p.name.as_str(), p.sex.as_str()),
            ("Peter James Chalmers", "M")
        );
        assert_eq!(p.ids.record_number.as_deref(), Some("12345"));
        assert_eq!(p.birth_date.as_deref(), Some("1974-12-25"));
        let p = person(&serde_json::json!({ "resourceType": "Patient", "id": "x", "name": [{ "text": "张三" }] })).unwrap();
        assert_eq!(p.ids.record_number.as_deref(), Some("x"));
        assert!(person(&serde_json::json!({ "id": "y", "birthDate": "1974" })).is_err());
    }
}
