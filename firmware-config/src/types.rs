//! Value types with their bounds built in: ports, port ranges, AE titles, byte sizes, URLs,
//! secrets. Each parses from the TOML value a person writes and says plainly why a value is
//! refused, so a bad field never reaches the daemons.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroize;

/// A TCP or UDP port, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(u16);

impl Port {
    /// A port from a number known to be in range; `None` for 0.
    pub const fn new(n: u16) -> Option<Self> {
        if n == 0 { None } else { Some(Self(n)) }
    }

    /// The port number.
    pub const fn get(self) -> u16 {
        self.0
    }

    fn from_i64(n: i64) -> Result<Self, String> {
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(Self(p)),
            _ => Err(format!("port {n} is out of range: a port is 1-65535")),
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number 1-65535")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Port, E> {
                Port::from_i64(n).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Port, E> {
                Port::from_i64(i64::try_from(n).unwrap_or(i64::MAX)).map_err(E::custom)
            }
        }
        d.deserialize_i64(V)
    }
}

/// An inclusive range of ports, written `"40000-40999"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    first: Port,
    last: Port,
}

impl PortRange {
    /// A range from its ends; `None` when `first > last`.
    pub fn new(first: Port, last: Port) -> Option<Self> {
        (first <= last).then_some(Self { first, last })
    }

    /// The first port of the range.
    pub fn first(self) -> Port {
        self.first
    }

    /// The last port of the range (inclusive).
    pub fn last(self) -> Port {
        self.last
    }

    /// Whether `port` lies in the range.
    pub fn contains(self, port: Port) -> bool {
        self.first <= port && port <= self.last
    }

    /// How many ports the range holds.
    pub fn len(self) -> u32 {
        u32::from(self.last.get()) - u32::from(self.first.get()) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(self) -> bool {
        false
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let shape =
            || format!("\"{s}\" is not a port range: write FIRST-LAST, e.g. \"40000-40999\"");
        let (a, b) = s.split_once('-').ok_or_else(shape)?;
        let a: i64 = a.trim().parse().map_err(|_| shape())?;
        let b: i64 = b.trim().parse().map_err(|_| shape())?;
        let (first, last) = (Port::from_i64(a)?, Port::from_i64(b)?);
        Self::new(first, last).ok_or_else(|| {
            format!("port range \"{s}\" is reversed: the first port must not exceed the last")
        })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A DICOM Application Entity title: 1-16 printable ASCII characters, no backslash, not blank
/// (PS3.5 6.2, VR AE). Leading and trailing spaces are not significant and are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AeTitle(String);

impl AeTitle {
    /// The title without padding.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for AeTitle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim_matches(' ');
        if t.is_empty() {
            return Err("an AE title must not be blank".into());
        }
        if t.len() > 16 {
            return Err(format!(
                "AE title \"{t}\" is {} characters long: at most 16",
                t.len()
            ));
        }
        if let Some(c) = t
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == '\\')
        {
            return Err(format!(
                "AE title \"{t}\" contains {c:?}: only printable ASCII without backslash is allowed"
            ));
        }
        Ok(Self(t.to_owned()))
    }
}

impl fmt::Display for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DICOM peer allowed to call us: an AE title, optionally pinned to a host, written
/// `"MODALITY1"` or `"MODALITY1@10.0.0.5"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomCaller {
    /// The calling AE title.
    pub ae_title: AeTitle,
    /// The address the association must come from; any address when `None`.
    pub host: Option<IpAddr>,
}

impl std::str::FromStr for DicomCaller {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.rsplit_once('@') {
            Some((ae, host)) => Ok(Self {
                ae_title: ae.parse()?,
                host: Some(host.trim().parse().map_err(|_| {
                    format!("\"{host}\" in \"{s}\" is not an IP address (write AE@IP, e.g. CT1@10.0.0.5)")
                })?),
            }),
            None => Ok(Self { ae_title: s.parse()?, host: None }),
        }
    }
}

