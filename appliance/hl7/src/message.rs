//! A decoded HL7 v2 message as segments and fields, with the escape sequences undone on read,
//! and the errors that name where in a message a problem is (segment, occurrence, field,
//! component), as an ERR segment reports them.

use crate::charset::{Charset, msh18_raw};

/// HL7 table 0357 codes an acknowledgement reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 100: segments out of order, or a required segment missing.
    SegmentSequence,
    /// 101: a required field is empty.
    RequiredMissing,
    /// 102: a field's value is not of its type (a date, a number).
    DataType,
    /// 103: a coded value not in its table.
    TableValue,
    /// 200: a message type not taken here.
    UnsupportedMessageType,
    /// 201: an event not taken here.
    UnsupportedEvent,
    /// 202: a processing id other than P (or T/D where allowed).
    UnsupportedProcessingId,
    /// 203: a version not taken here.
    UnsupportedVersion,
    /// 204: a key (a patient, an order) not known.
    UnknownKey,
    /// 205: a key that clashes with another record.
    DuplicateKey,
    /// 207: anything else the application refused, or failed at.
    Application,
}

impl ErrorCode {
    /// The table 0357 number.
    pub fn number(self) -> u16 {
        match self {
            Self::SegmentSequence => 100,
            Self::RequiredMissing => 101,
            Self::DataType => 102,
            Self::TableValue => 103,
            Self::UnsupportedMessageType => 200,
            Self::UnsupportedEvent => 201,
            Self::UnsupportedProcessingId => 202,
            Self::UnsupportedVersion => 203,
            Self::UnknownKey => 204,
            Self::DuplicateKey => 205,
            Self::Application => 207,
        }
    }

    /// The table 0357 text.
    pub fn text(self) -> &'static str {
        match self {
            Self::SegmentSequence => "Segment sequence error",
            Self::RequiredMissing => "Required field missing",
            Self::DataType => "Data type error",
            Self::TableValue => "Table value not found",
            Self::UnsupportedMessageType => "Unsupported message type",
            Self::UnsupportedEvent => "Unsupported event code",
            Self::UnsupportedProcessingId => "Unsupported processing id",
            Self::UnsupportedVersion => "Unsupported version id",
            Self::UnknownKey => "Unknown key identifier",
            Self::DuplicateKey => "Duplicate key identifier",
            Self::Application => "Application internal error",
        }
    }
}

/// Where in a message: segment id, its occurrence (1-based), field, component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// e.g. "PID".
    pub segment: String,
    /// Which occurrence of that segment, from 1.
    pub sequence: usize,
    /// The field number, from 1 (0: the segment as a whole).
    pub field: usize,
    /// The component, from 1, where it matters.
    pub component: Option<usize>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field == 0 {
            return write!(f, "{}", self.segment);
        }
        write!(f, "{}-{}", self.segment, self.field)?;
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if self.sequence > 1 {
            write!(f, " (segment {})", self.sequence)?;
        }
        Ok(())
    }
}

/// A problem with a message: what, where, and in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{text}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
pub struct Hl7Error {
    /// The table 0357 code.
    pub code: ErrorCode,
    /// Where, when it is one place.
    pub location: Option<Location>,
    /// What is wrong, for the sender's staff.
    pub text: String,
}

impl Hl7Error {
    /// An error at `segment`-`field` of the `sequence`-th such segment.
    pub fn at(
        code: ErrorCode,
        segment: &str,
        sequence: usize,
        field: usize,
        text: impl Into<String>,
    ) -> Self {
        Self {
            code,
            location: Some(Location {
                segment: segment.to_owned(),
                sequence,
                field,
                component: None,
            }),
            text: text.into(),
        }
    }

    /// An error about the message as a whole.
    pub fn whole(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            code,
            location: None,
            text: text.into(),
        }
    }

    /// Whether the message is refused outright (AR: not for us, or unreadable) rather than in
    /// error (AE: for us, but its content is wrong).
    pub fn rejects(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::UnsupportedMessageType
                | ErrorCode::UnsupportedEvent
                | ErrorCode::UnsupportedProcessingId
                | ErrorCode::UnsupportedVersion
        ) || self.location.is_none() && self.code == ErrorCode::SegmentSequence
    }
}

/// The delimiters MSH-1 and MSH-2 declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Separators {
    /// Field, `|`.
    pub field: char,
    /// Component, `^`.
    pub component: char,
    /// Repetition, `~`.
    pub repetition: char,
    /// Escape, `\`.
    pub escape: char,
    /// Subcomponent, `&`.
    pub subcomponent: char,
}

impl Default for Separators {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

/// One segment: `fields[0]` is its id; `fields[n]` is field n (for MSH too: `fields[1]` is
/// the field separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The fields, raw (escapes not undone).
    pub fields: Vec<String>,
    /// Which occurrence of this id in the message, from 1.
    pub sequence: usize,
}

impl Segment {
    /// The segment id.
    pub fn id(&self) -> &str {
        &self.fields[0]
    }

