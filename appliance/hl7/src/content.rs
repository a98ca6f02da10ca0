//! The clinical content of the messages the record takes, read into plain types and checked
//! field by field: ADT (A01, A03, A04, A08, A28, A31, A40), orders (ORM^O01, OMG^O19,
//! OML^O21), results (ORU^R01: lab values with ranges and flags, exam reports, PDFs in ED) and
//! documents (MDM^T02). Each error names the segment and field.

use base64::Engine;

use crate::message::{ErrorCode, Hl7Error, Message, Segment};
use crate::time::{parse_date, parse_ms};
pub use crate::types::*;

/// The longest MSH-10 kept.
pub const MAX_CONTROL_ID: usize = 199;

impl Header {
    /// Reads MSH; what it cannot read is an error naming the field.
    pub fn read(m: &Message, offset: i32) -> Result<Self, Hl7Error> {
        let s = m.msh();
        let kind = m.get(s, 9, 1);
        let event = m.get(s, 9, 2);
        let control_id = m.text(s, 10);
        if control_id.is_empty() {
            return Err(Hl7Error::at(
                ErrorCode::RequiredMissing,
                "MSH",
                1,
                10,
                "the message control id is empty",
            ));
        }
        if control_id.len() > MAX_CONTROL_ID {
            return Err(Hl7Error::at(
                ErrorCode::DataType,
                "MSH",
                1,
                10,
                format!("the message control id is longer than {MAX_CONTROL_ID} characters"),
            ));
        }
        if kind.is_empty() || event.is_empty() {
            return Err(Hl7Error::at(
                ErrorCode::RequiredMissing,
                "MSH",
                1,
                9,
                "the message type needs type and event, e.g. ADT^A01",
            ));
        }
        let processing = m.get(s, 11, 1);
        if !matches!(processing.as_str(), "" | "P" | "T" | "D") {
            return Err(Hl7Error::at(
                ErrorCode::UnsupportedProcessingId,
                "MSH",
                1,
                11,
                format!("processing id \"{processing}\" is not P, T or D"),
            ));
        }
        let version = m.get(s, 12, 1);
        if !(version.starts_with("2.") && version.len() <= 8) {
            return Err(Hl7Error::at(
                ErrorCode::UnsupportedVersion,
                "MSH",
                1,
                12,
                format!("version \"{version}\" is not HL7 v2.x"),
            ));
        }
        let time = optional_time(m, s, 7, offset)?;
        Ok(Self {
            kind,
            event,
            control_id,
            processing: if processing.is_empty() {
                "P".into()
            } else {
                processing
            },
            version,
            sending_application: m.get(s, 3, 1),
            sending_facility: m.get(s, 4, 1),
            receiving_application: m.get(s, 5, 1),
            receiving_facility: m.get(s, 6, 1),
            time,
            charset: m.charset,
        })
    }
}

/// The message types and events taken, for errors and docs.
pub const SUPPORTED: &str =
    "ADT^A01/A03/A04/A08/A28/A31/A40, ORM^O01, OMG^O19, OML^O21, ORU^R01, MDM^T02";

fn optional_time(
    m: &Message,
    s: &Segment,
    field: usize,
    offset: i32,
) -> Result<Option<i64>, Hl7Error> {
    let t = m.get(s, field, 1);
    if t.is_empty() {
        return Ok(None);
    }
    parse_ms(&t, offset)
        .map(Some)
        .map_err(|e| Hl7Error::at(ErrorCode::DataType, s.id(), s.sequence, field, e))
}

fn coded(m: &Message, s: &Segment, field: usize) -> Coded {
    // CE/CWE: identifier^text^system, then the alternate identifier^text^system (4-6), used
    // when the first triple is empty.
    let (mut code, mut text, mut system) =
        (m.get(s, field, 1), m.get(s, field, 2), m.get(s, field, 3));
    if code.is_empty() && text.is_empty() {
        (code, text, system) = (m.get(s, field, 4), m.get(s, field, 5), m.get(s, field, 6));
    }
    Coded {
        code: if code.is_empty() { text.clone() } else { code },
        text,
        system,
    }
}