impl fmt::Display for DicomCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Some(h) => write!(f, "{}@{h}", self.ae_title),
            None => write!(f, "{}", self.ae_title),
        }
    }
}

/// A system allowed to send HL7 v2 messages, and the institution whose patients its messages
/// are about: `"APP^FACILITY@IP=institution"` (MSH-3, MSH-4, the sending address; `*` for any
/// application or address), e.g. `"HIS^CITY01@10.0.0.5=市第一人民医院"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Source {
    /// MSH-3.1, or `*` for any.
    pub application: String,
    /// MSH-4.1.
    pub facility: String,
    /// The address the connection must come from; any when `None`.
    pub host: Option<IpAddr>,
    /// The registered institution (its name) the messages' patients belong to.
    pub institution: String,
}

impl Hl7Source {
    /// Whether a message from `app`/`facility` arriving from `ip` is this source's.
    pub fn admits(&self, app: &str, facility: &str, ip: IpAddr) -> bool {
        (self.application == "*" || self.application == app)
            && self.facility == facility
            && self
                .host
                .is_none_or(|h| h == ip || h.to_canonical() == ip.to_canonical())
    }
}

impl std::str::FromStr for Hl7Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = "write APP^FACILITY@IP=institution, e.g. HIS^CITY01@10.0.0.5=市第一人民医院";
        let (left, institution) = s
            .split_once('=')
            .ok_or_else(|| format!("\"{s}\" names no institution: {hint}"))?;
        let institution = institution.trim();
        if institution.is_empty() {
            return Err(format!("\"{s}\" names no institution: {hint}"));
        }
        let (sender, host) = match left.rsplit_once('@') {
            Some((sender, h)) if h.trim() == "*" => (sender, None),
            Some((sender, h)) => (
                sender,
                Some(h.trim().parse::<IpAddr>().map_err(|_| {
                    format!("\"{h}\" in \"{s}\" is not an IP address (or *): {hint}")
                })?),
            ),
            None => (left, None),
        };
        let (application, facility) = sender
            .split_once('^')
            .ok_or_else(|| format!("\"{sender}\" in \"{s}\" is not APP^FACILITY: {hint}"))?;
        let (application, facility) = (application.trim(), facility.trim());
        let bad = |t: &str| t.is_empty() || t.len() > 64 || t.contains(['|', '^', '~', '\\', '&']);
        if bad(application) || bad(facility) || facility == "*" {
            return Err(format!(
                "\"{sender}\" in \"{s}\": the application (or *) and the facility must each be 1-64 characters without HL7 delimiters"
            ));
        }
        Ok(Self {
            application: application.to_owned(),
            facility: facility.to_owned(),
            host,
            institution: institution.to_owned(),
        })
    }
}

impl fmt::Display for Hl7Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}^{}@", self.application, self.facility)?;
        match self.host {
            Some(h) => write!(f, "{h}")?,
            None => write!(f, "*")?,
        }
        write!(f, "={}", self.institution)
    }
}

/// A cloud PACS pulled over DICOMweb: written and read as a [`FhirSource`].
pub type DicomWebSource = FhirSource;

/// A FHIR R4 server whose record is pulled in (a clinic's cloud HIS), and the institution
/// whose patients it holds: `"http://host:port/fhir=institution;token_file=PATH;every=SECS"`
/// (`token_file`: a file whose first line is the bearer token; `every`: seconds between pulls,
/// 10 to 86400, default 300).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirSource {
    /// The server's base URL (http; https is planned).
    pub base: String,
    /// The registered institution (its name).
    pub institution: String,
    /// The bearer token's file.
    pub token_file: Option<PathBuf>,
    /// Seconds between pulls.
    pub every: u32,
}

