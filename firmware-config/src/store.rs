//! The versioned run-time store the admin panel saves to. Each save is validated against the
//! whole configuration first (a refused save changes nothing), then written atomically (temp
//! file, fsync, rename, fsync of the folder); the last `KEEP` versions are kept with who saved
//! them and when, and any of them can be rolled back to (which saves it again as a new version,
//! so the history itself is never rewritten).
//!
//! Layout under the store folder:
//! ```text
//! history.toml          [[versions]] version, author, at, comment, restored_from
//! versions/00000007.toml  the document exactly as saved
//! ```
//! `history.toml` is the commit point: a version file without its history entry (a crash
//! between the two writes) is ignored and removed at the next open.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigErrors, ErrorKind, FieldError, Origin};
use crate::{Sources, load};

/// How many versions the store keeps.
pub const KEEP: usize = 10;

const HISTORY: &str = "history.toml";
const VERSIONS: &str = "versions";

/// One saved version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Version number, counting from 1, never reused.
    pub version: u64,
    /// Who saved it.
    pub author: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Why, as the author said.
    #[serde(default)]
    pub comment: String,
    /// The version this one restored, for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct History {
    #[serde(default)]
    versions: Vec<VersionInfo>,
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The document does not validate; nothing was written.
    #[error("the configuration was not saved: {0}")]
    Invalid(ConfigErrors),
    /// The save was based on a version that is no longer current.
    #[error(
        "the save was based on version {base:?} but the current version is {current:?}: reload and try again"
    )]
    Conflict {
        /// The version the caller edited.
        base: Option<u64>,
        /// The version now current.
        current: Option<u64>,
    },
    /// The version is not (or no longer) kept.
    #[error("version {0} is not in the store (it keeps the last {KEEP} versions)")]
    UnknownVersion(u64),
    /// No author was given.
    #[error("a save needs the name of who makes it")]
    MissingAuthor,
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A store file is unreadable as what it should be.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The versioned configuration store in one folder.
#[derive(Debug)]
pub struct ConfigStore {
    dir: PathBuf,
    base: Sources,
    history: History,
}

impl ConfigStore {
    /// Opens (creating if needed) the store in `dir`. `base` are the other sources (file,
    /// environment, command line) that each saved document is validated with.
    pub fn open(dir: impl Into<PathBuf>, base: Sources) -> Result<Self, StoreError> {
        let dir = dir.into();
        let versions = dir.join(VERSIONS);
        // The configuration may hold secrets: the folders are private to this user.
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(&versions)
            .map_err(|source| StoreError::Io {
                path: versions.clone(),
                source,
            })?;
        let history = read_history(&dir)?;
        for v in &history.versions {
            let p = version_path(&dir, v.version);
            if !p.is_file() {
                return Err(StoreError::Corrupt {
                    path: p,
                    reason: "listed in history.toml but missing".into(),
                });
            }
        }
        let store = Self {
            dir,
            base: Sources {
                store: None,
                ..base
            },
            history,
        };
        store.remove_strays();
        Ok(store)
    }

    /// The folder of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kept versions, oldest first.
    pub fn history(&self) -> &[VersionInfo] {
        &self.history.versions
    }

    /// The current version's number, if anything was saved.
    pub fn current_version(&self) -> Option<u64> {
        self.history.versions.last().map(|v| v.version)
    }

    /// The current version and its document, ready for [`Sources::store`].
    pub fn current(&self) -> Result<Option<(u64, String)>, StoreError> {
        match self.current_version() {
            Some(v) => Ok(Some((v, self.document(v)?))),
            None => Ok(None),
        }
    }

    /// A kept version's document, exactly as saved.
    pub fn document(&self, version: u64) -> Result<String, StoreError> {
        if !self.history.versions.iter().any(|v| v.version == version) {
            return Err(StoreError::UnknownVersion(version));
        }
        let p = version_path(&self.dir, version);
        fs::read_to_string(&p).map_err(|source| StoreError::Io { path: p, source })
    }

    /// Validates `document` with the other sources and, if valid, saves it as the new current
    /// version.
    pub fn save(
        &mut self,
        document: &str,
        author: &str,
        comment: &str,
        now: SystemTime,
    ) -> Result<VersionInfo, StoreError> {
        self.commit(document, author, comment, None, None, now)
    }

