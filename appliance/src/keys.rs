//! The appliance's token-signing key (Ed25519): made on first start under
//! `DATA_DIR/keys/token-signing.key` (the 32-byte seed, base64, readable by this user only) and
//! kept; `secret` keeps any such 32-byte key. The appliance signs the tokens imaging's viewer and the SFU's rooms check; in the
//! whole stack, imaging is given the public half when `imaging.viewer_token_key` is empty.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

pub use firmware_runtime::gm::KeyError;

/// The key file under `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("token-signing.key")
}

/// Loads the signing key, making it on first use.
pub fn signing_key(data_dir: &Path) -> Result<SigningKey, KeyError> {
    secret(&path(data_dir), "token-signing key").map(|seed| SigningKey::from_bytes(&seed))
}

/// Reads a 32-byte secret kept in `file` as base64, making it (random, 0600, in a 0700
/// folder) on first use; `what` names it in the log. The data-encryption key (`gm.rs`) is
/// kept the same way (`firmware_runtime::gm::secret`).
pub fn secret(file: &Path, what: &str) -> Result<[u8; 32], KeyError> {
    firmware_runtime::gm::secret(file, what, true)?.ok_or_else(|| KeyError::Invalid {
        path: file.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_kept_private() {
        let dir = std::env::temp_dir().join(format!("keys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = signing_key(&dir).unwrap();
        let b = signing_key(&dir).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(&dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(&dir), "garbage").unwrap();
        assert!(matches!(signing_key(&dir), Err(KeyError::Invalid { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
