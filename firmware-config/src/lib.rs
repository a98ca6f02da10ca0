//! The appliance's typed configuration: built-in defaults, a TOML file, the run-time store,
//! environment variables (`APPLIANCE__SECTION__KEY`) and command-line overrides, merged in that
//! order; validated so that every bad field is reported at once with its path, value, origin and
//! reason; and a versioned store that the admin panel saves to, with rollback.
//!
//! ```
//! use firmware_config::{Config, Sources};
//!
//! let sources = Sources { overrides: vec!["listeners.http=9090".into()], ..Sources::default() };
//! let loaded = firmware_config::load(&sources).expect("valid");
//! assert_eq!(loaded.config.listeners.http.get(), 9090);
//! assert_eq!(loaded.config.listeners.imaging_http.get(), 8081);
//! ```
//!
//! This crate reads and writes only configuration files (and checks that the TLS files it is
//! pointed at can be read); it opens no sockets and starts nothing.

mod error;
mod model;
mod sample;
mod schema;
mod store;
mod types;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{ConfigErrors, ErrorKind, FieldError, Origin};
pub use model::{
    AuditHash, Backup, Database, GpuMode, IceServer, Imaging, Integration, Listeners,
    Notifications, SecondFactor, Security, Sfu, SfuTransport, Site, SmsGateway, Storage, Tls,
};
pub use store::{ConfigStore, StoreError, VersionInfo};
pub use types::{
    AeTitle, ByteSize, DatabaseUrl, DicomCaller, DicomPeer, DicomWebSource, FhirSource, Hl7Source,
    HostName, HttpUrl, MASK, Port, PortRange, Secret,
};

use schema::{ApplyCtx, Section};

/// Prefix of environment variables that set fields: `APPLIANCE__LISTENERS__HTTP=9090`.
pub const ENV_PREFIX: &str = "APPLIANCE__";
/// Environment variable that sets the data directory (`storage.data_dir`).
pub const ENV_DATA_DIR: &str = "APPLIANCE_DATA";

macro_rules! root {
    ($($field:ident : $ty:ty),* $(,)?) => {
        /// The whole configuration, one field per `[section]`.
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct Config {
            $( #[doc = concat!("`[", stringify!($field), "]`")] pub $field: $ty, )*
        }

        impl Config {
            const SECTIONS: &'static [&'static str] = &[$(<$ty as Section>::KEY),*];

            fn apply_document(&mut self, doc: &toml::Table, ctx: &mut ApplyCtx<'_>) {
                'keys: for (k, v) in doc {
                    $(
                        if k == <$ty as Section>::KEY {
                            match v {
                                toml::Value::Table(t) => self.$field.apply(t, ctx),
                                other => ctx.not_a_table(k, other),
                            }
                            continue 'keys;
                        }
                    )*
                    ctx.unknown("", k, v, Self::SECTIONS);
                }
            }

            /// The configuration as a TOML document (secrets included: see [`Config::masked`]).
            pub fn to_document(&self) -> toml::Table {
                let mut doc = toml::Table::new();
                $( doc.insert(<$ty as Section>::KEY.to_owned(), toml::Value::Table(self.$field.to_table())); )*
                doc
            }

            fn schema() -> Vec<sample::SectionSchema> {
                vec![$(
                    sample::SectionSchema {
                        key: <$ty as Section>::KEY,
                        doc: <$ty as Section>::DOC,
                        fields: <$ty as Section>::FIELDS,
                        defaults: <$ty>::default().to_table(),
                    },
                )*]
            }
        }
    };
}

root! {
    site: Site,
    listeners: Listeners,
    tls: Tls,
    storage: Storage,
    database: Database,
    imaging: Imaging,
    sfu: Sfu,
    notifications: Notifications,
    security: Security,
    integration: Integration,
    backup: Backup,
}

impl Config {
    /// A copy with every secret replaced by [`MASK`], for `config show` and the admin panel.
    pub fn masked(&self) -> Self {
        let mut c = self.clone();
        c.notifications.sms_api_key = c.notifications.sms_api_key.masked();
        c.database.url = c.database.url.masked();
        for s in &mut c.sfu.ice_servers {
            s.credential = s.credential.masked();
        }
        c
    }

