//! The clinical record and the registry as FHIR R4 resources (JSON): how each row becomes a
//! Patient, Organization, Practitioner, PractitionerRole, Encounter, ServiceRequest, Task,
//! Appointment, Observation, DiagnosticReport, DocumentReference or ImagingStudy. Pure: rows in,
//! JSON out; the queries live in `fhir.rs`.

use serde_json::{Value, json};

/// Times without an offset are China Standard Time.
const OFFSET_SECS: i64 = 8 * 3600;

/// ms since the epoch as a FHIR dateTime/instant at +08:00.
pub fn datetime(ms: i64) -> String {
    let local = ms.div_euclid(1000) + OFFSET_SECS;
    let (y, m, d) = hl7v2::time::civil_from_days(local.div_euclid(86_400));
    let s = local.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+08:00",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A FHIR date or dateTime as ms since the epoch (a date alone is its midnight at UTC+8).
pub fn fhir_time(t: &str) -> Option<i64> {
    let t = t.trim();
    if t.len() <= 10 {
        return hl7v2::time::parse_ms(&t.replace('-', ""), 480).ok();
    }
    let (date, time) = t.split_once('T')?;
    let zone_at = time.find(['+', '-', 'Z'])?;
    let (clock, zone) = time.split_at(zone_at);
    let clock = clock.split('.').next()?.replace(':', "");
    let zone = if zone == "Z" {
        "+0000".to_owned()
    } else {
        zone.replace(':', "")
    };
    hl7v2::time::parse_ms(&format!("{}{clock}{zone}", date.replace('-', "")), 480).ok()
}

/// A FHIR system URI for an HL7 v2 coding system name.
pub fn system(v2: &str) -> Option<String> {
    match v2.to_ascii_uppercase().as_str() {
        "" => None,
        "LN" | "LOINC" => Some("http://loinc.org".into()),
        "I10" | "ICD10" | "ICD-10" | "I10C" => Some("http://hl7.org/fhir/sid/icd-10".into()),
        "SCT" | "SNOMED" => Some("http://snomed.info/sct".into()),
        "UCUM" => Some("http://unitsofmeasure.org".into()),
        other => Some(format!(
            "urn:appliance:hl7v2-coding-system:{}",
            other
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
        )),
    }
}

/// A CodeableConcept.
pub fn concept(sys: &str, code: &str, text: &str) -> Value {
    let mut coding = json!({ "code": code });
    if let Some(s) = system(sys) {
        coding["system"] = json!(s);
    }
    if !text.is_empty() {
        coding["display"] = json!(text);
    }
    let mut c = json!({ "coding": [coding] });
    if !text.is_empty() {
        c["text"] = json!(text);
    }
    c
}

/// `meta` with where the row came from (source system as a URN, message id as its fragment).
pub fn meta(received_at: i64, source: &str, reference: &str) -> Value {
    let enc = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                    c.to_string()
                } else {
                    c.to_string().bytes().map(|b| format!("%{b:02X}")).collect()
                }
            })
            .collect()
    };
    let mut m = json!({ "lastUpdated": datetime(received_at) });
    if !source.is_empty() {
        m["source"] = json!(format!(
            "urn:appliance:source:{}#{}",
            enc(source),
            enc(reference)
        ));
    }
    m
}

fn patient_ref(id: i64) -> Value {
    json!({ "reference": format!("Patient/{id}") })
}

/// A patient (identity card numbers are never written out; they can be searched by).
#[derive(Debug, Clone, Default)]
pub struct PatientRow {
    /// patients.id
    pub id: i64,
    /// Its institution.
    pub institution: i64,
    /// Name.
    pub name: String,
    /// M, F, O, U.
    pub sex: String,
    /// YYYY-MM-DD.
    pub birth_date: String,
    /// The institution's record number.
    pub record_number: String,
    /// The patient it was merged into.
    pub merged_into: Option<i64>,
    /// created_at.
    pub created_at: i64,
}

