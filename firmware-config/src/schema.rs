//! The schema machinery: the `section!` macro declares a section's fields once, with their
//! docs and defaults, and from that one declaration come the struct, the field-by-field
//! merge of a layer (so every bad field is reported, not just the first), the TOML view used by
//! `config show`, and the commented sample.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, FieldError, Origin};
use crate::types::{
    AeTitle, ByteSize, DatabaseUrl, DicomCaller, DicomPeer, FhirSource, Hl7Source, HostName,
    HttpUrl, MASK, Port, PortRange, Secret,
};

/// A field's documentation, taken from its doc comment.
#[derive(Debug, Clone, Copy)]
pub struct FieldDoc {
    /// The key inside its section.
    pub key: &'static str,
    /// Doc comment lines.
    pub doc: &'static [&'static str],
}

/// A `[section]` of the configuration.
pub trait Section: Default {
    /// The section's key in TOML and in `APPLIANCE__SECTION__KEY`.
    const KEY: &'static str;
    /// Doc comment lines of the section.
    const DOC: &'static [&'static str];
    /// The fields, in declaration order.
    const FIELDS: &'static [FieldDoc];

    /// Merges one layer's table for this section into `self`, field by field.
    fn apply(&mut self, table: &toml::Table, ctx: &mut ApplyCtx<'_>);

    /// The section as TOML; unset optional fields are left out.
    fn to_table(&self) -> toml::Table;
}

/// A type a configuration field may have: how it reads from a TOML value and writes back.
pub trait FieldType: Sized {
    /// Whether values of this type are secret: errors never echo them.
    const SENSITIVE: bool = false;

    /// Reads the value, or says why it cannot.
    fn from_toml(v: toml::Value) -> Result<Self, String>;

    /// Writes the value; `None` when unset.
    fn to_toml(&self) -> Option<toml::Value>;
}

pub(crate) fn via_serde<T: DeserializeOwned>(v: toml::Value) -> Result<T, String> {
    T::deserialize(v).map_err(|e| e.message().trim().to_owned())
}

pub(crate) fn to_value<T: Serialize>(t: &T) -> Option<toml::Value> {
    // Every field type serialises to a TOML value (strings, numbers, arrays, inline tables).
    toml::Value::try_from(t).ok()
}

/// Implements `FieldType` through serde for types whose serde form is their TOML form.
macro_rules! serde_field {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::schema::FieldType for $t {
            fn from_toml(v: toml::Value) -> Result<Self, String> {
                $crate::schema::via_serde(v)
            }
            fn to_toml(&self) -> Option<toml::Value> {
                $crate::schema::to_value(self)
            }
        }
    )*};
}

pub(crate) use serde_field;

serde_field!(
    bool,
    u32,
    u64,
    String,
    PathBuf,
    Port,
    PortRange,
    AeTitle,
    ByteSize,
    DatabaseUrl,
    HttpUrl,
    HostName,
    Vec<String>,
    Vec<DicomCaller>,
    Vec<DicomPeer>,
    Vec<Hl7Source>,
    Vec<FhirSource>,
);

impl FieldType for IpAddr {
    fn from_toml(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) => s
                .parse()
                .map_err(|_| format!("\"{s}\" is not an IP address")),
            other => Err(format!(
                "expected an IP address as a string, found {}",
                other.type_str()
            )),
        }
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::String(self.to_string()))
    }
}

impl FieldType for Secret {
    const SENSITIVE: bool = true;
    fn from_toml(v: toml::Value) -> Result<Self, String> {
        via_serde(v)
    }
    fn to_toml(&self) -> Option<toml::Value> {
        to_value(self)
    }
}

/// An optional field: an empty string (TOML has no null) unsets it.
impl<T: FieldType> FieldType for Option<T> {
    const SENSITIVE: bool = T::SENSITIVE;
    fn from_toml(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) if s.is_empty() => Ok(None),
            v => T::from_toml(v).map(Some),
        }
    }
    fn to_toml(&self) -> Option<toml::Value> {
        self.as_ref().and_then(T::to_toml)
    }
}

/// State while merging one layer: where its values come from, the errors found, and which
/// layer last set each field (so validation can say where a bad value came from).
#[derive(Debug)]
pub struct ApplyCtx<'a> {
    pub(crate) origin: Origin,
    /// Values from the environment or command line arrive as text: `8080` may be a number or a
    /// string, and the field's type decides.
    pub(crate) textual: bool,
    pub(crate) errors: &'a mut Vec<FieldError>,
    pub(crate) origins: &'a mut BTreeMap<String, Origin>,
}

