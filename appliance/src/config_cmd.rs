//! `appliance config ...`: check a file, show the effective configuration (secrets masked,
//! each changed field with where it came from), print the generated sample, and list, save or
//! roll back versions of the run-time store.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use firmware_config::{ConfigErrors, ConfigStore, Loaded, Sources, StoreError};
use firmware_runtime::ConfigArgs;

/// Folder of the run-time store under the data directory.
pub const STORE_DIR: &str = "config";

/// Why a config command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigCmdError {
    /// The configuration is invalid.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigCmdError {
    /// The process exit code: 2 for an invalid configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) | Self::Store(StoreError::Invalid(_)) => 2,
            _ => 1,
        }
    }
}

/// Loads the effective configuration: defaults, file, the store's current version (under the
/// data directory the other sources name), environment, command line. Returns the store too.
pub fn effective(args: &ConfigArgs) -> Result<(Loaded, ConfigStore), ConfigCmdError> {
    let base = args.sources();
    // The store's version may be what makes the rest valid (e.g. the TLS files `tls init`
    // saved there): an invalid configuration is judged with it when there is one; without
    // one, it is refused before anything is written.
    let first = firmware_config::load(&base);
    let store_dir = firmware_config::data_dir(&base).join(STORE_DIR);
    let first = match first {
        Err(errors) if !store_dir.exists() => return Err(ConfigCmdError::Invalid(errors)),
        other => other,
    };
    let store = ConfigStore::open(store_dir, base.clone())?;
    let loaded = match (store.current()?, first) {
        (None, first) => first.map_err(ConfigCmdError::Invalid)?,
        (Some(current), _) => {
            let with_store = Sources {
                store: Some(current),
                ..base
            };
            firmware_config::load(&with_store).map_err(ConfigCmdError::Invalid)?
        }
    };
    Ok((loaded, store))
}

/// `config check FILE`: the file with the environment and `--set` overrides, as `run` would
/// use it.
pub fn check(args: &ConfigArgs, file: &Path) -> Result<String, ConfigCmdError> {
    let sources = Sources {
        file: Some(file.to_owned()),
        ..args.sources()
    };
    firmware_config::load(&sources).map_err(ConfigCmdError::Invalid)?;
    Ok(format!("{}: valid\n", file.display()))
}

/// `config show`: the effective configuration as TOML, secrets masked, each field not at its
/// default followed by a comment saying where it came from.
pub fn show(args: &ConfigArgs) -> Result<String, ConfigCmdError> {
    let (loaded, _) = effective(args)?;
    let doc = loaded.config.masked().to_document();
    let mut out = String::from("# Effective configuration (secrets masked).\n");
    for (section, table) in &doc {
        let _ = writeln!(out, "\n[{section}]");
        let Some(table) = table.as_table() else {
            continue;
        };
        for (key, value) in table {
            let _ = write!(out, "{key} = {value}");
            if let Some(origin) = loaded.origins.get(&format!("{section}.{key}")) {
                let _ = write!(out, "  # from {origin}");
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// `config history`: the kept versions, oldest first, marking the current one.
pub fn history(args: &ConfigArgs) -> Result<String, ConfigCmdError> {
    let (_, store) = effective(args)?;
    let mut out = String::new();
    if store.history().is_empty() {
        out.push_str("no saved versions\n");
    }
    let current = store.current_version();
    for v in store.history() {
        let mark = if Some(v.version) == current { "*" } else { " " };
        let _ = write!(out, "{mark} {:>4}  {}  {}", v.version, v.at, v.author);
        if !v.comment.is_empty() {
            let _ = write!(out, "  {}", v.comment);
        }
        out.push('\n');
    }
    Ok(out)
}

/// `config save FILE --by NAME`: validates and saves the document as a new version.
pub fn save(
    args: &ConfigArgs,
    file: &Path,
    author: &str,
    comment: &str,
    base: Option<u64>,
) -> Result<String, ConfigCmdError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigCmdError::Read {
        path: file.to_owned(),
        source,
    })?;
    let (_, mut store) = effective(args)?;
    let now = SystemTime::now();
    let info = match base {
        Some(b) => store.save_if_current(Some(b), &text, author, comment, now)?,
        None => store.save(&text, author, comment, now)?,
    };
    Ok(format!(
        "saved version {} (takes effect at the next start)\n",
        info.version
    ))
}

/// `config rollback VERSION --by NAME`.
pub fn rollback(args: &ConfigArgs, version: u64, author: &str) -> Result<String, ConfigCmdError> {
    let (_, mut store) = effective(args)?;
    let info = store.rollback(version, author, SystemTime::now())?;
    Ok(format!(
        "version {version} restored as version {} (takes effect at the next start)\n",
        info.version
    ))
}