/// Patient.
pub fn patient(p: &PatientRow) -> Value {
    let gender = match p.sex.as_str() {
        "M" => "male",
        "F" => "female",
        "O" => "other",
        _ => "unknown",
    };
    let mut r = json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": { "lastUpdated": datetime(p.created_at) },
        "active": p.merged_into.is_none(),
        "name": [{ "text": p.name }],
        "gender": gender,
        "managingOrganization": { "reference": format!("Organization/{}", p.institution) },
    });
    if !p.birth_date.is_empty() {
        r["birthDate"] = json!(p.birth_date);
    }
    if !p.record_number.is_empty() {
        r["identifier"] = json!([{
            "use": "usual",
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR" }] },
            "system": format!("urn:appliance:institution:{}:record-number", p.institution),
            "value": p.record_number,
        }]);
    }
    if let Some(into) = p.merged_into {
        r["link"] =
            json!([{ "other": { "reference": format!("Patient/{into}") }, "type": "replaced-by" }]);
    }
    r
}

/// Organization (an institution of the alliance).
pub fn organization(id: i64, name: &str, kind: &str, parent: Option<i64>) -> Value {
    let mut r = json!({
        "resourceType": "Organization",
        "id": id.to_string(),
        "active": true,
        "name": name,
        "type": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov" }], "text": kind }],
    });
    if let Some(p) = parent {
        r["partOf"] = json!({ "reference": format!("Organization/{p}") });
    }
    r
}

/// Practitioner (a doctor or expert account).
pub fn practitioner(id: i64, name: &str, active: bool) -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": id.to_string(),
        "active": active,
        "name": [{ "text": name }],
    })
}

/// PractitionerRole: the practitioner at their institution, with title and specialities.
pub fn practitioner_role(
    id: i64,
    institution: i64,
    role: &str,
    title: &str,
    specialties: &str,
) -> Value {
    let mut r = json!({
        "resourceType": "PractitionerRole",
        "id": id.to_string(),
        "active": true,
        "practitioner": { "reference": format!("Practitioner/{id}") },
        "organization": { "reference": format!("Organization/{institution}") },
        "code": [{ "text": if title.is_empty() { role } else { title } }],
    });
    let specs: Vec<Value> = specialties
        .split([',', '，', '、'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| json!({ "text": s }))
        .collect();
    if !specs.is_empty() {
        r["specialty"] = json!(specs);
    }
    r
}

/// An encounter row.
#[derive(Debug, Clone, Default)]
pub struct EncounterRow {
    /// id
    pub id: i64,
    /// patient
    pub patient: i64,
    /// PV1-19
    pub visit_number: String,
    /// PV1-2
    pub class: String,
    /// ward room bed
    pub location: String,
    /// department
    pub department: String,
    /// admitted
    pub admitted_at: Option<i64>,
    /// discharged
    pub discharged_at: Option<i64>,
    /// provenance
    pub source: String,
    /// provenance
    pub reference: String,
    /// provenance
    pub received_at: i64,
}

/// Encounter.
pub fn encounter(e: &EncounterRow) -> Value {
    let (code, display) = match e.class.as_str() {
        "I" => ("IMP", "inpatient encounter"),
        "E" => ("EMER", "emergency"),
        "P" => ("PRENC", "pre-admission"),
        _ => ("AMB", "ambulatory"),
    };
    let mut r = json!({
        "resourceType": "Encounter",
        "id": e.id.to_string(),
        "meta": meta(e.received_at, &e.source, &e.reference),
        "status": if e.discharged_at.is_some() { "finished" } else { "in-progress" },
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display },
        "subject": patient_ref(e.patient),
        "identifier": [{ "value": e.visit_number }],
    });
    let mut period = json!({});
    if let Some(a) = e.admitted_at {
        period["start"] = json!(datetime(a));
    }
    if let Some(d) = e.discharged_at {
        period["end"] = json!(datetime(d));
    }
    if period.as_object().is_some_and(|o| !o.is_empty()) {
        r["period"] = period;
    }
    if !e.department.is_empty() {
        r["serviceType"] = json!({ "text": e.department });
    }
    if !e.location.is_empty() {
        r["location"] = json!([{ "location": { "display": e.location } }]);
    }
    r
}

