//! Statistics: consultations and referrals counted by period (month), institution, department
//! (receiving, for referrals), expert, disease (ICD-10 chapter or code), type and outcome, over
//! a date range, as JSON, CSV (UTF-8 with a BOM, which Excel in Chinese locales needs) or XLSX
//! (a minimal Office Open XML workbook). The counting is a pure function over the records;
//! the route loads what the user may count: centre staff everything, an institution
//! administrator their institution's.

use std::collections::BTreeMap;
use std::io::Write;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use workflow::{Consultation, Referral, Role};

use crate::http::{Api, ApiError, user};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new().route("/api/v1/statistics", get(statistics))
}

/// One record, as statistics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// `YYYY-MM` of creation.
    pub month: String,
    /// The applicant's institution (name).
    pub institution: String,
    /// The receiving department (referrals), or "".
    pub department: String,
    /// Expert user ids (consultations).
    pub experts: Vec<String>,
    /// The ICD-10 code.
    pub diagnosis: String,
    /// Remote/MDT/mobile, or up/down.
    pub kind: String,
    /// The state.
    pub outcome: String,
}

/// The ICD-10 chapter (I-XXII) of a code, by its letter and number.
pub fn icd10_chapter(code: &str) -> &'static str {
    let b = code.as_bytes();
    let (Some(&letter), Some(n)) = (
        b.first(),
        code.get(1..3).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        return "unknown";
    };
    match letter {
        b'A' | b'B' => "I",
        b'C' => "II",
        b'D' if n <= 48 => "II",
        b'D' => "III",
        b'E' => "IV",
        b'F' => "V",
        b'G' => "VI",
        b'H' if n <= 59 => "VII",
        b'H' => "VIII",
        b'I' => "IX",
        b'J' => "X",
        b'K' => "XI",
        b'L' => "XII",
        b'M' => "XIII",
        b'N' => "XIV",
        b'O' => "XV",
        b'P' => "XVI",
        b'Q' => "XVII",
        b'R' => "XVIII",
        b'S' | b'T' => "XIX",
        b'V' | b'W' | b'X' | b'Y' => "XX",
        b'Z' => "XXI",
        b'U' => "XXII",
        _ => "unknown",
    }
}