impl std::str::FromStr for FhirSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = "write URL=institution;token_file=PATH;every=SECS, e.g. http://10.0.0.7:8080/fhir=城东社区卫生服务中心;token_file=/etc/appliance/clinic.token";
        let mut parts = s.split(';');
        let head = parts.next().unwrap_or_default();
        let (base, institution) = head
            .split_once('=')
            .ok_or_else(|| format!("\"{s}\" names no institution: {hint}"))?;
        let base = base.trim().trim_end_matches('/');
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(format!(
                "\"{base}\" is not an http:// URL (https sources are planned): {hint}"
            ));
        }
        let institution = institution.trim();
        if institution.is_empty() {
            return Err(format!("\"{s}\" names no institution: {hint}"));
        }
        let mut out = Self {
            base: base.to_owned(),
            institution: institution.to_owned(),
            token_file: None,
            every: 300,
        };
        for p in parts {
            match p.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("token_file", v)) if !v.is_empty() => out.token_file = Some(PathBuf::from(v)),
                Some(("every", v)) => {
                    out.every = v
                        .parse()
                        .ok()
                        .filter(|n| (10..=86_400).contains(n))
                        .ok_or_else(|| format!("every=\"{v}\" is not 10 to 86400 seconds"))?;
                }
                _ => return Err(format!("\"{p}\" in \"{s}\": {hint}")),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for FhirSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.base, self.institution)?;
        if let Some(t) = &self.token_file {
            write!(f, ";token_file={}", t.display())?;
        }
        write!(f, ";every={}", self.every)
    }
}

/// A DICOM peer we call (a PACS we query and retrieve from): `AE@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomPeer {
    /// Its AE title, which also names it in the API.
    pub ae_title: AeTitle,
    /// Its host name or address.
    pub host: HostName,
    /// Its DICOM port.
    pub port: u16,
}

impl std::str::FromStr for DicomPeer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = "write AE@host:port, e.g. PACS1@10.0.0.9:104";
        let (ae, address) = s
            .rsplit_once('@')
            .ok_or_else(|| format!("\"{s}\" has no @: {hint}"))?;
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("\"{s}\" has no :port: {hint}"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("\"{port}\" in \"{s}\" is not a port (1-65535)"))?;
        Ok(Self {
            ae_title: ae.parse()?,
            host: host.parse()?,
            port,
        })
    }
}

impl fmt::Display for DicomPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.ae_title, self.host.as_str(), self.port)
    }
}

/// A size in bytes, written as an integer or with a unit: `"512MiB"`, `"4GiB"`, `"2GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("kB", 1_000),
    ("B", 1),
];

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (num, mult) = UNITS
            .iter()
            .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n.trim(), *m)))
            .unwrap_or((t, 1));
        let n: u64 = num.parse().map_err(|_| {
            format!("\"{s}\" is not a size: write bytes or a number with a unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)")
        })?;
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| format!("size \"{s}\" is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (u, m) in &UNITS[..4] {
            if self.0 >= *m && self.0.is_multiple_of(*m) {
                return write!(f, "{}{u}", self.0 / m);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A secret (password, API key, TURN credential). `Debug` never shows it, `config show`
/// masks it, and its memory is wiped when dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value shown by `config show`: the mask when set, empty when not.
    pub fn masked(&self) -> Self {
        if self.0.is_empty() {
            Self::default()
        } else {
            Self(MASK.to_owned())
        }
    }
}

/// What `config show` prints in place of a secret.
pub const MASK: &str = "********";

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(empty)"
        } else {
            "Secret(REDACTED)"
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// Where the appliance keeps its database: an SQLite file (relative paths are under the data
/// directory) or a PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:PATH` or `sqlite://PATH`.
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/db` (or `postgresql://`).
    Postgres(url::Url),
}