/// An order row.
#[derive(Debug, Clone, Default)]
pub struct OrderRow {
    /// id
    pub id: i64,
    /// patient
    pub patient: i64,
    /// lab, exam, medication
    pub kind: String,
    /// numbers
    pub placer: String,
    /// numbers
    pub filler: String,
    /// what
    pub code: String,
    /// what
    pub name: String,
    /// what
    pub system: String,
    /// status as sent
    pub status: String,
    /// when
    pub ordered_at: Option<i64>,
    /// who
    pub provider: String,
    /// provenance
    pub source: String,
    /// provenance
    pub reference: String,
    /// provenance
    pub received_at: i64,
}

/// ServiceRequest for an order (id `o{id}`).
pub fn service_request(o: &OrderRow) -> Value {
    let status = match o.status.as_str() {
        "CA" | "DC" => "revoked",
        "CM" | "F" => "completed",
        _ => "active",
    };
    let (cat, display) = match o.kind.as_str() {
        "lab" => ("108252007", "Laboratory procedure"),
        "exam" => ("363679005", "Imaging"),
        _ => ("", "Medication"),
    };
    let category = if cat.is_empty() {
        json!([{ "text": display }])
    } else {
        json!([{ "coding": [{ "system": "http://snomed.info/sct", "code": cat, "display": display }], "text": o.kind }])
    };
    let mut identifier = Vec::new();
    for (code, value) in [("PLAC", &o.placer), ("FILL", &o.filler)] {
        if !value.is_empty() {
            identifier.push(json!({
                "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code }] },
                "value": value,
            }));
        }
    }
    let mut r = json!({
        "resourceType": "ServiceRequest",
        "id": format!("o{}", o.id),
        "meta": meta(o.received_at, &o.source, &o.reference),
        "identifier": identifier,
        "status": status,
        "intent": "order",
        "category": category,
        "code": concept(&o.system, &o.code, &o.name),
        "subject": patient_ref(o.patient),
    });
    if let Some(t) = o.ordered_at {
        r["authoredOn"] = json!(datetime(t));
    }
    if !o.provider.is_empty() {
        r["requester"] = json!({ "display": o.provider });
    }
    r
}

/// A case (consultation `c`, referral `r`) as ServiceRequest + Task.
#[derive(Debug, Clone, Default)]
pub struct CaseRow {
    /// "c" or "r"
    pub prefix: &'static str,
    /// id
    pub id: i64,
    /// patient
    pub patient: i64,
    /// institution
    pub institution: i64,
    /// workflow state name
    pub state: String,
    /// reason text
    pub reason: String,
    /// created
    pub created_at: i64,
    /// updated
    pub updated_at: i64,
    /// the scheduled time (consultations)
    pub scheduled_at: Option<i64>,
}

fn case_done(state: &str) -> bool {
    matches!(state, "closed" | "signed" | "arrived")
}

fn case_cancelled(state: &str) -> bool {
    matches!(state, "cancelled" | "rejected" | "refused")
}

/// The case's ServiceRequest (id `c{id}` or `r{id}`).
pub fn case_request(c: &CaseRow) -> Value {
    let what = if c.prefix == "c" {
        "远程会诊 consultation"
    } else {
        "转诊 referral"
    };
    json!({
        "resourceType": "ServiceRequest",
        "id": format!("{}{}", c.prefix, c.id),
        "meta": { "lastUpdated": datetime(c.updated_at) },
        "status": if case_cancelled(&c.state) { "revoked" } else if case_done(&c.state) { "completed" } else if c.state == "draft" { "draft" } else { "active" },
        "intent": "order",
        "category": [{ "text": if c.prefix == "c" { "consultation" } else { "referral" } }],
        "code": { "text": what },
        "subject": patient_ref(c.patient),
        "authoredOn": datetime(c.created_at),
        "requester": { "reference": format!("Organization/{}", c.institution) },
        "reasonCode": [{ "text": if c.reason.is_empty() { what } else { &c.reason } }],
    })
}

