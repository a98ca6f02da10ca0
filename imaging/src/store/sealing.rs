//! Optional at-rest encryption of stored DICOM files (`imaging.encrypt_at_rest`): each file
//! is written as a magic line, then SM4-GCM of the bytes received under a key derived from the
//! data key (`DATA_DIR/keys/data.key`, `firmware_runtime::gm`), its file name as associated
//! data, so a file renamed or swapped for another does not open. Every read of a stored file
//! goes through [`read`], which opens sealed files and passes plain ones (stored before
//! encryption was turned on) as they are. The keys are registered per store root when a store
//! opens, so several data directories in one process (the tests) each use their own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, RwLock};

use firmware_runtime::gm::{self, KeyError, Sm4Gcm};

/// The first bytes of a sealed file (a Part 10 file starts with a 128-byte preamble and
/// `DICM`; these cannot be mistaken for one that matters, as the guard reads from byte 128).
pub const MAGIC: &[u8; 16] = b"SM4GCM-DICOM-v1\n";

/// Each registered store root, its cipher, and whether new files are sealed.
type Registered = Vec<(PathBuf, Arc<Sm4Gcm>, bool)>;

static KEYS: LazyLock<RwLock<Registered>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Registers the store of `config` (`DATA_DIR/dicom`) with its data key
/// (`firmware_runtime::gm::data_key`): with `imaging.encrypt_at_rest` the key is made if
/// there is none and new files are sealed; without, it is loaded only if it exists, to open
/// files sealed before.
pub fn register(config: &firmware_config::Config) -> Result<(), KeyError> {
    let seal_new = config.imaging.encrypt_at_rest;
    let root = config.storage.data_dir.join("dicom");
    let key = gm::data_key(config, seal_new)?;
    add(&root, key, seal_new);
    Ok(())
}

fn add(root: &Path, key: Option<[u8; 32]>, seal_new: bool) {
    let Ok(mut keys) = KEYS.write() else {
        return;
    };
    keys.retain(|(r, ..)| r != root);
    if let Some(key) = key {
        let cipher = gm::cipher(&key, b"imaging DICOM files (SM4-GCM)");
        keys.push((root.to_owned(), Arc::new(cipher), seal_new));
    }
}

/// Registers `root` to open sealed files, unless it is registered already (the daemon
/// registers first, with the configuration's choice).
pub fn register_if_absent(root: &Path, data_dir: &Path) -> Result<(), KeyError> {
    if KEYS
        .read()
        .is_ok_and(|keys| keys.iter().any(|(r, ..)| r == root))
    {
        return Ok(());
    }
    let key = gm::secret(&gm::data_key_path(data_dir), "data-encryption key", false)?;
    add(root, key, false);
    Ok(())
}

/// The cipher of the registered root `path` lies under, and whether it seals new files.
fn key_for(path: &Path) -> Option<(Arc<Sm4Gcm>, bool)> {
    let keys = KEYS.read().ok()?;
    keys.iter()
        .filter(|(root, ..)| path.starts_with(root))
        .max_by_key(|(root, ..)| root.as_os_str().len())
        .map(|(_, c, seal)| (c.clone(), *seal))
}

fn aad(name: &Path) -> Vec<u8> {
    name.file_name()
        .map(|n| n.to_string_lossy().into_owned().into_bytes())
        .unwrap_or_default()
}

/// The bytes to write for a file that will live at `target`: sealed when its store seals new
/// files, else `bytes` as they are.
pub fn for_writing(target: &Path, bytes: &[u8]) -> Option<Vec<u8>> {
    let (cipher, true) = key_for(target)? else {
        return None;
    };
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&gm::seal(&cipher, &aad(target), bytes));
    Some(out)
}

/// Reads a stored file: a sealed one opened (an error when no key of its store opens it).
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    let Some(sealed) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Ok(bytes);
    };
    let (cipher, _) = key_for(path).ok_or_else(|| {
        std::io::Error::other("the file is encrypted and no data key is loaded for its store")
    })?;
    gm::open(&cipher, &aad(path), sealed).ok_or_else(|| {
        std::io::Error::other(
            "the encrypted file does not open: damaged, renamed, or sealed under another key",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_seal_where_asked_and_open_only_under_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let (root, plain_root) = (dir.path().join("a/dicom"), dir.path().join("b/dicom"));
        add(&root, Some([1u8; 32]), true);
        add(&plain_root, None, false);
        std::fs::create_dir_all(&root).unwrap();
        let file = root.join("1.2.3.dcm");
        let sealed = for_writing(&file, b"DICOM bytes").unwrap();
        assert!(sealed.starts_with(MAGIC));
        assert!(!sealed.windows(11).any(|w| w == b"DICOM bytes"));
        assert!(
            for_writing(&plain_root.join("x.dcm"), b"x").is_none(),
            "no key there"
        );
        std::fs::write(&file, &sealed).unwrap();
        assert_eq!(read(&file).unwrap(), b"DICOM bytes");
        // Plain files (stored before) read as they are.
        std::fs::write(root.join("old.dcm"), b"plain").unwrap();
        assert_eq!(read(&root.join("old.dcm")).unwrap(), b"plain");
        // Renamed, it no longer opens.
        std::fs::rename(&file, root.join("1.2.4.dcm")).unwrap();
        assert!(read(&root.join("1.2.4.dcm")).is_err());
        // Without its store's key it cannot be read.
        std::fs::write(plain_root.join("copy.dcm"), &sealed).unwrap_or_else(|_| {
            std::fs::create_dir_all(&plain_root).unwrap();
            std::fs::write(plain_root.join("copy.dcm"), &sealed).unwrap();
        });
        assert!(read(&plain_root.join("copy.dcm")).is_err());
    }
}