/// Counts `facts` grouped by the named dimensions, in key order.
pub fn count(facts: &[Fact], by: &[&str]) -> Result<Vec<(Vec<String>, u64)>, String> {
    let mut groups: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for f in facts {
        // Experts multiply a record (one row per expert).
        let experts: Vec<String> = if by.contains(&"expert") {
            if f.experts.is_empty() {
                vec![String::new()]
            } else {
                f.experts.clone()
            }
        } else {
            vec![String::new()]
        };
        for e in experts {
            let key = by
                .iter()
                .map(|d| match *d {
                    "month" => Ok(f.month.clone()),
                    "institution" => Ok(f.institution.clone()),
                    "department" => Ok(f.department.clone()),
                    "expert" => Ok(e.clone()),
                    "chapter" => Ok(icd10_chapter(&f.diagnosis).to_owned()),
                    "diagnosis" => Ok(f.diagnosis.clone()),
                    "type" => Ok(f.kind.clone()),
                    "outcome" => Ok(f.outcome.clone()),
                    other => Err(format!(
                        "{other:?} is not one of month, institution, department, expert, \
                         chapter, diagnosis, type, outcome"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            *groups.entry(key).or_default() += 1;
        }
    }
    Ok(groups.into_iter().collect())
}

/// CSV with a header row, UTF-8 with a byte order mark.
pub fn csv(header: &[&str], rows: &[(Vec<String>, u64)]) -> Vec<u8> {
    let cell = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = "\u{FEFF}".as_bytes().to_vec();
    let head: Vec<String> = header.iter().map(|h| cell(h)).collect();
    out.extend(format!("{},count\r\n", head.join(",")).as_bytes());
    for (key, n) in rows {
        let k: Vec<String> = key.iter().map(|s| cell(s)).collect();
        out.extend(format!("{},{n}\r\n", k.join(",")).as_bytes());
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A one-sheet XLSX workbook (inline strings, numbers as numbers).
pub fn xlsx(header: &[&str], rows: &[(Vec<String>, u64)]) -> Result<Vec<u8>, String> {
    let column = |i: usize| -> String {
        let mut n = i + 1;
        let mut s = String::new();
        while n > 0 {
            let r = (n - 1) % 26;
            s.insert(0, char::from(b'A' + r as u8));
            n = (n - 1) / 26;
        }
        s
    };
    let text_cell = |r: usize, c: usize, v: &str| {
        format!(
            "<c r=\"{}{r}\" t=\"inlineStr\"><is><t>{}</t></is></c>",
            column(c),
            xml_escape(v)
        )
    };
    let mut sheet = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<worksheet \
         xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData>",
    );
    let mut head: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(c, h)| text_cell(1, c, h))
        .collect();
    head.push(text_cell(1, header.len(), "count"));
    sheet.push_str(&format!("<row r=\"1\">{}</row>", head.concat()));
    for (i, (key, n)) in rows.iter().enumerate() {
        let r = i + 2;
        let mut cells: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(c, v)| text_cell(r, c, v))
            .collect();
        cells.push(format!("<c r=\"{}{r}\"><v>{n}</v></c>", column(key.len())));
        sheet.push_str(&format!("<row r=\"{r}\">{}</row>", cells.concat()));
    }
    sheet.push_str("</sheetData></worksheet>");
    let files: [(&str, String); 5] = [
        (
            "[Content_Types].xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Types \
             xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default \
             Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
             <Default Extension=\"xml\" ContentType=\"application/xml\"/><Override \
             PartName=\"/xl/workbook.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/>\
             <Override PartName=\"/xl/worksheets/sheet1.xml\" \
             ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/></Types>"
                .to_owned(),
        ),
        (
            "_rels/.rels",
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Relationships \
             xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship \
             Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" \
             Target=\"xl/workbook.xml\"/></Relationships>"
                .to_owned(),
        ),
        (
            "xl/workbook.xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<workbook \
             xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" \
             xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">\
             <sheets><sheet name=\"统计\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>"
                .to_owned(),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Relationships \
             xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship \
             Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet\" \
             Target=\"worksheets/sheet1.xml\"/></Relationships>"
                .to_owned(),
        ),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in files {
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        zip.write_all(content.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    zip.finish()
        .map(std::io::Cursor::into_inner)
        .map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct StatsQuery {
    /// consultation or referral.
    kind: String,
    /// Comma-separated dimensions.
    by: String,
    /// First day, YYYY-MM-DD (UTC).
    from: String,
    /// Last day, YYYY-MM-DD (UTC), inclusive.
    to: String,
    /// json (default), csv or xlsx.
    format: Option<String>,
}

/// Days since the epoch of `YYYY-MM-DD`.
fn days(date: &str) -> Option<i64> {
    let y: i64 = date.get(0..4)?.parse().ok()?;
    let m: i64 = date.get(5..7)?.parse().ok()?;
    let d: i64 = date.get(8..10)?.parse().ok()?;
    if date.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // H. Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

async fn statistics(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    // Who asks is settled before what is asked: a stranger learns nothing from a bad query.
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.body_text()))?;
    let only_institution = match u.role {
        Role::Coordinator | Role::QcReviewer | Role::ReferralStaff => None,
        Role::InstitutionAdmin => Some(u.institution),
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "statistics are for centre staff and institution administrators",
            ));
        }
    };
    let from = days(&q.from).ok_or_else(|| ApiError::field("from", "a date as YYYY-MM-DD"))?;
    let to = days(&q.to).ok_or_else(|| ApiError::field("to", "a date as YYYY-MM-DD"))?;
    if to < from {
        return Err(ApiError::field("to", "is before from"));
    }
    let by: Vec<&str> =
        q.by.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
    if by.is_empty() {
        return Err(ApiError::field("by", "at least one dimension"));
    }
    let sql = match q.kind.as_str() {
        "consultation" => {
            "SELECT c.created_at, i.name, c.data FROM consultations c JOIN institutions i \
             ON i.id = c.institution_id WHERE c.created_at >= ? AND c.created_at < ? AND \
             (? IS NULL OR c.institution_id = ?)"
        }
        "referral" => {
            "SELECT c.created_at, i.name, c.data FROM referrals c JOIN institutions i \
             ON i.id = c.institution_id WHERE c.created_at >= ? AND c.created_at < ? AND \
             (? IS NULL OR c.institution_id = ?)"
        }
        _ => return Err(ApiError::field("kind", "consultation or referral")),
    };
    let rows: Vec<(i64, String, String)> = sqlx::query_as(sql)
        .bind(from * 86_400_000)
        .bind((to + 1) * 86_400_000)
        .bind(only_institution)
        .bind(only_institution)
        .fetch_all(&api.pool)
        .await?;
    let month = |ms: i64| {
        let (y, m, _) = crate::audit::civil(ms.div_euclid(86_400_000));
        format!("{y:04}-{m:02}")
    };
    let text = |v: serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_default();
    let facts: Vec<Fact> = rows
        .into_iter()
        .filter_map(|(at, institution, data)| {
            if q.kind == "consultation" {
                let c: Consultation = serde_json::from_str(&data).ok()?;
                Some(Fact {
                    month: month(at),
                    institution,
                    department: String::new(),
                    experts: c.experts.iter().map(ToString::to_string).collect(),
                    diagnosis: c.diagnosis.trim().to_owned(),
                    kind: text(serde_json::to_value(c.kind).ok()?),
                    outcome: c.state.name().to_owned(),
                })
            } else {
                let r: Referral = serde_json::from_str(&data).ok()?;
                Some(Fact {
                    month: month(at),
                    institution,
                    department: r
                        .receiver
                        .map(|(_, d, _)| d.to_string())
                        .unwrap_or_default(),
                    experts: Vec::new(),
                    diagnosis: r.diagnosis.trim().to_owned(),
                    kind: text(serde_json::to_value(r.direction).ok()?),
                    outcome: r.state.name().to_owned(),
                })
            }
        })
        .collect();
    let counted = count(&facts, &by).map_err(|e| ApiError::field("by", e))?;
    let disposition = |ext: &str| format!("attachment; filename=\"statistics-{}.{ext}\"", q.kind);
    match q.format.as_deref().unwrap_or("json") {
        "json" => {
            let rows: Vec<serde_json::Value> = counted
                .iter()
                .map(|(k, n)| json!({ "key": k, "count": n }))
                .collect();
            Ok(Json(json!({ "by": by, "rows": rows, "total": facts.len() })).into_response())
        }
        "csv" => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, disposition("csv")),
            ],
            csv(&by, &counted),
        )
            .into_response()),
        "xlsx" => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_owned(),
                ),
                (header::CONTENT_DISPOSITION, disposition("xlsx")),
            ],
            xlsx(&by, &counted).map_err(ApiError::internal)?,
        )
            .into_response()),
        _ => Err(ApiError::field("format", "json, csv or xlsx")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(month: &str, institution: &str, diagnosis: &str, outcome: &str) -> Fact {
        Fact {
            month: month.into(),
            institution: institution.into(),
            department: String::new(),
            experts: vec!["4".into(), "5".into()],
            diagnosis: diagnosis.into(),
            kind: "remote".into(),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn counts_by_dimensions() {
        let facts = [
            fact("2026-10", "城东", "I63.9", "closed"),
            fact("2026-11", "城东", "I61.0", "closed"),
            fact("2026-11", "城西", "J44.1", "cancelled"),
        ];
        assert_eq!(
            count(&facts, &["chapter"]).unwrap(),
            vec![(vec!["IX".to_owned()], 2), (vec!["X".to_owned()], 1)]
        );
        let by_month = count(&facts, &["month", "outcome"]).unwrap();
        assert_eq!(by_month.len(), 3);
        // Two experts each: six expert-consultations.
        let experts: u64 = count(&facts, &["expert"])
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum();
        assert_eq!(experts, 6);
        assert!(count(&facts, &["colour"]).unwrap_err().contains("colour"));
    }

    #[test]
    fn chapters_follow_icd10() {
        for (code, chapter) in [
            ("A09", "I"),
            ("D37.0", "II"),
            ("D50", "III"),
            ("H25", "VII"),
            ("H66", "VIII"),
            ("I63.9", "IX"),
            ("S72.0", "XIX"),
            ("U07.1", "XXII"),
            ("x", "unknown"),
        ] {
            assert_eq!(icd10_chapter(code), chapter, "{code}");
        }
    }

    #[test]
    fn csv_quotes_and_marks_utf8() {
        let out = csv(
            &["institution"],
            &[(vec!["城东, 社区".into()], 3), (vec!["a\"b".into()], 1)],
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with('\u{FEFF}'));
        assert!(text.contains("\"城东, 社区\",3\r\n"));
        assert!(text.contains("\"a\"\"b\",1\r\n"));
    }

    #[test]
    fn dates_count_days() {
        assert_eq!(days("1970-01-01"), Some(0));
        assert_eq!(days("2026-11-26"), Some(20_783));
        assert_eq!(days("2026-13-01"), None);
        assert_eq!(crate::audit::civil(20_783), (2026, 11, 26));
    }
}
