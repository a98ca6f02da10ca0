//! The clinical record's intake from HL7 v2: one message in, its acknowledgement out. Checks
//! the source against `integration.hl7_sources`, matches the patient into the master patient
//! index (record number within the institution, then identity card), writes encounters,
//! orders, lab results, exam reports, documents, diagnoses and merges in one transaction with
//! the message itself, and only then answers AA. A control id seen before is acknowledged and
//! not stored again.

use std::net::IpAddr;

use firmware_config::Hl7Source;
use hl7v2::ack::{AckCode, Echo, acknowledge};
use hl7v2::content::{Content, Parsed, parse_content};
use hl7v2::message::{ErrorCode, Hl7Error, Message};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::accounts::now_ms;
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

/// A message read and admitted, waiting for its transaction.
#[derive(Debug)]
struct Prepared {
    index: usize,
    parsed: Parsed,
    source: Hl7Source,
    name: String,
    /// The message as kept, sealed.
    kept: String,
}

/// The most messages committed in one transaction.
pub const GROUP: usize = 64;

/// Messages that arrived together, read before the database: each parsed, its sender checked
/// against `integration.hl7_sources` and its kept copy sealed, or refused. [`Intake::commit`]
/// stores the admitted ones; [`Admitted::answer`] writes the acknowledgements.
#[derive(Debug)]
pub struct Admitted {
    peer: IpAddr,
    echoes: Vec<Echo>,
    outcomes: Vec<Option<Outcome>>,
    prepared: Vec<Prepared>,
}

/// Reads messages that arrived together from `peer`; nothing touches the database.
pub fn admit(
    sealer: &Sealer,
    sources: &[Hl7Source],
    messages: &[Vec<u8>],
    peer: IpAddr,
) -> Admitted {
    let mut echoes = Vec::with_capacity(messages.len());
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(messages.len());
    let mut prepared = Vec::new();
    for (index, bytes) in messages.iter().enumerate() {
        match Message::parse(bytes) {
            Err(e) => {
                echoes.push(Echo::of_raw(bytes));
                outcomes.push(Some(refuse(e)));
            }
            Ok(m) => {
                echoes.push(Echo::of(&m));
                match prepare(sources, &m, peer) {
                    Ok((parsed, source, name)) => {
                        outcomes.push(None);
                        prepared.push(Prepared {
                            index,
                            parsed,
                            source: source.clone(),
                            name,
                            kept: sealer.seal("hl7_message", &String::from_utf8_lossy(bytes)),
                        });
                    }
                    Err(o) => outcomes.push(Some(o)),
                }
            }
        }
    }
    Admitted {
        peer,
        echoes,
        outcomes,
        prepared,
    }
}

impl Admitted {
    /// Each message's acknowledgement and outcome, in order; `ack_id` names each ACK.
    pub fn answer(self, ack_id: &mut (dyn FnMut() -> String + Send)) -> Vec<(Vec<u8>, Outcome)> {
        self.echoes
            .iter()
            .zip(self.outcomes)
            .map(|(echo, outcome)| {
                let outcome = outcome
                    .unwrap_or_else(|| Outcome::Refused(AckCode::Error, app_error("not stored")));
                let (code, error) = match &outcome {
                    Outcome::Refused(c, e) => (*c, Some(e)),
                    other => (other.code(), None),
                };
                let text = match outcome {
                    Outcome::Duplicate => "duplicate: stored before",
                    _ => "",
                };
                let ack = acknowledge(echo, code, error, text, &ack_id(), now_ms(), OFFSET_MINUTES);
                (ack, outcome)
            })
            .collect()
    }
}

/// Header, sender and content of one message, or why it is refused.
fn prepare<'s>(
    sources: &'s [Hl7Source],
    m: &Message,
    peer: IpAddr,
) -> Result<(Parsed, &'s Hl7Source, String), Outcome> {
    let header = hl7v2::content::Header::read(m, OFFSET_MINUTES).map_err(refuse)?;
    let Some(source) = sources
        .iter()
        .find(|s| s.admits(&header.sending_application, &header.sending_facility, peer))
    else {
        return Err(Outcome::Refused(
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
        ));
    };
    let name = format!("{}^{}", header.sending_application, header.sending_facility);
    let parsed = parse_content(m, OFFSET_MINUTES).map_err(refuse)?;
    Ok((parsed, source, name))
}

