//! The facade's SQL: search conditions and their bindings, FHIR date ranges, and the table
//! behind each resource type with the row-to-resource step.

use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::FhirError;
use super::map;
use crate::http::Api;

/// A parsed date search value: the op and the [start, end) range in ms.
pub(super) fn date_param(name: &str, raw: &str) -> Result<(String, i64, i64), FhirError> {
    let (op, v) = match raw.get(..2) {
        Some(p @ ("eq" | "gt" | "lt" | "ge" | "le")) => (p, &raw[2..]),
        _ => ("eq", raw),
    };
    let bad = || {
        FhirError::invalid(
            name,
            format!("\"{raw}\" is not a FHIR date (e.g. ge2026-03-01)"),
        )
    };
    // YYYY, YYYY-MM, YYYY-MM-DD, or a dateTime with an offset.
    let (start, end) = if v.len() > 10 {
        let ms = map::fhir_time(v).ok_or_else(bad)?;
        (ms, ms + 1000)
    } else {
        let digits = v.replace('-', "");
        let start = hl7v2::time::parse_ms(&digits, 480).map_err(|_| bad())?;
        let next = match digits.len() {
            4 => format!("{}", digits.parse::<i64>().map_err(|_| bad())? + 1),
            6 => {
                let (y, m) = (
                    digits[..4].parse::<i64>().map_err(|_| bad())?,
                    digits[4..].parse::<i64>().map_err(|_| bad())?,
                );
                if m == 12 {
                    format!("{}01", y + 1)
                } else {
                    format!("{y}{:02}", m + 1)
                }
            }
            8 => return Ok((op.to_owned(), start, start + 86_400_000)),
            _ => return Err(bad()),
        };
        (start, hl7v2::time::parse_ms(&next, 480).map_err(|_| bad())?)
    };
    Ok((op.to_owned(), start, end))
}

/// SQL for a date op on `column` (NULLs never match).
pub(super) fn date_clause(column: &str, op: &str, start: i64, end: i64, w: &mut Where) {
    match op {
        "gt" => w.push(format!("{column} >= ?"), vec![Bind::Int(end)]),
        "ge" => w.push(format!("{column} >= ?"), vec![Bind::Int(start)]),
        "lt" => w.push(format!("{column} < ?"), vec![Bind::Int(start)]),
        "le" => w.push(format!("{column} < ?"), vec![Bind::Int(end)]),
        _ => w.push(
            format!("{column} >= ? AND {column} < ?"),
            vec![Bind::Int(start), Bind::Int(end)],
        ),
    }
}

#[derive(Debug, Clone)]
pub(super) enum Bind {
    Int(i64),
    Text(String),
}

#[derive(Debug, Default)]
pub(super) struct Where {
    pub(super) clauses: Vec<String>,
    pub(super) binds: Vec<Bind>,
}

impl Where {
    pub(super) fn push(&mut self, clause: String, binds: Vec<Bind>) {
        self.clauses.push(clause);
        self.binds.extend(binds);
    }

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

pub(super) async fn fetch(
    api: &Api,
    sql: String,
    binds: &[Bind],
) -> Result<Vec<SqliteRow>, FhirError> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(*i),
            Bind::Text(t) => q.bind(t.clone()),
        };
    }
    Ok(q.fetch_all(&api.pool).await?)
}

/// One table behind a resource type.
pub(super) struct Table {
    /// FROM (with joins) and the alias whose columns are read.
    pub(super) from: &'static str,
    /// The columns, in the order the builder reads them.
    pub(super) columns: &'static str,
    /// The patient column, for compartment types.
    pub(super) patient: Option<&'static str>,
    /// The date column for `date`/`authored`.
    pub(super) date: Option<&'static str>,
    /// The code column for `code`.
    pub(super) code: Option<&'static str>,
    /// The lastUpdated column.
    pub(super) updated: &'static str,
    /// The id column (and a prefix ids carry: `o` for orders).
    pub(super) id: (&'static str, &'static str),
    /// Extra fixed condition.
    pub(super) fixed: &'static str,
}