impl ApplyCtx<'_> {
    /// Sets `slot` from `value`, or records why not.
    pub fn set<T: FieldType>(
        &mut self,
        slot: &mut T,
        section: &str,
        key: &str,
        value: &toml::Value,
    ) {
        let path = format!("{section}.{key}");
        let mut candidates = Vec::with_capacity(2);
        if let (true, toml::Value::String(text)) = (self.textual, value)
            && let Some(v) = parse_text(text)
        {
            candidates.push(v);
        }
        candidates.push(value.clone());
        let mut first_error = None;
        for candidate in candidates {
            match T::from_toml(candidate) {
                Ok(v) => {
                    *slot = v;
                    self.origins.insert(path, self.origin.clone());
                    return;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let mut reason = first_error.unwrap_or_default();
        if T::SENSITIVE {
            reason = mask_quoted(&reason);
        }
        self.errors.push(FieldError {
            kind: classify(&reason),
            value: Some(show_value(value, T::SENSITIVE)),
            reason,
            path,
            origin: self.origin.clone(),
        });
    }

    /// Records a key the schema does not have.
    pub fn unknown(&mut self, prefix: &str, key: &str, value: &toml::Value, known: &[&str]) {
        let hint = match closest(key, known) {
            Some(k) => format!("; did you mean `{k}`?"),
            None => String::new(),
        };
        self.errors.push(FieldError {
            path: format!("{prefix}{key}"),
            kind: ErrorKind::UnknownKey,
            value: Some(show_value(value, true)),
            reason: format!("unknown key{hint} (known: {})", known.join(", ")),
            origin: self.origin.clone(),
        });
    }

    /// Records a value that should have been a table.
    pub fn not_a_table(&mut self, path: &str, value: &toml::Value) {
        self.errors.push(FieldError {
            path: path.to_owned(),
            kind: ErrorKind::WrongType,
            value: Some(show_value(value, true)),
            reason: format!("expected a table [{path}], found {}", value.type_str()),
            origin: self.origin.clone(),
        });
    }
}

/// Serde quotes the offending value between backticks; a secret's error must not repeat it.
fn mask_quoted(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    for (i, part) in reason.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { MASK } else { part });
    }
    out
}

/// Reads environment or command-line text as a TOML value: `8080`, `true`, `["a", "b"]`.
fn parse_text(text: &str) -> Option<toml::Value> {
    let doc: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    doc.get("v").cloned()
}

fn classify(reason: &str) -> ErrorKind {
    if reason.contains("out of range") {
        ErrorKind::OutOfRange
    } else if reason.contains("URL") {
        ErrorKind::BadUrl
    } else {
        ErrorKind::WrongType
    }
}

fn show_value(v: &toml::Value, sensitive: bool) -> String {
    if sensitive && !matches!(v, toml::Value::Table(_)) {
        MASK.to_owned()
    } else if sensitive {
        "{...}".to_owned()
    } else {
        v.to_string()
    }
}

/// The known key nearest to `key` by edit distance, when it is near enough to be a typo.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Declares a configuration section: its struct, defaults, docs and merge, from one list of
/// `/// doc` `name: Type = default,` fields.
macro_rules! section {
    (
        $(#[doc = $sdoc:literal])*
        $name:ident = $key:literal {
            $(
                $(#[doc = $fdoc:literal])*
                $field:ident : $ty:ty = $default:expr,
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[doc = $fdoc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $crate::schema::Section for $name {
            const KEY: &'static str = $key;
            const DOC: &'static [&'static str] = &[$($sdoc),*];
            const FIELDS: &'static [$crate::schema::FieldDoc] = &[$(
                $crate::schema::FieldDoc { key: stringify!($field), doc: &[$($fdoc),*] },
            )*];

            fn apply(&mut self, table: &toml::Table, ctx: &mut $crate::schema::ApplyCtx<'_>) {
                for (k, v) in table {
                    match k.as_str() {
                        $( stringify!($field) => ctx.set(&mut self.$field, $key, k, v), )*
                        _ => ctx.unknown(concat!($key, "."), k, v, &[$(stringify!($field)),*]),
                    }
                }
            }

            fn to_table(&self) -> toml::Table {
                let mut t = toml::Table::new();
                $(
                    if let Some(v) = $crate::schema::FieldType::to_toml(&self.$field) {
                        t.insert(stringify!($field).to_owned(), v);
                    }
                )*
                t
            }
        }
    };
}

pub(crate) use section;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(closest("htpp", &["http", "dicom"]), Some("http"));
        assert_eq!(closest("zzzzzz", &["http", "dicom"]), None);
    }

    #[test]
    fn text_values_are_read_as_toml_first() {
        assert_eq!(parse_text("8080"), Some(toml::Value::Integer(8080)));
        assert_eq!(parse_text("APPLIANCE"), None);
        assert_eq!(
            parse_text(r#"["a", "b"]"#),
            Some(toml::Value::Array(vec!["a".into(), "b".into()]))
        );
    }
}
