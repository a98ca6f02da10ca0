//! Backups and restore of a data directory, safe while the stack runs and writes. A snapshot
//! is a folder: the appliance database and imaging's index copied with SQLite's `VACUUM INTO`
//! (each a consistent snapshot of one moment, whatever writes go on), then exactly the DICOM
//! files that index lists (instances are immutable once stored, so later ones are simply not
//! in it), the attachments, the run-time configuration versions and the keys, and last a
//! `manifest.json` naming every file with its size, SHA-256 and SM3 and the counts of the
//! snapshot. It is written as `NAME.partial` and renamed when whole, so a folder without that
//! suffix is complete. `verify` recomputes everything and checks both databases and the audit
//! chain; `restore` verifies, then copies into an empty data directory. With a passphrase
//! (`--key-passphrase-file`, `backup.key_passphrase_file`) the keys and TLS files are not
//! copied as they are but sealed together in `keys.sealed` (SM4-GCM under an Argon2id key of
//! the passphrase, `gm::seal_with_passphrase`), and restore needs the passphrase.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The keys and TLS files, sealed with a passphrase.
pub const SEALED_KEYS: &str = "keys.sealed";
/// The shortest passphrase accepted.
pub const PASSPHRASE_MIN_CHARS: usize = 12;
/// The format written.
const FORMAT: u32 = 1;