pub(super) fn table(kind: &str) -> Option<Table> {
    Some(match kind {
        "Patient" => Table {
            from: "patients t",
            columns: "t.id, t.institution_id, t.name, t.sex, t.birth_date, t.record_number, t.merged_into, t.created_at",
            patient: Some("t.id"),
            date: None,
            code: None,
            updated: "t.created_at",
            id: ("t.id", ""),
            fixed: "",
        },
        "Encounter" => Table {
            from: "encounters t",
            columns: "t.id, t.patient_id, t.visit_number, t.class, t.location, t.department, t.admitted_at, t.discharged_at, t.source, t.source_ref, t.received_at",
            patient: Some("t.patient_id"),
            date: Some("t.admitted_at"),
            code: None,
            updated: "t.received_at",
            id: ("t.id", ""),
            fixed: "",
        },
        "ServiceRequest" => Table {
            from: "orders t",
            columns: "t.id, t.patient_id, t.kind, t.placer, t.filler, t.code, t.name, t.system, t.status, t.ordered_at, t.provider, t.source, t.source_ref, t.received_at",
            patient: Some("t.patient_id"),
            date: Some("t.ordered_at"),
            code: Some("t.code"),
            updated: "t.received_at",
            id: ("t.id", "o"),
            fixed: "",
        },
        "Observation" => Table {
            from: "lab_results t",
            columns: "t.id, t.patient_id, t.order_id, t.code, t.name, t.system, t.value, t.numeric, t.unit, t.range_text, t.low, t.high, t.flag, t.status, t.specimen, t.observed_at, t.source, t.source_ref, t.received_at",
            patient: Some("t.patient_id"),
            date: Some("t.observed_at"),
            code: Some("t.code"),
            updated: "t.received_at",
            id: ("t.id", ""),
            fixed: "",
        },
        "DiagnosticReport" => Table {
            from: "exam_reports t",
            columns: "t.id, t.patient_id, t.order_id, t.kind, t.code, t.name, t.status, t.text, t.pdf IS NOT NULL, t.observed_at, t.reported_at, t.source, t.source_ref, t.received_at",
            patient: Some("t.patient_id"),
            date: Some("t.observed_at"),
            code: Some("t.code"),
            updated: "t.received_at",
            id: ("t.id", ""),
            fixed: "",
        },
        "Condition" => Table {
            from: "diagnoses t",
            columns: "t.id, t.patient_id, t.code, t.name, t.system, t.kind, t.time, t.source, t.source_ref, t.received_at",
            patient: Some("t.patient_id"),
            date: Some("t.time"),
            code: Some("t.code"),
            updated: "t.received_at",
            id: ("t.id", ""),
            fixed: "",
        },
        "DocumentReference" => Table {
            from: "clinical_documents t",
            columns: "t.id, t.patient_id, t.kind, t.number, t.title, t.status, t.mime, t.time, t.source, t.source_ref, t.received_at",
            patient: Some("t.patient_id"),
            date: Some("t.time"),
            code: Some("t.kind"),
            updated: "t.received_at",
            id: ("t.id", ""),
            fixed: "",
        },
        "Organization" => Table {
            from: "institutions t",
            columns: "t.id, t.name, t.kind, t.parent_id",
            patient: None,
            date: None,
            code: None,
            updated: "0",
            id: ("t.id", ""),
            fixed: "",
        },
        "Practitioner" | "PractitionerRole" => Table {
            from: "users t LEFT JOIN experts e ON e.user_id = t.id",
            columns: "t.id, t.display_name, t.active, t.institution_id, t.role, COALESCE(e.title, ''), COALESCE(e.specialties, '')",
            patient: None,
            date: None,
            code: None,
            updated: "t.created_at",
            id: ("t.id", ""),
            fixed: "t.role IN ('doctor', 'expert') AND t.password_hash <> '!'",
        },
        _ => return None,
    })
}

