//! The instance store and its index. Every way DICOM comes in (C-STORE, STOW-RS, `imaging
//! import`) ends in [`Store::put`]: the instance is checked ([`crate::dicom::guard`]) and parsed (a
//! malformed one is refused and changes nothing); its bytes, exactly as received, go to a temp
//! file beside their final place, which is fsynced; then, in one SQLite transaction
//! (`DATA_DIR/dicom/index.sqlite`), its index rows are inserted (study, series, instance with
//! the attributes QIDO-RS and C-FIND match on, and its DICOM JSON metadata) and, only if the
//! instance is new, the temp file is renamed to a path derived from its SOP Instance UID
//! (`DATA_DIR/dicom/ab/cd/UID.dcm`); after the commit the folder is fsynced, and only then does
//! the sender hear "stored". An instance already kept is not written again. A crash at any
//! moment leaves at most a temp file, or a file whose rows were not committed; never a row
//! whose file is missing. [`Store::open`] checks this and repairs what it finds (temp files
//! removed, unindexed files indexed, rows whose file has gone removed and reported).

mod files;
pub mod import;
mod migrations;
pub mod query;
pub mod sealing;

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, Tag};
use dicom_transfer_syntax_registry::TransferSyntaxIndex;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqlSafeStr};

/// C-STORE failure statuses (PS3.4 B.2.3) for what cannot be kept.
pub const STATUS_CANNOT_UNDERSTAND: u16 = 0xC000;
/// The data set lacks what its SOP class requires (here: the UIDs that identify it).
pub const STATUS_DOES_NOT_MATCH: u16 = 0xA900;
/// Out of resources: the disk or the index failed.
pub const STATUS_OUT_OF_RESOURCES: u16 = 0xA700;

use files::{create_private_dir, sync_parent, walk, write_temp};
use migrations::MIGRATIONS;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A folder or file of the store could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The index database failed.
    #[error("index {}: {source}", path.display())]
    Index {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A migration of the index failed.
    #[error("index {} migration: {source}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The data key for encrypted files could not be read or made.
    #[error(transparent)]
    Key(#[from] firmware_runtime::gm::KeyError),
}

/// Why one instance was not kept. The store is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// Not a readable DICOM data set.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A UID that identifies the instance is missing or not a UID.
    #[error("{0}")]
    Identity(String),
    /// Writing the file or the index failed.
    #[error("cannot keep the instance: {0}")]
    Resources(String),
}

impl Refused {
    /// The DIMSE status that reports this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) => STATUS_CANNOT_UNDERSTAND,
            Self::Identity(_) => STATUS_DOES_NOT_MATCH,
            Self::Resources(_) => STATUS_OUT_OF_RESOURCES,
        }
    }
}

/// An instance the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Study Instance UID.
    pub study: String,
    /// Series Instance UID.
    pub series: String,
    /// SOP Class UID.
    pub sop_class: String,
    /// SOP Instance UID.
    pub sop_instance: String,
    /// It was kept already; nothing was written.
    pub duplicate: bool,
}

/// What the start-up check found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Instances in the index with their file present.
    pub instances: u64,
    /// Temp files of interrupted writes, removed.
    pub temp_removed: u64,
    /// Files that had no index rows (a crash between rename and commit), now indexed.
    pub files_indexed: u64,
    /// Index rows whose file had gone, removed.
    pub rows_removed: Vec<String>,
    /// Files in the store that cannot be read as DICOM, left in place and not indexed.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Where an instance is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFile {
    /// The file.
    pub path: PathBuf,
    /// Its transfer syntax UID.
    pub transfer_syntax: String,
    /// Study Instance UID.
    pub study: String,
    /// Series Instance UID.
    pub series: String,
    /// SOP Class UID.
    pub sop_class: String,
    /// Frames (1 for single-frame images and for non-images).
    pub frames: u32,
}