/// The case's Task (same id), focused on its ServiceRequest.
pub fn case_task(c: &CaseRow) -> Value {
    let status = match c.state.as_str() {
        "draft" => "draft",
        "submitted" => "requested",
        "qc_passed" | "assigned" => "ready",
        "accepted" | "scheduled" => "accepted",
        "in_progress" | "report_drafted" => "in-progress",
        s if case_done(s) => "completed",
        "rejected" | "refused" => "rejected",
        _ => "cancelled",
    };
    json!({
        "resourceType": "Task",
        "id": format!("{}{}", c.prefix, c.id),
        "meta": { "lastUpdated": datetime(c.updated_at) },
        "status": status,
        "businessStatus": { "text": c.state },
        "intent": "order",
        "focus": { "reference": format!("ServiceRequest/{}{}", c.prefix, c.id) },
        "for": patient_ref(c.patient),
        "authoredOn": datetime(c.created_at),
        "lastModified": datetime(c.updated_at),
        "requester": { "reference": format!("Organization/{}", c.institution) },
    })
}

/// A scheduled consultation as an Appointment (id = the consultation's).
pub fn appointment(c: &CaseRow, at: i64) -> Value {
    let status = if case_cancelled(&c.state) {
        "cancelled"
    } else if case_done(&c.state) {
        "fulfilled"
    } else {
        "booked"
    };
    json!({
        "resourceType": "Appointment",
        "id": c.id.to_string(),
        "meta": { "lastUpdated": datetime(c.updated_at) },
        "status": status,
        "description": "远程会诊 consultation",
        "start": datetime(at),
        "basedOn": [{ "reference": format!("ServiceRequest/c{}", c.id) }],
        "participant": [{ "actor": patient_ref(c.patient), "status": "accepted" }],
    })
}

/// A lab result row.
#[derive(Debug, Clone, Default)]
pub struct LabRow {
    /// id
    pub id: i64,
    /// patient
    pub patient: i64,
    /// order
    pub order: Option<i64>,
    /// analyte
    pub code: String,
    /// analyte
    pub name: String,
    /// analyte
    pub system: String,
    /// as sent
    pub value: String,
    /// as a number
    pub numeric: Option<f64>,
    /// unit
    pub unit: String,
    /// range
    pub range: String,
    /// range
    pub low: Option<f64>,
    /// range
    pub high: Option<f64>,
    /// H, L... (already resolved against the range)
    pub abnormal: String,
    /// F, C, P, X
    pub status: String,
    /// specimen
    pub specimen: String,
    /// when
    pub observed_at: Option<i64>,
    /// provenance
    pub source: String,
    /// provenance
    pub reference: String,
    /// provenance
    pub received_at: i64,
}

fn status(v2: &str) -> &'static str {
    match v2 {
        "C" => "corrected",
        "P" | "I" | "R" | "S" => "preliminary",
        "X" | "D" | "W" => "cancelled",
        _ => "final",
    }
}

/// Observation.
pub fn observation(l: &LabRow) -> Value {
    let mut r = json!({
        "resourceType": "Observation",
        "id": l.id.to_string(),
        "meta": meta(l.received_at, &l.source, &l.reference),
        "status": status(&l.status),
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory", "display": "Laboratory" }] }],
        "code": concept(&l.system, &l.code, &l.name),
        "subject": patient_ref(l.patient),
    });
    if let Some(o) = l.order {
        r["basedOn"] = json!([{ "reference": format!("ServiceRequest/o{o}") }]);
    }
    if let Some(t) = l.observed_at {
        r["effectiveDateTime"] = json!(datetime(t));
    }
    match l.numeric {
        Some(v) if !l.value.starts_with(['<', '>']) => {
            let mut q = json!({ "value": v });
            if !l.unit.is_empty() {
                q["unit"] = json!(l.unit);
            }
            r["valueQuantity"] = q;
        }
        _ if !l.value.is_empty() => r["valueString"] = json!(l.value),
        _ => r["dataAbsentReason"] = json!({ "text": "no value sent" }),
    }
    if !l.abnormal.is_empty() {
        r["interpretation"] = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": l.abnormal }] }]);
    }
    if l.low.is_some() || l.high.is_some() || !l.range.is_empty() {
        let mut range = json!({});
        let q = |v: f64| {
            let mut q = json!({ "value": v });
            if !l.unit.is_empty() {
                q["unit"] = json!(l.unit);
            }
            q
        };
        if let Some(v) = l.low {
            range["low"] = q(v);
        }
        if let Some(v) = l.high {
            range["high"] = q(v);
        }
        if !l.range.is_empty() {
            range["text"] = json!(l.range);
        }
        r["referenceRange"] = json!([range]);
    }
    if !l.specimen.is_empty() {
        r["note"] = json!([{ "text": format!("specimen: {}", l.specimen) }]);
    }
    r
}