    /// As [`ConfigStore::save`], but refuses when the current version is no longer `base`, the
    /// version the author edited: of two admins editing at once, the second gets a conflict
    /// instead of silently overwriting the first.
    pub fn save_if_current(
        &mut self,
        base: Option<u64>,
        document: &str,
        author: &str,
        comment: &str,
        now: SystemTime,
    ) -> Result<VersionInfo, StoreError> {
        self.commit(document, author, comment, Some(base), None, now)
    }

    /// Saves a kept version again as the new current version.
    pub fn rollback(
        &mut self,
        version: u64,
        author: &str,
        now: SystemTime,
    ) -> Result<VersionInfo, StoreError> {
        self.history = read_history(&self.dir)?;
        let document = self.document(version)?;
        let comment = format!("rollback to version {version}");
        self.commit(&document, author, &comment, None, Some(version), now)
    }

    fn commit(
        &mut self,
        document: &str,
        author: &str,
        comment: &str,
        base: Option<Option<u64>>,
        restored_from: Option<u64>,
        now: SystemTime,
    ) -> Result<VersionInfo, StoreError> {
        let author = author.trim();
        if author.is_empty() {
            return Err(StoreError::MissingAuthor);
        }
        // Another process may have saved since we opened: the file is the truth.
        self.history = read_history(&self.dir)?;
        let current = self.current_version();
        if let Some(base) = base
            && base != current
        {
            return Err(StoreError::Conflict { base, current });
        }
        let version = current.map_or(1, |v| v + 1);
        self.check(document, version)?;

        let info = VersionInfo {
            version,
            author: author.to_owned(),
            at: humantime::format_rfc3339_seconds(now).to_string(),
            comment: comment.trim().to_owned(),
            restored_from,
        };
        write_atomic(&version_path(&self.dir, version), document.as_bytes())?;
        let mut history = History {
            versions: self.history.versions.clone(),
        };
        history.versions.push(info.clone());
        let dropped = history.versions.len().saturating_sub(KEEP);
        let old: Vec<u64> = history
            .versions
            .drain(..dropped)
            .map(|v| v.version)
            .collect();
        let text = toml::to_string(&history).map_err(|e| StoreError::Corrupt {
            path: self.dir.join(HISTORY),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir.join(HISTORY), text.as_bytes())?;
        self.history = history;
        for v in old {
            // A leftover file is harmless (ignored, removed at the next open).
            let _ = fs::remove_file(version_path(&self.dir, v));
        }
        Ok(info)
    }

    fn check(&self, document: &str, version: u64) -> Result<(), StoreError> {
        let doc: toml::Table = match document.parse() {
            Ok(doc) => doc,
            Err(e) => {
                return Err(StoreError::Invalid(ConfigErrors(vec![FieldError {
                    path: "(document)".into(),
                    kind: ErrorKind::Syntax,
                    value: None,
                    reason: format!("not valid TOML: {}", e.to_string().trim()),
                    origin: Origin::Store(version),
                }])));
            }
        };
        if let Some(dir) = doc.get("storage").and_then(|s| s.get("data_dir")) {
            return Err(StoreError::Invalid(ConfigErrors(vec![FieldError {
                path: "storage.data_dir".into(),
                kind: ErrorKind::Invalid,
                value: Some(dir.to_string()),
                reason: "the data directory holds this store and cannot be changed at run time"
                    .into(),
                origin: Origin::Store(version),
            }])));
        }
        let sources = Sources {
            store: Some((version, document.to_owned())),
            ..self.base.clone()
        };
        load(&sources).map(|_| ()).map_err(StoreError::Invalid)
    }

    fn remove_strays(&self) {
        let Ok(entries) = fs::read_dir(self.dir.join(VERSIONS)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kept = self
                .history
                .versions
                .iter()
                .any(|v| name == format!("{:08}.toml", v.version));
            if !kept {
                let _ = fs::remove_file(entry.path());
            }
        }
        let _ = fs::remove_file(self.dir.join(format!(".{HISTORY}.tmp")));
    }
}

fn version_path(dir: &Path, version: u64) -> PathBuf {
    dir.join(VERSIONS).join(format!("{version:08}.toml"))
}

fn read_history(dir: &Path) -> Result<History, StoreError> {
    let path = dir.join(HISTORY);
    match fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| StoreError::Corrupt {
            path,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(History::default()),
        Err(source) => Err(StoreError::Io { path, source }),
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one: a temp
/// file in the same folder, fsync, rename over, fsync the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io_err = |p: &Path| {
        let p = p.to_owned();
        move |source| StoreError::Io { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}