pub(super) fn text(r: &SqliteRow, i: usize) -> String {
    r.try_get::<Option<String>, _>(i)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub(super) fn int(r: &SqliteRow, i: usize) -> i64 {
    r.try_get::<Option<i64>, _>(i)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub(super) fn opt(r: &SqliteRow, i: usize) -> Option<i64> {
    r.try_get::<Option<i64>, _>(i).ok().flatten()
}

pub(super) fn real(r: &SqliteRow, i: usize) -> Option<f64> {
    r.try_get::<Option<f64>, _>(i).ok().flatten()
}

/// A row of `kind` as its resource.
pub(super) fn resource(kind: &str, r: &SqliteRow) -> Value {
    match kind {
        "Patient" => map::patient(&map::PatientRow {
            id: int(r, 0),
            institution: int(r, 1),
            name: text(r, 2),
            sex: text(r, 3),
            birth_date: text(r, 4),
            record_number: text(r, 5),
            merged_into: opt(r, 6),
            created_at: int(r, 7),
        }),
        "Encounter" => map::encounter(&map::EncounterRow {
            id: int(r, 0),
            patient: int(r, 1),
            visit_number: text(r, 2),
            class: text(r, 3),
            location: text(r, 4),
            department: text(r, 5),
            admitted_at: opt(r, 6),
            discharged_at: opt(r, 7),
            source: text(r, 8),
            reference: text(r, 9),
            received_at: int(r, 10),
        }),
        "ServiceRequest" => map::service_request(&map::OrderRow {
            id: int(r, 0),
            patient: int(r, 1),
            kind: text(r, 2),
            placer: text(r, 3),
            filler: text(r, 4),
            code: text(r, 5),
            name: text(r, 6),
            system: text(r, 7),
            status: text(r, 8),
            ordered_at: opt(r, 9),
            provider: text(r, 10),
            source: text(r, 11),
            reference: text(r, 12),
            received_at: int(r, 13),
        }),
        "Observation" => {
            let (numeric, low, high) = (real(r, 7), real(r, 10), real(r, 11));
            map::observation(&map::LabRow {
                id: int(r, 0),
                patient: int(r, 1),
                order: opt(r, 2),
                code: text(r, 3),
                name: text(r, 4),
                system: text(r, 5),
                value: text(r, 6),
                numeric,
                unit: text(r, 8),
                range: text(r, 9),
                low,
                high,
                abnormal: crate::record::abnormal(&text(r, 12), numeric, low, high),
                status: text(r, 13),
                specimen: text(r, 14),
                observed_at: opt(r, 15),
                source: text(r, 16),
                reference: text(r, 17),
                received_at: int(r, 18),
            })
        }
        "DiagnosticReport" => map::diagnostic_report(
            &map::ReportRow {
                id: int(r, 0),
                patient: int(r, 1),
                order: opt(r, 2),
                kind: text(r, 3),
                code: text(r, 4),
                name: text(r, 5),
                status: text(r, 6),
                text: text(r, 7),
                has_pdf: int(r, 8) != 0,
                observed_at: opt(r, 9),
                reported_at: opt(r, 10),
                source: text(r, 11),
                reference: text(r, 12),
                received_at: int(r, 13),
            },
            &[],
        ),
        "DocumentReference" => map::document_reference(&map::DocumentRow {
            id: int(r, 0),
            patient: int(r, 1),
            kind: text(r, 2),
            number: text(r, 3),
            title: text(r, 4),
            status: text(r, 5),
            mime: text(r, 6),
            time: opt(r, 7),
            source: text(r, 8),
            reference: text(r, 9),
            received_at: int(r, 10),
        }),
        "Condition" => map::condition(&map::DiagnosisRow {
            id: int(r, 0),
            patient: int(r, 1),
            code: text(r, 2),
            name: text(r, 3),
            system: text(r, 4),
            kind: text(r, 5),
            time: opt(r, 6),
            source: text(r, 7),
            reference: text(r, 8),
            received_at: int(r, 9),
        }),
        "Organization" => map::organization(int(r, 0), &text(r, 1), &text(r, 2), opt(r, 3)),
        "Practitioner" => map::practitioner(int(r, 0), &text(r, 1), int(r, 2) != 0),
        _ => map::practitioner_role(int(r, 0), int(r, 3), &text(r, 4), &text(r, 5), &text(r, 6)),
    }
}

#[cfg(test)]
mod tests {
    use super::date_param;

    #[test]
    fn dates_become_ranges_at_beijing_time() {
        let day = 86_400_000;
        let (op, s, e) = date_param("date", "ge2026-03-01").unwrap();
        assert_eq!((op.as_str(), s, e - s), ("ge", 1_772_294_400_000, day));
        let (_, s, e) = date_param("date", "2026-02").unwrap();
        assert_eq!(e - s, 28 * day);
        let (_, s, e) = date_param("date", "2026").unwrap();
        assert_eq!(e - s, 365 * day);
        let (_, s, _) = date_param("date", "lt2026-03-01T08:00:00+08:00").unwrap();
        assert_eq!(s, 1_772_323_200_000);
        let (_, s2, _) = date_param("date", "2026-03-01T00:00:00Z").unwrap();
        assert_eq!(s2, s);
        for bad in ["ge2026-13-01", "x", "2026-03-01T08:00", "ne2026"] {
            assert!(date_param("date", bad).is_err(), "{bad}");
        }
    }
}