/// An exam report row.
#[derive(Debug, Clone, Default)]
pub struct ReportRow {
    /// id
    pub id: i64,
    /// patient
    pub patient: i64,
    /// order
    pub order: Option<i64>,
    /// radiology, ultrasound, pathology, endoscopy, lab, other
    pub kind: String,
    /// what
    pub code: String,
    /// what
    pub name: String,
    /// status as sent
    pub status: String,
    /// conclusion
    pub text: String,
    /// has a PDF
    pub has_pdf: bool,
    /// when
    pub observed_at: Option<i64>,
    /// when
    pub reported_at: Option<i64>,
    /// provenance
    pub source: String,
    /// provenance
    pub reference: String,
    /// provenance
    pub received_at: i64,
}

/// DiagnosticReport; `results` are the Observation ids of the same order.
pub fn diagnostic_report(r: &ReportRow, results: &[i64]) -> Value {
    let (code, display) = match r.kind.as_str() {
        "radiology" => ("RAD", "Radiology"),
        "ultrasound" => ("RUS", "Radiology ultrasound"),
        "pathology" => ("PAT", "Pathology (gross & histopath, not surgical)"),
        "lab" => ("LAB", "Laboratory"),
        _ => ("OTH", "Other"),
    };
    let mut d = json!({
        "resourceType": "DiagnosticReport",
        "id": r.id.to_string(),
        "meta": meta(r.received_at, &r.source, &r.reference),
        "status": status(&r.status),
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": code, "display": display }], "text": r.kind }],
        "code": concept("", if r.code.is_empty() { &r.kind } else { &r.code }, &r.name),
        "subject": patient_ref(r.patient),
    });
    if let Some(o) = r.order {
        d["basedOn"] = json!([{ "reference": format!("ServiceRequest/o{o}") }]);
    }
    if let Some(t) = r.observed_at {
        d["effectiveDateTime"] = json!(datetime(t));
    }
    if let Some(t) = r.reported_at {
        d["issued"] = json!(datetime(t));
    }
    if !r.text.is_empty() {
        d["conclusion"] = json!(r.text);
    }
    if r.has_pdf {
        d["presentedForm"] = json!([{
            "contentType": "application/pdf",
            "url": format!("/api/v1/patients/{}/exam-reports/{}/pdf", r.patient, r.id),
            "title": r.name,
        }]);
    }
    if !results.is_empty() {
        d["result"] = json!(
            results
                .iter()
                .map(|i| json!({ "reference": format!("Observation/{i}") }))
                .collect::<Vec<_>>()
        );
    }
    d
}

/// A document row.
#[derive(Debug, Clone, Default)]
pub struct DocumentRow {
    /// id
    pub id: i64,
    /// patient
    pub patient: i64,
    /// admission, progress, discharge, other
    pub kind: String,
    /// TXA-12
    pub number: String,
    /// title
    pub title: String,
    /// TXA-17
    pub status: String,
    /// MIME type
    pub mime: String,
    /// when
    pub time: Option<i64>,
    /// provenance
    pub source: String,
    /// provenance
    pub reference: String,
    /// provenance
    pub received_at: i64,
}