    /// Field `n` raw ("" when absent).
    pub fn raw(&self, n: usize) -> &str {
        self.fields.get(n).map(String::as_str).unwrap_or_default()
    }
}

/// A parsed message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its segments in order.
    pub segments: Vec<Segment>,
    /// Its delimiters.
    pub separators: Separators,
    /// The character set it came in.
    pub charset: Charset,
}

/// The most segments one message may have.
pub const MAX_SEGMENTS: usize = 10_000;

impl Message {
    /// Decodes (with the set MSH-18 names) and parses one message's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Hl7Error> {
        let name = msh18_raw(bytes).ok_or_else(|| {
            Hl7Error::whole(
                ErrorCode::SegmentSequence,
                "the message does not start with an MSH segment",
            )
        })?;
        let charset = Charset::from_msh18(&name)
            .map_err(|e| Hl7Error::at(ErrorCode::TableValue, "MSH", 1, 18, e))?;
        let text = charset
            .decode(bytes)
            .map_err(|e| Hl7Error::at(ErrorCode::DataType, "MSH", 1, 18, e))?;
        Self::parse_text(&text, charset)
    }

    /// Parses decoded text.
    pub fn parse_text(text: &str, charset: Charset) -> Result<Self, Hl7Error> {
        let mut chars = text.chars();
        let head: String = chars.by_ref().take(3).collect();
        if head != "MSH" {
            return Err(Hl7Error::whole(
                ErrorCode::SegmentSequence,
                "the message does not start with an MSH segment",
            ));
        }
        let enc: Vec<char> = text.chars().skip(3).take(5).collect();
        let bad_encoding = || {
            Hl7Error::at(
                ErrorCode::DataType,
                "MSH",
                1,
                2,
                "MSH-1 and MSH-2 must give five distinct delimiters, e.g. |^~\\&",
            )
        };
        if enc.len() < 5 || enc[..4].contains(&enc[4]) || enc[0].is_alphanumeric() {
            return Err(bad_encoding());
        }
        let separators = Separators {
            field: enc[0],
            component: enc[1],
            repetition: enc[2],
            escape: enc[3],
            subcomponent: enc[4],
        };
        let mut distinct = enc[..5].to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != 5 {
            return Err(bad_encoding());
        }
        let mut segments: Vec<Segment> = Vec::new();
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        for line in text.split(['\r', '\n']) {
            if line.trim().is_empty() {
                continue;
            }
            if segments.len() == MAX_SEGMENTS {
                return Err(Hl7Error::whole(
                    ErrorCode::SegmentSequence,
                    format!("more than {MAX_SEGMENTS} segments"),
                ));
            }
            let mut fields: Vec<String> = line.split(separators.field).map(str::to_owned).collect();
            let id = fields[0].clone();
            let n = counts.entry(id.clone()).or_default();
            *n += 1;
            let valid_id = id.len() == 3
                && id
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if !valid_id {
                return Err(Hl7Error::at(
                    ErrorCode::SegmentSequence,
                    &id.chars().take(8).collect::<String>(),
                    *n,
                    0,
                    format!(
                        "line {} is not a segment (a segment starts with a 3-character id and {})",
                        segments.len() + 1,
                        separators.field
                    ),
                ));
            }
            if matches!(id.as_str(), "MSH" | "BHS" | "FHS") {
                fields.insert(1, separators.field.to_string());
            }
            segments.push(Segment {
                fields,
                sequence: *n,
            });
        }
        Ok(Self {
            segments,
            separators,
            charset,
        })
    }

    /// The first segment with this id.
    pub fn first(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id() == id)
    }

    /// MSH.
    pub fn msh(&self) -> &Segment {
        &self.segments[0]
    }

    /// Every repetition of a raw field.
    pub fn repetitions<'a>(&self, raw: &'a str) -> impl Iterator<Item = &'a str> + use<'a> {
        let rep = self.separators.repetition;
        raw.split(rep).filter(|r| !r.is_empty())
    }

    /// Component `c` (from 1) of one raw repetition, its first subcomponent, unescaped.
    pub fn component(&self, rep: &str, c: usize) -> String {
        let comp = rep
            .split(self.separators.component)
            .nth(c - 1)
            .unwrap_or_default();
        let sub = comp
            .split(self.separators.subcomponent)
            .next()
            .unwrap_or_default();
        self.unescape(sub)
    }

    /// Component `c` of field `n`'s first repetition in segment `s`, unescaped.
    pub fn get(&self, s: &Segment, n: usize, c: usize) -> String {
        let first = s
            .raw(n)
            .split(self.separators.repetition)
            .next()
            .unwrap_or_default();
        self.component(first, c)
    }

    /// Field `n`'s first repetition, whole, unescaped (components joined as sent).
    pub fn text(&self, s: &Segment, n: usize) -> String {
        let first = s
            .raw(n)
            .split(self.separators.repetition)
            .next()
            .unwrap_or_default();
        self.unescape(first)
    }

    /// Undoes HL7 escapes: `\F\ \S\ \T\ \R\ \E\`, `\.br\` (a line break), `\Xhh..\` (bytes
    /// in hex, read as UTF-8); other escapes (formatting) are dropped.
    pub fn unescape(&self, s: &str) -> String {
        let e = self.separators.escape;
        if !s.contains(e) {
            return s.to_owned();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find(e) {
            out.push_str(&rest[..i]);
            let after = &rest[i + e.len_utf8()..];
            let Some(j) = after.find(e) else {
                out.push_str(&rest[i..]);
                return out;
            };
            let seq = &after[..j];
            let sep = &self.separators;
            match seq {
                "F" => out.push(sep.field),
                "S" => out.push(sep.component),
                "T" => out.push(sep.subcomponent),
                "R" => out.push(sep.repetition),
                "E" => out.push(sep.escape),
                ".br" => out.push('\n'),
                x if x.starts_with('X') => {
                    let hex = &x.as_bytes()[1..];
                    let bytes: Vec<u8> = hex
                        .chunks_exact(2)
                        .filter_map(|pair| {
                            std::str::from_utf8(pair)
                                .ok()
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                        })
                        .collect();
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
                _ => {}
            }
            rest = &after[j + e.len_utf8()..];
        }
        out.push_str(rest);
        out
    }

    /// `text` escaped for a field.
    pub fn escape(&self, text: &str) -> String {
        let sep = &self.separators;
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            let code = match c {
                c if c == sep.escape => "E",
                c if c == sep.field => "F",
                c if c == sep.component => "S",
                c if c == sep.subcomponent => "T",
                c if c == sep.repetition => "R",
                '\r' | '\n' => ".br",
                _ => {
                    out.push(c);
                    continue;
                }
            };
            out.push(sep.escape);
            out.push_str(code);
            out.push(sep.escape);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_components_and_escapes() {
        let m = Message::parse(
            b"MSH|^~\\&|HIS|H1|||20260101||ORU^R01|7|P|2.5\rOBX|1|TX|X^Y||a\\F\\b\\.br\\c\\S\\d~second\r",
        )
        .unwrap();
        assert_eq!(m.msh().raw(1), "|");
        assert_eq!(m.msh().raw(2), "^~\\&");
        assert_eq!(m.get(m.msh(), 9, 2), "R01");
        assert_eq!(m.msh().raw(10), "7");
        let obx = m.first("OBX").unwrap();
        assert_eq!(m.text(obx, 5), "a|b\nc^d");
        assert_eq!(m.repetitions(obx.raw(5)).count(), 2);
        assert_eq!(m.unescape(&m.escape("x|y^z\\w&\n")), "x|y^z\\w&\n");
        assert_eq!(
            m.unescape("\\XE5BC\\\\X张三\\"),
            "\u{fffd}",
            "hex escapes read bytewise"
        );
    }

    #[test]
    fn errors_name_the_place() {
        let e = Message::parse(b"PID|1").unwrap_err();
        assert_eq!(e.code, ErrorCode::SegmentSequence);
        let e = Message::parse(b"MSH|^~\\&|A\rpid|1").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = Message::parse(b"MSH|^^\\&|A").unwrap_err();
        assert_eq!(e.location.unwrap().field, 2);
        let e = Message::parse(b"MSH|^~\\&|A|||||||||||||||KOI8-R").unwrap_err();
        assert_eq!(
            e.to_string(),
            "MSH-18: character set \"KOI8-R\" is not supported: send UNICODE UTF-8 or GB 18030-2000 (GBK)"
        );
    }
}

/// The messages of a batch (`FHS`/`BHS` ... `BTS`/`FTS`), each from its MSH to the next, as
/// raw bytes; None when `bytes` is not a batch.
pub fn split_batch(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    if !(bytes.starts_with(b"FHS") || bytes.starts_with(b"BHS")) {
        return None;
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in bytes.split(|&b| b == b'\r' || b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let id = line.get(..3).unwrap_or_default();
        match id {
            b"FHS" | b"BHS" | b"BTS" | b"FTS" => continue,
            b"MSH" => out.push(line.to_vec()),
            _ => match out.last_mut() {
                Some(m) => {
                    m.push(b'\r');
                    m.extend_from_slice(line);
                }
                // Segments before any MSH: kept as a message of their own, refused as such.
                None => out.push(line.to_vec()),
            },
        }
    }
    Some(out)
}

#[cfg(test)]
mod batch_tests {
    #[test]
    fn a_batch_splits_at_each_msh() {
        let b = b"BHS|^~\\&|X\rMSH|^~\\&|1\rPID|1\rMSH|^~\\&|2\rBTS|2\r";
        let parts = super::split_batch(b).unwrap();
        assert_eq!(
            parts,
            vec![b"MSH|^~\\&|1\rPID|1".to_vec(), b"MSH|^~\\&|2".to_vec()]
        );
        assert!(super::split_batch(b"MSH|^~\\&|1").is_none());
    }
}