impl DatabaseUrl {
    /// The URL with any password replaced by the mask.
    pub fn masked(&self) -> Self {
        match self {
            Self::Sqlite(p) => Self::Sqlite(p.clone()),
            Self::Postgres(u) => {
                let mut u = u.clone();
                if u.password().is_some() {
                    // Setting a password only fails on URLs without a host, which we refuse.
                    let _ = u.set_password(Some(MASK));
                }
                Self::Postgres(u)
            }
        }
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(format!(
                    "\"{s}\" names no SQLite file: write sqlite:PATH, e.g. sqlite:appliance.db"
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        let u = url::Url::parse(s).map_err(|e| format!("\"{s}\" is not a database URL: {e}"))?;
        match u.scheme() {
            "postgres" | "postgresql" if u.host_str().is_some_and(|h| !h.is_empty()) => {
                Ok(Self::Postgres(u))
            }
            "postgres" | "postgresql" => {
                Err(format!("database URL \"{}\" names no host", redact_url(&u)))
            }
            other => Err(format!(
                "database URL scheme \"{other}\" is not supported: use sqlite:PATH or postgres://user@host/db"
            )),
        }
    }
}

fn redact_url(u: &url::Url) -> String {
    let mut u = u.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some(MASK));
    }
    u.to_string()
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Self::Postgres(u) => u.fmt(f),
        }
    }
}

/// An absolute `http` or `https` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    /// The parsed URL.
    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let u = url::Url::parse(s).map_err(|e| format!("\"{s}\" is not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("\"{s}\" is not an http(s) URL"));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(format!("URL \"{s}\" names no host"));
        }
        Ok(Self(u))
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A host name or IP address that clients use to reach us (used in printed URLs and ICE
/// candidates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName(String);

impl HostName {
    /// The host as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for HostName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.parse::<IpAddr>().is_ok() {
            return Ok(Self(s.to_owned()));
        }
        let ok_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !s.is_empty() && s.len() <= 253 && s.split('.').all(ok_label) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(format!("\"{s}\" is neither an IP address nor a host name"))
        }
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Implements `Serialize` as the `Display` string and `Deserialize` through `FromStr`, whose
/// message becomes the field's error.
macro_rules! string_form {
    ($($t:ty => $what:literal),* $(,)?) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$t, E> {
                        s.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    )*};
}