    /// The configuration as TOML text.
    pub fn to_toml_string(&self) -> String {
        // A table of plain values always serialises.
        toml::to_string(&self.to_document()).unwrap_or_default()
    }

    /// The commented sample configuration, generated from the schema and the defaults.
    pub fn sample() -> String {
        sample::render(&Self::schema())
    }

    /// Whether the HTTP listeners serve TLS (both `tls.cert` and `tls.key` are set).
    pub fn tls_on(&self) -> bool {
        self.tls.cert.is_some() && self.tls.key.is_some()
    }

    /// `http(s)://public_host:port/`, the scheme following [`Config::tls_on`]: the URL printed
    /// and handed out for a listener.
    pub fn public_url(&self, port: Port) -> String {
        let scheme = if self.tls_on() { "https" } else { "http" };
        let host = self.listeners.public_host.as_str();
        if host.contains(':') {
            format!("{scheme}://[{host}]:{port}/")
        } else {
            format!("{scheme}://{host}:{port}/")
        }
    }

    /// The SQLite file when the database is SQLite: relative paths are under the data
    /// directory.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.database.url {
            DatabaseUrl::Sqlite(p) => Some(self.storage.data_dir.join(p)),
            DatabaseUrl::Postgres(_) => None,
        }
    }
}

/// The sources of one configuration, merged in field order: defaults, `file`, `store`, `env`,
/// `overrides`.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A TOML file (`--config FILE`).
    pub file: Option<PathBuf>,
    /// The run-time store's current version: its number and document.
    pub store: Option<(u64, String)>,
    /// Environment variables; those named `APPLIANCE__SECTION__KEY` and `APPLIANCE_DATA` are
    /// used, the rest ignored.
    pub env: Vec<(String, String)>,
    /// Command-line overrides, each `section.key=value`.
    pub overrides: Vec<String>,
}

impl Sources {
    /// Sources with this process's environment.
    pub fn with_process_env() -> Self {
        Self {
            env: std::env::vars().collect(),
            ..Self::default()
        }
    }
}

/// A loaded configuration and where each field that is not a default came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// For each `section.key` set by a source, the last source that set it.
    pub origins: BTreeMap<String, Origin>,
}

