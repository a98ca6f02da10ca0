//! National cryptography primitives the daemons share: SM3 (GB/T 32905) and HMAC-SM3, SM4
//! (GB/T 32907) in GCM mode (RFC 8998) with a random 96-bit nonce, and the 32-byte secret key
//! files under `DATA_DIR/keys` (base64, 0600 in a 0700 folder, made on first use). The
//! appliance seals database columns and backups with them, imaging its stored DICOM files.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_core::{OsRng, RngCore};
use sm3::{Digest, Sm3};

/// SM4 in GCM with a 96-bit nonce and a 128-bit tag.
pub type Sm4Gcm = aes_gcm::AesGcm<sm4::Sm4, U12>;

/// SM3 of `data`.
pub fn sm3(data: &[u8]) -> [u8; 32] {
    Sm3::digest(data).into()
}

/// HMAC-SM3 (RFC 2104 with SM3's 64-byte block).
pub fn hmac_sm3(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sm3(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sm3::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sm3::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// An SM4-GCM cipher keyed by the first 16 bytes of HMAC-SM3(`key`, `purpose`): one key file
/// gives each use its own key.
pub fn cipher(key: &[u8], purpose: &[u8]) -> Sm4Gcm {
    let derived = hmac_sm3(key, purpose);
    let mut k = aes_gcm::Key::<Sm4Gcm>::default();
    k.copy_from_slice(&derived[..16]);
    Sm4Gcm::new(&k)
}

/// Seals `plain` with a random nonce: nonce (12 bytes), ciphertext, tag (16 bytes); `aad` is
/// authenticated, not stored.
pub fn seal(cipher: &Sm4Gcm, aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt((&nonce).into(), Payload { msg: plain, aad })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(12 + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] made with the same cipher and `aad`; `None` when it does not open.
pub fn open(cipher: &Sm4Gcm, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let (nonce, body) = sealed.split_at(12);
    cipher
        .decrypt(nonce.into(), Payload { msg: body, aad })
        .ok()
}

/// Why a key file could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("{}: not a base64 key of 32 bytes", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
    },
}

/// The data key's file: the appliance's sealed columns and imaging's sealed files derive
/// their keys from it.
pub fn data_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("data.key")
}

/// The data key: the operator's file (`security.data_key_file`), which must exist, or
/// `DATA_DIR/keys/data.key`, made when `create`. `Ok(None)`: neither is there.
pub fn data_key(
    config: &firmware_config::Config,
    create: bool,
) -> Result<Option<[u8; 32]>, KeyError> {
    match &config.security.data_key_file {
        Some(file) => match secret(file, "operator's data key", false)? {
            Some(key) => Ok(Some(key)),
            None => Err(KeyError::Io {
                path: file.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "security.data_key_file: the operator's data key is not there (it is \
                     never made here)",
                ),
            }),
        },
        None => secret(
            &data_key_path(&config.storage.data_dir),
            "data-encryption key",
            create,
        ),
    }
}

/// Reads a 32-byte secret kept in `file` as base64, making it (random, 0600, in a 0700
/// folder) on first use when `create`; `what` names it in the log. `Ok(None)`: there is none
/// and `create` is false.
pub fn secret(file: &Path, what: &str, create: bool) -> Result<Option<[u8; 32]>, KeyError> {
    let io = |source| KeyError::Io {
        path: file.to_owned(),
        source,
    };
    match std::fs::read_to_string(file) {
        Ok(text) => STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .map(Some)
            .ok_or_else(|| KeyError::Invalid {
                path: file.to_owned(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = file.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
            }
            let mut seed = [0u8; 32];
            OsRng.fill_bytes(&mut seed);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(file)
                .map_err(io)?;
            f.write_all(format!("{}\n", STANDARD.encode(seed)).as_bytes())
                .map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::info!(path = %file.display(), "{what} created");
            Ok(Some(seed))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_their_key_and_associated_data() {
        let c = cipher(&[7u8; 32], b"purpose");
        let sealed = seal(&c, b"name", b"plain text");
        assert_eq!(
            open(&c, b"name", &sealed).as_deref(),
            Some(&b"plain text"[..])
        );
        assert!(open(&c, b"other", &sealed).is_none());
        assert!(open(&cipher(&[7u8; 32], b"another purpose"), b"name", &sealed).is_none());
        assert!(open(&c, b"name", &sealed[..20]).is_none());
        assert_ne!(
            seal(&c, b"name", b"plain text"),
            sealed,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn key_files_are_made_once_when_asked_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("gm-key-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = data_key_path(&dir);
        assert!(secret(&file, "test key", false).unwrap().is_none());
        let a = secret(&file, "test key", true).unwrap();
        assert_eq!(secret(&file, "test key", false).unwrap(), a);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&file, "garbage").unwrap();
        assert!(matches!(
            secret(&file, "test key", false),
            Err(KeyError::Invalid { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
