//! Viewer tokens: `base64url(claims JSON) "." base64url(Ed25519 signature of those bytes)`,
//! signed by the appliance (or a development key), verified here against
//! `imaging.viewer_token_key`. The claims name the user, the studies the session may open, and
//! an expiry (Unix seconds). Anything else is refused with the reason.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// Study Instance UIDs the session may show.
    pub studies: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No key is configured: every token is refused.
    #[error("imaging.viewer_token_key is not set: viewer sessions are disabled")]
    NoKey,
    /// The configured key is not an Ed25519 public key.
    #[error("imaging.viewer_token_key: {0}")]
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

/// Verifies `token` with `key` at `now` (Unix seconds).
pub fn verify(token: &str, key: &VerifyingKey, now: u64) -> Result<Claims, TokenError> {
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
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Signs claims (the appliance's side; tests and development use it).
pub fn sign(claims: &Claims, key: &ed25519_dalek::SigningKey) -> String {
    use ed25519_dalek::Signer;
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signature = key.sign(&payload);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// A signing key's public half in the configured form.
pub fn public_key_base64(key: &ed25519_dalek::SigningKey) -> String {
    STANDARD.encode(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_everything_else_is_refused() {
        let signer = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
        let key = key(&public_key_base64(&signer)).unwrap();
        let claims = Claims {
            sub: "wang".into(),
            studies: vec!["1.2.3".into()],
            exp: 2_000,
        };
        let token = sign(&claims, &signer);
        assert_eq!(verify(&token, &key, 1_000), Ok(claims.clone()));
        assert_eq!(verify(&token, &key, 2_000), Err(TokenError::Expired));
        assert_eq!(
            verify(&sign(&claims, &other), &key, 1_000),
            Err(TokenError::Signature)
        );
        let (payload, sig) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"root","studies":[],"exp":9999}"#);
        assert_eq!(
            verify(&format!("{forged}.{sig}"), &key, 1_000),
            Err(TokenError::Signature)
        );
        for bad in [
            "",
            "abc",
            &format!("{payload}.!!"),
            &format!("{payload}.AAAA"),
        ] {
            assert!(
                matches!(verify(bad, &key, 1_000), Err(TokenError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(super::key("").unwrap_err(), TokenError::NoKey);
        assert!(matches!(super::key("AAAA"), Err(TokenError::BadKey(_))));
    }
}