/// The store: files under `root`, rows in the index.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    db_path: PathBuf,
    pool: SqlitePool,
    /// Series whose study and series rows are known to exist (rows are never deleted while
    /// running), so their inserts are skipped.
    known_series: std::sync::Arc<std::sync::Mutex<HashSet<String>>>,
}

/// The attributes an instance contributes to the index.
#[derive(Debug, Clone)]
struct Rows {
    study: [String; 12],
    series: (String, String, Option<i64>, [String; 4]),
    sop_class: String,
    sop_instance: String,
    instance_number: Option<i64>,
    image: [Option<i64>; 4],
    transfer_syntax: String,
    metadata: String,
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir/dicom` and runs the start-up check.
    pub async fn open(data_dir: &Path) -> Result<(Self, CheckReport), StoreError> {
        let root = data_dir.join("dicom");
        create_private_dir(&root)?;
        // Files sealed earlier open even when new ones are no longer sealed.
        sealing::register_if_absent(&root, data_dir)?;
        let db_path = root.join("index.sqlite");
        let index_err = |source| StoreError::Index {
            path: db_path.clone(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(index_err)?
            .filename(&db_path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The files are the record: each is fsynced (and its name, with its folder) before
            // the sender hears "stored". The index is derived from them, so its commits need
            // not wait for the disk: a commit lost to a power cut leaves a file without rows,
            // which the start-up check indexes again. WAL keeps every commit atomic either way.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(index_err)?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: db_path.clone(),
                source,
            })?;
        let store = Self {
            root,
            db_path,
            pool,
            known_series: Default::default(),
        };
        let report = store.check().await?;
        Ok((store, report))
    }

    /// The index of the store under `data_dir`, opened read-only for a reader in another
    /// service of the same host (the appliance's study picker runs [`query::Query`] on it);
    /// `None` while no store has been created there. Writes go through [`Store::put`] only.
    pub async fn read_only_index(data_dir: &Path) -> Result<Option<SqlitePool>, StoreError> {
        let db_path = data_dir.join("dicom").join("index.sqlite");
        if !db_path.is_file() {
            return Ok(None);
        }
        let index_err = |source| StoreError::Index {
            path: db_path.clone(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(index_err)?
            .filename(&db_path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(index_err)?;
        Ok(Some(pool))
    }

    /// The folder the instances are kept in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the index.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn index_err(&self, source: sqlx::Error) -> StoreError {
        StoreError::Index {
            path: self.db_path.clone(),
            source,
        }
    }

    fn series_known(&self, series: &str) -> bool {
        self.known_series
            .lock()
            .is_ok_and(|known| known.contains(series))
    }

    fn remember_series(&self, series: &str) {
        if let Ok(mut known) = self.known_series.lock() {
            // A bound on memory; forgetting only costs two idempotent inserts.
            if known.len() >= 100_000 {
                known.clear();
            }
            known.insert(series.to_owned());
        }
    }

    /// Whether an instance is kept, and what it is.
    async fn kept(&self, sop_instance: &str) -> Result<Option<Stored>, Refused> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT se.study_uid, i.series_uid, i.sop_class_uid FROM instances i \
             JOIN series se USING (series_uid) WHERE i.sop_instance_uid = ?",
        )
        .bind(sop_instance)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| Refused::Resources(format!("index: {e}")))?;
        Ok(row.map(|(study, series, sop_class)| Stored {
            study,
            series,
            sop_class,
            sop_instance: sop_instance.to_owned(),
            duplicate: true,
        }))
    }

    /// Keeps one DICOM Part 10 file (preamble optional), given as its bytes.
    /// A data set without the Part 10 wrapping (no "DICM") is accepted when its encoding can be
    /// recognised, and kept wrapped in a file meta group.
    pub async fn put(&self, bytes: Vec<u8>) -> Result<Stored, Refused> {
        let started = std::time::Instant::now();
        let root = self.root.clone();
        // Parsing and writing the temp file in one trip to a blocking thread. An instance
        // already kept costs a temp file here; C-STORE, which names the instance up front,
        // checks before sending it this way.
        let (rows, rel, tmp, size, parsed) = tokio::task::spawn_blocking(move || {
            let bytes = if has_dicm(&bytes) {
                bytes
            } else {
                wrap_raw(&bytes)?
            };
            let rows = parse(&bytes)?;
            let parsed = started.elapsed();
            let rel = relative_path(&rows.sop_instance);
            let tmp = write_temp(&root, &rel, &bytes)
                .map_err(|e| Refused::Resources(format!("{}: {e}", rel.display())))?;
            Ok::<_, Refused>((rows, rel, tmp, bytes.len() as i64, parsed))
        })
        .await
        .map_err(|e| Refused::Resources(e.to_string()))??;
        let stored = Stored {
            study: rows.study[0].clone(),
            series: rows.series.0.clone(),
            sop_class: rows.sop_class.clone(),
            sop_instance: rows.sop_instance.clone(),
            duplicate: false,
        };
        let written = started.elapsed();
        let indexed = self.insert(&rows, &rel, size, Some(&tmp)).await;
        let seconds = |d: Duration| d.as_secs_f64();
        metrics::histogram!("imaging_store_seconds", "stage" => "parse").record(seconds(parsed));
        metrics::histogram!("imaging_store_seconds", "stage" => "write")
            .record(seconds(written - parsed));
        metrics::histogram!("imaging_store_seconds", "stage" => "index")
            .record(seconds(started.elapsed() - written));
        tracing::debug!(
            parse_ms = parsed.as_secs_f64() * 1e3,
            write_ms = (written - parsed).as_secs_f64() * 1e3,
            index_ms = (started.elapsed() - written).as_secs_f64() * 1e3,
            "instance stored"
        );
        match indexed {
            Ok(true) => Ok(stored),
            // Another writer kept the same instance meanwhile.
            Ok(false) => {
                let _ = std::fs::remove_file(&tmp);
                Ok(Stored {
                    duplicate: true,
                    ..stored
                })
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(Refused::Resources(format!("index: {e}")))
            }
        }
    }

    /// Keeps one data set received over DICOM in `transfer_syntax`, wrapping it as a Part 10
    /// file (the bytes are kept as received).
    pub async fn put_dataset(
        &self,
        transfer_syntax: &str,
        sop_class: &str,
        sop_instance: &str,
        dataset: &[u8],
    ) -> Result<Stored, Refused> {
        let file = wrap(transfer_syntax, sop_class, sop_instance, dataset)?;
        if let Some(kept) = self.kept(sop_instance).await? {
            // Kept already, if the data set is what the command says it is: parsed (a
            // malformed one is still refused) but not written again.
            let named = sop_instance.to_owned();
            return tokio::task::spawn_blocking(move || match parse(&file) {
                Ok(rows) if rows.sop_instance == named => Ok(kept),
                Ok(rows) => Err(Refused::Identity(format!(
                    "the data set is instance {} but the command names {named}",
                    rows.sop_instance
                ))),
                Err(e) => Err(e),
            })
            .await
            .map_err(|e| Refused::Resources(e.to_string()))?;
        }
        self.put(file).await
    }

    /// Inserts the rows of an instance kept at `rel`, in one transaction. With `tmp`, the
    /// instance's fsynced temp file is renamed to `rel` inside the transaction, after the
    /// instance row is known to be new: the index's write lock makes "is it new, then put the
    /// file in place" atomic across writers (threads and processes). A crash after the rename
    /// and before the commit leaves a file without rows, which the start-up check indexes.
    /// Returns false (and changes nothing) when the instance is already indexed.
    async fn insert(
        &self,
        rows: &Rows,
        rel: &Path,
        size: i64,
        tmp: Option<&Path>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let s = &rows.study;
        let (series_uid, study_uid, number, text) = &rows.series;
        let known = self.series_known(series_uid);
        if !known {
            sqlx::query(
                "INSERT INTO studies (study_uid, patient_id, patient_name, patient_birth_date, \
             patient_sex, study_date, study_time, accession_number, study_id, \
             referring_physician_name, study_description, institution_name) \
             VALUES (?,?,?,?,?,?,?,?,?,?,?,?) \
             ON CONFLICT (study_uid) DO UPDATE SET institution_name = excluded.institution_name \
             WHERE studies.institution_name = '' AND excluded.institution_name <> ''",
            )
            .bind(&s[0])
            .bind(&s[1])
            .bind(&s[2])
            .bind(&s[3])
            .bind(&s[4])
            .bind(&s[5])
            .bind(&s[6])
            .bind(&s[7])
            .bind(&s[8])
            .bind(&s[9])
            .bind(&s[10])
            .bind(&s[11])
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO series (series_uid, study_uid, modality, series_number, \
             series_description, body_part_examined, pps_start_date, pps_start_time) \
             VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (series_uid) DO NOTHING",
            )
            .bind(series_uid)
            .bind(study_uid)
            .bind(&text[0])
            .bind(number)
            .bind(&text[1])
            .bind(&text[2])
            .bind(&text[3])
            .bind("")
            .execute(&mut *tx)
            .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO instances (sop_instance_uid, series_uid, sop_class_uid, \
             instance_number, rows, columns, bits_allocated, frames, transfer_syntax, file, \
             size, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) \
             ON CONFLICT (sop_instance_uid) DO NOTHING",
        )
        .bind(&rows.sop_instance)
        .bind(series_uid)
        .bind(&rows.sop_class)
        .bind(rows.instance_number)
        .bind(rows.image[0])
        .bind(rows.image[1])
        .bind(rows.image[2])
        .bind(rows.image[3])
        .bind(&rows.transfer_syntax)
        .bind(rel.to_string_lossy().as_ref())
        .bind(size)
        .bind(&rows.metadata)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let io = |e: std::io::Error| sqlx::Error::Io(e);
        let joined = |e: tokio::task::JoinError| io(std::io::Error::other(e.to_string()));
        let target = self.root.join(rel);
        if let Some(tmp) = tmp {
            let (tmp, target) = (tmp.to_owned(), target.clone());
            tokio::task::spawn_blocking(move || std::fs::rename(&tmp, &target))
                .await
                .map_err(joined)?
                .map_err(io)?;
        }
        tx.commit().await?;
        if tmp.is_some() {
            // The new name is durable before anyone hears "stored". Done outside the
            // transaction, so other writers need not wait for this disk flush.
            tokio::task::spawn_blocking(move || sync_parent(&target))
                .await
                .map_err(joined)?
                .map_err(io)?;
        }
        if !known {
            self.remember_series(series_uid);
        }
        Ok(true)
    }

    /// The files of a series' instances (relative to the store root), by instance number.
    pub async fn series_files(&self, series: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT file FROM instances WHERE series_uid = ? ORDER BY instance_number",
        )
        .bind(series)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.index_err(e))
    }

    /// The DICOM JSON metadata of a series' first instance (by instance number).
    pub async fn first_metadata(&self, series: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT metadata FROM instances WHERE series_uid = ? ORDER BY instance_number LIMIT 1",
        )
        .bind(series)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.index_err(e))
    }

    /// Every instance of a study: (series UID, frames, DICOM JSON metadata), by series and
    /// instance number (a series' stack order).
    pub async fn study_images(
        &self,
        study: &str,
    ) -> Result<Vec<(String, u32, String)>, StoreError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT i.series_uid, COALESCE(i.frames, 1), i.metadata FROM instances i \
             JOIN series s USING (series_uid) WHERE s.study_uid = ? \
             ORDER BY i.series_uid, i.instance_number",
        )
        .bind(study)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.index_err(e))?;
        Ok(rows
            .into_iter()
            .map(|(s, f, m)| (s, u32::try_from(f).unwrap_or(1).max(1), m))
            .collect())
    }

    /// The study a stored series belongs to.
    pub async fn study_of_series(&self, series: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT study_uid FROM series WHERE series_uid = ?")
            .bind(series)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.index_err(e))
    }

    /// Where an instance is kept, if it is.
    pub async fn instance(&self, sop_instance: &str) -> Result<Option<InstanceFile>, StoreError> {
        let row = sqlx::query(
            "SELECT i.file, i.transfer_syntax, s.study_uid, i.series_uid, i.sop_class_uid, \
             COALESCE(i.frames, 1) FROM instances i JOIN series s USING (series_uid) \
             WHERE i.sop_instance_uid = ?",
        )
        .bind(sop_instance)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.index_err(e))?;
        Ok(row.map(|r| InstanceFile {
            path: self.root.join(r.get::<String, _>(0)),
            transfer_syntax: r.get(1),
            study: r.get(2),
            series: r.get(3),
            sop_class: r.get(4),
            frames: u32::try_from(r.get::<i64, _>(5)).unwrap_or(1).max(1),
        }))
    }

    /// The start-up check: temp files removed, files without rows indexed, rows without files
    /// removed (and reported: that data is lost, something outside us deleted it).
    async fn check(&self) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport::default();
        let root = self.root.clone();
        let (files, temps) = tokio::task::spawn_blocking(move || walk(&root))
            .await
            .map_err(|e| StoreError::Io {
                path: self.root.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        for tmp in temps {
            std::fs::remove_file(&tmp).map_err(|source| StoreError::Io { path: tmp, source })?;
            report.temp_removed += 1;
        }
        let indexed: Vec<(String, String)> =
            sqlx::query_as("SELECT sop_instance_uid, file FROM instances")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.index_err(e))?;
        let on_disk: HashSet<&Path> = files.iter().map(PathBuf::as_path).collect();
        let mut known = HashSet::new();
        for (uid, file) in &indexed {
            if on_disk.contains(Path::new(file)) {
                report.instances += 1;
                known.insert(Path::new(file));
            } else {
                report.rows_removed.push(uid.clone());
            }
        }
        if !report.rows_removed.is_empty() {
            let mut tx = self.pool.begin().await.map_err(|e| self.index_err(e))?;
            for uid in &report.rows_removed {
                sqlx::query("DELETE FROM instances WHERE sop_instance_uid = ?")
                    .bind(uid)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.index_err(e))?;
            }
            sqlx::query(
                "DELETE FROM series WHERE series_uid NOT IN (SELECT series_uid FROM instances)",
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.index_err(e))?;
            sqlx::query(
                "DELETE FROM studies WHERE study_uid NOT IN (SELECT study_uid FROM series)",
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| self.index_err(e))?;
            tx.commit().await.map_err(|e| self.index_err(e))?;
        }
        for rel in files.iter().filter(|f| !known.contains(f.as_path())) {
            let path = self.root.join(rel);
            let bytes = match sealing::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    report.unreadable.push((path, e.to_string()));
                    continue;
                }
            };
            let size = bytes.len() as i64;
            match tokio::task::spawn_blocking(move || parse(&bytes)).await {
                Ok(Ok(rows)) => {
                    self.insert(&rows, rel, size, None)
                        .await
                        .map_err(|e| self.index_err(e))?;
                    report.files_indexed += 1;
                    report.instances += 1;
                }
                Ok(Err(why)) => report.unreadable.push((path, why.to_string())),
                Err(e) => report.unreadable.push((path, e.to_string())),
            }
        }
        Ok(report)
    }
}

/// Counts and logs one instance kept or refused (`source`: "dicom", "stow", "import") and
/// returns the DIMSE status reporting it.
pub fn record(source: &'static str, outcome: &Result<Stored, Refused>) -> u16 {
    match outcome {
        Ok(s) => {
            let kind = if s.duplicate { "duplicate" } else { "stored" };
            metrics::counter!("imaging_instances_total", "source" => source, "outcome" => kind)
                .increment(1);
            tracing::debug!(source, sop_instance_uid = %s.sop_instance, kind, "instance kept");
            0x0000
        }
        Err(why) => {
            metrics::counter!("imaging_instances_total", "source" => source, "outcome" => "refused")
                .increment(1);
            tracing::warn!(source, reason = %why, "instance refused");
            why.status()
        }
    }
}

/// The implementation class UID written in the files we wrap.
pub const IMPLEMENTATION_CLASS_UID: &str = "1.2.826.0.1.3680043.10.1234.1";

/// A text element without its padding, if present.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.element(tag).ok()?;
    // A value kept as bytes (VR UN, as some writers send known attributes) is text here.
    let s = match elem.value() {
        dicom_core::value::Value::Primitive(dicom_core::PrimitiveValue::U8(b)) => {
            String::from_utf8_lossy(b).into_owned()
        }
        _ => elem.to_str().ok()?.into_owned(),
    };
    Some(s.trim_matches(['\0', ' ']).to_owned())
}

fn text_or_empty(obj: &InMemDicomObject, tag: Tag) -> String {
    text(obj, tag).unwrap_or_default()
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    text(obj, tag).and_then(|s| s.split('\\').next().and_then(|v| v.trim().parse().ok()))
}

/// The file of an instance, relative to the store root: two levels of folders from a hash of
/// the UID, so no folder grows past a few thousand entries.
pub fn relative_path(sop_instance: &str) -> PathBuf {
    // FNV-1a: stable across versions and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in sop_instance.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    PathBuf::from(format!(
        "{:02x}/{:02x}/{sop_instance}.dcm",
        h >> 24,
        (h >> 16) & 0xff
    ))
}

fn has_dicm(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM") || bytes.get(..4) == Some(b"DICM")
}

/// A data set as a Part 10 file: preamble, "DICM", file meta group, then the data set as is.
fn wrap(
    transfer_syntax: &str,
    sop_class: &str,
    sop_instance: &str,
    dataset: &[u8],
) -> Result<Vec<u8>, Refused> {
    let meta = dicom_object::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name("APPLIANCE_IMG")
        .build()
        .map_err(|e| Refused::Identity(format!("cannot build the file meta group: {e}")))?;
    let mut file = Vec::with_capacity(dataset.len() + 512);
    file.extend_from_slice(&[0u8; 128]);
    file.extend_from_slice(b"DICM");
    meta.write(&mut file)
        .map_err(|e| Refused::Identity(format!("cannot build the file meta group: {e}")))?;
    file.extend_from_slice(dataset);
    Ok(file)
}

/// A bare data set (no preamble, no meta group): its encoding recognised from the first
/// element (group 0008 or 0002, explicit VR when a VR's two letters follow the tag), then
/// wrapped. Anything else is not DICOM.
fn wrap_raw(bytes: &[u8]) -> Result<Vec<u8>, Refused> {
    let not_dicom = || Refused::Malformed("not a DICOM file (no DICM prefix, no data set)".into());
    let h = bytes.get(..8).ok_or_else(not_dicom)?;
    let le = u16::from_le_bytes([h[0], h[1]]);
    if le == 0x0002 && h[4..6] == *b"UI" {
        // A file meta group without the preamble and "DICM": add them.
        let mut file = Vec::with_capacity(bytes.len() + 132);
        file.extend_from_slice(&[0u8; 128]);
        file.extend_from_slice(b"DICM");
        file.extend_from_slice(bytes);
        return Ok(file);
    }
    let be = u16::from_be_bytes([h[0], h[1]]);
    let letters = h[4].is_ascii_uppercase() && h[5].is_ascii_uppercase();
    let ts = match (le, be, letters) {
        (0x0008, _, true) => "1.2.840.10008.1.2.1",
        (0x0008, _, false) => "1.2.840.10008.1.2",
        (_, 0x0008, true) => "1.2.840.10008.1.2.2",
        _ => return Err(not_dicom()),
    };
    // Checked before parsing, like any file (the wrapping only adds the meta group).
    let probe = wrap(ts, "1.2", "1.2", bytes)?;
    crate::dicom::guard::check(&probe).map_err(Refused::Malformed)?;
    let registry_ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(not_dicom)?;
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, registry_ts)
        .map_err(|e| Refused::Malformed(format!("data set without a meta group: {e}")))?;
    let class = text(&obj, tags::SOP_CLASS_UID).unwrap_or_default();
    let instance = text(&obj, tags::SOP_INSTANCE_UID).unwrap_or_default();
    wrap(ts, &class, &instance, bytes)
}

fn parse(bytes: &[u8]) -> Result<Rows, Refused> {
    // The attributes are what the index needs; the pixel data's structure is checked by the
    // scan, and its bytes are kept in the file, so the parser stops before it.
    let (obj, scan) = crate::dicom::guard::parse(bytes, true).map_err(Refused::Malformed)?;
    let required = |tag: Tag, name: &str| -> Result<String, Refused> {
        match text(&obj, tag) {
            Some(u) if crate::uid::is_valid(&u) => Ok(u),
            Some(u) => Err(Refused::Identity(format!(
                "{name} {u:?} is not a valid UID"
            ))),
            None => Err(Refused::Identity(format!("{name} is missing"))),
        }
    };
    let study = required(tags::STUDY_INSTANCE_UID, "Study Instance UID")?;
    let series = required(tags::SERIES_INSTANCE_UID, "Series Instance UID")?;
    let sop_instance = required(tags::SOP_INSTANCE_UID, "SOP Instance UID")?;
    let sop_class = required(tags::SOP_CLASS_UID, "SOP Class UID")?;
    let meta_uid = obj.meta().media_storage_sop_instance_uid();
    if !meta_uid.is_empty() && meta_uid != sop_instance {
        // The data set is what the instance is; the meta group only wraps it (some writers
        // leave a stale one). Kept as received, indexed by the data set's UID.
        tracing::warn!(
            meta = meta_uid,
            data_set = %sop_instance,
            "file meta group names another SOP Instance UID; the data set's is used"
        );
    }
    let transfer_syntax = obj.meta().transfer_syntax().to_owned();
    let t = |tag| text_or_empty(&obj, tag);
    let base = format!("/dicomweb/studies/{study}/series/{series}/instances/{sop_instance}");
    let mut metadata = crate::dicom::json::to_json(&obj, &base);
    if let (Some(vr), Some(map)) = (scan.pixel_data_vr, metadata.as_object_mut()) {
        map.insert(
            "7FE00010".into(),
            serde_json::json!({
                "vr": String::from_utf8_lossy(&vr),
                "BulkDataURI": format!("{base}/bulk/7FE00010"),
            }),
        );
    }
    let metadata = metadata.to_string();
    Ok(Rows {
        study: [
            study.clone(),
            t(tags::PATIENT_ID),
            t(tags::PATIENT_NAME),
            t(tags::PATIENT_BIRTH_DATE),
            t(tags::PATIENT_SEX),
            t(tags::STUDY_DATE),
            t(tags::STUDY_TIME),
            t(tags::ACCESSION_NUMBER),
            t(tags::STUDY_ID),
            t(tags::REFERRING_PHYSICIAN_NAME),
            t(tags::STUDY_DESCRIPTION),
            t(tags::INSTITUTION_NAME),
        ],
        series: (
            series,
            study,
            int(&obj, tags::SERIES_NUMBER),
            [
                t(tags::MODALITY),
                t(tags::SERIES_DESCRIPTION),
                t(tags::BODY_PART_EXAMINED),
                t(tags::PERFORMED_PROCEDURE_STEP_START_DATE),
            ],
        ),
        sop_class,
        sop_instance,
        instance_number: int(&obj, tags::INSTANCE_NUMBER),
        image: [
            int(&obj, tags::ROWS),
            int(&obj, tags::COLUMNS),
            int(&obj, tags::BITS_ALLOCATED),
            int(&obj, tags::NUMBER_OF_FRAMES),
        ],
        transfer_syntax,
        metadata,
    })
}