/// DocumentReference.
pub fn document_reference(d: &DocumentRow) -> Value {
    let (loinc, display) = match d.kind.as_str() {
        "admission" => ("34117-2", "History and physical note"),
        "progress" => ("11506-3", "Progress note"),
        "discharge" => ("18842-5", "Discharge summary"),
        _ => ("34133-9", "Summary of episode note"),
    };
    let mut r = json!({
        "resourceType": "DocumentReference",
        "id": d.id.to_string(),
        "meta": meta(d.received_at, &d.source, &d.reference),
        "masterIdentifier": { "value": d.number },
        "status": "current",
        "docStatus": match d.status.as_str() { "IP" | "DI" | "IN" => "preliminary", _ => "final" },
        "type": { "coding": [{ "system": "http://loinc.org", "code": loinc, "display": display }], "text": d.title },
        "subject": patient_ref(d.patient),
        "description": d.title,
        "content": [{ "attachment": {
            "contentType": d.mime,
            "url": format!("/api/v1/patients/{}/documents/{}", d.patient, d.id),
            "title": d.title,
        } }],
    });
    if let Some(t) = d.time {
        r["date"] = json!(datetime(t));
    }
    r
}

/// A diagnosis row.
#[derive(Debug, Clone, Default)]
pub struct DiagnosisRow {
    /// id
    pub id: i64,
    /// patient
    pub patient: i64,
    /// ICD-10 code
    pub code: String,
    /// its name
    pub name: String,
    /// coding system as sent (I10)
    pub system: String,
    /// A admitting, W working, F final
    pub kind: String,
    /// when
    pub time: Option<i64>,
    /// provenance
    pub source: String,
    /// provenance
    pub reference: String,
    /// provenance
    pub received_at: i64,
}

/// Condition (a diagnosis): admitting and working ones provisional, final ones confirmed.
pub fn condition(d: &DiagnosisRow) -> Value {
    let verification = match d.kind.as_str() {
        "A" | "W" => "provisional",
        _ => "confirmed",
    };
    let system = if d.system.is_empty() {
        "I10"
    } else {
        &d.system
    };
    let mut r = json!({
        "resourceType": "Condition",
        "id": d.id.to_string(),
        "meta": meta(d.received_at, &d.source, &d.reference),
        "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification }] },
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis" }] }],
        "code": concept(system, &d.code, &d.name),
        "subject": patient_ref(d.patient),
    });
    if let Some(t) = d.time {
        r["recordedDate"] = json!(datetime(t));
    }
    r
}

/// ImagingStudy from imaging's index (`study` as `/api/v1/patients/{id}/studies` lists it).
pub fn imaging_study(patient: i64, study: &Value) -> Value {
    let uid = study["uid"].as_str().unwrap_or_default();
    let mut r = json!({
        "resourceType": "ImagingStudy",
        "id": uid.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-', "-").chars().take(64).collect::<String>(),
        "identifier": [{ "system": "urn:dicom:uid", "value": format!("urn:oid:{uid}") }],
        "status": "available",
        "subject": patient_ref(patient),
        "numberOfSeries": study["series"],
        "numberOfInstances": study["instances"],
    });
    if let Some(d) = study["description"].as_str().filter(|d| !d.is_empty()) {
        r["description"] = json!(d);
    }
    let date = study["date"].as_str().unwrap_or_default();
    if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) {
        r["started"] = json!(format!(
            "{}-{}-{}T00:00:00+08:00",
            &date[..4],
            &date[4..6],
            &date[6..8]
        ));
    }
    let modalities: Vec<Value> = study["modalities"]
        .as_str()
        .unwrap_or_default()
        .split(['\\', ',', ' '])
        .filter(|m| !m.is_empty())
        .map(|m| json!({ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": m }))
        .collect();
    if !modalities.is_empty() {
        r["modality"] = json!(modalities);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_at_beijing_offset() {
        assert_eq!(datetime(1_772_323_200_000), "2026-03-01T08:00:00+08:00");
        assert_eq!(system("LN").as_deref(), Some("http://loinc.org"));
        assert_eq!(
            system("99zdc").as_deref(),
            Some("urn:appliance:hl7v2-coding-system:99ZDC")
        );
        assert_eq!(
            meta(0, "HIS^CITY01", "A 1")["source"],
            "urn:appliance:source:HIS%5ECITY01#A%201"
        );
    }
}
