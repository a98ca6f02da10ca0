//! DICOM UIDs (PS3.5 9): the one check of their syntax, shared by imaging and the appliance,
//! and [`Uid`], a string that passed it.

use std::fmt;

/// Whether `s` is a UID: digits and dots, no empty component, at most 64 characters.
pub fn is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
}

/// Why a string is not a UID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a UID")]
pub struct NotAUid(pub String);

/// A syntactically valid UID.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Uid(String);

impl Uid {
    /// Checks `s` ([`is_valid`]).
    pub fn parse(s: &str) -> Result<Self, NotAUid> {
        Self::try_from(s.to_owned())
    }

    /// The UID's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Uid {
    type Error = NotAUid;

    fn try_from(s: String) -> Result<Self, NotAUid> {
        if is_valid(&s) {
            Ok(Self(s))
        } else {
            Err(NotAUid(s))
        }
    }
}

impl From<Uid> for String {
    fn from(u: Uid) -> Self {
        u.0
    }
}

impl AsRef<str> for Uid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_digits_and_dots_up_to_64() {
        for good in ["1.2.840.10008.1.2", "0", &"1".repeat(64)] {
            assert!(is_valid(good), "{good}");
            assert_eq!(Uid::parse(good).map(|u| u.to_string()), Ok(good.to_owned()));
        }
        for bad in ["", ".1", "1.", "1..2", "1.2a", "1 2", &"1".repeat(65)] {
            assert!(!is_valid(bad), "{bad}");
            assert_eq!(Uid::parse(bad), Err(NotAUid(bad.to_owned())));
        }
        let u: Uid = serde_json::from_str(r#""1.2.3""#).unwrap();
        assert_eq!(serde_json::to_string(&u).unwrap(), r#""1.2.3""#);
        let e = serde_json::from_str::<Uid>(r#""1.x""#).unwrap_err();
        assert!(e.to_string().contains("is not a UID"), "{e}");
    }
}