fn ids(m: &Message, s: &Segment, field: usize) -> Ids {
    let mut out = Ids::default();
    let mut best_record = 99;
    for rep in m.repetitions(s.raw(field)) {
        let id = m.component(rep, 1).trim().to_owned();
        if id.is_empty() {
            continue;
        }
        let authority = m.component(rep, 4).to_ascii_uppercase();
        let kind = m.component(rep, 5).to_ascii_uppercase();
        let card = matches!(kind.as_str(), "NNCHN" | "NI" | "ID" | "CZ")
            || matches!(authority.as_str(), "NNCHN" | "CHN" | "身份证");
        if card {
            out.id_card.get_or_insert(id.to_ascii_uppercase());
            continue;
        }
        let rank = match kind.as_str() {
            "MR" => 0,
            "PI" => 1,
            "PT" | "PN" => 2,
            "" => 3,
            _ => continue,
        };
        if rank < best_record {
            best_record = rank;
            out.record_number = Some(id);
        }
    }
    out
}

fn person_name(m: &Message, s: &Segment) -> String {
    let family = m.get(s, 5, 1);
    let given = m.get(s, 5, 2);
    let cjk = |t: &str| t.chars().any(|c| c as u32 >= 0x2e80);
    let name = if cjk(&family) || cjk(&given) {
        format!("{family}{given}")
    } else {
        format!("{given} {family}")
    };
    name.trim().to_owned()
}

/// The first segment `id`, or the error naming it missing.
fn required<'m>(m: &'m Message, id: &str) -> Result<&'m Segment, Hl7Error> {
    m.first(id).ok_or_else(|| {
        Hl7Error::at(
            ErrorCode::SegmentSequence,
            id,
            1,
            0,
            format!("the {id} segment is missing"),
        )
    })
}

fn person(m: &Message) -> Result<Person, Hl7Error> {
    let pid = required(m, "PID")?;
    let ids = ids(m, pid, 3);
    if ids.id_card.is_none() && ids.record_number.is_none() {
        return Err(Hl7Error::at(
            ErrorCode::RequiredMissing,
            "PID",
            1,
            3,
            "no patient identifier: send the record number (type MR) or the identity card number (type NNCHN)",
        ));
    }
    let birth = m.get(pid, 7, 1);
    let birth_date = if birth.is_empty() {
        None
    } else {
        Some(parse_date(&birth).map_err(|e| Hl7Error::at(ErrorCode::DataType, "PID", 1, 7, e))?)
    };
    let sex = match m.get(pid, 8, 1).as_str() {
        "" | "U" => "U",
        "M" => "M",
        "F" => "F",
        "O" | "A" | "N" => "O",
        other => {
            return Err(Hl7Error::at(
                ErrorCode::TableValue,
                "PID",
                1,
                8,
                format!("sex \"{other}\" is not M, F, O, U, A or N"),
            ));
        }
    };
    let phone = m
        .repetitions(pid.raw(13))
        .map(|r| {
            let n = m.component(r, 1);
            if n.is_empty() { m.component(r, 12) } else { n }
        })
        .find(|n| !n.is_empty())
        .unwrap_or_default();
    Ok(Person {
        ids,
        name: person_name(m, pid),
        sex: sex.into(),
        birth_date,
        phone,
    })
}

fn visit(m: &Message, offset: i32, control_id: &str) -> Result<Option<Visit>, Hl7Error> {
    let Some(pv1) = m.first("PV1") else {
        return Ok(None);
    };
    let number = m.get(pv1, 19, 1);
    let class = m.get(pv1, 2, 1);
    if number.is_empty() && class.is_empty() && pv1.raw(3).is_empty() {
        return Ok(None);
    }
    let location = [1, 2, 3]
        .map(|c| m.get(pv1, 3, c))
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let attending = {
        let family = m.get(pv1, 7, 2);
        let given = m.get(pv1, 7, 3);
        format!("{family}{given}")
    };
    Ok(Some(Visit {
        number: if number.is_empty() {
            format!("msg:{control_id}")
        } else {
            number
        },
        class,
        location,
        department: m.get(pv1, 10, 1),
        attending,
        admitted_at: optional_time(m, pv1, 44, offset)?,
        discharged_at: optional_time(m, pv1, 45, offset)?,
    }))
}

