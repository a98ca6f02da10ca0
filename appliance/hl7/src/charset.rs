//! The character sets MSH-18 may name, and decoding a message's bytes with them. Most Chinese
//! HIS send GB 18030 (or its subsets GBK and GB2312); newer ones UTF-8. A message without
//! MSH-18 must be UTF-8 (ASCII is a subset); a name not known here is refused, never guessed.

use encoding_rs::{Encoding, GB18030, UTF_8, WINDOWS_1252};

/// A character set this crate decodes and encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `UNICODE UTF-8`, and the default when MSH-18 is empty.
    Utf8,
    /// `GB 18030-2000` (also written GB18030, GBK, GB2312, CP936).
    Gb18030,
    /// `ASCII`: 7-bit only.
    Ascii,
    /// `8859/1`: Latin-1.
    Latin1,
}

impl Charset {
    /// The set MSH-18 names (its first repetition), or why it is refused.
    pub fn from_msh18(name: &str) -> Result<Self, String> {
        let n = name.trim().to_ascii_uppercase();
        let compact: String = n
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '_'))
            .collect();
        Ok(match compact.as_str() {
            "" | "UNICODEUTF8" | "UTF8" => Self::Utf8,
            "GB180302000" | "GB18030" | "GB180302005" | "GBK" | "GB2312" | "CP936" => Self::Gb18030,
            "ASCII" => Self::Ascii,
            "8859/1" | "ISO88591" | "LATIN1" => Self::Latin1,
            _ => {
                return Err(format!(
                    "character set \"{name}\" is not supported: send UNICODE UTF-8 or GB 18030-2000 (GBK)"
                ));
            }
        })
    }

    /// The name to write in MSH-18 of a reply.
    pub fn msh18(self) -> &'static str {
        match self {
            Self::Utf8 => "UNICODE UTF-8",
            Self::Gb18030 => "GB 18030-2000",
            Self::Ascii => "ASCII",
            Self::Latin1 => "8859/1",
        }
    }

    fn encoding(self) -> &'static Encoding {
        match self {
            Self::Utf8 | Self::Ascii => UTF_8,
            Self::Gb18030 => GB18030,
            Self::Latin1 => WINDOWS_1252,
        }
    }

    /// `bytes` as text, or why they are not text in this set.
    pub fn decode(self, bytes: &[u8]) -> Result<String, String> {
        if self == Self::Ascii && !bytes.is_ascii() {
            return Err("MSH-18 says ASCII but the message has bytes above 0x7F".into());
        }
        let (text, had_errors) = self
            .encoding()
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|t| (t, false))
            .unwrap_or_else(|| (Default::default(), true));
        if had_errors {
            return Err(match self {
                Self::Utf8 => "the message is not valid UTF-8: name its character set in MSH-18 (e.g. GB 18030-2000)".into(),
                _ => format!("the message is not valid {}", self.msh18()),
            });
        }
        Ok(text.into_owned())
    }

    /// `text` in this set (characters it cannot hold become `?`).
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Self::Utf8 => text.as_bytes().to_vec(),
            Self::Ascii => text
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
            _ => {
                let (bytes, _, _) = self.encoding().encode(text);
                bytes.into_owned()
            }
        }
    }
}

/// MSH-18 read from the raw bytes (the separators are ASCII in every set allowed here), so the
/// message can be decoded before it is parsed. None when the bytes do not start with MSH.
pub fn msh18_raw(bytes: &[u8]) -> Option<String> {
    let line = bytes.split(|&b| b == b'\r' || b == b'\n').next()?;
    if line.len() < 4 || &line[..3] != b"MSH" {
        return None;
    }
    let sep = line[3];
    // MSH-1 is the separator itself: the n-th split piece is MSH-(n+1).
    let field = line.split(|&b| b == sep).nth(17).unwrap_or_default();
    let rep = field.split(|&b| b == b'~').next().unwrap_or_default();
    Some(String::from_utf8_lossy(rep).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb18030_names_round_trip() {
        let name = "张三丰";
        let bytes = Charset::Gb18030.encode(name);
        assert_eq!(bytes.len(), 6, "two bytes a character");
        assert_eq!(Charset::Gb18030.decode(&bytes).as_deref(), Ok(name));
        assert!(Charset::Utf8.decode(&bytes).is_err());
        for n in ["GB 18030-2000", "GBK", "gb2312", "GB18030"] {
            assert_eq!(Charset::from_msh18(n), Ok(Charset::Gb18030), "{n}");
        }
        let e = Charset::from_msh18("ISO IR87").unwrap_err();
        assert!(e.contains("ISO IR87"), "{e}");
    }

    #[test]
    fn msh18_is_read_before_decoding() {
        let m = b"MSH|^~\\&|HIS|H1|R|R|20260101||ADT^A01|1|P|2.5|||||CHN|GB 18030-2000\rPID|";
        assert_eq!(msh18_raw(m).as_deref(), Some("GB 18030-2000"));
        assert_eq!(msh18_raw(b"MSH|^~\\&|A").as_deref(), Some(""));
        assert_eq!(msh18_raw(b"PID|1"), None);
    }
}
