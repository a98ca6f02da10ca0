//! Signed tokens, the one format every daemon checks: `base64url(claims JSON) "."
//! base64url(Ed25519 signature of those bytes)`. The appliance signs (viewer sessions for
//! imaging, rooms for the SFU); each daemon verifies against the public key in its
//! configuration, refusing anything else with the reason. The claims are the caller's type;
//! each carries an expiry in Unix seconds.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Claims with an expiry.
pub trait Expiring {
    /// Expiry, Unix seconds.
    fn exp(&self) -> u64;
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No key is configured: every token is refused.
    #[error("no token key is configured: sessions are disabled")]
    NoKey,
    /// The configured key is not an Ed25519 public key.
    #[error("the configured token key: {0}")]
    BadKey(String),
    /// The token is not `claims.signature` in base64url.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    Signature,
    /// Past its expiry.
    #[error("the token expired")]
    Expired,
}

/// The verifying key from its configured base64 form.
pub fn key(configured: &str) -> Result<VerifyingKey, TokenError> {
    if configured.is_empty() {
        return Err(TokenError::NoKey);
    }
    let bytes = STANDARD
        .decode(configured)
        .map_err(|e| TokenError::BadKey(e.to_string()))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| TokenError::BadKey("not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| TokenError::BadKey(e.to_string()))
}

/// Verifies `token` with `key` at `now` (Unix seconds) and returns its claims.
pub fn verify<T: DeserializeOwned + Expiring>(
    token: &str,
    key: &VerifyingKey,
    now: u64,
) -> Result<T, TokenError> {
    let (claims, signature) = token
        .split_once('.')
        .ok_or_else(|| TokenError::Malformed("no '.' between claims and signature".into()))?;
    let payload = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| TokenError::Malformed(format!("signature: {e}")))?;
    let signature = Signature::from_slice(&signature)
        .map_err(|e| TokenError::Malformed(format!("signature: {e}")))?;
    key.verify_strict(&payload, &signature)
        .map_err(|_| TokenError::Signature)?;
    let claims: T = serde_json::from_slice(&payload)
        .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    if claims.exp() <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Signs claims (the appliance's side; tests and development use it too).
pub fn sign<T: Serialize>(claims: &T, key: &SigningKey) -> String {
    use ed25519_dalek::Signer;
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signature = key.sign(&payload);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// A signing key's public half in the configured form (base64).
pub fn public_key_base64(key: &SigningKey) -> String {
    STANDARD.encode(key.verifying_key().to_bytes())
}