fn diagnoses(m: &Message, offset: i32) -> Result<Vec<Diagnosis>, Hl7Error> {
    let mut out = Vec::new();
    for s in m.segments.iter().filter(|s| s.id() == "DG1") {
        let mut item = coded(m, s, 3);
        if item.code.is_empty() {
            return Err(Hl7Error::at(
                ErrorCode::RequiredMissing,
                "DG1",
                s.sequence,
                3,
                "the diagnosis code is empty",
            ));
        }
        if item.text.is_empty() {
            item.text = m.text(s, 4);
        }
        out.push(Diagnosis {
            item,
            kind: m.get(s, 6, 1),
            time: optional_time(m, s, 5, offset)?,
        });
    }
    Ok(out)
}

/// The report kind an OBR-24 diagnostic service section names, or None for lab sections.
fn exam_kind(section: &str) -> Option<&'static str> {
    Some(match section.to_ascii_uppercase().as_str() {
        "RAD" | "CT" | "MR" | "NMR" | "NMS" | "XRC" | "RX" | "VR" | "DX" | "CR" | "MG" => {
            "radiology"
        }
        "US" | "CUS" | "OUS" | "VUS" | "RUS" => "ultrasound",
        "PAT" | "SP" | "CP" | "CY" => "pathology",
        "ENDO" | "ES" | "GE" => "endoscopy",
        "EC" | "ECG" | "PF" | "OTH" => "other",
        _ => return None,
    })
}

fn order(
    m: &Message,
    orc: Option<&Segment>,
    obr: Option<&Segment>,
    rxo: Option<&Segment>,
    default_kind: &'static str,
    offset: i32,
) -> Result<Order, Hl7Error> {
    let pick = |a: Option<(&Segment, usize)>, b: Option<(&Segment, usize)>| {
        a.map(|(s, f)| m.get(s, f, 1))
            .filter(|v| !v.is_empty())
            .or_else(|| b.map(|(s, f)| m.get(s, f, 1)))
            .unwrap_or_default()
    };
    let section = obr.map(|s| m.get(s, 24, 1)).unwrap_or_default();
    let kind = if rxo.is_some() {
        "medication"
    } else if exam_kind(&section).is_some() {
        "exam"
    } else if section.is_empty() {
        default_kind
    } else {
        "lab"
    };
    let item = match (obr, rxo) {
        (Some(s), _) => coded(m, s, 4),
        (None, Some(s)) => coded(m, s, 1),
        _ => Coded::default(),
    };
    let mut ordered_at = None;
    for (s, f) in [
        orc.map(|s| (s, 9)),
        obr.map(|s| (s, 6)),
        obr.map(|s| (s, 7)),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(t) = optional_time(m, s, f, offset)? {
            ordered_at = Some(t);
            break;
        }
    }
    let provider = |s: &Segment, f: usize| format!("{}{}", m.get(s, f, 2), m.get(s, f, 3));
    let o = Order {
        placer: pick(orc.map(|s| (s, 2)), obr.map(|s| (s, 2))),
        filler: pick(orc.map(|s| (s, 3)), obr.map(|s| (s, 3))),
        control: orc.map(|s| m.get(s, 1, 1)).unwrap_or_default(),
        status: pick(orc.map(|s| (s, 5)), obr.map(|s| (s, 25))),
        kind,
        item,
        section,
        ordered_at,
        provider: orc
            .map(|s| provider(s, 12))
            .filter(|p| !p.is_empty())
            .or_else(|| obr.map(|s| provider(s, 16)))
            .unwrap_or_default(),
    };
    if o.placer.is_empty() && o.filler.is_empty() {
        let (seg, seq, field) = match (orc, obr) {
            (Some(s), _) => ("ORC", s.sequence, 2),
            (None, Some(s)) => ("OBR", s.sequence, 2),
            _ => ("ORC", 1, 2),
        };
        return Err(Hl7Error::at(
            ErrorCode::RequiredMissing,
            seg,
            seq,
            field,
            "the order has neither a placer nor a filler order number",
        ));
    }
    if let (true, None, Some(s)) = (o.item.code.is_empty(), rxo, obr) {
        return Err(Hl7Error::at(
            ErrorCode::RequiredMissing,
            "OBR",
            s.sequence,
            4,
            "the universal service identifier is empty",
        ));
    }
    Ok(o)
}