/// Why a backup, its check or a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A database could not be read or copied.
    #[error("{}: {source}", path.display())]
    Db {
        /// The database.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The backup is not what its manifest says.
    #[error("the backup in {} is not intact:\n{}", dir.display(), problems.join("\n"))]
    Damaged {
        /// The backup.
        dir: PathBuf,
        /// Each problem.
        problems: Vec<String>,
    },
    /// Restoring would overwrite data.
    #[error("{}: not empty; restore only into a new data directory", path.display())]
    NotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// The audit trail could not be read.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The key passphrase is missing, unreadable, too short or wrong.
    #[error("{0}")]
    Passphrase(String),
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the backup folder, `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// SM3 (GB/T 32905), hex.
    pub sm3: String,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format.
    pub format: u32,
    /// The appliance version that wrote it.
    pub version: String,
    /// When the snapshot began (UTC, RFC 3339).
    pub created_at: String,
    /// Counts at the snapshot (`audit_records`, `consultations`, `instances`, ...).
    pub counts: BTreeMap<String, i64>,
    /// The audit chain's head at the snapshot (sequence and hash).
    pub audit_head: Option<(i64, String)>,
    /// Every file but the manifest.
    pub files: Vec<Entry>,
    /// Whether the keys and TLS files are sealed with a passphrase in `keys.sealed`.
    #[serde(default)]
    pub keys_sealed: bool,
}

/// Reads the key passphrase: the first line of `path`, without surrounding blanks, at least
/// [`PASSPHRASE_MIN_CHARS`] characters.
pub fn read_passphrase(path: &Path) -> Result<String, BackupError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        BackupError::Passphrase(format!("key passphrase file {}: {e}", path.display()))
    })?;
    let line = text.lines().next().unwrap_or_default().trim().to_owned();
    if line.chars().count() < PASSPHRASE_MIN_CHARS {
        return Err(BackupError::Passphrase(format!(
            "key passphrase file {}: the passphrase (its first line) needs at least \
             {PASSPHRASE_MIN_CHARS} characters",
            path.display()
        )));
    }
    Ok(line)
}

/// The files of `folders` under `root`, sealed with `passphrase` (a JSON map of relative
/// path to base64 content, then [`crate::gm::seal_with_passphrase`]).
fn seal_folders(root: &Path, folders: &[&str], passphrase: &str) -> Result<Vec<u8>, BackupError> {
    use base64::Engine;
    let mut map = BTreeMap::new();
    for folder in folders {
        for rel in files_in(&root.join(folder))? {
            let path = root.join(folder).join(&rel);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            map.insert(
                format!("{folder}/{}", rel.to_string_lossy()),
                base64::engine::general_purpose::STANDARD.encode(bytes),
            );
        }
    }
    let plain = serde_json::to_vec(&map).unwrap_or_default();
    crate::gm::seal_with_passphrase(passphrase, &plain)
        .map_err(|e| BackupError::Passphrase(e.to_string()))
}

/// Opens `keys.sealed`: each file's relative path (under `keys/` or `tls/` only) and bytes.
fn open_sealed(file: &Path, passphrase: &str) -> Result<Vec<(PathBuf, Vec<u8>)>, BackupError> {
    use base64::Engine;
    let sealed = std::fs::read(file).map_err(io(file))?;
    let refused = |why: String| BackupError::Passphrase(format!("{SEALED_KEYS}: {why}"));
    let plain =
        crate::gm::open_with_passphrase(passphrase, &sealed).map_err(|e| refused(e.to_string()))?;
    let map: BTreeMap<String, String> =
        serde_json::from_slice(&plain).map_err(|e| refused(e.to_string()))?;
    map.into_iter()
        .map(|(rel, b64)| {
            let path = PathBuf::from(&rel);
            let inside = path
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
                && (rel.starts_with("keys/") || rel.starts_with("tls/"));
            if !inside {
                return Err(refused(format!("{rel:?} is not a key file's path")));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| refused(format!("{rel}: {e}")))?;
            Ok((path, bytes))
        })
        .collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn db_err(path: &Path) -> impl FnOnce(sqlx::Error) -> BackupError + '_ {
    move |source| BackupError::Db {
        path: path.to_owned(),
        source,
    }
}

fn private_dir(dir: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

async fn open(path: &Path, read_only: bool) -> Result<SqlitePool, BackupError> {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(db_err(path))?
        .filename(path)
        .read_only(read_only)
        .busy_timeout(std::time::Duration::from_secs(30));
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(db_err(path))
}

/// Copies the live database `from` into `to` as one consistent snapshot (`VACUUM INTO`).
async fn snapshot_db(from: &Path, to: &Path) -> Result<(), BackupError> {
    let pool = open(from, false).await?;
    let mut conn = pool.acquire().await.map_err(db_err(from))?;
    let target = to.to_string_lossy().into_owned();
    sqlx::query("VACUUM INTO ?")
        .bind(&target)
        .execute(&mut *conn)
        .await
        .map_err(db_err(from))?;
    drop(conn);
    pool.close().await;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(io(to))
}

/// Hashes a file with SHA-256 and SM3 in one read.
fn hash_file(path: &Path) -> Result<(u64, String, String), BackupError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut sha = Sha256::new();
    let mut sm = sm3::Sm3::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        sm.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(&sha.finalize()), hex(&sm.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies a file and makes it durable; `private` files are 0600 (every file of a backup is:
/// they hold patient data and keys).
fn copy_file(from: &Path, to: &Path, private: bool) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        private_dir(parent)?;
    }
    std::fs::copy(from, to).map_err(io(from))?;
    if private {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(io(to))?;
    }
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io(to))
}

/// Every regular file under `dir`, relative, sorted; hidden (temporary) files left out.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries = match std::fs::read_dir(&here) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&here)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&here))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type().map_err(io(&entry.path()))?;
            if kind.is_dir() {
                stack.push(rel.join(&name));
            } else if kind.is_file() {
                out.push(rel.join(&name));
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn count(pool: &SqlitePool, table: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
}

/// The counts a manifest records, read from a snapshot's databases.
async fn counts(
    appliance: &Path,
    index: Option<&Path>,
) -> Result<(BTreeMap<String, i64>, Option<(i64, String)>), BackupError> {
    let mut out = BTreeMap::new();
    let pool = open(appliance, true).await?;
    for table in [
        "audit_log",
        "users",
        "institutions",
        "patients",
        "consultations",
        "referrals",
        "reports",
    ] {
        out.insert(
            table.to_owned(),
            count(&pool, table).await.map_err(db_err(appliance))?,
        );
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&pool)
            .await
            .map_err(db_err(appliance))?;
    pool.close().await;
    if let Some(index) = index {
        let pool = open(index, true).await?;
        for table in ["studies", "series", "instances"] {
            out.insert(
                table.to_owned(),
                count(&pool, table).await.map_err(db_err(index))?,
            );
        }
        pool.close().await;
    }
    Ok((out, head))
}

fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Takes a snapshot of `data_dir` (its appliance database at `db`) into a new folder under
/// `to`, named by the time; returns the folder and its manifest.
pub async fn snapshot(
    data_dir: &Path,
    db: &Path,
    to: &Path,
    passphrase: Option<&str>,
) -> Result<(PathBuf, Manifest), BackupError> {
    let created_at = now_rfc3339();
    let name = format!("backup-{}", created_at.replace([':', '-'], ""));
    private_dir(to)?;
    let mut dest = to.join(&name);
    let mut n = 1;
    while dest.exists() || dest.with_extension("partial").exists() {
        n += 1;
        dest = to.join(format!("{name}-{n}"));
    }
    let partial = dest.with_extension("partial");
    private_dir(&partial)?;

    // The databases first: what they list is what the snapshot holds.
    snapshot_db(db, &partial.join("appliance.db")).await?;
    let index = data_dir.join("dicom").join("index.sqlite");
    let index_copy = partial.join("dicom").join("index.sqlite");
    let has_index = index.is_file();
    if has_index {
        private_dir(&partial.join("dicom"))?;
        snapshot_db(&index, &index_copy).await?;
        let pool = open(&index_copy, true).await?;
        let files: Vec<String> = sqlx::query_scalar("SELECT file FROM instances ORDER BY file")
            .fetch_all(&pool)
            .await
            .map_err(db_err(&index_copy))?;
        pool.close().await;
        let (root, copy) = (data_dir.join("dicom"), partial.join("dicom"));
        tokio::task::spawn_blocking(move || -> Result<(), BackupError> {
            for f in files {
                copy_file(&root.join(&f), &copy.join(&f), true)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| io(&partial)(std::io::Error::other(e)))??;
    }
    let (source, copy) = (data_dir.to_owned(), partial.clone());
    let passphrase_owned = passphrase.map(str::to_owned);
    tokio::task::spawn_blocking(move || -> Result<(), BackupError> {
        // Attachments: each one whose description is written (the image goes first).
        let attachments = source.join("attachments");
        for rel in files_in(&attachments)? {
            let is_described = rel.extension().is_some_and(|e| e == "json");
            let image = rel.with_extension("img");
            if is_described && attachments.join(&image).is_file() {
                copy_file(
                    &attachments.join(&rel),
                    &copy.join("attachments").join(&rel),
                    true,
                )?;
                copy_file(
                    &attachments.join(&image),
                    &copy.join("attachments").join(&image),
                    true,
                )?;
            }
        }
        let folders: &[&str] = match &passphrase_owned {
            Some(passphrase) => {
                let sealed = seal_folders(&source, &["keys", "tls"], passphrase)?;
                let path = copy.join(SEALED_KEYS);
                write_private(&path, &sealed)?;
                &["config"]
            }
            None => &["config", "keys", "tls"],
        };
        for folder in folders {
            for rel in files_in(&source.join(folder))? {
                copy_file(
                    &source.join(folder).join(&rel),
                    &copy.join(folder).join(&rel),
                    true,
                )?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| io(&partial)(std::io::Error::other(e)))??;

    let (counts, audit_head) = counts(
        &partial.join("appliance.db"),
        has_index.then_some(index_copy.as_path()),
    )
    .await?;
    let root = partial.clone();
    let files = tokio::task::spawn_blocking(move || -> Result<Vec<Entry>, BackupError> {
        files_in(&root)?
            .into_iter()
            .map(|rel| {
                let (size, sha256, sm3) = hash_file(&root.join(&rel))?;
                Ok(Entry {
                    path: rel.to_string_lossy().replace('\\', "/"),
                    size,
                    sha256,
                    sm3,
                })
            })
            .collect()
    })
    .await
    .map_err(|e| io(&partial)(std::io::Error::other(e)))??;
    let manifest = Manifest {
        format: FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at,
        counts,
        audit_head,
        files,
        keys_sealed: passphrase.is_some(),
    };
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let path = partial.join(MANIFEST);
    std::fs::write(&path, text).map_err(io(&path))?;
    std::fs::File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(io(&path))?;
    std::fs::rename(&partial, &dest).map_err(io(&dest))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io(to))?;
    Ok((dest, manifest))
}

/// Checks a backup: every file listed is there with its size and both hashes, nothing else
/// is, both databases pass SQLite's integrity check, the counts match, and the audit chain
/// verifies up to the recorded head.
pub async fn verify(dir: &Path, passphrase: Option<&str>) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(io(&path))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BackupError::Damaged {
        dir: dir.to_owned(),
        problems: vec![format!("{MANIFEST}: {e}")],
    })?;
    let mut problems = Vec::new();
    if manifest.format != FORMAT {
        problems.push(format!(
            "format {} (this build reads {FORMAT})",
            manifest.format
        ));
    }
    let root = dir.to_owned();
    let listed = manifest.files.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<String>, BackupError> {
        let mut problems = Vec::new();
        for e in &listed {
            let file = root.join(&e.path);
            match hash_file(&file) {
                Ok((size, sha, sm)) if size == e.size && sha == e.sha256 && sm == e.sm3 => {}
                Ok(_) => problems.push(format!("{}: changed since the backup", e.path)),
                Err(_) => problems.push(format!("{}: missing", e.path)),
            }
        }
        let names: std::collections::HashSet<&str> =
            listed.iter().map(|e| e.path.as_str()).collect();
        for rel in files_in(&root)? {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel != MANIFEST && !names.contains(rel.as_str()) {
                problems.push(format!("{rel}: not in the manifest"));
            }
        }
        Ok(problems)
    })
    .await
    .map_err(|e| io(dir)(std::io::Error::other(e)))??;
    problems.extend(found);
    if problems.is_empty() {
        let appliance = dir.join("appliance.db");
        let index = dir.join("dicom").join("index.sqlite");
        for db in [&appliance, &index] {
            if !db.is_file() {
                continue;
            }
            let pool = open(db, true).await?;
            let mut conn = pool.acquire().await.map_err(db_err(db))?;
            let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&mut *conn)
                .await
                .map_err(db_err(db))?;
            if check != "ok" {
                problems.push(format!("{}: {check}", db.display()));
            }
            let _ = conn.close().await;
            pool.close().await;
        }
        let (counts, head) = counts(&appliance, index.is_file().then_some(index.as_path())).await?;
        if counts != manifest.counts {
            problems.push(format!(
                "the databases' counts {counts:?} differ from the manifest's {:?}",
                manifest.counts
            ));
        }
        if head != manifest.audit_head {
            problems.push("the audit chain's head differs from the manifest's".into());
        }
        let pool = open(&appliance, true).await?;
        let audit = crate::audit::verify(&pool).await?;
        pool.close().await;
        problems.extend(audit.problems.into_iter().map(|p| format!("audit: {p}")));
        if let (true, Some(passphrase)) = (manifest.keys_sealed, passphrase) {
            let (file, passphrase) = (dir.join(SEALED_KEYS), passphrase.to_owned());
            let opened = tokio::task::spawn_blocking(move || open_sealed(&file, &passphrase))
                .await
                .map_err(|e| io(dir)(std::io::Error::other(e)))?;
            if let Err(e) = opened {
                problems.push(e.to_string());
            }
        }
    }
    if problems.is_empty() {
        Ok(manifest)
    } else {
        Err(BackupError::Damaged {
            dir: dir.to_owned(),
            problems,
        })
    }
}

/// Verifies the backup in `from`, then copies it into `data_dir`, which must be empty or new
/// (files 0600, folders 0700).
pub async fn restore(
    from: &Path,
    data_dir: &Path,
    passphrase: Option<&str>,
) -> Result<Manifest, BackupError> {
    if let Ok(mut entries) = std::fs::read_dir(data_dir)
        && entries.next().is_some()
    {
        return Err(BackupError::NotEmpty {
            path: data_dir.to_owned(),
        });
    }
    let manifest = verify(from, passphrase).await?;
    // The keys open before anything is written.
    let keys = match (manifest.keys_sealed, passphrase) {
        (false, _) => Vec::new(),
        (true, None) => {
            return Err(BackupError::Passphrase(format!(
                "the keys in {} are sealed with a passphrase: give --key-passphrase-file",
                from.display()
            )));
        }
        (true, Some(passphrase)) => {
            let (file, passphrase) = (from.join(SEALED_KEYS), passphrase.to_owned());
            tokio::task::spawn_blocking(move || open_sealed(&file, &passphrase))
                .await
                .map_err(|e| io(from)(std::io::Error::other(e)))??
        }
    };
    private_dir(data_dir)?;
    let (from, to, files) = (from.to_owned(), data_dir.to_owned(), manifest.files.clone());
    tokio::task::spawn_blocking(move || -> Result<(), BackupError> {
        for e in files.iter().filter(|e| e.path != SEALED_KEYS) {
            copy_file(&from.join(&e.path), &to.join(&e.path), true)?;
        }
        for (rel, bytes) in &keys {
            let path = to.join(rel);
            if let Some(parent) = path.parent() {
                private_dir(parent)?;
            }
            write_private(&path, bytes)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| io(data_dir)(std::io::Error::other(e)))??;
    Ok(manifest)
}

/// Writes a new file readable by this user only, and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Deletes the oldest complete backups under `dir` beyond the newest `keep`; returns those
/// removed.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.join(MANIFEST).is_file()
                    && p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with("backup-") && !n.ends_with(".partial")
                    })
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    found.sort();
    let excess = found.len().saturating_sub(keep);
    let removed: Vec<PathBuf> = found.into_iter().take(excess).collect();
    for p in &removed {
        std::fs::remove_dir_all(p).map_err(io(p))?;
    }
    Ok(removed)
}

/// When the newest complete backup under `dir` was taken (its manifest's modification time).
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("backup-") && !n.ends_with(".partial")
        })
        .filter_map(|e| e.path().join(MANIFEST).metadata().ok()?.modified().ok())
        .max()
}

/// The scheduled backups (`backup.dir`): the first one 10 s after start when none is recent,
/// then every `backup.every_hours`, keeping the newest `backup.keep`; each outcome is logged
/// and measured (`backup_last_success_timestamp_seconds`, `backup_failures_total`).
pub async fn schedule(config: firmware_config::Config, shutdown: firmware_runtime::Shutdown) {
    let Some(dir) = config.backup.dir.clone() else {
        return;
    };
    let Some(db) = config.sqlite_path() else {
        return;
    };
    let every = std::time::Duration::from_secs(u64::from(config.backup.every_hours) * 3600);
    let due_in = |now: std::time::SystemTime| {
        newest(&dir)
            .and_then(|last| now.duration_since(last).ok())
            .map_or(std::time::Duration::from_secs(10), |age| {
                every
                    .saturating_sub(age)
                    .max(std::time::Duration::from_secs(10))
            })
    };
    loop {
        let wait = due_in(std::time::SystemTime::now());
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let passphrase = match config
            .backup
            .key_passphrase_file
            .as_deref()
            .map(read_passphrase)
        {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                metrics::counter!("backup_failures_total").increment(1);
                tracing::error!(error = %e, "scheduled backup not taken");
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
                }
                continue;
            }
            None => None,
        };
        match snapshot(&config.storage.data_dir, &db, &dir, passphrase.as_deref()).await {
            Ok((path, m)) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                metrics::gauge!("backup_last_success_timestamp_seconds").set(now);
                tracing::info!(path = %path.display(), files = m.files.len(), "scheduled backup written");
                match prune(&dir, config.backup.keep as usize) {
                    Ok(removed) => {
                        for p in removed {
                            tracing::info!(path = %p.display(), "old backup removed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "old backups not removed"),
                }
            }
            Err(e) => {
                metrics::counter!("backup_failures_total").increment(1);
                tracing::error!(error = %e, "scheduled backup failed");
                // Try again in an hour rather than wait a whole interval.
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sm3_matches_the_standard() {
        // GB/T 32905-2016, example 1.
        let (_, _, sm) = {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("abc");
            std::fs::write(&f, "abc").unwrap();
            hash_file(&f).unwrap()
        };
        assert_eq!(
            sm,
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "backup-1",
            "backup-2",
            "backup-3",
            "backup-4.partial",
            "other",
        ] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join(MANIFEST), "{}").unwrap();
        }
        let removed = prune(dir.path(), 2).unwrap();
        assert_eq!(removed, vec![dir.path().join("backup-1")]);
        assert!(dir.path().join("backup-4.partial").exists());
        assert!(dir.path().join("other").exists());
    }
}
