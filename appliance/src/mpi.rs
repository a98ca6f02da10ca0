//! The master patient index as the feeds use it: the patient a PID names in an institution
//! (record number, then identity card; one master record per person; a record number tied to
//! another card refused, never a second person), demographics kept current, and merges (A40)
//! that move every row to the survivor and record what moved.

use hl7v2::content::{Ids, Person};
use hl7v2::message::{ErrorCode, Hl7Error};
use serde_json::json;
use sqlx::{Sqlite, Transaction};

use crate::accounts::now_ms;
use crate::gm::Sealer;
use crate::ingest::{Ctx, Fail};

/// The patient a PID names in `institution`: by record number, else by identity card
/// (one master record per person), else a new patient. A record number already tied to
/// another identity card is refused, never stored as a second person.
/// What a message may change of a patient it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    /// Nothing (results, orders, documents).
    None,
    /// Name, sex and phone (a registration or visit, a FHIR Patient).
    Demographics,
    /// Those and the birth date too (A08, A31: the source corrects its record).
    Correct,
}

/// What [`match_patient`] reads first, in one statement: the master patient of the identity
/// card, the patient of the record number within the institution (its master and birth date),
/// and the identity card of that patient's master. Binds: [`lookup`]'s card index, the
/// institution, its record number.
pub(crate) const LOOKUP: &str = "SELECT (SELECT id FROM master_patients WHERE id_number_index = ?), \
     p.id, p.master_id, p.birth_date, m.id_number_index FROM (SELECT 1) \
     LEFT JOIN patients p ON p.id = (SELECT id FROM patients WHERE institution_id = ? \
     AND record_number = ? AND merged_into IS NULL ORDER BY id LIMIT 1) \
     LEFT JOIN master_patients m ON m.id = p.master_id";

/// The row [`LOOKUP`] reads.
pub(crate) type Found = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// The card's index and the record number [`LOOKUP`] looks for; None when the person has
/// neither (nothing to look up).
pub(crate) fn lookup(sealer: &Sealer, person: &Person) -> Option<(Option<String>, Option<String>)> {
    let index = person
        .ids
        .id_card
        .as_deref()
        .map(|c| sealer.index("id_number", c));
    (index.is_some() || person.ids.record_number.is_some())
        .then(|| (index, person.ids.record_number.clone()))
}

/// Finds (or registers) the person's patient in `institution`. `found` is [`LOOKUP`]'s row
/// when the caller has read it already (the intake reads it with the message row).
pub(crate) async fn match_patient(
    sealer: &Sealer,
    tx: &mut Transaction<'_, Sqlite>,
    (institution, found): (i64, Option<Found>),
    person: &Person,
    update: Update,
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
    let index = card.map(|c| sealer.index("id_number", c));
    let record = &person.ids.record_number;
    let looked: Found = match found {
        Some(f) => f,
        None if index.is_some() || record.is_some() => {
            sqlx::query_as(LOOKUP)
                .bind(&index)
                .bind(institution)
                .bind(record)
                .fetch_one(&mut **tx)
                .await?
        }
        None => (None, None, None, None, None),
    };
    let (master_of_card, record_patient, record_master, record_birth, master_index) = looked;
    let birth_of_record = record_patient.map(|id| (id, record_birth.unwrap_or_default()));
    let found = match (record_patient.map(|id| (id, record_master)), card) {
        (Some((id, _)), Some(c)) => {
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
                    let m = master_of(sealer, tx, c, master_of_card).await?;
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
        // A different birth date under the same identifiers is another person (or a typing
        // error the source must correct explicitly): refused, never merged silently.
        if let Some(birth) = &person.birth_date {
            let known: String = match &birth_of_record {
                Some((of, known)) if *of == id => known.clone(),
                _ => {
                    sqlx::query_scalar("SELECT birth_date FROM patients WHERE id = ?")
                        .bind(id)
                        .fetch_one(&mut **tx)
                        .await?
                }
            };
            if known != *birth && update != Update::Correct {
                return Err(Fail::Refused(Hl7Error::at(
                    ErrorCode::DuplicateKey,
                    "PID",
                    1,
                    7,
                    format!(
                        "the patient with these identifiers was born on {known}, not {birth}: correct it with an update (A08/A31), or send the right identifiers"
                    ),
                )));
            }
        }
        if update != Update::None {
            update_demographics(sealer, tx, id, person).await?;
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
        Some(c) => master_of(sealer, tx, c, master_of_card).await?,
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
    .bind(sealer.seal("phone", &person.phone))
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

async fn master_of(
    sealer: &Sealer,
    tx: &mut Transaction<'_, Sqlite>,
    card: &str,
    known: Option<i64>,
) -> Result<i64, Fail> {
    if let Some(m) = known {
        return Ok(m);
    }
    Ok(
        sqlx::query("INSERT INTO master_patients (id_number, id_number_index) VALUES (?, ?)")
            .bind(sealer.seal("id_number", card))
            .bind(sealer.index("id_number", card))
            .execute(&mut **tx)
            .await?
            .last_insert_rowid(),
    )
}

async fn update_demographics(
    sealer: &Sealer,
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
            .bind(sealer.seal("phone", &person.phone))
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
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

/// The tables whose rows follow a patient when merged (a row whose unique key the survivor
/// already has stays with the merged patient, which keeps pointing at the survivor).
const MOVED: [&str; 10] = [
    "encounters",
    "orders",
    "lab_results",
    "exam_reports",
    "clinical_documents",
    "diagnoses",
    "consultations",
    "referrals",
    "hl7_messages",
    "study_links",
];

/// A40: moves everything of the prior patient (found by MRG-1 in the institution) to
/// `survivor`, marks the prior merged, and records what moved; returns the audit target.
pub(crate) async fn merge(
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

fn mask(card: &str) -> String {
    let masked = crate::patients::mask_id_number(card);
    if masked.is_empty() {
        "(invalid)".into()
    } else {
        masked
    }
}