fn orders(m: &Message, default_kind: &'static str, offset: i32) -> Result<Vec<Order>, Hl7Error> {
    let mut out = Vec::new();
    let segs = &m.segments;
    let mut i = 0;
    while i < segs.len() {
        let s = &segs[i];
        if s.id() != "ORC" && !(s.id() == "OBR" && (i == 0 || segs[i - 1].id() != "ORC")) {
            i += 1;
            continue;
        }
        let orc = (s.id() == "ORC").then_some(s);
        let mut obr = (s.id() == "OBR").then_some(s);
        let mut rxo = None;
        let mut j = i + 1;
        while j < segs.len()
            && !matches!(segs[j].id(), "ORC")
            && !(segs[j].id() == "OBR" && obr.is_some())
        {
            match segs[j].id() {
                "OBR" => obr = Some(&segs[j]),
                "RXO" | "RXE" => rxo = rxo.or(Some(&segs[j])),
                _ => {}
            }
            j += 1;
        }
        out.push(order(m, orc, obr, rxo, default_kind, offset)?);
        i = j;
    }
    if out.is_empty() {
        return Err(Hl7Error::at(
            ErrorCode::SegmentSequence,
            "ORC",
            1,
            0,
            "the order message has no ORC or OBR segment",
        ));
    }
    Ok(out)
}

/// A reference range such as "3.9-6.1", "<5.0", ">=10", "3.9 - 6.1 mmol/L".
pub fn parse_range(range: &str) -> (Option<f64>, Option<f64>) {
    let r = range.trim();
    let number = |t: &str| -> Option<f64> {
        let t = t.trim();
        let end = t
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '-' || *c == '+')))
            })
            .map(|(i, _)| i)
            .unwrap_or(t.len());
        t[..end].parse().ok()
    };
    if let Some(rest) = r.strip_prefix("<=").or_else(|| r.strip_prefix('<')) {
        return (None, number(rest));
    }
    if let Some(rest) = r.strip_prefix(">=").or_else(|| r.strip_prefix('>')) {
        return (number(rest), None);
    }
    // The separator is the first '-' or '~' after the first number.
    let skip = usize::from(r.starts_with('-'));
    match r[skip..].find(['-', '~', '～']) {
        Some(i) => {
            let i = i + skip;
            let sep_len = r[i..].chars().next().map(char::len_utf8).unwrap_or(1);
            (number(&r[..i]), number(&r[i + sep_len..]))
        }
        None => (None, None),
    }
}

fn flag(raw: &str) -> String {
    match raw.trim() {
        "↑" | "H" | ">" => "H".into(),
        "↓" | "L" | "<" => "L".into(),
        "↑↑" | "HH" => "HH".into(),
        "↓↓" | "LL" => "LL".into(),
        other => other.to_ascii_uppercase(),
    }
}

fn ed_bytes(m: &Message, s: &Segment, rep: &str) -> Result<(String, Vec<u8>), Hl7Error> {
    let subtype = m.component(rep, 3).to_ascii_uppercase();
    let encoding = m.component(rep, 4).to_ascii_uppercase();
    let data = m.component(rep, 5);
    let bytes = match encoding.as_str() {
        "BASE64" => base64::engine::general_purpose::STANDARD
            .decode(data.trim().as_bytes())
            .map_err(|e| {
                Hl7Error::at(
                    ErrorCode::DataType,
                    s.id(),
                    s.sequence,
                    5,
                    format!("the ED data is not valid Base64: {e}"),
                )
            })?,
        "A" | "" => data.into_bytes(),
        other => {
            return Err(Hl7Error::at(
                ErrorCode::TableValue,
                s.id(),
                s.sequence,
                5,
                format!("ED encoding \"{other}\" is not Base64 or A"),
            ));
        }
    };
    if subtype == "PDF" && !bytes.starts_with(b"%PDF") {
        return Err(Hl7Error::at(
            ErrorCode::DataType,
            s.id(),
            s.sequence,
            5,
            "the ED says PDF but the data does not start with %PDF",
        ));
    }
    Ok((subtype, bytes))
}

