//! National cryptography (国密) as the appliance uses it: SM3 (GB/T 32905) and HMAC-SM3, and
//! SM4 (GB/T 32907) in GCM mode (RFC 8998) for sensitive columns at rest. A [`Sealer`] holds
//! the two keys derived from the data key in `DATA_DIR/keys/data.key` (32 random bytes, 0600,
//! made on first use): one seals values (`sm4gcm:` + base64 of nonce, ciphertext and tag, the
//! column's name as associated data, so a value moved to another column does not open), the
//! other makes blind indexes (HMAC-SM3), so an identity card number is still found by equality
//! without being stored in clear.

use std::path::{Path, PathBuf};

use aes_gcm::aead::KeyInit;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_core::{OsRng, RngCore};

use firmware_runtime::gm::{self, Sm4Gcm};

/// The prefix of a sealed value.
pub const SEALED: &str = "sm4gcm:";

/// Why a key could not be had or a value not opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GmError {
    /// The key file could not be read, written or understood.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// A sealed value is damaged, or sealed under another key or for another column.
    #[error("a sealed {column} value does not open: damaged, or sealed under another key")]
    Open {
        /// The column.
        column: &'static str,
    },
    /// A passphrase-sealed file does not open.
    #[error("it does not open with this passphrase (wrong passphrase, or the file is damaged)")]
    Passphrase,
}

/// The first bytes of a passphrase-sealed file.
const PASSPHRASE_MAGIC: &[u8] = b"APPLIANCE-SM4GCM-ARGON2ID-1\n";

/// The SM4 key of `passphrase` and `salt`: Argon2id, 64 MiB, 3 passes, one lane.
fn passphrase_key(passphrase: &str, salt: &[u8]) -> Result<Sm4Gcm, GmError> {
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(64 * 1024, 3, 1, Some(16)).map_err(|_| GmError::Passphrase)?;
    let mut key = [0u8; 16];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|_| GmError::Passphrase)?;
    Sm4Gcm::new_from_slice(&key).map_err(|_| GmError::Passphrase)
}