/// Merges `sources` over the defaults and validates the result.
pub fn load(sources: &Sources) -> Result<Loaded, ConfigErrors> {
    let (config, origins, mut errors) = merge(sources);
    for e in validate::validate(&config, &origins) {
        // A field that failed to parse kept its previous value: rules about it would mislead.
        if !errors.iter().any(|old: &FieldError| old.path == e.path) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(Loaded { config, origins })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The data directory `sources` name, read without validating the rest: where the run-time
/// store lives, whose version may be what makes the whole valid (e.g. the TLS files a
/// non-loopback bind needs, saved there by `appliance tls init`).
pub fn data_dir(sources: &Sources) -> PathBuf {
    merge(sources).0.storage.data_dir
}

/// Every layer of `sources` over the defaults, with where each value came from and the errors
/// met reading them; nothing validated.
fn merge(sources: &Sources) -> (Config, BTreeMap<String, Origin>, Vec<FieldError>) {
    let mut config = Config::default();
    let mut errors = Vec::new();
    let mut origins = BTreeMap::new();
    // Each layer: its document, where it came from, whether its values are text.
    let mut layers: Vec<(toml::Table, Origin, bool)> = Vec::new();
    {
        let mut layer =
            |doc: toml::Table, origin: Origin, textual: bool| layers.push((doc, origin, textual));
        if let Some(path) = &sources.file {
            match read_document(path) {
                Ok(doc) => layer(doc, Origin::File(path.clone()), false),
                Err(e) => errors.push(e),
            }
        }
        if let Some((version, text)) = &sources.store {
            match parse_document(text, Origin::Store(*version)) {
                Ok(doc) => layer(doc, Origin::Store(*version), false),
                Err(e) => errors.push(e),
            }
        }
        for (name, value) in &sources.env {
            let path = if name == ENV_DATA_DIR {
                "storage.data_dir".to_owned()
            } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                rest.to_ascii_lowercase().replace("__", ".")
            } else {
                continue;
            };
            match single_value(&path, value) {
                Some(doc) => layer(doc, Origin::Env(name.clone()), true),
                None => errors.push(FieldError {
                    path: name.clone(),
                    kind: ErrorKind::UnknownKey,
                    value: None,
                    reason: format!(
                        "expected {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}LISTENERS__HTTP"
                    ),
                    origin: Origin::Env(name.clone()),
                }),
            }
        }
        for arg in &sources.overrides {
            let doc = arg
                .split_once('=')
                .and_then(|(path, value)| single_value(path.trim(), value));
            match doc {
                Some(doc) => layer(doc, Origin::CommandLine(arg.clone()), true),
                None => errors.push(FieldError {
                    path: arg.clone(),
                    kind: ErrorKind::Syntax,
                    value: None,
                    reason: "expected section.key=value, e.g. listeners.http=9090".into(),
                    origin: Origin::CommandLine(arg.clone()),
                }),
            }
        }
    }
    for (doc, origin, textual) in &layers {
        let mut ctx = ApplyCtx {
            origin: origin.clone(),
            textual: *textual,
            errors: &mut errors,
            origins: &mut origins,
        };
        config.apply_document(doc, &mut ctx);
    }
    (config, origins, errors)
}

/// Checks one configuration document (as the admin panel or `config check` gives it) over the
/// defaults alone.
pub fn check_document(text: &str, origin: Origin) -> Result<Config, ConfigErrors> {
    let doc = parse_document(text, origin.clone()).map_err(|e| ConfigErrors(vec![e]))?;
    let mut config = Config::default();
    let mut errors = Vec::new();
    let mut origins = BTreeMap::new();
    let mut ctx = ApplyCtx {
        origin,
        textual: false,
        errors: &mut errors,
        origins: &mut origins,
    };
    config.apply_document(&doc, &mut ctx);
    for e in validate::validate(&config, &origins) {
        if !errors.iter().any(|old: &FieldError| old.path == e.path) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// `{section = {key = value}}` for a dotted path, or `None` when the path is not `a.b`.
fn single_value(path: &str, value: &str) -> Option<toml::Table> {
    let (section, key) = path.split_once('.')?;
    if section.is_empty() || key.is_empty() || key.contains('.') {
        return None;
    }
    let mut inner = toml::Table::new();
    inner.insert(key.to_owned(), toml::Value::String(value.to_owned()));
    let mut doc = toml::Table::new();
    doc.insert(section.to_owned(), toml::Value::Table(inner));
    Some(doc)
}

fn read_document(path: &Path) -> Result<toml::Table, FieldError> {
    let origin = Origin::File(path.to_owned());
    let text = std::fs::read_to_string(path).map_err(|e| FieldError {
        path: "(file)".into(),
        kind: ErrorKind::MissingFile,
        value: Some(path.display().to_string()),
        reason: format!("cannot read the configuration file: {e}"),
        origin: origin.clone(),
    })?;
    parse_document(&text, origin)
}

fn parse_document(text: &str, origin: Origin) -> Result<toml::Table, FieldError> {
    text.parse::<toml::Table>().map_err(|e| FieldError {
        path: "(document)".into(),
        kind: ErrorKind::Syntax,
        value: None,
        reason: format!("not valid TOML: {}", e.to_string().trim()),
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let loaded = load(&Sources::default()).expect("defaults validate");
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.origins.is_empty());
        assert_eq!(loaded.config.listeners.dicom_ae_title.as_str(), "APPLIANCE");
        assert_eq!(loaded.config.listeners.sfu_media_udp.len(), 1000);
    }

    #[test]
    fn document_round_trips() {
        let c = Config::default();
        let again = check_document(&c.to_toml_string(), Origin::Default).expect("valid");
        assert_eq!(again, c);
    }
}
