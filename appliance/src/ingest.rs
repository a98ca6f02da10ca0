//! The clinical record's intake from HL7 v2: one message in, its acknowledgement out. Checks
//! the source against `integration.hl7_sources`, matches the patient into the master patient
//! index (record number within the institution, then identity card), writes encounters,
//! orders, lab results, exam reports, documents, diagnoses and merges in one transaction with
//! the message itself, and only then answers AA. A control id seen before is acknowledged and
//! not stored again.

use std::net::IpAddr;

use firmware_config::Hl7Source;
use hl7v2::ack::{AckCode, Echo, acknowledge};
use hl7v2::content::{Content, Ids, Parsed, Person, parse_content};
use hl7v2::message::{ErrorCode, Hl7Error, Message};
use serde_json::json;
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::gm::Sealer;

/// China Standard Time, for HL7 times sent without an offset.
pub const OFFSET_MINUTES: i32 = 480;

/// What takes messages in.
#[derive(Debug, Clone)]
pub struct Intake {
    /// The database.
    pub pool: SqlitePool,
    /// Seals identity card and phone numbers and the kept message.
    pub sealer: Sealer,
    /// The allowed senders.
    pub sources: Vec<Hl7Source>,
}

/// How a message ended, for the acknowledgement and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (AA).
    Stored {
        /// The patient it was about.
        patient: i64,
    },
    /// Seen before: acknowledged, not stored again (AA).
    Duplicate,
    /// Refused (AE or AR), nothing stored.
    Refused(AckCode, Hl7Error),
}