/// Seals `plain` under `passphrase`: the magic line, a random 16-byte salt, then
/// [`firmware_runtime::gm::seal`] (nonce, ciphertext, tag; the magic and salt authenticated).
pub fn seal_with_passphrase(passphrase: &str, plain: &[u8]) -> Result<Vec<u8>, GmError> {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let mut out = PASSPHRASE_MAGIC.to_vec();
    out.extend_from_slice(&salt);
    let sealed = gm::seal(&passphrase_key(passphrase, &salt)?, &out, plain);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal_with_passphrase`] sealed.
pub fn open_with_passphrase(passphrase: &str, sealed: &[u8]) -> Result<Vec<u8>, GmError> {
    let head = PASSPHRASE_MAGIC.len() + 16;
    if sealed.len() < head || !sealed.starts_with(PASSPHRASE_MAGIC) {
        return Err(GmError::Passphrase);
    }
    let (aad, rest) = sealed.split_at(head);
    gm::open(
        &passphrase_key(passphrase, &aad[PASSPHRASE_MAGIC.len()..])?,
        aad,
        rest,
    )
    .ok_or(GmError::Passphrase)
}

pub use firmware_runtime::gm::{hmac_sm3, sm3};

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seals and opens column values, and makes blind indexes.
#[derive(Clone)]
pub struct Sealer {
    cipher: Sm4Gcm,
    index_key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(keys hidden)")
    }
}

impl Sealer {
    /// From the 32-byte data key.
    pub fn new(data_key: &[u8; 32]) -> Self {
        Self {
            cipher: gm::cipher(data_key, b"appliance column sealing (SM4-GCM)"),
            index_key: hmac_sm3(data_key, b"appliance blind index (HMAC-SM3)"),
        }
    }

    /// The key file under the data directory.
    pub fn key_path(data_dir: &Path) -> PathBuf {
        gm::data_key_path(data_dir)
    }

    /// Loads the data key (the operator's, `security.data_key_file`, or the data
    /// directory's, made on first use).
    pub fn load(config: &firmware_config::Config) -> Result<Self, GmError> {
        let key = gm::data_key(config, true)?.ok_or_else(|| crate::keys::KeyError::Invalid {
            path: Self::key_path(&config.storage.data_dir),
        })?;
        Ok(Self::new(&key))
    }

    /// Seals `value` for `column` (an empty value stays empty: there is nothing to hide).
    pub fn seal(&self, column: &str, value: &str) -> String {
        if value.is_empty() {
            return String::new();
        }
        let out = gm::seal(&self.cipher, column.as_bytes(), value.as_bytes());
        format!("{SEALED}{}", STANDARD.encode(out))
    }

    /// Opens a value sealed for `column`; a value not sealed (written before sealing existed,
    /// and not yet converted) is returned as it is.
    pub fn open(&self, column: &'static str, stored: &str) -> Result<String, GmError> {
        let Some(b64) = stored.strip_prefix(SEALED) else {
            return Ok(stored.to_owned());
        };
        let bad = || GmError::Open { column };
        let bytes = STANDARD.decode(b64).map_err(|_| bad())?;
        let plain = gm::open(&self.cipher, column.as_bytes(), &bytes).ok_or_else(bad)?;
        String::from_utf8(plain).map_err(|_| bad())
    }

    /// The blind index of `value` for `column`: equal values, equal indexes; nothing else
    /// learned without the key.
    pub fn index(&self, column: &str, value: &str) -> String {
        let mut data = column.as_bytes().to_vec();
        data.push(0);
        data.extend_from_slice(value.as_bytes());
        hex(&hmac_sm3(&self.index_key, &data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sm3_and_sm4_match_their_standards() {
        // GB/T 32905-2016 appendix A, examples 1 and 2.
        assert_eq!(
            hex(&sm3(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(
            hex(&sm3(&b"abcd".repeat(16))),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
        // GB/T 32907-2016 appendix A: one block.
        use sm4::cipher::{BlockEncrypt, KeyInit as _};
        let key = unhex("0123456789abcdeffedcba9876543210");
        let cipher = sm4::Sm4::new_from_slice(&key).unwrap();
        let mut bytes: [u8; 16] = key.clone().try_into().unwrap();
        cipher.encrypt_block((&mut bytes).into());
        let block = bytes;
        assert_eq!(hex(&block), "681edf34d206965e86b3e94f536e4246");
    }

    #[test]
    fn sm4_gcm_matches_rfc_8998() {
        use aes_gcm::aead::{Aead, Payload};
        // RFC 8998 appendix A.1.
        let cipher = Sm4Gcm::new_from_slice(&unhex("0123456789abcdeffedcba9876543210")).unwrap();
        let nonce = unhex("00001234567800000000abcd");
        let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let plain = unhex(concat!(
            "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd",
            "eeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa"
        ));
        let out = cipher
            .encrypt(
                nonce.as_slice().into(),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(
            hex(&out),
            concat!(
                "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735",
                "d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d",
                "83de3541e4c2b58177e065a9bf7b62ec"
            )
        );
    }

    #[test]
    fn hmac_sm3_matches_openssl() {
        for (key, data) in [
            (&b"key"[..], &b"abc"[..]),
            (
                &[0x42u8; 100][..],
                &b"a longer message over the key's block size"[..],
            ),
        ] {
            let mut child = std::process::Command::new("openssl")
                .args(["dgst", "-sm3", "-mac", "HMAC", "-macopt"])
                .arg(format!("hexkey:{}", hex(key)))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("openssl (scripts/test installs it)");
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), data).unwrap();
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let theirs = text.trim().rsplit(' ').next().unwrap().to_owned();
            assert_eq!(hex(&hmac_sm3(key, data)), theirs, "{text}");
        }
    }

    #[test]
    fn sealed_values_open_only_for_their_column_and_key() {
        let a = Sealer::new(&[1u8; 32]);
        let b = Sealer::new(&[2u8; 32]);
        let sealed = a.seal("patients.phone", "13800138000");
        assert!(sealed.starts_with(SEALED));
        assert!(!sealed.contains("13800138000"));
        assert_ne!(
            sealed,
            a.seal("patients.phone", "13800138000"),
            "fresh nonce"
        );
        assert_eq!(a.open("patients.phone", &sealed).unwrap(), "13800138000");
        assert!(a.open("users.phone", &sealed).is_err());
        assert!(b.open("patients.phone", &sealed).is_err());
        assert_eq!(a.open("patients.phone", "plain").unwrap(), "plain");
        assert_eq!(a.seal("patients.phone", ""), "");
        assert_eq!(a.index("id", "X1"), a.index("id", "X1"));
        assert_ne!(a.index("id", "X1"), b.index("id", "X1"));
        let dir = tempfile::tempdir().unwrap();
        let mut config = firmware_config::Config::default();
        config.storage.data_dir = dir.path().to_owned();
        let k1 = Sealer::load(&config).unwrap();
        let k2 = Sealer::load(&config).unwrap();
        assert_eq!(k2.open("c", &k1.seal("c", "v")).unwrap(), "v");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(Sealer::key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn passphrase_seals_open_only_with_their_passphrase() {
        let sealed = seal_with_passphrase("correct horse battery", b"the keys").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"the keys"));
        assert_eq!(
            open_with_passphrase("correct horse battery", &sealed).unwrap(),
            b"the keys"
        );
        assert!(open_with_passphrase("correct horse batterY", &sealed).is_err());
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open_with_passphrase("correct horse battery", &flipped).is_err());
        // Another salt each time: the same input never seals the same way.
        assert_ne!(
            seal_with_passphrase("correct horse battery", b"the keys").unwrap(),
            sealed
        );
    }
}
