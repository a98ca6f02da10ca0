//! What a participant sends on the signalling socket, parsed and checked without IO: the
//! session loop and the `signalling` fuzz target read every message through [`parse`], and a
//! refusal says which field is wrong and why, in the error message the client is sent.

use serde_json::{Value, json};

/// The longest SDP or candidate accepted, in bytes.
pub const MAX_TEXT: usize = 64 << 10;

/// A participant's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Leaving the room for good (a drop keeps the place for the grace period).
    Leave,
    /// Its own microphone or camera muted or unmuted.
    Mute {
        /// `"audio"` or `"video"`.
        kind: &'static str,
        /// Muted now.
        muted: bool,
    },
    /// An SDP offer (the first, or a renegotiation).
    Offer {
        /// The description, at most [`MAX_TEXT`] bytes.
        sdp: String,
    },
    /// An SDP answer to the server's offer.
    Answer {
        /// The description, at most [`MAX_TEXT`] bytes.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// The `candidate:` line, at most [`MAX_TEXT`] bytes.
        candidate: String,
        /// The media section it belongs to, by mid.
        sdp_mid: Option<String>,
        /// The media section it belongs to, by index.
        sdp_mline_index: Option<u16>,
    },
}

/// A message refused: sent back as `{"type":"error", code, field, message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// `malformed` (not JSON), `invalid` (a field's value), `media` (an SDP or candidate
    /// field), `unknown` (the type).
    pub code: &'static str,
    /// The field at fault, when there is one.
    pub field: Option<&'static str>,
    /// Why, in words.
    pub message: String,
}

impl Refusal {
    /// The error message sent to the participant.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "type": "error", "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            v["field"] = json!(field);
        }
        v
    }
}

/// Parses one text frame from a participant.
pub fn parse(text: &str) -> Result<Incoming, Refusal> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Err(Refusal {
            code: "malformed",
            field: None,
            message: "not JSON".into(),
        });
    };
    let text_field = |field: &'static str| {
        v[field]
            .as_str()
            .filter(|s| !s.is_empty() && s.len() <= MAX_TEXT)
            .map(str::to_owned)
            .ok_or_else(|| Refusal {
                code: "media",
                field: Some(field),
                message: format!("{field}: a non-empty string up to 64 KiB"),
            })
    };
    match v["type"].as_str() {
        Some("leave") => Ok(Incoming::Leave),
        Some("mute") => match (v["kind"].as_str(), v["muted"].as_bool()) {
            (Some("audio"), Some(muted)) => Ok(Incoming::Mute {
                kind: "audio",
                muted,
            }),
            (Some("video"), Some(muted)) => Ok(Incoming::Mute {
                kind: "video",
                muted,
            }),
            _ => Err(Refusal {
                code: "invalid",
                field: Some("kind"),
                message: "mute needs kind (audio or video) and muted (true or false)".into(),
            }),
        },
        Some("offer") => Ok(Incoming::Offer {
            sdp: text_field("sdp")?,
        }),
        Some("answer") => Ok(Incoming::Answer {
            sdp: text_field("sdp")?,
        }),
        Some("candidate") => Ok(Incoming::Candidate {
            candidate: text_field("candidate")?,
            sdp_mid: v["sdpMid"].as_str().map(str::to_owned),
            sdp_mline_index: v["sdpMLineIndex"]
                .as_u64()
                .and_then(|i| u16::try_from(i).ok()),
        }),
        other => Err(Refusal {
            code: "unknown",
            field: Some("type"),
            message: format!("unknown message type {other:?}"),
        }),
    }
}

/// The DTLS fingerprint an SDP carries (`a=fingerprint:`, the first one): it identifies the
/// connection that made the SDP.
pub fn fingerprint(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=fingerprint:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_type_parses_and_bad_fields_are_named() {
        assert_eq!(parse(r#"{"type":"leave"}"#), Ok(Incoming::Leave));
        assert_eq!(
            parse(r#"{"type":"mute","kind":"video","muted":true}"#),
            Ok(Incoming::Mute {
                kind: "video",
                muted: true
            })
        );
        assert_eq!(
            parse(
                r#"{"type":"candidate","candidate":"candidate:1 1 udp 1 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":70000}"#
            ),
            Ok(Incoming::Candidate {
                candidate: "candidate:1 1 udp 1 10.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: None,
            })
        );
        let e = parse("{not json").unwrap_err();
        assert_eq!((e.code, e.field), ("malformed", None));
        assert_eq!(e.to_json().get("field"), None);
        let e = parse(r#"{"type":"mute","kind":"screen","muted":true}"#).unwrap_err();
        assert_eq!((e.code, e.field), ("invalid", Some("kind")));
        let e = parse(r#"{"type":"offer","sdp":""}"#).unwrap_err();
        assert_eq!((e.code, e.field), ("media", Some("sdp")));
        let long = format!(
            r#"{{"type":"answer","sdp":"{}"}}"#,
            "v".repeat(MAX_TEXT + 1)
        );
        assert_eq!(parse(&long).unwrap_err().field, Some("sdp"));
        let e = parse(r#"{"type":"dance"}"#).unwrap_err();
        assert_eq!(e.to_json()["field"], "type");
        assert!(e.message.contains("\"dance\""), "{}", e.message);
    }

    #[test]
    fn the_first_fingerprint_is_read() {
        let sdp = "v=0\r\na=fingerprint:sha-256 AB:CD\r\na=fingerprint:sha-1 EF\r\n";
        assert_eq!(fingerprint(sdp), Some("sha-256 AB:CD"));
        assert_eq!(fingerprint("v=0\r\n"), None);
    }
}
