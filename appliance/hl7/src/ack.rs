//! Original-mode acknowledgements: `ACK` with MSA (AA accepted, AE error, AR rejected) and, for
//! an error, an ERR segment naming the segment, field and table 0357 code, in the character
//! set the message came in.

use crate::charset::Charset;
use crate::message::{Hl7Error, Message};
use crate::time::format_dtm;

/// MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Accepted and committed.
    Accept,
    /// Not stored: the content is wrong.
    Error,
    /// Not stored: not for us, or unreadable.
    Reject,
}

impl AckCode {
    /// AA, AE or AR.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "AA",
            Self::Error => "AE",
            Self::Reject => "AR",
        }
    }
}

/// What a reply echoes of the message it answers (best effort: a message that could not be
/// parsed is answered with what could be read).
#[derive(Debug, Clone, Default)]
pub struct Echo {
    /// MSH-3 and MSH-4 of the message (MSH-5 and MSH-6 of the reply).
    pub sender: (String, String),
    /// MSH-5 and MSH-6 of the message (MSH-3 and MSH-4 of the reply).
    pub receiver: (String, String),
    /// MSH-9.2.
    pub event: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-12.
    pub version: String,
    /// The set to answer in.
    pub charset: Option<Charset>,
}

impl Echo {
    /// Reads what it can from a parsed message.
    pub fn of(m: &Message) -> Self {
        let s = m.msh();
        Self {
            sender: (m.get(s, 3, 1), m.get(s, 4, 1)),
            receiver: (m.get(s, 5, 1), m.get(s, 6, 1)),
            event: m.get(s, 9, 2),
            control_id: m.text(s, 10),
            version: m.get(s, 12, 1),
            charset: Some(m.charset),
        }
    }

    /// Reads what it can from raw bytes that would not parse (MSH-10 of a broken frame).
    pub fn of_raw(bytes: &[u8]) -> Self {
        let line = bytes
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        if line.len() < 8 || &line[..3] != b"MSH" {
            return Self::default();
        }
        let sep = line[3];
        let fields: Vec<String> = line
            .split(|&b| b == sep)
            .map(|f| {
                let first = f.split(|&b| b == b'^').next().unwrap_or_default();
                String::from_utf8_lossy(first).into_owned()
            })
            .collect();
        let f = |n: usize| fields.get(n - 1).cloned().unwrap_or_default();
        let event = line
            .split(|&b| b == sep)
            .nth(8)
            .and_then(|t| t.split(|&b| b == b'^').nth(1))
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .unwrap_or_default();
        Self {
            sender: (f(3), f(4)),
            receiver: (f(5), f(6)),
            event,
            control_id: f(10).chars().take(crate::content::MAX_CONTROL_ID).collect(),
            version: f(12),
            charset: None,
        }
    }
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '|' | '^' | '~' | '\\' | '&' | '\r' | '\n') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The acknowledgement, encoded: `now` (ms since the epoch) and `offset` (minutes) give MSH-7;
/// `ack_id` is MSH-10.
pub fn acknowledge(
    echo: &Echo,
    code: AckCode,
    error: Option<&Hl7Error>,
    text: &str,
    ack_id: &str,
    now: i64,
    offset: i32,
) -> Vec<u8> {
    let charset = echo.charset.unwrap_or(Charset::Utf8);
    let our_app = if echo.receiver.0.is_empty() {
        "APPLIANCE"
    } else {
        &echo.receiver.0
    };
    let version = if echo.version.is_empty() {
        "2.5.1"
    } else {
        &echo.version
    };
    let mut out = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||ACK^{}^ACK|{}|P|{}|||||CHN|{}\r",
        clean(our_app),
        clean(&echo.receiver.1),
        clean(&echo.sender.0),
        clean(&echo.sender.1),
        format_dtm(now, offset),
        clean(&echo.event),
        clean(ack_id),
        clean(version),
        charset.msh18(),
    );
    let words = error
        .map(|e| e.to_string())
        .unwrap_or_else(|| text.to_owned());
    out.push_str(&format!(
        "MSA|{}|{}|{}\r",
        code.as_str(),
        clean(&echo.control_id),
        clean(&words).chars().take(80).collect::<String>()
    ));
    if let Some(e) = error {
        let (seg, seq, field, comp) = match &e.location {
            Some(l) => (
                clean(&l.segment),
                l.sequence.to_string(),
                if l.field == 0 {
                    String::new()
                } else {
                    l.field.to_string()
                },
                l.component.map(|c| c.to_string()).unwrap_or_default(),
            ),
            None => Default::default(),
        };
        let number = e.code.number();
        out.push_str(&format!(
            "ERR|{seg}^{seq}^{field}^{number}&{}&HL70357|{seg}^{seq}^{field}^^{comp}|{number}^{}^HL70357|E||||{}\r",
            e.code.text(),
            e.code.text(),
            clean(&e.text),
        ));
    }
    charset.encode(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ErrorCode;

    #[test]
    fn an_error_names_segment_field_and_code() {
        let text =
            "MSH|^~\\&|HIS|城东|APPL|C|20260101||ADT^A01|X1|P|2.5|||||CHN|GB 18030-2000\rPID|1";
        let m = Message::parse(&Charset::Gb18030.encode(text)).unwrap();
        let err = Hl7Error::at(ErrorCode::DataType, "PID", 1, 7, "bad birth date");
        let bytes = acknowledge(&Echo::of(&m), AckCode::Error, Some(&err), "", "A1", 0, 480);
        let reply = Charset::Gb18030.decode(&bytes).unwrap();
        let lines: Vec<&str> = reply.split('\r').collect();
        assert!(
            lines[0].starts_with("MSH|^~\\&|APPL|C|HIS|城东|19700101080000||ACK^A01^ACK|A1|P|2.5|"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("|GB 18030-2000"));
        assert_eq!(lines[1], "MSA|AE|X1|PID-7: bad birth date");
        assert!(lines[2].starts_with("ERR|PID^1^7^102&Data type error&HL70357|PID^1^7^^|102^Data type error^HL70357|E||||bad birth date"), "{}", lines[2]);
    }

    #[test]
    fn a_broken_frame_still_names_its_control_id() {
        let e = Echo::of_raw(b"MSH|^~\\&|LIS|LAB|||2026||ORU^R01|C77|P|2.5\rOBX|1|NM");
        assert_eq!(e.control_id, "C77");
        assert_eq!(e.event, "R01");
        assert_eq!(e.sender, ("LIS".into(), "LAB".into()));
    }
}