impl Intake {
    /// Takes messages that arrived together (pipelined, or a batch): [`admit`], [`Self::commit`]
    /// and [`Admitted::answer`] on this task. Returns each acknowledgement and outcome, in order.
    pub async fn take_all(
        &self,
        messages: &[Vec<u8>],
        peer: IpAddr,
        ack_id: &mut (dyn FnMut() -> String + Send),
    ) -> Vec<(Vec<u8>, Outcome)> {
        let mut admitted = admit(&self.sealer, &self.sources, messages, peer);
        self.commit(&mut admitted).await;
        admitted.answer(ack_id)
    }

    /// Stores the admitted messages in groups of at most [`GROUP`], one transaction each: each
    /// message in a savepoint of its own, so one refused message rolls back alone, and every
    /// AA answers a committed message.
    pub async fn commit(&self, admitted: &mut Admitted) {
        let peer = admitted.peer;
        for group in admitted.prepared.chunks(GROUP) {
            let mut events = Vec::new();
            match self.store_group(group, &mut events).await {
                Ok(results) => {
                    for (p, o) in group.iter().zip(results) {
                        admitted.outcomes[p.index] = Some(o);
                    }
                    for (name, action, target) in events {
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
                }
                Err(e) => {
                    let e = app_error(e);
                    for p in group {
                        admitted.outcomes[p.index] =
                            Some(Outcome::Refused(AckCode::Error, e.clone()));
                    }
                }
            }
        }
    }

    /// One transaction for a group; a message refused (or seen before) rolls back to its own
    /// savepoint. A database failure fails the whole group (nothing of it stored).
    async fn store_group(
        &self,
        group: &[Prepared],
        events: &mut Vec<(String, String, String)>,
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        // A write transaction from its start: one that reads first cannot take the write lock
        // once another writer (the audit trail, an API request) has committed meanwhile.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut out = Vec::with_capacity(group.len());
        // Each institution the group's sources name, looked up once.
        let mut institutions: std::collections::HashMap<&str, Option<i64>> = Default::default();
        for p in group {
            let name = p.source.institution.as_str();
            if !institutions.contains_key(name) {
                let id = sqlx::query_scalar("SELECT id FROM institutions WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                institutions.insert(name, id);
            }
        }
        // Written once for the whole group, after every message's own savepoint: the lab
        // values of the messages stored, and which patient each message was about.
        let mut values: Vec<Deferred> = Vec::new();
        let mut about: Vec<(i64, i64)> = Vec::new();
        for (n, p) in group.iter().enumerate() {
            // A merge moves rows: the values waiting to be written go in before it.
            if matches!(p.parsed.content, Content::Merge { .. }) {
                insert_values(&mut tx, &mut values, &[]).await?;
            }
            // Each message in a savepoint of its own (`m0`, `m1`...), opened by the statement
            // that stores the message row and never released: the commit ends them all, and
            // a message refused rolls back to its own. Two round trips fewer per message.
            let savepoint = format!("m{n}");
            let mut mine = Vec::new();
            let mut pending = Deferred::default();
            let source = &p.source;
            let institution = institutions
                .get(source.institution.as_str())
                .copied()
                .flatten();
            let stored = self
                .store(
                    &mut tx,
                    &p.parsed,
                    (source, institution),
                    &p.name,
                    (&p.kept, &savepoint),
                    (&mut mine, &mut pending),
                )
                .await;
            if !matches!(stored, Ok(Some(_)) | Err(Fail::Db(_))) {
                sqlx::query(sqlx::AssertSqlSafe(format!("ROLLBACK TO {savepoint}")))
                    .execute(&mut *tx)
                    .await?;
            }
            match stored {
                Ok(Some(patient)) => {
                    events.extend(mine.into_iter().map(|(a, t)| (p.name.clone(), a, t)));
                    about.push((pending.message, patient));
                    values.push(pending);
                    out.push(Outcome::Stored { patient });
                }
                Ok(None) => out.push(Outcome::Duplicate),
                Err(Fail::Refused(e)) => out.push(refuse(e)),
                Err(Fail::Db(e)) => return Err(e),
            }
        }
        insert_values(&mut tx, &mut values, &about).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Stores one message in `tx`: the message row first (a control id seen before answers
    /// None, to be rolled back), then its content. Returns the patient.
    async fn store<'p>(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        p: &'p Parsed,
        (source, institution): (&Hl7Source, Option<i64>),
        name: &str,
        (kept, savepoint): (&str, &str),
        (events, deferred): (&mut Vec<(String, String)>, &mut Deferred<'p>),
    ) -> Result<Option<i64>, Fail> {
        let now = now_ms();
        // The savepoint's name is `m` and a number (see `store_group`), never input. The new
        // row's id comes back only when it was inserted: the change counts of a statement list
        // are not to be trusted (a SAVEPOINT reports the previous statement's). The patient
        // lookup goes in the same round trip (wasted only on a control id seen before).
        let lookup = crate::mpi::lookup(&self.sealer, &p.person);
        let mut sql = format!(
            "SAVEPOINT {savepoint}; INSERT INTO hl7_messages (source, control_id, kind, \
             patient_id, received_at, raw) VALUES (?, ?, ?, NULL, ?, ?) \
             ON CONFLICT (source, control_id) DO NOTHING RETURNING id"
        );
        if lookup.is_some() {
            sql.push_str("; ");
            sql.push_str(crate::mpi::LOOKUP);
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(&p.header.control_id)
            .bind(format!("{}^{}", p.header.kind, p.header.event))
            .bind(now)
            .bind(kept);
        if let Some((index, record)) = lookup {
            query = query.bind(index).bind(institution).bind(record);
        }
        let rows = query.fetch_all(&mut **tx).await?;
        // The message row's id has one column, the lookup's row five.
        let message: Option<i64> = match rows.iter().find(|r| r.len() == 1) {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        };
        let found: Option<crate::mpi::Found> = match rows.iter().find(|r| r.len() == 5) {
            Some(r) => Some(sqlx::FromRow::from_row(r)?),
            None => None,
        };
        let Some(message) = message else {
            return Ok(None);
        };
        deferred.message = message;
        deferred.source = name.to_owned();
        deferred.reference.clone_from(&p.header.control_id);
        deferred.now = now;
        let institution: i64 = institution.ok_or_else(|| {
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
        let at = Ctx {
            source: name,
            reference: &p.header.control_id,
            now,
        };
        let update = match (p.header.kind.as_str(), p.header.event.as_str()) {
            ("ADT", "A08" | "A31") => crate::mpi::Update::Correct,
            ("ADT", _) => crate::mpi::Update::Demographics,
            _ => crate::mpi::Update::None,
        };
        let patient = crate::mpi::match_patient(
            &self.sealer,
            tx,
            (institution, found),
            &p.person,
            update,
            events,
        )
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
            .execute(&mut **tx)
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
            .execute(&mut **tx)
            .await?;
        }
        match &p.content {
            Content::Person => {}
            Content::Merge { prior } => {
                let moved =
                    crate::mpi::merge(tx, institution, patient, prior, &at, &self.sealer).await?;
                events.push(("merge".to_owned(), moved));
            }
            Content::Orders(orders) => {
                for o in orders {
                    upsert_order(tx, patient, o, &at).await?;
                }
            }
            Content::Results(groups) => {
                for g in groups {
                    let (order, new) = upsert_order(tx, patient, &g.order, &at).await?;
                    if !new {
                        // A corrected result replaces what the order had.
                        sqlx::query("DELETE FROM lab_results WHERE order_id = ?")
                            .bind(order)
                            .execute(&mut **tx)
                            .await?;
                    }
                    deferred
                        .labs
                        .extend(g.results.iter().map(|r| (order, patient, r)));
                    if let Some(r) = &g.report {
                        if !new {
                            sqlx::query("DELETE FROM exam_reports WHERE order_id = ?")
                                .bind(order)
                                .execute(&mut **tx)
                                .await?;
                        }
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
                        .execute(&mut **tx)
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
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(Some(patient))
    }
}

/// Writes the deferred lab values (one statement per 400) and forgets them.
/// Writes the values waiting, and after them (in the same round trip) which patient each
/// message of `about` (message, patient) was about.
async fn insert_values(
    tx: &mut Transaction<'_, Sqlite>,
    values: &mut Vec<Deferred<'_>>,
    about: &[(i64, i64)],
) -> Result<(), sqlx::Error> {
    let rows: Vec<(&Deferred, &hl7v2::content::LabResult, i64, i64)> = values
        .iter()
        .flat_map(|d| {
            d.labs
                .iter()
                .map(move |(order, patient, r)| (d, *r, *order, *patient))
        })
        .collect();
    // One statement for many values (a statement costs more than a row).
    let chunks: Vec<_> = rows.chunks(400).collect();
    let last = chunks.len().saturating_sub(1);
    for (n, chunk) in chunks.iter().enumerate() {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO lab_results (patient_id, order_id, code, name, system, value_type, \
                 value, numeric, unit, range_text, low, high, flag, status, specimen, \
                 observed_at, source, source_ref, received_at) ",
        );
        q.push_values(chunk.iter(), |mut row, (d, r, order, patient)| {
            row.push_bind(*patient)
                .push_bind(*order)
                .push_bind(&r.item.code)
                .push_bind(&r.item.text)
                .push_bind(&r.item.system)
                .push_bind(&r.value_type)
                .push_bind(&r.value)
                .push_bind(r.numeric)
                .push_bind(&r.unit)
                .push_bind(&r.range)
                .push_bind(r.low)
                .push_bind(r.high)
                .push_bind(&r.flag)
                .push_bind(&r.status)
                .push_bind(&r.specimen)
                .push_bind(r.observed_at)
                .push_bind(&d.source)
                .push_bind(&d.reference)
                .push_bind(d.now);
        });
        if n == last && !about.is_empty() {
            q.push("; ");
            push_about(&mut q, about);
        }
        q.build().execute(&mut **tx).await?;
    }
    if chunks.is_empty() && !about.is_empty() {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("");
        push_about(&mut q, about);
        q.build().execute(&mut **tx).await?;
    }
    values.clear();
    Ok(())
}

/// `UPDATE hl7_messages` setting each message's patient.
fn push_about(q: &mut sqlx::QueryBuilder<Sqlite>, about: &[(i64, i64)]) {
    q.push("UPDATE hl7_messages SET patient_id = CASE id");
    for (message, patient) in about {
        q.push(" WHEN ")
            .push_bind(*message)
            .push(" THEN ")
            .push_bind(*patient);
    }
    q.push(" END WHERE id IN (");
    let mut ids = q.separated(", ");
    for (message, _) in about {
        ids.push_bind(*message);
    }
    q.push(")");
}

/// What a stored message leaves to be written once for its group.
#[derive(Debug, Default)]
struct Deferred<'p> {
    message: i64,
    source: String,
    reference: String,
    now: i64,
    /// (order, patient, value).
    labs: Vec<(i64, i64, &'p hl7v2::content::LabResult)>,
}

/// Where a row came from.
pub(crate) struct Ctx<'a> {
    pub(crate) source: &'a str,
    pub(crate) reference: &'a str,
    pub(crate) now: i64,
}

pub(crate) enum Fail {
    Refused(Hl7Error),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

async fn upsert_order(
    tx: &mut Transaction<'_, Sqlite>,
    patient: i64,
    o: &hl7v2::content::Order,
    at: &Ctx<'_>,
) -> Result<(i64, bool), Fail> {
    let status = if o.control == "CA" || o.control == "DC" {
        o.control.clone()
    } else {
        o.status.clone()
    };
    // An order is known by either number: a result may carry only the filler's. One round
    // trip: the UPDATE changes the order found and returns it, and only when it found none
    // does the INSERT run (the first row returned ends the statement list).
    const FIND: &str = "SELECT id FROM orders WHERE patient_id = ? AND source = ? AND \
         ((placer <> '' AND placer = ?) OR (filler <> '' AND filler = ?)) ORDER BY id LIMIT 1";
    let (id, new): (i64, bool) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE orders SET kind = ?, \
         placer = CASE WHEN ? = '' THEN placer ELSE ? END, \
         filler = CASE WHEN ? = '' THEN filler ELSE ? END, \
         code = CASE WHEN ? = '' THEN code ELSE ? END, \
         name = CASE WHEN ? = '' THEN name ELSE ? END, \
         status = CASE WHEN ? = '' THEN status ELSE ? END, \
         ordered_at = COALESCE(ordered_at, ?), \
         provider = CASE WHEN ? = '' THEN provider ELSE ? END, \
         source_ref = ?, received_at = ? WHERE id = ({FIND}) RETURNING id, 0; \
         INSERT INTO orders (patient_id, kind, placer, filler, code, name, system, status, \
         ordered_at, provider, source, source_ref, received_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, 1"
    )))
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
    .bind(patient)
    .bind(at.source)
    .bind(&o.placer)
    .bind(&o.filler)
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
    .fetch_one(&mut **tx)
    .await?;
    Ok((id, new))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::{Intake, Outcome};

    const ADMIT: &str = "MSH|^~\\&|HIS|T1|||20261201090000||ADT^A01|C1|P|2.5\r\
PID|1||ZY1^^^T1^MR||王^五||19600501|M\rPV1|1|I|内科||||||||||||||||V1";

    fn lab(control: &str) -> String {
        format!(
            "MSH|^~\\&|LIS|T1|||20261201100000||ORU^R01|{control}|P|2.5\r\
PID|1||ZY1^^^T1^MR||王^五||19600501|M\rORC|RE|P{control}|F{control}\r\
OBR|1|P{control}|F{control}|GLU^葡萄糖^L|||20261201100000\r\
OBX|1|NM|GLU^葡萄糖^L||6.1|mmol/L|3.9-6.1||||F"
        )
    }

    /// An intake on a new database with one institution, which the source T1 feeds.
    async fn intake() -> (tempfile::TempDir, Intake) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut config = firmware_config::Config::default();
        config.storage.data_dir = dir.path().to_owned();
        let db = crate::db::Database::open(&config).await.expect("database");
        crate::accounts::add_institution(db.pool(), "测试医院", "hospital", None)
            .await
            .expect("institution");
        let intake = Intake {
            pool: db.pool().clone(),
            sealer: db.sealer().clone(),
            sources: vec!["*^T1@*=测试医院".parse().expect("source")],
        };
        (dir, intake)
    }

    /// A control id seen before is acknowledged and stored once, whether it comes again in the
    /// same group (pipelined) or in a later one, and the messages around it are stored.
    #[tokio::test]
    async fn a_repeated_control_id_is_stored_once() {
        let (_dir, intake) = intake().await;
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("A{n}")
        };
        let batch: Vec<Vec<u8>> = [ADMIT.to_owned(), ADMIT.to_owned(), lab("L1"), lab("L1")]
            .map(String::into_bytes)
            .to_vec();
        let kinds = |answers: &[(Vec<u8>, Outcome)]| -> Vec<&'static str> {
            answers
                .iter()
                .map(|(_, o)| match o {
                    Outcome::Stored { .. } => "stored",
                    Outcome::Duplicate => "duplicate",
                    Outcome::Refused(..) => "refused",
                })
                .collect()
        };
        let first = intake.take_all(&batch, peer, &mut id).await;
        assert_eq!(
            kinds(&first),
            ["stored", "duplicate", "stored", "duplicate"]
        );
        let again = intake
            .take_all(
                &[lab("L1").into_bytes(), lab("L2").into_bytes()],
                peer,
                &mut id,
            )
            .await;
        assert_eq!(kinds(&again), ["duplicate", "stored"]);
        let (messages, labs): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM hl7_messages), (SELECT COUNT(*) FROM lab_results)",
        )
        .fetch_one(&intake.pool)
        .await
        .unwrap();
        assert_eq!((messages, labs), (3, 2));
    }

    /// An order placed (ORM) and then resulted (ORU) under the same placer number is one order:
    /// the result fills in the filler number and its values point at it; a later result that
    /// names only the filler number finds it too.
    #[tokio::test]
    async fn a_result_updates_its_order_instead_of_adding_one() {
        let (_dir, intake) = intake().await;
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("A{n}")
        };
        let order = "MSH|^~\\&|HIS|T1|||20261201090000||ORM^O01|O1|P|2.5\r\
PID|1||ZY1^^^T1^MR||王^五||19600501|M\rORC|NW|P9\rOBR|1|P9||GLU^葡萄糖^L";
        let result = |control: &str, placer: &str| {
            format!(
                "MSH|^~\\&|HIS|T1|||20261201100000||ORU^R01|{control}|P|2.5\r\
PID|1||ZY1^^^T1^MR||王^五||19600501|M\rORC|RE|{placer}|F9\r\
OBR|1|{placer}|F9|GLU^葡萄糖^L|||20261201100000\r\
OBX|1|NM|GLU^葡萄糖^L||6.1|mmol/L|3.9-6.1||||F"
            )
        };
        let answers = intake
            .take_all(
                &[
                    ADMIT.as_bytes().to_vec(),
                    order.as_bytes().to_vec(),
                    result("R1", "P9").into_bytes(),
                    result("R2", "").into_bytes(),
                ],
                peer,
                &mut id,
            )
            .await;
        for (ack, outcome) in &answers {
            assert!(
                matches!(outcome, Outcome::Stored { .. }),
                "{}",
                String::from_utf8_lossy(ack)
            );
        }
        let orders: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, placer, filler FROM orders")
                .fetch_all(&intake.pool)
                .await
                .unwrap();
        assert_eq!(orders.len(), 1, "{orders:?}");
        assert_eq!((orders[0].1.as_str(), orders[0].2.as_str()), ("P9", "F9"));
        let linked: Vec<Option<i64>> = sqlx::query_scalar("SELECT order_id FROM lab_results")
            .fetch_all(&intake.pool)
            .await
            .unwrap();
        assert_eq!(linked, [Some(orders[0].0), Some(orders[0].0)]);
    }
}
