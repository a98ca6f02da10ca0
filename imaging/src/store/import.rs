//! `imaging import PATH...`: files, folders (recursively), DICOMDIRs (the files they reference)
//! and zip archives go into the [`Store`] exactly as C-STORE and STOW-RS instances do. Progress
//! shows on a terminal; the summary counts what was stored, what was already there, and names
//! each file refused with the reason.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use dicom_dictionary_std::tags;
use tokio::task::JoinSet;

use crate::store::{Refused, Store, StoreError, record};

/// Instances imported at once (parsing and fsync overlap).
const IN_FLIGHT: usize = 4;
/// A zip member larger than this is refused rather than read into memory.
const MAX_MEMBER: u64 = 4 << 30;

/// Where candidates come from: a file, or every member of a zip archive (read in order by one
/// task, so the archive's directory is parsed once).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    File(PathBuf),
    Zip(PathBuf),
}

/// One candidate's outcome: what it was, bytes read, and what the store did.
type Outcome = (String, u64, Result<crate::store::Stored, Refused>);

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Instances newly kept.
    pub stored: u64,
    /// Instances that were already kept.
    pub duplicates: u64,
    /// Files refused, each with why.
    pub rejected: Vec<(String, String)>,
    /// Bytes read.
    pub bytes: u64,
    /// Study Instance UIDs of the instances kept (new or already there).
    pub studies: std::collections::BTreeSet<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "stored {}, duplicates {}, rejected {}",
            self.stored,
            self.duplicates,
            self.rejected.len()
        )?;
        for (what, why) in &self.rejected {
            writeln!(f, "rejected {what}: {why}")?;
        }
        Ok(())
    }
}

/// Why an import could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A path given does not exist or cannot be read.
    #[error("{}: {source}", path.display())]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Imports `paths` into the store of `config` (its data directory), encrypting the files
/// when `imaging.encrypt_at_rest`.
pub async fn import(
    config: &firmware_config::Config,
    paths: &[PathBuf],
) -> Result<Summary, ImportError> {
    crate::store::sealing::register(config).map_err(StoreError::from)?;
    let data_dir = config.storage.data_dir.as_path();
    let (store, _) = Store::open(data_dir).await?;
    let mut sources = Vec::new();
    let mut summary = Summary::default();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| ImportError::Path {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(path, &mut sources);
        } else if is_dicomdir(path) {
            match dicomdir_files(path) {
                Ok(files) => sources.extend(files.into_iter().map(Source::File)),
                Err(why) => summary.rejected.push((path.display().to_string(), why)),
            }
        } else {
            sources.push(Source::File(path.clone()));
        }
    }
    let expanded: Vec<Source> = sources
        .into_iter()
        .map(|s| match s {
            Source::File(p) if is_zip(&p) => Source::Zip(p),
            other => other,
        })
        .collect();
    let total = expanded.len();
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut done = 0usize;
    let mut queue = expanded.into_iter();
    loop {
        while tasks.len() < IN_FLIGHT {
            let Some(source) = queue.next() else { break };
            let store = store.clone();
            tasks.spawn(async move { import_source(store, source).await });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        done += 1;
        match joined {
            Ok(outcomes) => {
                for (what, bytes, outcome) in outcomes {
                    summary.bytes += bytes;
                    record("import", &outcome);
                    match outcome {
                        Ok(s) if s.duplicate => {
                            summary.duplicates += 1;
                            summary.studies.insert(s.study.clone());
                        }
                        Ok(s) => {
                            summary.stored += 1;
                            summary.studies.insert(s.study.clone());
                        }
                        Err(why) => summary.rejected.push((what, why.to_string())),
                    }
                }
            }
            Err(e) => summary
                .rejected
                .push(("(a file)".into(), format!("import task failed: {e}"))),
        }
        if progress {
            draw(done, total, summary.bytes, started);
        }
    }
    if progress {
        eprintln!();
    }
    store.close().await;
    summary.rejected.sort();
    Ok(summary)
}

