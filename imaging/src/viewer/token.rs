//! Viewer tokens: the shared signed-token format (`firmware_runtime::token`) with viewer claims,
//! signed by the appliance (or a development key), verified here against
//! `imaging.viewer_token_key`. The claims name the user, the studies the session may open, and
//! an expiry (Unix seconds). Anything else is refused with the reason.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

pub use firmware_runtime::token::{TokenError, key, public_key_base64};

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

impl firmware_runtime::token::Expiring for Claims {
    fn exp(&self) -> u64 {
        self.exp
    }
}

/// Verifies a viewer token with `key` at `now` (Unix seconds).
pub fn verify(token: &str, key: &VerifyingKey, now: u64) -> Result<Claims, TokenError> {
    firmware_runtime::token::verify(token, key, now)
}

/// Signs viewer claims (the appliance's side; tests and development use it).
pub fn sign(claims: &Claims, key: &ed25519_dalek::SigningKey) -> String {
    firmware_runtime::token::sign(claims, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
