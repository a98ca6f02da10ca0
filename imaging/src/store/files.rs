//! The store's files on disk: each instance written to a temp file beside its place and
//! fsynced (sealed first when encryption at rest is on), parent folders synced, the tree
//! walked by the start-up check, and private folders made.

use std::path::{Path, PathBuf};

use super::{StoreError, sealing};

/// Writes `bytes` beside where `root/rel` will be, as a hidden temp file, and fsyncs it.
pub(super) fn write_temp(root: &Path, rel: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let target = root.join(rel);
    let dir = target.parent().unwrap_or(root);
    std::fs::create_dir_all(dir)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let sealed = sealing::for_writing(&target, bytes);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(sealed.as_deref().unwrap_or(bytes))?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

static TEMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Fsyncs the folder of a file just renamed into it, so the name is durable.
pub(super) fn sync_parent(target: &Path) -> std::io::Result<()> {
    match target.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Every `.dcm` file under `root` (relative paths) and every leftover temp file.
pub(super) fn walk(root: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), StoreError> {
    let mut files = Vec::new();
    let mut temps = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let io = |source| StoreError::Io {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                dirs.push(path);
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                temps.push(path);
            } else if name.ends_with(".dcm")
                && let Ok(rel) = path.strip_prefix(root)
            {
                files.push(rel.to_owned());
            }
        }
    }
    Ok((files, temps))
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })
}