fn results(m: &Message, offset: i32, msh_time: Option<i64>) -> Result<Vec<ResultGroup>, Hl7Error> {
    let mut groups: Vec<ResultGroup> = Vec::new();
    let mut orc: Option<&Segment> = None;
    let mut observed: Option<i64> = None;
    let mut specimen = String::new();
    let mut texts: Vec<String> = Vec::new();
    let finish = |g: &mut ResultGroup, texts: &mut Vec<String>| {
        let exam = exam_kind(&g.order.section);
        if let Some(kind) = exam {
            let report = g.report.get_or_insert_with(Report::default);
            report.kind = kind;
        }
        if let Some(r) = g.report.as_mut() {
            r.text = texts.join("\n");
            if r.kind.is_empty() {
                r.kind = "lab";
            }
        } else if exam.is_none() && !texts.is_empty() && g.results.is_empty() {
            g.report = Some(Report {
                kind: "other",
                text: texts.join("\n"),
                ..Default::default()
            });
        }
        texts.clear();
    };
    for s in &m.segments {
        match s.id() {
            "ORC" => orc = Some(s),
            "OBR" => {
                if let Some(g) = groups.last_mut() {
                    finish(g, &mut texts);
                }
                let order = order(m, orc.take(), Some(s), None, "lab", offset)?;
                let status = m.get(s, 25, 1);
                let observed_at = optional_time(m, s, 7, offset)?;
                // OBR-7 (collection) where OBX-14 is absent; OBR-15 the specimen in v2.3.
                observed = observed_at.or(order.ordered_at).or(msh_time);
                specimen = m.get(s, 15, 1);
                let reported_at = optional_time(m, s, 22, offset)?;
                let report = exam_kind(&order.section).map(|kind| Report {
                    kind,
                    item: order.item.clone(),
                    status: status.clone(),
                    observed_at,
                    reported_at,
                    ..Default::default()
                });
                groups.push(ResultGroup {
                    order,
                    results: Vec::new(),
                    report,
                });
            }
            "OBX" => {
                let Some(g) = groups.last_mut() else {
                    return Err(Hl7Error::at(
                        ErrorCode::SegmentSequence,
                        "OBX",
                        s.sequence,
                        0,
                        "an OBX came before any OBR",
                    ));
                };
                let value_type = m.get(s, 2, 1).to_ascii_uppercase();
                let item = coded(m, s, 3);
                if item.code.is_empty() {
                    return Err(Hl7Error::at(
                        ErrorCode::RequiredMissing,
                        "OBX",
                        s.sequence,
                        3,
                        "the observation identifier is empty",
                    ));
                }
                let is_exam = exam_kind(&g.order.section).is_some();
                match value_type.as_str() {
                    "ED" => {
                        let rep = s
                            .raw(5)
                            .split(m.separators.repetition)
                            .next()
                            .unwrap_or_default();
                        let (subtype, bytes) = ed_bytes(m, s, rep)?;
                        let report = g.report.get_or_insert_with(|| Report {
                            item: g.order.item.clone(),
                            status: m.get(s, 11, 1),
                            observed_at: observed,
                            ..Default::default()
                        });
                        if subtype == "PDF" {
                            report.pdf = Some(bytes);
                        } else {
                            texts.push(String::from_utf8_lossy(&bytes).into_owned());
                        }
                        continue;
                    }
                    "TX" | "FT" if is_exam || value_type == "FT" => {
                        texts.extend(m.repetitions(s.raw(5)).map(|r| m.unescape(r)));
                        continue;
                    }
                    _ if is_exam => {
                        let v: Vec<String> =
                            m.repetitions(s.raw(5)).map(|r| m.unescape(r)).collect();
                        texts.push(format!(
                            "{}: {}",
                            if item.text.is_empty() {
                                &item.code
                            } else {
                                &item.text
                            },
                            v.join(", ")
                        ));
                        continue;
                    }
                    _ => {}
                }
                let first = s
                    .raw(5)
                    .split(m.separators.repetition)
                    .next()
                    .unwrap_or_default();
                let (value, numeric) = match value_type.as_str() {
                    "NM" => {
                        let v = m.unescape(first).trim().to_owned();
                        let n = if v.is_empty() {
                            None
                        } else {
                            Some(v.parse::<f64>().ok().filter(|n| n.is_finite()).ok_or_else(
                                || {
                                    Hl7Error::at(
                                        ErrorCode::DataType,
                                        "OBX",
                                        s.sequence,
                                        5,
                                        format!("\"{v}\" is not a number (OBX-2 is NM)"),
                                    )
                                },
                            )?)
                        };
                        (v, n)
                    }
                    "SN" => {
                        let cmp = m.component(first, 1);
                        let n1 = m.component(first, 2);
                        let sep = m.component(first, 3);
                        let n2 = m.component(first, 4);
                        let num = n1.trim().parse::<f64>().ok();
                        (format!("{cmp}{n1}{sep}{n2}"), num)
                    }
                    "CE" | "CWE" | "CNE" => {
                        let text = m.component(first, 2);
                        (
                            if text.is_empty() {
                                m.component(first, 1)
                            } else {
                                text
                            },
                            None,
                        )
                    }
                    _ => (
                        m.repetitions(s.raw(5))
                            .map(|r| m.unescape(r))
                            .collect::<Vec<_>>()
                            .join(" "),
                        None,
                    ),
                };
                let range = m.text(s, 7);
                let (low, high) = parse_range(&range);
                let unit = {
                    let u = m.get(s, 6, 1);
                    if u.is_empty() { m.get(s, 6, 2) } else { u }
                };
                g.results.push(LabResult {
                    item,
                    sub_id: m.text(s, 4),
                    value_type,
                    value,
                    numeric,
                    unit,
                    range,
                    low,
                    high,
                    flag: flag(&m.get(s, 8, 1)),
                    status: m.get(s, 11, 1),
                    observed_at: optional_time(m, s, 14, offset)?.or(observed),
                    specimen: specimen.clone(),
                });
            }
            "SPM" => {
                if let Some(g) = groups.last_mut() {
                    let t = m.get(s, 4, 2);
                    let spm = if t.is_empty() { m.get(s, 4, 1) } else { t };
                    for r in &mut g.results {
                        r.specimen.clone_from(&spm);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(g) = groups.last_mut() {
        finish(g, &mut texts);
    }
    if groups.is_empty() {
        return Err(Hl7Error::at(
            ErrorCode::SegmentSequence,
            "OBR",
            1,
            0,
            "the result message has no OBR segment",
        ));
    }
    Ok(groups)
}

fn document(m: &Message, offset: i32, msh_time: Option<i64>) -> Result<Document, Hl7Error> {
    let txa = required(m, "TXA")?;
    let number = m.get(txa, 12, 1);
    if number.is_empty() {
        return Err(Hl7Error::at(
            ErrorCode::RequiredMissing,
            "TXA",
            1,
            12,
            "the unique document number is empty",
        ));
    }
    let code = m.get(txa, 2, 1).to_ascii_uppercase();
    let (kind, name) = match code.as_str() {
        "HP" | "AN" | "AD" | "ADM" | "H&P" => ("admission", "入院记录"),
        "PN" | "PR" => ("progress", "病程记录"),
        "DS" | "DIS" => ("discharge", "出院小结"),
        _ => ("other", "病历文书"),
    };
    let text = m.get(txa, 2, 2);
    let mut time = None;
    for f in [4, 6] {
        if let Some(t) = optional_time(m, txa, f, offset)? {
            time = Some(t);
            break;
        }
    }
    let mut mime = "text/plain";
    let mut content: Vec<u8> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for s in m.segments.iter().filter(|s| s.id() == "OBX") {
        match m.get(s, 2, 1).to_ascii_uppercase().as_str() {
            "ED" => {
                let rep = s
                    .raw(5)
                    .split(m.separators.repetition)
                    .next()
                    .unwrap_or_default();
                let (subtype, bytes) = ed_bytes(m, s, rep)?;
                mime = match subtype.as_str() {
                    "PDF" => "application/pdf",
                    "HTML" => "text/html",
                    _ => "text/plain",
                };
                content = bytes;
            }
            _ => lines.extend(m.repetitions(s.raw(5)).map(|r| m.unescape(r))),
        }
    }
    if content.is_empty() {
        let joined = lines.join("\n");
        if joined.trim_start().starts_with('<') && joined.contains("</") {
            mime = "text/html";
        }
        content = joined.into_bytes();
    }
    if content.is_empty() {
        return Err(Hl7Error::at(
            ErrorCode::RequiredMissing,
            "OBX",
            1,
            5,
            "the document has no content (OBX-5)",
        ));
    }
    Ok(Document {
        kind,
        number,
        title: if text.is_empty() { name.into() } else { text },
        status: m.get(txa, 17, 1),
        time: time.or(msh_time),
        mime,
        content,
    })
}

/// Reads a whole message; `offset` is the site's UTC offset in minutes, for times sent
/// without one.
pub fn parse_content(m: &Message, offset: i32) -> Result<Parsed, Hl7Error> {
    let header = Header::read(m, offset)?;
    let unsupported = || {
        Hl7Error::at(
            ErrorCode::UnsupportedEvent,
            "MSH",
            1,
            9,
            format!(
                "{}^{} is not taken here (taken: {SUPPORTED})",
                header.kind, header.event
            ),
        )
    };
    let content_kind = match (header.kind.as_str(), header.event.as_str()) {
        ("ADT", "A01" | "A03" | "A04" | "A08" | "A28" | "A31") => 0,
        ("ADT", "A40") => 1,
        ("ADT", _) => return Err(unsupported()),
        ("ORM", "O01") | ("OMG", "O19") | ("OML", "O21") => 2,
        ("ORU", "R01") => 3,
        ("MDM", "T02") => 4,
        ("ORM" | "OMG" | "OML" | "ORU" | "MDM", _) => return Err(unsupported()),
        _ => {
            return Err(Hl7Error::at(
                ErrorCode::UnsupportedMessageType,
                "MSH",
                1,
                9,
                format!(
                    "message type {} is not taken here (taken: {SUPPORTED})",
                    header.kind
                ),
            ));
        }
    };
    let person = person(m)?;
    let visit = visit(m, offset, &header.control_id)?;
    let diagnoses = diagnoses(m, offset)?;
    let discharge = header.kind == "ADT" && header.event == "A03";
    if discharge && visit.as_ref().is_none_or(|v| v.number.starts_with("msg:")) {
        return Err(Hl7Error::at(
            ErrorCode::RequiredMissing,
            "PV1",
            1,
            19,
            "a discharge (A03) needs the visit number",
        ));
    }
    let content = match content_kind {
        0 => Content::Person,
        1 => {
            let mrg = required(m, "MRG")?;
            let prior = ids(m, mrg, 1);
            if prior.id_card.is_none() && prior.record_number.is_none() {
                return Err(Hl7Error::at(
                    ErrorCode::RequiredMissing,
                    "MRG",
                    1,
                    1,
                    "the prior patient identifier is empty",
                ));
            }
            Content::Merge { prior }
        }
        2 => Content::Orders(orders(
            m,
            if header.kind == "OMG" { "exam" } else { "lab" },
            offset,
        )?),
        3 => Content::Results(results(m, offset, header.time)?),
        _ => Content::Document(document(m, offset, header.time)?),
    };
    Ok(Parsed {
        header,
        person,
        visit,
        discharge,
        diagnoses,
        content,
    })
}