string_form! {
    PortRange => "a port range such as \"40000-40999\"",
    AeTitle => "an AE title (1-16 printable ASCII characters)",
    DicomCaller => "a calling AE title, optionally with its address: \"CT1\" or \"CT1@10.0.0.5\"",
    FhirSource => "a FHIR source: \"http://host:port/fhir=institution;token_file=PATH;every=SECS\"",
    Hl7Source => "an HL7 source: \"APP^FACILITY@IP=institution\", e.g. \"HIS^CITY01@10.0.0.5=市第一人民医院\"",
    DicomPeer => "a DICOM peer: \"AE@host:port\", e.g. \"PACS1@10.0.0.9:104\"",
    DatabaseUrl => "a database URL: sqlite:PATH or postgres://user@host/db",
    HttpUrl => "an http(s) URL",
    HostName => "a host name or IP address",
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes, or a string such as \"4GiB\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size {n} is negative")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_refuse_zero_and_too_large() {
        assert!(Port::from_i64(0).is_err());
        assert!(Port::from_i64(65536).unwrap_err().contains("out of range"));
        assert_eq!(Port::from_i64(8080).map(Port::get), Ok(8080));
    }

    #[test]
    fn port_ranges_parse_and_refuse_reversed() {
        let r: PortRange = "40000-40999".parse().unwrap();
        assert_eq!(
            (r.first().get(), r.last().get(), r.len()),
            (40000, 40999, 1000)
        );
        assert!(
            "40999-40000"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("reversed")
        );
        assert!("40000".parse::<PortRange>().is_err());
        assert!(
            "1-70000"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn fhir_sources_parse() {
        let s: FhirSource = "http://10.0.0.7:8080/fhir/=城东;token_file=/t;every=60"
            .parse()
            .unwrap();
        assert_eq!(s.base, "http://10.0.0.7:8080/fhir");
        assert_eq!(
            s.to_string(),
            "http://10.0.0.7:8080/fhir=城东;token_file=/t;every=60"
        );
        for bad in [
            "http://x/fhir",
            "https://x/fhir=A",
            "http://x=A;every=5",
            "http://x=A;colour=red",
        ] {
            assert!(bad.parse::<FhirSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hl7_sources_parse_and_admit() {
        let s: Hl7Source = "HIS^CITY01@10.0.0.5=市第一人民医院".parse().unwrap();
        assert_eq!(s.to_string(), "HIS^CITY01@10.0.0.5=市第一人民医院");
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert!(s.admits("HIS", "CITY01", ip("10.0.0.5")));
        assert!(s.admits("HIS", "CITY01", ip("::ffff:10.0.0.5")));
        assert!(!s.admits("HIS", "CITY01", ip("10.0.0.6")));
        assert!(!s.admits("LIS", "CITY01", ip("10.0.0.5")));
        let any: Hl7Source = "*^LAB@*=城东社区卫生服务中心".parse().unwrap();
        assert!(any.admits("LIS", "LAB", ip("127.0.0.1")));
        for bad in [
            "HIS^CITY01@10.0.0.5",
            "HIS@10.0.0.5=X",
            "HIS^CITY01@host=X",
            "^X@*=Y",
            "A^*@*=Y",
        ] {
            assert!(bad.parse::<Hl7Source>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ae_titles_follow_the_standard() {
        assert_eq!(
            "  APPLIANCE ".parse::<AeTitle>().unwrap().as_str(),
            "APPLIANCE"
        );
        assert!("".parse::<AeTitle>().is_err());
        assert!(
            "ABCDEFGHIJKLMNOPQ"
                .parse::<AeTitle>()
                .unwrap_err()
                .contains("at most 16")
        );
        assert!("A\\B".parse::<AeTitle>().is_err());
        assert!("影像".parse::<AeTitle>().is_err());
        let c: DicomCaller = "CT1@10.0.0.5".parse().unwrap();
        assert_eq!(c.to_string(), "CT1@10.0.0.5");
        assert!("CT1@scanner".parse::<DicomCaller>().is_err());
        let p: DicomPeer = "PACS1@pacs.hospital.local:104".parse().unwrap();
        assert_eq!(p.to_string(), "PACS1@pacs.hospital.local:104");
        for bad in [
            "PACS1",
            "PACS1@host",
            "PACS1@host:0",
            "@host:104",
            "P@bad host:104",
        ] {
            assert!(bad.parse::<DicomPeer>().is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_sizes_round_trip_through_text() {
        assert_eq!("4GiB".parse::<ByteSize>(), Ok(ByteSize(4 << 30)));
        assert_eq!("2 GB".parse::<ByteSize>(), Ok(ByteSize(2_000_000_000)));
        assert_eq!(ByteSize(4 << 30).to_string(), "4GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert!("lots".parse::<ByteSize>().is_err());
        assert!(
            "99999999999TiB"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn database_urls_and_masking() {
        assert_eq!(
            "sqlite:appliance.db".parse::<DatabaseUrl>(),
            Ok(DatabaseUrl::Sqlite("appliance.db".into()))
        );
        assert_eq!(
            "sqlite:///var/lib/a.db".parse::<DatabaseUrl>(),
            Ok(DatabaseUrl::Sqlite("/var/lib/a.db".into()))
        );
        let pg: DatabaseUrl = "postgres://app:hunter2@db.local/appliance".parse().unwrap();
        let shown = pg.masked().to_string();
        assert!(
            !shown.contains("hunter2") && shown.contains(MASK),
            "{shown}"
        );
        assert!(
            "mysql://x@y/z"
                .parse::<DatabaseUrl>()
                .unwrap_err()
                .contains("not supported")
        );
        assert!("sqlite:".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn secrets_never_debug_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.masked().expose(), MASK);
        assert_eq!(Secret::default().masked().expose(), "");
    }

    #[test]
    fn hosts_and_urls() {
        assert!("pacs.hospital.local".parse::<HostName>().is_ok());
        assert!("10.1.2.3".parse::<HostName>().is_ok());
        assert!("bad host".parse::<HostName>().is_err());
        assert!("ftp://x".parse::<HttpUrl>().is_err());
        assert!("https://sms.example.cn/send".parse::<HttpUrl>().is_ok());
        assert!("not a url".parse::<HttpUrl>().is_err());
    }
}