async fn import_source(store: Store, source: Source) -> Vec<Outcome> {
    match source {
        Source::File(p) => {
            let what = p.display().to_string();
            match tokio::fs::read(&p).await {
                Ok(bytes) => vec![put(&store, what, bytes).await],
                Err(e) => vec![(
                    what,
                    0,
                    Err(Refused::Resources(format!("cannot read: {e}"))),
                )],
            }
        }
        Source::Zip(archive) => {
            let handle = tokio::runtime::Handle::current();
            let what = archive.display().to_string();
            tokio::task::spawn_blocking(move || zip_import(&handle, &store, &archive))
                .await
                .unwrap_or_else(|e| vec![(what, 0, Err(Refused::Resources(e.to_string())))])
        }
    }
}

async fn put(store: &Store, what: String, bytes: Vec<u8>) -> Outcome {
    let n = bytes.len() as u64;
    (what, n, store.put(bytes).await)
}

/// Every member of a zip archive, read in order (DICOMDIRs and folders skipped).
fn zip_import(handle: &tokio::runtime::Handle, store: &Store, archive: &Path) -> Vec<Outcome> {
    let name = archive.display().to_string();
    let fail = |why: String| vec![(name.clone(), 0, Err(Refused::Malformed(why)))];
    let file = match std::fs::File::open(archive) {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot read: {e}")),
    };
    let mut zip = match zip::ZipArchive::new(std::io::BufReader::new(file)) {
        Ok(z) => z,
        Err(e) => return fail(format!("not a readable zip: {e}")),
    };
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = match zip.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                out.push((
                    format!("{name}!#{i}"),
                    0,
                    Err(Refused::Malformed(e.to_string())),
                ));
                continue;
            }
        };
        let member = match entry.name() {
            Ok(n) => n.into_owned(),
            Err(e) => {
                out.push((
                    format!("{name}!#{i}"),
                    0,
                    Err(Refused::Malformed(e.to_string())),
                ));
                continue;
            }
        };
        let what = format!("{name}!{member}");
        let base = member.rsplit('/').next().unwrap_or_default();
        if entry.is_dir() || base.eq_ignore_ascii_case("DICOMDIR") {
            continue;
        }
        if entry.size() > MAX_MEMBER {
            out.push((
                what,
                0,
                Err(Refused::Resources(format!(
                    "{} bytes is more than an instance may be",
                    entry.size()
                ))),
            ));
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        if let Err(e) = entry.read_to_end(&mut bytes) {
            out.push((
                what,
                0,
                Err(Refused::Malformed(format!("cannot inflate: {e}"))),
            ));
            continue;
        }
        out.push(handle.block_on(put(store, what, bytes)));
    }
    out
}

fn draw(done: usize, total: usize, bytes: u64, started: Instant) {
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} files, {:.1} MB/s",
        "=".repeat(filled),
        " ".repeat(width - filled),
        bytes as f64 / 1e6 / secs
    );
    let _ = err.flush();
}

fn walk(dir: &Path, out: &mut Vec<Source>) {
    let mut dirs = vec![dir.to_owned()];
    let mut files = Vec::new();
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(p),
                // A DICOMDIR's files are in the same tree; the directory itself is not an
                // instance to keep.
                Ok(t) if t.is_file() && !is_dicomdir(&p) => files.push(p),
                _ => {}
            }
        }
    }
    files.sort();
    out.extend(files.into_iter().map(Source::File));
}

fn is_dicomdir(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR"))
}

fn is_zip(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PK\x03\x04"
}

/// The files a DICOMDIR references (Referenced File ID, relative to its folder).
fn dicomdir_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let obj = dicom_object::open_file(path).map_err(|e| format!("not a readable DICOMDIR: {e}"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let records = obj
        .element(tags::DIRECTORY_RECORD_SEQUENCE)
        .map_err(|e| format!("DICOMDIR without records: {e}"))?;
    let mut files = Vec::new();
    for item in records.items().unwrap_or_default() {
        if let Ok(id) = item.element(tags::REFERENCED_FILE_ID)
            && let Ok(parts) = id.to_multi_str()
        {
            let mut p = base.to_owned();
            for part in parts.iter() {
                let part = part.trim();
                // A component that climbs out of the DICOMDIR's folder is not followed.
                if part.is_empty() || part == ".." || part.contains('/') {
                    continue;
                }
                p.push(part);
            }
            files.push(p);
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}