impl Outcome {
    /// AA, AE or AR.
    pub fn code(&self) -> AckCode {
        match self {
            Self::Stored { .. } | Self::Duplicate => AckCode::Accept,
            Self::Refused(c, _) => *c,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn refuse(e: Hl7Error) -> Outcome {
    let code = if e.rejects() {
        AckCode::Reject
    } else {
        AckCode::Error
    };
    Outcome::Refused(code, e)
}

fn app_error(e: impl std::fmt::Display) -> Hl7Error {
    tracing::error!(error = %e, "an HL7 message could not be stored");
    Hl7Error::whole(
        ErrorCode::Application,
        "the message could not be stored; send it again later",
    )
}

impl Intake {
    /// Takes one message (not a batch); returns the acknowledgement's bytes and the outcome.
    pub async fn take(&self, bytes: &[u8], peer: IpAddr, ack_id: &str) -> (Vec<u8>, Outcome) {
        let (echo, outcome) = match Message::parse(bytes) {
            Err(e) => (Echo::of_raw(bytes), refuse(e)),
            Ok(m) => {
                let echo = Echo::of(&m);
                let outcome = self.take_message(&m, bytes, peer).await;
                (echo, outcome)
            }
        };
        let (code, error) = match &outcome {
            Outcome::Refused(c, e) => (*c, Some(e)),
            other => (other.code(), None),
        };
        let text = match outcome {
            Outcome::Duplicate => "duplicate: stored before",
            _ => "",
        };
        let ack = acknowledge(&echo, code, error, text, ack_id, now_ms(), OFFSET_MINUTES);
        (ack, outcome)
    }

    async fn take_message(&self, m: &Message, bytes: &[u8], peer: IpAddr) -> Outcome {
        let header = match hl7v2::content::Header::read(m, OFFSET_MINUTES) {
            Ok(h) => h,
            Err(e) => return refuse(e),
        };
        let Some(source) = self
            .sources
            .iter()
            .find(|s| s.admits(&header.sending_application, &header.sending_facility, peer))
        else {
            return Outcome::Refused(
                AckCode::Reject,
                Hl7Error::at(
                    ErrorCode::Application,
                    "MSH",
                    1,
                    4,
                    format!(
                        "no integration.hl7_sources entry admits {}^{} from {peer}",
                        header.sending_application, header.sending_facility
                    ),
                ),
            );
        };
        let name = format!("{}^{}", header.sending_application, header.sending_facility);
        match sqlx::query_scalar::<_, i64>(
            "SELECT id FROM hl7_messages WHERE source = ? AND control_id = ?",
        )
        .bind(&name)
        .bind(&header.control_id)
        .fetch_optional(&self.pool)
        .await
        {
            Ok(Some(_)) => return Outcome::Duplicate,
            Ok(None) => {}
            Err(e) => return Outcome::Refused(AckCode::Error, app_error(e)),
        }
        let parsed = match parse_content(m, OFFSET_MINUTES) {
            Ok(p) => p,
            Err(e) => return refuse(e),
        };
        match self.store(&parsed, source, &name, bytes).await {
            Ok(Stored::New(patient, events)) => {
                for (action, target) in events {
                    let record = crate::audit::Record {
                        user_id: None,
                        login: format!("hl7:{name}"),
                        role: "integration".into(),
                        institution: None,
                        action,
                        target,
                        source: peer.to_string(),
                        result: "ok".into(),
                    };
                    if let Err(e) = crate::audit::append(&self.pool, &record).await {
                        tracing::error!(error = %e, "the audit trail could not be written");
                    }
                }
                Outcome::Stored { patient }
            }
            Ok(Stored::Duplicate) => Outcome::Duplicate,
            Err(Fail::Refused(e)) => refuse(e),
            Err(Fail::Db(e)) => Outcome::Refused(AckCode::Error, app_error(e)),
        }
    }

    async fn store(
        &self,
        p: &Parsed,
        source: &Hl7Source,
        name: &str,
        bytes: &[u8],
    ) -> Result<Stored, Fail> {
        let mut tx = self.pool.begin().await?;
        let institution: i64 =
            sqlx::query_scalar("SELECT id FROM institutions WHERE name = ?")
                .bind(&source.institution)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    Fail::Refused(Hl7Error::at(
                        ErrorCode::Application,
                        "MSH",
                        1,
                        4,
                        format!(
                            "the institution \"{}\" that integration.hl7_sources names for {name} is not registered",
                            source.institution
                        ),
                    ))
                })?;
        let now = now_ms();
        let at = Ctx {
            source: name,
            reference: &p.header.control_id,
            now,
        };
        let mut events = Vec::new();
        let adt = p.header.kind == "ADT";
        let patient = self
            .match_patient(&mut tx, institution, &p.person, adt, &mut events)
            .await?;
        if let Some(v) = &p.visit {
            let discharged = v
                .discharged_at
                .or(p.discharge.then(|| p.header.time.unwrap_or(now)));
            sqlx::query(
                "INSERT INTO encounters (patient_id, visit_number, class, location, department, \
                 attending, admitted_at, discharged_at, source, source_ref, received_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (patient_id, source, visit_number) DO UPDATE SET \
                 class = CASE WHEN excluded.class = '' THEN class ELSE excluded.class END, \
                 location = CASE WHEN excluded.location = '' THEN location ELSE excluded.location END, \
                 department = CASE WHEN excluded.department = '' THEN department ELSE excluded.department END, \
                 attending = CASE WHEN excluded.attending = '' THEN attending ELSE excluded.attending END, \
                 admitted_at = COALESCE(excluded.admitted_at, admitted_at), \
                 discharged_at = COALESCE(excluded.discharged_at, discharged_at), \
                 source_ref = excluded.source_ref, received_at = excluded.received_at",
            )
            .bind(patient)
            .bind(&v.number)
            .bind(&v.class)
            .bind(&v.location)
            .bind(&v.department)
            .bind(&v.attending)
            .bind(v.admitted_at)
            .bind(discharged)
            .bind(at.source)
            .bind(at.reference)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for d in &p.diagnoses {
            sqlx::query(
                "INSERT INTO diagnoses (patient_id, code, name, system, kind, time, source, \
                 source_ref, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (patient_id, code, kind, source) DO UPDATE SET name = excluded.name, \
                 time = COALESCE(excluded.time, time), source_ref = excluded.source_ref, \
                 received_at = excluded.received_at",
            )
            .bind(patient)
            .bind(&d.item.code)
            .bind(&d.item.text)
            .bind(&d.item.system)
            .bind(&d.kind)
            .bind(d.time)
            .bind(at.source)
            .bind(at.reference)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        match &p.content {
            Content::Person => {}
            Content::Merge { prior } => {
                let moved = merge(&mut tx, institution, patient, prior, &at, &self.sealer).await?;
                events.push(("merge".to_owned(), moved));
            }
            Content::Orders(orders) => {
                for o in orders {
                    upsert_order(&mut tx, patient, o, &at).await?;
                }
            }
            Content::Results(groups) => {
                for g in groups {
                    let order = upsert_order(&mut tx, patient, &g.order, &at).await?;
                    // A corrected result replaces what the order had.
                    sqlx::query("DELETE FROM lab_results WHERE order_id = ?")
                        .bind(order)
                        .execute(&mut *tx)
                        .await?;
                    for r in &g.results {
                        sqlx::query(
                            "INSERT INTO lab_results (patient_id, order_id, code, name, system, \
                             value_type, value, numeric, unit, range_text, low, high, flag, \
                             status, specimen, observed_at, source, source_ref, received_at) \
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        )
                        .bind(patient)
                        .bind(order)
                        .bind(&r.item.code)
                        .bind(&r.item.text)
                        .bind(&r.item.system)
                        .bind(&r.value_type)
                        .bind(&r.value)
                        .bind(r.numeric)
                        .bind(&r.unit)
                        .bind(&r.range)
                        .bind(r.low)
                        .bind(r.high)
                        .bind(&r.flag)
                        .bind(&r.status)
                        .bind(&r.specimen)
                        .bind(r.observed_at)
                        .bind(at.source)
                        .bind(at.reference)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if let Some(r) = &g.report {
                        sqlx::query("DELETE FROM exam_reports WHERE order_id = ?")
                            .bind(order)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(
                            "INSERT INTO exam_reports (patient_id, order_id, kind, code, name, \
                             status, text, pdf, observed_at, reported_at, source, source_ref, \
                             received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        )
                        .bind(patient)
                        .bind(order)
                        .bind(r.kind)
                        .bind(&r.item.code)
                        .bind(&r.item.text)
                        .bind(&r.status)
                        .bind(&r.text)
                        .bind(r.pdf.as_deref())
                        .bind(r.observed_at)
                        .bind(r.reported_at)
                        .bind(at.source)
                        .bind(at.reference)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            Content::Document(d) => {
                sqlx::query(
                    "INSERT INTO clinical_documents (patient_id, kind, number, title, status, \
                     mime, content, time, source, source_ref, received_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (patient_id, source, number) DO UPDATE SET kind = excluded.kind, \
                     title = excluded.title, status = excluded.status, mime = excluded.mime, \
                     content = excluded.content, time = excluded.time, \
                     source_ref = excluded.source_ref, received_at = excluded.received_at",
                )
                .bind(patient)
                .bind(d.kind)
                .bind(&d.number)
                .bind(&d.title)
                .bind(&d.status)
                .bind(d.mime)
                .bind(&d.content)
                .bind(d.time)
                .bind(at.source)
                .bind(at.reference)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        let kept = self
            .sealer
            .seal("hl7_message", &String::from_utf8_lossy(bytes));
        let inserted = sqlx::query(
            "INSERT INTO hl7_messages (source, control_id, kind, patient_id, received_at, raw) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, control_id) DO NOTHING",
        )
        .bind(at.source)
        .bind(at.reference)
        .bind(format!("{}^{}", p.header.kind, p.header.event))
        .bind(patient)
        .bind(now)
        .bind(kept)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // The same message on another connection won the race: store nothing twice.
            tx.rollback().await?;
            return Ok(Stored::Duplicate);
        }
        tx.commit().await?;
        Ok(Stored::New(patient, events))
    }

    /// The patient a PID names in `institution`: by record number, else by identity card
    /// (one master record per person), else a new patient. A record number already tied to
    /// another identity card is refused, never stored as a second person.
    async fn match_patient(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        institution: i64,
        person: &Person,
        update: bool,
        events: &mut Vec<(String, String)>,
    ) -> Result<i64, Fail> {
        let pid3 =
            |text: String| Fail::Refused(Hl7Error::at(ErrorCode::DuplicateKey, "PID", 1, 3, text));
        let card = match &person.ids.id_card {
            Some(c) if !crate::consult::valid_id_number(c) => {
                return Err(Fail::Refused(Hl7Error::at(
                    ErrorCode::DataType,
                    "PID",
                    1,
                    3,
                    format!(
                        "\"{}\" is not a valid 18-character identity card number",
                        mask(c)
                    ),
                )));
            }
            Some(c) => {
                if let Some(b) = &person.birth_date
                    && c[6..14] != b.replace('-', "")
                {
                    return Err(Fail::Refused(Hl7Error::at(
                        ErrorCode::DataType,
                        "PID",
                        1,
                        7,
                        "the birth date is not the one in the identity card number",
                    )));
                }
                Some(c.as_str())
            }
            None => None,
        };
        let index = card.map(|c| self.sealer.index("id_number", c));
        let master_of_card: Option<i64> = match &index {
            Some(i) => {
                sqlx::query_scalar("SELECT id FROM master_patients WHERE id_number_index = ?")
                    .bind(i)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            None => None,
        };
        let by_record: Option<(i64, Option<i64>)> = match &person.ids.record_number {
            Some(r) => {
                sqlx::query_as(
                    "SELECT id, master_id FROM patients WHERE institution_id = ? AND \
                     record_number = ? AND merged_into IS NULL ORDER BY id LIMIT 1",
                )
                .bind(institution)
                .bind(r)
                .fetch_optional(&mut **tx)
                .await?
            }
            None => None,
        };
        let found = match (by_record, card) {
            (Some((id, master)), Some(c)) => {
                let master_index: Option<String> = match master {
                    Some(m) => sqlx::query_scalar(
                        "SELECT id_number_index FROM master_patients WHERE id = ?",
                    )
                    .bind(m)
                    .fetch_optional(&mut **tx)
                    .await?
                    .flatten(),
                    None => None,
                };
                match master_index {
                    Some(i) if Some(&i) != index.as_ref() => {
                        return Err(pid3(format!(
                            "record number {} is registered with another identity card number than {}",
                            person.ids.record_number.as_deref().unwrap_or_default(),
                            mask(c)
                        )));
                    }
                    Some(_) => {}
                    None => {
                        // The patient had no identity card on record: link it now.
                        let m = self.master(tx, c, master_of_card).await?;
                        sqlx::query("UPDATE patients SET master_id = ? WHERE id = ?")
                            .bind(m)
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                Some(id)
            }
            (Some((id, _)), None) => Some(id),
            (None, card) => match (master_of_card, card) {
                (Some(m), Some(_)) => {
                    let existing: Option<(i64, String)> = sqlx::query_as(
                        "SELECT id, record_number FROM patients WHERE master_id = ? AND \
                         institution_id = ? AND merged_into IS NULL ORDER BY id LIMIT 1",
                    )
                    .bind(m)
                    .bind(institution)
                    .fetch_optional(&mut **tx)
                    .await?;
                    match (existing, &person.ids.record_number) {
                        (Some((id, old)), Some(new)) if old.is_empty() => {
                            sqlx::query("UPDATE patients SET record_number = ? WHERE id = ?")
                                .bind(new)
                                .bind(id)
                                .execute(&mut **tx)
                                .await?;
                            Some(id)
                        }
                        (Some((_, old)), Some(new)) if old != *new => {
                            return Err(pid3(format!(
                                "this identity card number is registered here with record number {old}, not {new}"
                            )));
                        }
                        (Some((id, _)), _) => Some(id),
                        (None, _) => None,
                    }
                }
                _ => None,
            },
        };
        if let Some(id) = found {
            if update {
                self.update_demographics(tx, id, person).await?;
            }
            return Ok(id);
        }
        // A new patient of this institution.
        if person.name.is_empty() {
            return Err(Fail::Refused(Hl7Error::at(
                ErrorCode::RequiredMissing,
                "PID",
                1,
                5,
                "the patient is not known here, and a new patient needs a name",
            )));
        }
        let Some(birth) = &person.birth_date else {
            return Err(Fail::Refused(Hl7Error::at(
                ErrorCode::RequiredMissing,
                "PID",
                1,
                7,
                "the patient is not known here, and a new patient needs a birth date",
            )));
        };
        let master = match card {
            Some(c) => self.master(tx, c, master_of_card).await?,
            None => sqlx::query("INSERT INTO master_patients (id_number) VALUES (NULL)")
                .execute(&mut **tx)
                .await?
                .last_insert_rowid(),
        };
        let creator = interface_user(tx, institution).await?;
        let id = sqlx::query(
            "INSERT INTO patients (institution_id, name, sex, birth_date, phone, created_by, \
             created_at, master_id, record_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(institution)
        .bind(&person.name)
        .bind(&person.sex)
        .bind(birth)
        .bind(self.sealer.seal("phone", &person.phone))
        .bind(creator)
        .bind(now_ms())
        .bind(master)
        .bind(person.ids.record_number.as_deref().unwrap_or_default())
        .execute(&mut **tx)
        .await?
        .last_insert_rowid();
        events.push(("create".to_owned(), format!("patient:{id}")));
        Ok(id)
    }

    async fn master(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        card: &str,
        known: Option<i64>,
    ) -> Result<i64, Fail> {
        if let Some(m) = known {
            return Ok(m);
        }
        Ok(
            sqlx::query("INSERT INTO master_patients (id_number, id_number_index) VALUES (?, ?)")
                .bind(self.sealer.seal("id_number", card))
                .bind(self.sealer.index("id_number", card))
                .execute(&mut **tx)
                .await?
                .last_insert_rowid(),
        )
    }

    async fn update_demographics(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        id: i64,
        person: &Person,
    ) -> Result<(), Fail> {
        sqlx::query(
            "UPDATE patients SET \
             name = CASE WHEN ? = '' THEN name ELSE ? END, \
             sex = CASE WHEN ? = 'U' THEN sex ELSE ? END, \
             birth_date = COALESCE(?, birth_date) WHERE id = ?",
        )
        .bind(&person.name)
        .bind(&person.name)
        .bind(&person.sex)
        .bind(&person.sex)
        .bind(&person.birth_date)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        if !person.phone.is_empty() && crate::accounts::valid_phone(&person.phone) {
            sqlx::query("UPDATE patients SET phone = ? WHERE id = ?")
                .bind(self.sealer.seal("phone", &person.phone))
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// Where a row came from.
struct Ctx<'a> {
    source: &'a str,
    reference: &'a str,
    now: i64,
}

enum Stored {
    New(i64, Vec<(String, String)>),
    Duplicate,
}

enum Fail {
    Refused(Hl7Error),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

fn mask(card: &str) -> String {
    let masked = crate::patients::mask_id_number(card);
    if masked.is_empty() {
        "(invalid)".into()
    } else {
        masked
    }
}

/// The inactive account that registers the patients an institution's systems send (a
/// patient's `created_by`); it cannot log in.
async fn interface_user(tx: &mut Transaction<'_, Sqlite>, institution: i64) -> Result<i64, Fail> {
    let login = format!("interface.{institution}");
    sqlx::query(
        "INSERT INTO users (login, display_name, role, institution_id, password_hash, \
         password_changed_at, must_change, active, created_at) \
         VALUES (?, 'HL7 接口 interface', 'doctor', ?, '!', 0, 0, 0, ?) \
         ON CONFLICT (login) DO NOTHING",
    )
    .bind(&login)
    .bind(institution)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(sqlx::query_scalar("SELECT id FROM users WHERE login = ?")
        .bind(&login)
        .fetch_one(&mut **tx)
        .await?)
}

async fn upsert_order(
    tx: &mut Transaction<'_, Sqlite>,
    patient: i64,
    o: &hl7v2::content::Order,
    at: &Ctx<'_>,
) -> Result<i64, Fail> {
    let status = if o.control == "CA" || o.control == "DC" {
        o.control.clone()
    } else {
        o.status.clone()
    };
    // An order is known by either number: a result may carry only the filler's.
    let existing: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM orders WHERE patient_id = ? AND source = ? AND \
         ((placer <> '' AND placer = ?) OR (filler <> '' AND filler = ?)) ORDER BY id LIMIT 1",
    )
    .bind(patient)
    .bind(at.source)
    .bind(&o.placer)
    .bind(&o.filler)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = existing {
        sqlx::query(
            "UPDATE orders SET kind = ?, \
             placer = CASE WHEN ? = '' THEN placer ELSE ? END, \
             filler = CASE WHEN ? = '' THEN filler ELSE ? END, \
             code = CASE WHEN ? = '' THEN code ELSE ? END, \
             name = CASE WHEN ? = '' THEN name ELSE ? END, \
             status = CASE WHEN ? = '' THEN status ELSE ? END, \
             ordered_at = COALESCE(ordered_at, ?), \
             provider = CASE WHEN ? = '' THEN provider ELSE ? END, \
             source_ref = ?, received_at = ? WHERE id = ?",
        )
        .bind(o.kind)
        .bind(&o.placer)
        .bind(&o.placer)
        .bind(&o.filler)
        .bind(&o.filler)
        .bind(&o.item.code)
        .bind(&o.item.code)
        .bind(&o.item.text)
        .bind(&o.item.text)
        .bind(&status)
        .bind(&status)
        .bind(o.ordered_at)
        .bind(&o.provider)
        .bind(&o.provider)
        .bind(at.reference)
        .bind(at.now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        return Ok(id);
    }
    Ok(sqlx::query(
        "INSERT INTO orders (patient_id, kind, placer, filler, code, name, system, status, \
         ordered_at, provider, source, source_ref, received_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(patient)
    .bind(o.kind)
    .bind(&o.placer)
    .bind(&o.filler)
    .bind(&o.item.code)
    .bind(&o.item.text)
    .bind(&o.item.system)
    .bind(&status)
    .bind(o.ordered_at)
    .bind(&o.provider)
    .bind(at.source)
    .bind(at.reference)
    .bind(at.now)
    .execute(&mut **tx)
    .await?
    .last_insert_rowid())
}

/// The tables whose rows follow a patient when merged (a row whose unique key the survivor
/// already has stays with the merged patient, which keeps pointing at the survivor).
const MOVED: [&str; 9] = [
    "encounters",
    "orders",
    "lab_results",
    "exam_reports",
    "clinical_documents",
    "diagnoses",
    "consultations",
    "referrals",
    "hl7_messages",
];

/// A40: moves everything of the prior patient (found by MRG-1 in the institution) to
/// `survivor`, marks the prior merged, and records what moved; returns the audit target.
async fn merge(
    tx: &mut Transaction<'_, Sqlite>,
    institution: i64,
    survivor: i64,
    prior: &Ids,
    at: &Ctx<'_>,
    sealer: &Sealer,
) -> Result<String, Fail> {
    let mut found: Option<i64> = None;
    if let Some(r) = &prior.record_number {
        found = sqlx::query_scalar(
            "SELECT id FROM patients WHERE institution_id = ? AND record_number = ? AND \
             merged_into IS NULL AND id <> ? ORDER BY id LIMIT 1",
        )
        .bind(institution)
        .bind(r)
        .bind(survivor)
        .fetch_optional(&mut **tx)
        .await?;
    }
    if let (None, Some(c)) = (found, &prior.id_card) {
        found = sqlx::query_scalar(
            "SELECT p.id FROM patients p JOIN master_patients m ON m.id = p.master_id \
             WHERE p.institution_id = ? AND m.id_number_index = ? AND p.merged_into IS NULL \
             AND p.id <> ? ORDER BY p.id LIMIT 1",
        )
        .bind(institution)
        .bind(sealer.index("id_number", c))
        .bind(survivor)
        .fetch_optional(&mut **tx)
        .await?;
    }
    let Some(merged) = found else {
        return Err(Fail::Refused(Hl7Error::at(
            ErrorCode::UnknownKey,
            "MRG",
            1,
            1,
            "no other patient of this institution has the prior identifier",
        )));
    };
    let mut moved = serde_json::Map::new();
    for table in MOVED {
        // `table` comes from the constant list above, never from input.
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE OR IGNORE {table} SET patient_id = ? WHERE patient_id = ?"
        )))
        .bind(survivor)
        .bind(merged)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        moved.insert(table.to_owned(), json!(n));
    }
    sqlx::query(
        "INSERT OR IGNORE INTO favourite_patients (user_id, patient_id) \
         SELECT user_id, ? FROM favourite_patients WHERE patient_id = ?",
    )
    .bind(survivor)
    .bind(merged)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM favourite_patients WHERE patient_id = ?")
        .bind(merged)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE patients SET merged_into = ? WHERE id = ?")
        .bind(survivor)
        .bind(merged)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO patient_merges (survivor_id, merged_id, moved, source, source_ref, at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(survivor)
    .bind(merged)
    .bind(serde_json::Value::Object(moved).to_string())
    .bind(at.source)
    .bind(at.reference)
    .bind(at.now)
    .execute(&mut **tx)
    .await?;
    Ok(format!("patient:{merged}->patient:{survivor}"))
}
